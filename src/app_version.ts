/**
 * `app_version` text ⇄ the integer stored in `user_logins.app_version`:
 * `major*1_000_000 + minor*1_000 + patch`, so `2.3.0` → 2003000, `0.96` → 96000.
 * Integer order is version order. Pure.
 *
 * @module
 */

/** Largest part value: three decimal digits per part keep the encoding in an int4. */
export const MAX_VERSION_PART = 999;

const VERSION = /^(\d{1,3})(?:\.(\d{1,3}))?(?:\.(\d{1,3}))?$/;

/** The encoded version, or why the text is not a version. */
export type VersionResult =
  | { readonly ok: true; readonly encoded: number }
  | { readonly ok: false; readonly detail: string };

/**
 * Encodes a dotted numeric version of 1 to 3 parts, each 0 to 999.
 * Parts compare as numbers: `6.02` and `6.2` are the same version.
 */
export function encodeAppVersion(text: string): VersionResult {
  const match = VERSION.exec(text);
  if (match === null) {
    return {
      ok: false,
      detail: "app_version must be 1 to 3 dot-separated numbers of 1 to 3 digits, like 2.3.0",
    };
  }
  const [major, minor, patch] = [match[1], match[2], match[3]].map((p) => Number(p ?? "0")) as [
    number,
    number,
    number,
  ];
  return { ok: true, encoded: major * 1_000_000 + minor * 1_000 + patch };
}

/** Decodes the stored integer to `major.minor.patch` text (always three parts). */
export function decodeAppVersion(encoded: number): string {
  if (!Number.isInteger(encoded) || encoded < 0 || encoded > 999_999_999) {
    throw new RangeError(
      `Cannot decode app_version ${encoded}: must be an integer from 0 to 999999999`,
    );
  }
  const major = Math.floor(encoded / 1_000_000);
  const minor = Math.floor(encoded / 1_000) % 1_000;
  const patch = encoded % 1_000;
  return `${major}.${minor}.${patch}`;
}

/** SQL that turns the stored integer back into text, for docs/design.md and queries. */
export const DECODE_APP_VERSION_SQL =
  "(app_version / 1000000) || '.' || (app_version / 1000 % 1000) || '.' || (app_version % 1000)";
