/**
 * The TLS files a target names, read and checked as libpq does: the CA
 * (sslrootcert, or ~/.postgresql/root.crt), the client certificate and its
 * private key (decrypted with sslpassword; refused when others may read it),
 * and the revocation lists (sslcrl, sslcrldir, ~/.postgresql/root.crl).
 * `socket.ts` applies them per connection.
 *
 * @module
 */

import { createPrivateKey } from "node:crypto";
import { ConfigError, whyUnreadable } from "../errors.ts";
import { parseCrls } from "./crl.ts";
import type { PgTls } from "./socket.ts";
import type { PgTarget } from "./target.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function readSetting(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot read ${what} "${path}": ${whyUnreadable(error)}`, {
      cause: error,
    });
  }
}

/**
 * The private key, decrypted with sslpassword when it is encrypted. As libpq,
 * a key file others may read is refused.
 */
async function loadKey(path: string, password: string | null): Promise<string> {
  try {
    const info = await Deno.stat(path);
    const mode = info.mode ?? 0;
    // libpq: 0600 or less, or 0640 or less when owned by root.
    const tooOpen = info.uid === 0 ? (mode & 0o037) !== 0 : (mode & 0o077) !== 0;
    if (Deno.build.os !== "windows" && tooOpen) {
      throw new ConfigError(
        `sslkey "${path}" is readable by others, which libpq refuses: run chmod 0600 ${path}`,
      );
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
  }
  const pem = await readSetting(path, "sslkey");
  const encrypted = /ENCRYPTED/.test(pem);
  if (encrypted && (password === null || password === "")) {
    throw new ConfigError(
      `sslkey "${path}" is encrypted: give its passphrase as sslpassword in the connection string`,
    );
  }
  try {
    return createPrivateKey({ key: pem, ...(encrypted ? { passphrase: password ?? "" } : {}) })
      .export({ type: "pkcs8", format: "pem" }).toString();
  } catch (error) {
    throw new ConfigError(
      encrypted
        ? `sslpassword does not decrypt sslkey "${path}": check the passphrase`
        : `sslkey "${path}" is not a private key in PEM format`,
      { cause: error },
    );
  }
}

/** A CRL file's text, checked to hold CRLs (libpq refuses a file it cannot load). */
async function readCrl(path: string, what: string): Promise<string> {
  const text = await readSetting(path, what);
  try {
    await parseCrls(text);
  } catch (error) {
    throw new ConfigError(
      `Cannot use ${what} "${path}": not a PEM certificate revocation list (${
        error instanceof Error ? error.message : String(error)
      })`,
      { cause: error },
    );
  }
  return text;
}

/**
 * CRLs from sslcrl and the files in sslcrldir (libpq looks them up there by
 * hash; we read every file that holds one), else ~/.postgresql/root.crl when
 * it exists. Only when the certificate is verified, as libpq.
 */
async function loadCrls(target: PgTarget, verifying: boolean): Promise<string[] | undefined> {
  if (!verifying) return undefined;
  const crls: string[] = [];
  if (target.sslcrl !== null) crls.push(await readCrl(target.sslcrl, "sslcrl"));
  if (target.sslcrldir !== null) {
    let names: string[];
    try {
      names = [];
      for await (const entry of Deno.readDir(target.sslcrldir)) names.push(entry.name);
    } catch (error) {
      throw new ConfigError(
        `Cannot read sslcrldir "${target.sslcrldir}": ${whyUnreadable(error)}`,
        { cause: error },
      );
    }
    for (const name of names.sort()) {
      const text = await Deno.readTextFile(`${target.sslcrldir}/${name}`).catch(() => "");
      if (text.includes("-----BEGIN X509 CRL-----")) {
        crls.push(await readCrl(`${target.sslcrldir}/${name}`, "a CRL in sslcrldir"));
      }
    }
  }
  const defaultCrl = target.userDir === null ? null : `${target.userDir}/root.crl`;
  if (
    target.sslcrl === null && target.sslcrldir === null && defaultCrl !== null &&
    await exists(defaultCrl)
  ) crls.push(await readCrl(defaultCrl, "the default CRL"));
  return crls.length === 0 ? undefined : crls;
}

/**
 * The TLS options of a target's connections, every file it names (or libpq's
 * default files under ~/.postgresql) read and checked.
 *
 * @throws {ConfigError} when a file cannot be read or used
 */
export async function loadTls(target: PgTarget): Promise<PgTls> {
  const inUserDir = (name: string) => target.userDir === null ? null : `${target.userDir}/${name}`;
  let rootcert = target.sslrootcert;
  const defaultRoot = inUserDir("root.crt");
  // libpq uses ~/.postgresql/root.crt when it exists: to verify, and under require to check the chain.
  if (
    rootcert === null && ["require", "verify-ca", "verify-full"].includes(target.sslmode) &&
    defaultRoot !== null && await exists(defaultRoot)
  ) rootcert = defaultRoot;
  if (rootcert === null && target.sslmode === "verify-ca") {
    throw new ConfigError(
      `sslmode=verify-ca needs sslrootcert (or PGSSLROOTCERT, or ${
        defaultRoot ?? "~/.postgresql/root.crt"
      }): the CA that signed the server's certificate; or use sslmode=verify-full`,
    );
  }
  // "system" is libpq's name for the runtime's trusted roots.
  const ca = rootcert === null || rootcert === "system"
    ? undefined
    : await readSetting(rootcert, "sslrootcert");
  let cert: string | undefined;
  let key: string | undefined;
  if (target.sslcertmode !== "disable") {
    const defaultCert = inUserDir("postgresql.crt");
    const certPath = target.sslcert ??
      (defaultCert !== null && await exists(defaultCert) ? defaultCert : null);
    if (certPath !== null) {
      cert = await readSetting(certPath, "sslcert");
      const keyPath = target.sslkey ?? inUserDir("postgresql.key");
      if (keyPath === null || !await exists(keyPath)) {
        throw new ConfigError(
          `sslcert "${certPath}" has no private key: set sslkey (or PGSSLKEY) to its key file`,
        );
      }
      key = await loadKey(keyPath, target.sslpassword);
    }
  }
  const verifying = target.sslmode === "verify-ca" || target.sslmode === "verify-full" ||
    (target.sslmode === "require" && ca !== undefined);
  const crl = await loadCrls(target, verifying);
  return Object.freeze({
    sslmode: target.sslmode,
    negotiation: target.sslnegotiation,
    ...(crl === undefined ? {} : { crl: Object.freeze(crl) }),
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    minVersion: target.sslMinProtocolVersion,
    ...(target.sslMaxProtocolVersion === null ? {} : { maxVersion: target.sslMaxProtocolVersion }),
    sni: target.sslsni,
  });
}
