/**
 * Certificate revocation lists (libpq's `sslcrl`, `sslcrldir`), checked by
 * hand after the TLS handshake: Deno's TLS layer takes a `crl` option and
 * does not check it (tried: a revoked server certificate was accepted), and
 * node:crypto parses certificates but not CRLs. So a CRL is read here (DER,
 * the few fields needed), its signature verified with the issuer's key, and
 * every certificate of the server's chain but the root checked as OpenSSL's
 * CRL_CHECK and CRL_CHECK_ALL (libpq's flags) do: a certificate whose
 * issuer has no CRL, a CRL past its next update, or a listed serial number
 * fails the connection.
 *
 * @module
 */

import { verify, X509Certificate } from "node:crypto";

/** One DER element: its tag, where its content lies, where it ends. */
interface Der {
  readonly tag: number;
  readonly start: number;
  readonly end: number;
  /** Offset of the header: `bytes.subarray(head, end)` is the whole element. */
  readonly head: number;
}

function read(bytes: Uint8Array, at: number): Der {
  const tag = bytes[at];
  let length = bytes[at + 1];
  if (tag === undefined || length === undefined) throw new Error("truncated DER");
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4) throw new Error("unsupported DER length");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (bytes[start + i] ?? 0);
    start += n;
  }
  const end = start + length;
  if (end > bytes.length) throw new Error("truncated DER");
  return { tag, start, end, head: at };
}

/** The elements inside a constructed element. */
function children(bytes: Uint8Array, parent: Der): Der[] {
  const out: Der[] = [];
  for (let at = parent.start; at < parent.end;) {
    const child = read(bytes, at);
    out.push(child);
    at = child.end;
  }
  return out;
}

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
/** A serial number as hex without leading zeros, upper case (X509Certificate's spelling). */
const serialHex = (text: string) => text.toUpperCase().replace(/^0+(?=.)/, "");

/** Signature algorithm OIDs (DER content, hex) → the hash node:crypto verifies with; null for Ed25519. */
const SIGNATURE_HASHES: Readonly<Record<string, string | null>> = {
  "2a864886f70d010105": "sha1",
  "2a864886f70d01010b": "sha256",
  "2a864886f70d01010c": "sha384",
  "2a864886f70d01010d": "sha512",
  "2a864886f70d01010e": "sha224",
  "2a8648ce3d040302": "sha256",
  "2a8648ce3d040303": "sha384",
  "2a8648ce3d040304": "sha512",
  "2b6570": null,
};

function time(bytes: Uint8Array, element: Der): number {
  const text = new TextDecoder().decode(bytes.subarray(element.start, element.end));
  const m = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (m === null) throw new Error("unsupported time in CRL");
  let year = Number(m[1]);
  if (m[1]?.length === 2) year += year < 50 ? 2000 : 1900; // UTCTime, RFC 5280
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

/** A parsed CRL: who issued it, until when, which serials it revokes, and its signed part. */
export interface Crl {
  /** The issuer Name, DER as hex. */
  readonly issuer: string;
  readonly nextUpdateMs: number | null;
  readonly revoked: ReadonlySet<string>;
  readonly tbs: Uint8Array;
  readonly hash: string | null;
  readonly signature: Uint8Array;
}

/** The DER blocks of a PEM text with the given label. */
function pemBlocks(text: string, label: string): Uint8Array[] {
  const pattern = new RegExp(`-----BEGIN ${label}-----([^-]+)-----END ${label}-----`, "g");
  return [...text.matchAll(pattern)].map((m) =>
    Uint8Array.from(atob((m[1] ?? "").replace(/\s+/g, "")), (c) => c.charCodeAt(0))
  );
}

/**
 * Parses the CRLs in a PEM text (`-----BEGIN X509 CRL-----` blocks).
 *
 * @throws Error when the text holds none or one cannot be read
 */
export function parseCrls(pem: string): Crl[] {
  const blocks = pemBlocks(pem, "X509 CRL");
  if (blocks.length === 0) throw new Error("no X509 CRL block in PEM");
  return blocks.map((bytes) => {
    const [tbs, algorithm, signature] = children(bytes, read(bytes, 0));
    if (tbs === undefined || algorithm === undefined || signature?.tag !== 0x03) {
      throw new Error("not a CertificateList");
    }
    const fields = children(bytes, tbs);
    let i = fields[0]?.tag === 0x02 ? 1 : 0; // version, v2 only
    i++; // signature algorithm, repeated inside
    const issuer = fields[i++];
    const thisUpdate = fields[i++];
    if (issuer === undefined || thisUpdate === undefined) throw new Error("not a TBSCertList");
    const next = fields[i]?.tag === 0x17 || fields[i]?.tag === 0x18 ? fields[i++] : undefined;
    const revoked = new Set<string>();
    if (fields[i]?.tag === 0x30) {
      for (const entry of children(bytes, fields[i] as Der)) {
        const serial = children(bytes, entry)[0];
        if (serial === undefined) continue;
        revoked.add(serialHex(hex(bytes.subarray(serial.start, serial.end))));
      }
    }
    const oid = children(bytes, algorithm)[0];
    const oidHex = oid === undefined ? "" : hex(bytes.subarray(oid.start, oid.end));
    if (!Object.hasOwn(SIGNATURE_HASHES, oidHex)) throw new Error("unsupported CRL signature");
    return {
      issuer: hex(bytes.subarray(issuer.head, issuer.end)),
      nextUpdateMs: next === undefined ? null : time(bytes, next),
      revoked,
      tbs: bytes.subarray(tbs.head, tbs.end),
      hash: SIGNATURE_HASHES[oidHex] ?? null,
      // A BIT STRING's first content byte counts unused bits (0 here).
      signature: bytes.subarray(signature.start + 1, signature.end),
    };
  });
}

/** The issuer Name of a certificate, DER as hex. */
function issuerOf(cert: X509Certificate): string {
  const bytes = new Uint8Array(cert.raw);
  const tbs = children(bytes, read(bytes, 0))[0];
  if (tbs === undefined) throw new Error("not a certificate");
  const fields = children(bytes, tbs);
  const i = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] version
  const issuer = fields[i + 2]; // serial, signature algorithm, issuer
  if (issuer === undefined) throw new Error("not a certificate");
  return hex(bytes.subarray(issuer.head, issuer.end));
}

/** Every certificate in a PEM bundle. */
export function certificatesIn(pem: string): X509Certificate[] {
  return pemBlocks(pem, "CERTIFICATE").map((der) => new X509Certificate(der));
}

/**
 * Checks a verified chain (leaf first) against CRLs, as OpenSSL's CRL_CHECK
 * with CRL_CHECK_ALL: every certificate but a self-signed root needs a CRL
 * from its issuer that is signed by it, current, and does not list it.
 *
 * @param issuers certificates that may have issued one of the chain (the chain itself, the CA bundle)
 * @returns null when the chain passes, else why not, with OpenSSL's code
 */
export function checkRevocation(
  chain: readonly X509Certificate[],
  issuers: readonly X509Certificate[],
  crls: readonly Crl[],
  nowMs: number,
): { code: string; message: string } | null {
  for (const cert of chain) {
    if (cert.checkIssued(cert) && cert.verify(cert.publicKey)) continue; // a root
    const issuer = issuers.find((c) => cert.checkIssued(c) && cert.verify(c.publicKey));
    const name = issuerOf(cert);
    const crl = issuer === undefined
      ? undefined
      : crls.find((c) => c.issuer === name && verify(c.hash, c.tbs, issuer.publicKey, c.signature));
    if (crl === undefined) {
      return {
        code: "UNABLE_TO_GET_CRL",
        message: `no revocation list from the issuer of "${cert.subject.replace(/\n/g, ", ")}"`,
      };
    }
    if (crl.nextUpdateMs !== null && crl.nextUpdateMs < nowMs) {
      return { code: "CRL_HAS_EXPIRED", message: "the revocation list is past its next update" };
    }
    if (crl.revoked.has(serialHex(cert.serialNumber))) {
      return {
        code: "CERT_REVOKED",
        message: `the certificate "${cert.subject.replace(/\n/g, ", ")}" is revoked`,
      };
    }
  }
  return null;
}
