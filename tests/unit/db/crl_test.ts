// Unit tests of src/db/crl.ts: CRLs made by openssl, checked as OpenSSL's
// CRL_CHECK + CRL_CHECK_ALL would: revoked, current, missing, expired, and a
// list with the right issuer name but another CA's signature.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { certificatesIn, checkRevocation, parseCrls } from "../../../src/db/crl.ts";

async function openssl(args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

/** A CA named "CN=test ca" in `dir`, able to issue and revoke. */
async function makeCa(dir: string) {
  await Deno.mkdir(dir, { recursive: true });
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=test ca",
    "-keyout",
    `${dir}/ca.key`,
    "-out",
    `${dir}/ca.crt`,
  ]); // deno-fmt-ignore
  await Deno.writeTextFile(`${dir}/index.txt`, "");
  await Deno.writeTextFile(
    `${dir}/ca.cnf`,
    `[ca]\ndefault_ca=d\n[d]\ndatabase=${dir}/index.txt\ndefault_md=sha256\ndefault_crl_days=2\n`,
  );
  const ca = ["-config", `${dir}/ca.cnf`, "-keyfile", `${dir}/ca.key`, "-cert", `${dir}/ca.crt`];
  return {
    cert: new X509Certificate(await Deno.readFile(`${dir}/ca.crt`)),
    async issue(name: string): Promise<X509Certificate> {
      await openssl([
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        `/CN=${name}`,
        "-keyout",
        `${dir}/${name}.key`,
        "-out",
        `${dir}/${name}.csr`,
      ]); // deno-fmt-ignore
      await openssl([
        "x509", "-req", "-in", `${dir}/${name}.csr`, "-CA", `${dir}/ca.crt`, "-CAkey", `${dir}/ca.key`,
        "-CAcreateserial", "-days", "2", "-out", `${dir}/${name}.crt`,
      ]); // deno-fmt-ignore
      return new X509Certificate(await Deno.readFile(`${dir}/${name}.crt`));
    },
    revoke: (name: string) => openssl(["ca", ...ca, "-revoke", `${dir}/${name}.crt`]),
    async crl(): Promise<string> {
      await openssl(["ca", ...ca, "-gencrl", "-out", `${dir}/list.crl`]);
      return await Deno.readTextFile(`${dir}/list.crl`);
    },
  };
}

Deno.test("checkRevocation() follows OpenSSL's CRL check", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const ca = await makeCa(`${dir}/a`);
    const good = await ca.issue("good");
    const bad = await ca.issue("bad");
    await ca.revoke("bad");
    const crls = parseCrls(await ca.crl());
    const now = Date.now();
    const cases: [string, X509Certificate[], typeof crls, number, string | null][] = [
      ["a certificate the list does not name passes", [good], crls, now, null],
      ["a revoked one fails", [bad], crls, now, "CERT_REVOKED"],
      ["a self-signed root needs no list", [good, ca.cert], crls, now, null],
      ["no list from the issuer fails", [good], [], now, "UNABLE_TO_GET_CRL"],
      ["a list past its next update fails", [good], crls, now + 3 * 86_400_000, "CRL_HAS_EXPIRED"],
    ];
    for (const [name, chain, lists, at, code] of cases) {
      await t.step(name, () => {
        assert.equal(checkRevocation(chain, [ca.cert], lists, at)?.code ?? null, code);
      });
    }
    await t.step(
      "a list with the issuer's name but another CA's signature does not count",
      async () => {
        const impostor = await makeCa(`${dir}/b`); // also "CN=test ca"
        const forged = parseCrls(await impostor.crl());
        assert.equal(forged[0]?.issuer, crls[0]?.issuer, "same issuer name");
        assert.equal(checkRevocation([bad], [ca.cert], forged, now)?.code, "UNABLE_TO_GET_CRL");
      },
    );
    await t.step("parseCrls() reads the serials; refuses text without a CRL", () => {
      assert.ok(crls[0]?.revoked.has(bad.serialNumber.replace(/^0+/, "")));
      assert.throws(() => parseCrls("not a crl"), /no X509 CRL block/);
      assert.equal(certificatesIn(`${ca.cert.toString()}\n${good.toString()}`).length, 2);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
