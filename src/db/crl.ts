/**
 * Certificate revocation lists (libpq's `sslcrl`, `sslcrldir`), checked after
 * the TLS handshake: Deno's TLS layer takes a `crl` option and does not check
 * it (tried: a revoked server certificate was accepted), and node:crypto
 * parses certificates but not CRLs. `@peculiar/x509` reads the lists (PEM,
 * DER), verifies their signatures with the issuer's key through Web Crypto
 * and looks serial numbers up; what stays here is the policy, OpenSSL's
 * CRL_CHECK with CRL_CHECK_ALL (the flags libpq sets): every certificate of
 * the server's chain but the root needs a list from its issuer, signed by
 * it and current, that does not name it.
 *
 * The library is imported on first use, so only a configuration with a CRL
 * loads it: the import costs start-up time once per process (and once per
 * sink worker thread), and a check a little time per connection. Its npm
 * packages are embedded whole by `deno compile`, so the binary grows too
 * (figures in docs/performance.md#costs-kept-out-of-the-code).
 *
 * @module
 */

import type { X509Crl } from "@peculiar/x509";
import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";

/** A parsed certificate revocation list. */
export type Crl = X509Crl;

/** Why a chain fails the revocation check, with OpenSSL's code. */
export interface Revoked {
  readonly code: "UNABLE_TO_GET_CRL" | "CRL_HAS_EXPIRED" | "CERT_REVOKED";
  readonly message: string;
}

type Library = typeof import("@peculiar/x509");
let library: Promise<Library> | undefined;

/**
 * `@peculiar/x509`, imported once. It finds its algorithms through tsyringe,
 * which needs a Reflect metadata polyfill installed before it loads (its
 * README says so); the polyfill adds `Reflect.getMetadata` and kin to the
 * global `Reflect`, which nothing else here reads.
 */
function x509(): Promise<Library> {
  library ??= import("reflect-metadata").then(() => import("@peculiar/x509"));
  return library;
}

/**
 * The signature algorithms Deno's Web Crypto verifies, as the library names
 * them. It also names some it cannot verify here (Ed448; SHA-224 it leaves
 * as an OID): a list signed so is refused when the setting is read, as
 * libpq refuses a file it cannot load, rather than found missing at every
 * connection.
 */
const VERIFIABLE = new Set(["RSASSA-PKCS1-v1_5", "RSA-PSS", "ECDSA", "Ed25519"]);

/**
 * Parses the CRLs in a PEM text (`-----BEGIN X509 CRL-----` blocks, any
 * number, other blocks ignored).
 *
 * @throws Error when the text holds none or one cannot be read
 */
export async function parseCrls(pem: string): Promise<Crl[]> {
  const { PemConverter, X509Crl } = await x509();
  const blocks = PemConverter.decodeWithHeaders(pem).filter((b) => b.type === "X509 CRL");
  if (blocks.length === 0) throw new Error("no X509 CRL block in PEM");
  return blocks.map(({ rawData }) => {
    const crl = new X509Crl(rawData);
    // The library decodes these fields on first use: read them now, so a
    // malformed list fails here, when the setting is read.
    void [crl.issuerName, crl.thisUpdate, crl.nextUpdate, crl.entries];
    const { name } = crl.signatureAlgorithm;
    if (!VERIFIABLE.has(name)) throw new Error(`unsupported CRL signature ${name}`);
    return crl;
  });
}

/** Every certificate in a PEM bundle. */
export async function certificatesIn(pem: string): Promise<X509Certificate[]> {
  const { PemConverter } = await x509();
  return PemConverter.decodeWithHeaders(pem)
    .filter((b) => b.type === "CERTIFICATE")
    .map((b) => new X509Certificate(Buffer.from(b.rawData)));
}

/** Whether `crl` is signed by `issuer`'s key; a key Web Crypto cannot import is no. */
async function signedBy(crl: Crl, issuer: X509Certificate, lib: Library): Promise<boolean> {
  try {
    // The key, not the certificate: given a certificate, the library imports
    // the key with the certificate's own signature hash, which for RSA need
    // not be the list's.
    return await crl.verify({
      publicKey: new lib.X509Certificate(new Uint8Array(issuer.raw)).publicKey,
    });
  } catch {
    return false; // e.g. the two algorithm fields of the list differ
  }
}

/** The first of `crls` naming `cert`'s issuer (their DER compared) and signed by `issuer`. */
async function listFrom(
  issuer: X509Certificate,
  cert: InstanceType<Library["X509Certificate"]>,
  crls: readonly Crl[],
  lib: Library,
): Promise<Crl | undefined> {
  const name = Buffer.from(cert.issuerName.toArrayBuffer());
  for (const crl of crls) {
    if (
      name.equals(Buffer.from(crl.issuerName.toArrayBuffer())) && await signedBy(crl, issuer, lib)
    ) {
      return crl;
    }
  }
  return undefined;
}

/**
 * Checks a verified chain (leaf first) against CRLs, as OpenSSL's CRL_CHECK
 * with CRL_CHECK_ALL: every certificate but a self-signed root needs a CRL
 * from its issuer (same issuer name, signed by its key) that is current and
 * does not list it. A list with the right name and a bad signature counts
 * as no list.
 *
 * @param issuers certificates that may have issued one of the chain (the chain itself, the CA bundle)
 * @returns null when the chain passes, else why not
 */
export async function checkRevocation(
  chain: readonly X509Certificate[],
  issuers: readonly X509Certificate[],
  crls: readonly Crl[],
  nowMs: number,
): Promise<Revoked | null> {
  const lib = await x509();
  for (const cert of chain) {
    if (cert.checkIssued(cert) && cert.verify(cert.publicKey)) continue; // a root
    const issuer = issuers.find((c) => cert.checkIssued(c) && cert.verify(c.publicKey));
    const parsed = new lib.X509Certificate(new Uint8Array(cert.raw));
    const crl = issuer === undefined ? undefined : await listFrom(issuer, parsed, crls, lib);
    const subject = cert.subject.replace(/\n/g, ", ");
    if (crl === undefined) {
      return {
        code: "UNABLE_TO_GET_CRL",
        message: `no revocation list from the issuer of "${subject}"`,
      };
    }
    if (crl.nextUpdate !== undefined && crl.nextUpdate.getTime() < nowMs) {
      return { code: "CRL_HAS_EXPIRED", message: "the revocation list is past its next update" };
    }
    if (crl.findRevoked(parsed) !== null) {
      return { code: "CERT_REVOKED", message: `the certificate "${subject}" is revoked` };
    }
  }
  return null;
}
