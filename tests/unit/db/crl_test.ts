// Unit tests of src/db/crl.ts: CRLs made by openssl, checked as OpenSSL's
// CRL_CHECK + CRL_CHECK_ALL would: revoked, current, missing, expired, from
// another issuer, with another CA's or a broken signature, a chain with an
// intermediate, several lists in one file, the signature algorithms a CA may
// use; and the library behind it loaded only when a CRL is configured, under
// the binary's permission flags.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { certificatesIn, checkRevocation, type Crl, parseCrls } from "../../../src/db/crl.ts";
import { baseEnv, permissionFlags } from "../../helpers/cli.ts";
import { lacks, OPENSSL } from "../../helpers/tools.ts";

const root = new URL("../../../", import.meta.url).pathname;
const DAY_MS = 86_400_000;

/** Every test here makes its lists with openssl: skipped, said once, where it is missing. */
const withOpenssl = lacks(OPENSSL) ? Deno.test.ignore : Deno.test;

/** Runs openssl with `args`, split at spaces (paths here have none). */
async function openssl(args: string): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args: args.trim().split(/\s+/),
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

interface CaOptions {
  /** The CA's CN; `test-ca` unless given. */
  readonly name?: string;
  /** `openssl req` key options; RSA 2048 unless given. */
  readonly key?: string;
  /** The digest of the CA's own certificate (openssl's default unless given). */
  readonly certMd?: string;
  /** The digest of its lists; sha256 unless given. */
  readonly crlMd?: string;
  /** Signs the CA's certificate (an intermediate) instead of self-signing it. */
  readonly parent?: Ca;
  /** Takes the key in this file (another CA's, or one made for several) instead of making one. */
  readonly keyFile?: string;
}

interface Ca {
  readonly dir: string;
  readonly cert: X509Certificate;
  /** Issues a certificate for `name`, with a chosen serial when given. */
  issue(name: string, serial?: string): Promise<X509Certificate>;
  revoke(name: string): Promise<void>;
  /** A list of what was revoked; extra `openssl ca -gencrl` options in `args`. */
  crl(args?: string): Promise<string>;
}

/**
 * The key of every leaf certificate here, made once: what the checks read of
 * a leaf is its issuer, serial and the issuer's signature, never its own key,
 * and an RSA key costs a good part of a second of CPU to make.
 */
let leafKeyPem: string | undefined;

/** Writes the shared leaf key to `path`, making it on first use. */
async function writeLeafKey(path: string): Promise<void> {
  if (leafKeyPem === undefined) {
    await openssl(`genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ${path}`);
    leafKeyPem = await Deno.readTextFile(path);
  } else await Deno.writeTextFile(path, leafKeyPem);
}

/** A CA in `dir`, able to issue and revoke (openssl ca needs a database and a config). */
async function makeCa(dir: string, options: CaOptions = {}): Promise<Ca> {
  await Deno.mkdir(dir, { recursive: true });
  const { name = "test-ca", key = "-newkey rsa:2048", parent } = options;
  const certMd = options.certMd === undefined ? "" : `-${options.certMd}`;
  if (options.keyFile !== undefined) {
    await Deno.copyFile(options.keyFile, `${dir}/ca.key`);
    await openssl(
      `req -x509 -key ${dir}/ca.key -days 2 -subj /CN=${name} ${certMd} -out ${dir}/ca.crt`,
    );
  } else if (parent === undefined) {
    await openssl(
      `req -x509 ${key} -nodes -days 2 -subj /CN=${name} ${certMd} -keyout ${dir}/ca.key -out ${dir}/ca.crt`,
    );
  } else {
    const caExt = `${dir}/ca.ext`;
    await Deno.writeTextFile(caExt, "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign\n");
    await openssl(
      `req -new ${key} -nodes -subj /CN=${name} -keyout ${dir}/ca.key -out ${dir}/ca.csr`,
    );
    await openssl(`x509 -req -in ${dir}/ca.csr -CA ${parent.dir}/ca.crt -CAkey ${parent.dir}/ca.key
      -CAcreateserial -days 2 -extfile ${caExt} -out ${dir}/ca.crt`);
  }
  await Deno.writeTextFile(`${dir}/index.txt`, "");
  await Deno.writeTextFile(
    `${dir}/ca.cnf`,
    `[ca]\ndefault_ca=d\n[d]\ndatabase=${dir}/index.txt\ndefault_crl_days=2\ndefault_md=${
      options.crlMd ?? "sha256"
    }\n`,
  );
  const ca = `ca -config ${dir}/ca.cnf -keyfile ${dir}/ca.key -cert ${dir}/ca.crt`;
  return {
    dir,
    cert: new X509Certificate(await Deno.readFile(`${dir}/ca.crt`)),
    async issue(cn, serial) {
      const at = `${dir}/${cn}`;
      await writeLeafKey(`${at}.key`);
      await openssl(`req -new -key ${at}.key -subj /CN=${cn} -out ${at}.csr`);
      await openssl(`x509 -req -in ${at}.csr -CA ${dir}/ca.crt -CAkey ${dir}/ca.key -days 2
        ${serial === undefined ? "-CAcreateserial" : `-set_serial ${serial}`}
        -out ${at}.crt`);
      return new X509Certificate(await Deno.readFile(`${at}.crt`));
    },
    revoke: (cn) => openssl(`${ca} -revoke ${dir}/${cn}.crt`),
    async crl(args = "") {
      await openssl(`${ca} -gencrl ${args} -out ${dir}/list.crl`);
      return await Deno.readTextFile(`${dir}/list.crl`);
    },
  };
}

/** The PEM list with one bit of its signature (its last byte) flipped. */
function breakSignature(pem: string): string {
  const body = pem.replace(/-----[A-Z0-9 ]+-----|\s/g, "");
  const der = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
  der[der.length - 1] = (der[der.length - 1] as number) ^ 1;
  const b64 = btoa(String.fromCharCode(...der)).replace(/.{64}/g, "$&\n");
  return `-----BEGIN X509 CRL-----\n${b64}\n-----END X509 CRL-----\n`;
}

/** One table row: a chain, the lists at hand, a moment, and OpenSSL's verdict. */
interface Case {
  readonly name: string;
  readonly chain: X509Certificate[];
  readonly crls: Crl[];
  /** Certificates that may issue; the CA's own unless given. */
  readonly issuers?: X509Certificate[];
  /** Milliseconds after now. */
  readonly later?: number;
  readonly code: string | null;
}

withOpenssl("checkRevocation() follows OpenSSL's CRL check", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const ca = await makeCa(`${dir}/a`);
    const good = await ca.issue("good");
    const bad = await ca.issue("bad");
    await ca.revoke("bad");
    const crls = await parseCrls(await ca.crl());
    // Same name, another key: its list must not count for test-ca.
    const impostor = await makeCa(`${dir}/b`);
    const forged = await parseCrls(await impostor.crl());
    const other = await makeCa(`${dir}/c`, { name: "other-ca" });
    const otherList = await parseCrls(await other.crl());
    // The issuer's key, another name: OpenSSL matches a list to its issuer by name too.
    const renamed = await makeCa(`${dir}/d`, { name: "renamed-ca", keyFile: `${ca.dir}/ca.key` });
    const renamedList = await parseCrls(await renamed.crl());
    const expired = await parseCrls(
      await ca.crl("-crl_lastupdate 20200101000000Z -crl_nextupdate 20200102000000Z"),
    );
    const broken = await parseCrls(breakSignature(await ca.crl()));
    const cases: Case[] = [
      { name: "a certificate the list does not name passes", chain: [good], crls, code: null },
      { name: "a revoked one fails", chain: [bad], crls, code: "CERT_REVOKED" },
      { name: "a self-signed root needs no list", chain: [good, ca.cert], crls, code: null },
      { name: "no list from the issuer fails", chain: [good], crls: [], code: "UNABLE_TO_GET_CRL" },
      {
        name: "a list past its next update fails",
        chain: [good],
        crls,
        later: 3 * DAY_MS,
        code: "CRL_HAS_EXPIRED",
      },
      {
        name: "a list made with a next update in the past fails",
        chain: [good],
        crls: expired,
        code: "CRL_HAS_EXPIRED",
      },
      {
        name: "a list from another CA says nothing of this one",
        chain: [bad],
        crls: otherList,
        code: "UNABLE_TO_GET_CRL",
      },
      {
        name: "another CA's list with the issuer's name does not count",
        chain: [bad],
        crls: forged,
        code: "UNABLE_TO_GET_CRL",
      },
      {
        name: "a list signed by the issuer's key under another name does not count",
        chain: [bad],
        crls: renamedList,
        code: "UNABLE_TO_GET_CRL",
      },
      {
        name: "a list with a broken signature does not count",
        chain: [bad],
        crls: broken,
        code: "UNABLE_TO_GET_CRL",
      },
      {
        name: "the issuer's list among others counts",
        chain: [bad],
        crls: [...otherList, ...forged, ...broken, ...crls],
        code: "CERT_REVOKED",
      },
      {
        name: "an issuer not among the CAs has no list that counts",
        chain: [good],
        crls,
        issuers: [other.cert],
        code: "UNABLE_TO_GET_CRL",
      },
    ];
    const now = Date.now();
    for (const c of cases) {
      await t.step(c.name, async () => {
        const verdict = await checkRevocation(
          c.chain,
          c.issuers ?? [ca.cert],
          c.crls,
          now + (c.later ?? 0),
        );
        assert.equal(verdict?.code ?? null, c.code);
      });
    }
    await t.step("the refusals name the certificate", async () => {
      assert.deepEqual(await checkRevocation([bad], [ca.cert], crls, now), {
        code: "CERT_REVOKED",
        message: 'the certificate "CN=bad" is revoked',
      });
      assert.deepEqual(await checkRevocation([good], [ca.cert], [], now), {
        code: "UNABLE_TO_GET_CRL",
        message: 'no revocation list from the issuer of "CN=good"',
      });
      assert.deepEqual(await checkRevocation([good], [ca.cert], expired, now), {
        code: "CRL_HAS_EXPIRED",
        message: "the revocation list is past its next update",
      });
    });
    await t.step("serial numbers compare as numbers: a leading zero byte, one byte", async () => {
      const high = await ca.issue("high", "0x80aa"); // DER 00 80 aa
      const one = await ca.issue("one", "1");
      const spared = await ca.issue("spared", "0x0180aa");
      await ca.revoke("high");
      await ca.revoke("one");
      const list = await parseCrls(await ca.crl());
      assert.equal((await checkRevocation([high], [ca.cert], list, now))?.code, "CERT_REVOKED");
      assert.equal((await checkRevocation([one], [ca.cert], list, now))?.code, "CERT_REVOKED");
      assert.equal(await checkRevocation([spared], [ca.cert], list, now), null);
    });
    await t.step("parseCrls() refuses text without a readable CRL", async () => {
      await assert.rejects(parseCrls("not a crl"), /no X509 CRL block/);
      await assert.rejects(parseCrls(ca.cert.toString()), /no X509 CRL block/);
      await assert.rejects(parseCrls("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"));
    });
    await t.step("certificatesIn() reads every certificate of a bundle", async () => {
      const bundle = await certificatesIn(`${ca.cert.toString()}\n${good.toString()}`);
      assert.deepEqual(bundle.map((c) => c.subject), ["CN=test-ca", "CN=good"]);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

withOpenssl(
  "checkRevocation() needs a list for every certificate but the root (CRL_CHECK_ALL)",
  async (t) => {
    const dir = await Deno.makeTempDir();
    try {
      const top = await makeCa(`${dir}/root`, { name: "root-ca" });
      const mid = await makeCa(`${dir}/int`, { name: "int", parent: top });
      const leaf = await mid.issue("leaf");
      const chain = [leaf, mid.cert, top.cert];
      // As the connection does: the chain itself and the CA bundle may issue.
      const issuers = [...chain, top.cert];
      const midList = await mid.crl();
      const topList = await top.crl();
      await t.step("the leaf's issuer's list alone is not enough", async () => {
        assert.deepEqual(
          await checkRevocation(chain, issuers, await parseCrls(midList), Date.now()),
          {
            code: "UNABLE_TO_GET_CRL",
            message: 'no revocation list from the issuer of "CN=int"',
          },
        );
      });
      await t.step("both lists, from one PEM file, pass", async () => {
        const both = await parseCrls(`${midList}${topList}`);
        assert.equal(both.length, 2);
        assert.equal(await checkRevocation(chain, issuers, both, Date.now()), null);
      });
      await t.step("a revoked intermediate fails, named", async () => {
        await Deno.copyFile(`${mid.dir}/ca.crt`, `${top.dir}/int.crt`);
        await top.revoke("int");
        const lists = await parseCrls(`${midList}${await top.crl()}`);
        assert.deepEqual(await checkRevocation(chain, issuers, lists, Date.now()), {
          code: "CERT_REVOKED",
          message: 'the certificate "CN=int" is revoked',
        });
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** A signature algorithm: the CA's key and digests, and extra options for its lists. */
interface Algorithm {
  readonly name: string;
  readonly ca: CaOptions;
  readonly crlArgs?: string;
  /**
   * An RSA CA: its key and its impostor's are the two RSA keys of the test,
   * made once (each row needs two keys apart, not keys of its own).
   */
  readonly rsa?: true;
}

withOpenssl("checkRevocation() verifies the signature algorithms a CA may use", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    const ec = (curve: string) => `-newkey ec -pkeyopt ec_paramgen_curve:${curve}`;
    const algorithms: Algorithm[] = [
      { name: "RSA, SHA-1", ca: { crlMd: "sha1" }, rsa: true },
      { name: "RSA, SHA-512", ca: { crlMd: "sha512" }, rsa: true },
      // The issuer's key must be taken with the list's hash, not its certificate's.
      {
        name: "RSA, a SHA-384 certificate and a SHA-256 list",
        ca: { certMd: "sha384" },
        rsa: true,
      },
      {
        name: "RSA-PSS",
        ca: {},
        crlArgs: "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32",
        rsa: true,
      },
      { name: "ECDSA P-256, SHA-256", ca: { key: ec("P-256") } },
      { name: "ECDSA P-256, SHA-384", ca: { key: ec("P-256"), crlMd: "sha384" } },
      { name: "ECDSA P-384, SHA-384", ca: { key: ec("P-384"), crlMd: "sha384" } },
      { name: "Ed25519", ca: { key: "-newkey ed25519", crlMd: "default" } },
    ];
    const rsaKey = `${dir}/rsa.key`;
    const rsaImpostorKey = `${dir}/rsa-impostor.key`;
    for (const path of [rsaKey, rsaImpostorKey]) {
      await openssl(`genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ${path}`);
    }
    for (const [i, algorithm] of algorithms.entries()) {
      await t.step(`${algorithm.name}: a list counts, another key's does not`, async () => {
        const keyOf = (keyFile: string): CaOptions => algorithm.rsa ? { keyFile } : {};
        const ca = await makeCa(`${dir}/${i}`, { ...algorithm.ca, ...keyOf(rsaKey) });
        const bad = await ca.issue("bad");
        await ca.revoke("bad");
        const lists = await parseCrls(await ca.crl(algorithm.crlArgs));
        const impostor = await makeCa(`${dir}/${i}-impostor`, {
          ...algorithm.ca,
          ...keyOf(rsaImpostorKey),
        });
        const forged = await parseCrls(await impostor.crl(algorithm.crlArgs));
        const now = Date.now();
        assert.equal((await checkRevocation([bad], [ca.cert], lists, now))?.code, "CERT_REVOKED");
        assert.equal(
          (await checkRevocation([bad], [ca.cert], forged, now))?.code,
          "UNABLE_TO_GET_CRL",
        );
      });
    }
    await t.step("a list this runtime cannot verify (Ed448) is refused when read", async () => {
      const ca = await makeCa(`${dir}/ed448`, { key: "-newkey ed448", crlMd: "default" });
      await assert.rejects(parseCrls(await ca.crl()), /unsupported CRL signature/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

withOpenssl(
  "the CRL library loads only when a CRL is configured, and runs under the binary's flags",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const ca = await makeCa(`${dir}/ca`);
      await Deno.writeTextFile(`${dir}/list.crl`, await ca.crl());
      // reflect-metadata, which the library needs loaded first, leaves Reflect.getMetadata behind.
      await Deno.writeTextFile(
        `${dir}/probe.ts`,
        `import { loadPgConnection } from "${root}src/db/connection.ts";
import { resolvePgTarget } from "${root}src/config/pg_target.ts";
const url = "postgres://u@db.invalid/d?sslmode=verify-full&sslrootcert=${dir}/ca/ca.crt";
const load = (extra: string) =>
  loadPgConnection(resolvePgTarget({ value: url + extra, origin: "test" }, {}));
const loaded = () => "getMetadata" in Reflect;
await load("");
const without = loaded();
const connection = await load("&sslcrl=${dir}/list.crl");
console.log(JSON.stringify({ without, with: loaded(), lists: connection.tls.crl?.length }));
`,
      );
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...permissionFlags(), `--config=${root}deno.json`, `${dir}/probe.ts`],
        env: { ...baseEnv(), HOME: dir },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), {
        without: false,
        with: true,
        lists: 1,
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
