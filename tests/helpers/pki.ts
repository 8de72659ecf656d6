/**
 * Throwaway certificates for the suite's TLS servers and clients, made with
 * Web Crypto and `@peculiar/x509` (an npm package, so the suite needs no
 * openssl program): a CA, then certificates it signs. What checks them is
 * not ours: PostgreSQL's OpenSSL, rustls in Deno's TLS, the SQS emulators'.
 * (tests/unit/db/crl_test.ts still makes its lists with openssl: there the
 * checker under test reads them with this same library, so they must come
 * from something else.)
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey } from "node:crypto";

/** A CA in a directory, and what it issues. */
export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  /** The CA's certificate file. */
  readonly caPath: string;
  /**
   * Makes a key and a certificate signed by the CA for this CN (its SANs
   * `san`, openssl's form: `DNS:localhost,IP:127.0.0.1`, else `DNS:<cn>`),
   * written to `<dir>/<file>.crt` and `.key` (mode 0600); the key encrypted
   * (PKCS#8, AES-256) when a passphrase is given.
   */
  issue(
    cn: string,
    options?: { readonly passphrase?: string; readonly san?: string; readonly file?: string },
  ): Promise<{ cert: string; key: string; certPath: string; keyPath: string }>;
}

type Library = typeof import("@peculiar/x509");
let library: Promise<Library> | undefined;

/** The library, imported on first use: most test files never make a certificate. */
function x509(): Promise<Library> {
  library ??= import("reflect-metadata").then(() => import("@peculiar/x509"));
  return library;
}

/**
 * ECDSA P-256 with SHA-256: what OpenSSL, rustls and the emulators all
 * accept, and a key costs about 3 ms to make against 120-340 ms for RSA
 * 2048 (measured here), a dozen times a run.
 */
const KEY = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;

const DAY_MS = 86_400_000;

function keyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(KEY, true, ["sign", "verify"]);
}

/** A random positive 16-byte serial, as hex. */
function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] as number) & 0x7f | 0x10;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function pkcs8Pem(key: CryptoKey, passphrase?: string): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey("pkcs8", key));
  const object = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  return String(
    passphrase === undefined
      ? object.export({ type: "pkcs8", format: "pem" })
      : object.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase }),
  );
}

/** openssl's SAN text (`DNS:a,IP:1.2.3.4`) as the library's names. */
function altNames(san: string): { type: "dns" | "ip"; value: string }[] {
  return san.split(",").map((entry) => {
    const at = entry.indexOf(":");
    const [kind, value] = [entry.slice(0, at).trim().toUpperCase(), entry.slice(at + 1).trim()];
    if (kind !== "DNS" && kind !== "IP") throw new Error(`SAN kind ${kind} not supported here`);
    return { type: kind === "DNS" ? "dns" : "ip", value };
  });
}

/** A fresh CA whose files go in `dir` (removed by the caller, or with the cluster's). */
export async function makePki(dir: string): Promise<TestPki> {
  const lib = await x509();
  const now = Date.now();
  // An hour back: a clock a little behind ours still finds them valid.
  const validity = { notBefore: new Date(now - 3_600_000), notAfter: new Date(now + 2 * DAY_MS) };
  const caKeys = await keyPair();
  const ca = await lib.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=login-etl throwaway CA",
    ...validity,
    signingAlgorithm: SIGNING,
    keys: caKeys,
    extensions: [
      new lib.BasicConstraintsExtension(true, undefined, true),
      new lib.KeyUsagesExtension(lib.KeyUsageFlags.keyCertSign | lib.KeyUsageFlags.cRLSign, true),
      await lib.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const caCert = ca.toString("pem") + "\n";
  await Deno.writeTextFile(`${dir}/ca.crt`, caCert);
  // For `openssl ca`, which signs connection_string_test's revocation lists.
  await Deno.writeTextFile(`${dir}/ca.key`, await pkcs8Pem(caKeys.privateKey), { mode: 0o600 });
  return {
    dir,
    caCert,
    caPath: `${dir}/ca.crt`,
    async issue(cn, options = {}) {
      const keys = await keyPair();
      const leaf = await lib.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${cn}`,
        issuer: ca.subject,
        ...validity,
        signingAlgorithm: SIGNING,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        extensions: [
          // A leaf, not a CA: rustls refuses a CA certificate presented as a server's.
          new lib.BasicConstraintsExtension(false),
          new lib.SubjectAlternativeNameExtension(altNames(options.san ?? `DNS:${cn}`)),
          await lib.AuthorityKeyIdentifierExtension.create(ca),
        ],
      });
      const base = `${dir}/${options.file ?? cn.replace(/\W/g, "_")}`;
      const cert = leaf.toString("pem") + "\n";
      const key = await pkcs8Pem(keys.privateKey, options.passphrase);
      await Deno.writeTextFile(`${base}.crt`, cert);
      await Deno.writeTextFile(`${base}.key`, key, { mode: 0o600 });
      await Deno.chmod(`${base}.key`, 0o600);
      return { cert, key, certPath: `${base}.crt`, keyPath: `${base}.key` };
    },
  };
}

/** PEM texts and the CA's file of a loopback HTTPS server's identity, for clients told to trust it. */
export interface TlsIdentity {
  /** The CA certificate's path: for NODE_EXTRA_CA_CERTS, DENO_CERT, CURL_CA_BUNDLE. */
  readonly caPath: string;
  readonly caPem: string;
  /** The server certificate, for localhost, 127.0.0.1 and ::1. */
  readonly certPem: string;
  readonly keyPem: string;
}

/** A CA and a server certificate it signed for every loopback name, in `dir` (the caller removes it). */
export async function makeTlsIdentity(dir: string): Promise<TlsIdentity> {
  const pki = await makePki(dir);
  const server = await pki.issue("localhost", {
    san: "DNS:localhost,IP:127.0.0.1,IP:::1",
    file: "server",
  });
  return { caPath: pki.caPath, caPem: pki.caCert, certPem: server.cert, keyPem: server.key };
}
