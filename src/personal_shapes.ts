/**
 * What personal data looks like where it should not be: IP addresses, MAC
 * addresses, e-mails and UUIDs, written exactly or disguised. Two questions
 * are asked of it. Validation asks the narrow one (`personalShapeOf`): does a
 * `locale` or `device_type` hold one of them, spelt as tools write them? A
 * false positive there refuses a real message, so each shape is one people
 * write. Reject redaction asks the wide one (`looksPersonal`): could this kept
 * value or key be, or encode, such a value? A false positive there only masks
 * a value an operator would have liked to read, so it errs towards masking.
 *
 * Regular expressions rather than a parser: the question is what looks like
 * an address, a partial or disguised one included, not what parses as one
 * (`canonicalIp` still answers for every exact address). Pure.
 *
 * @module
 */

import { canonicalIp } from "./ip.ts";

/** A kind of personal value validation refuses in `locale` and `device_type`. */
export type PersonalShape = "email" | "mac" | "ip" | "uuid";

// ---- the narrow shapes: refused in locale and device_type -----------------

/** `local@domain` (or with a full-width `＠`), and `jane(at)example`, `jane[at]example`, `jane{at}example`. */
const EMAIL = /[^\s@\uff20][@\uff20][^\s@\uff20]|[(\[{]\s*at\s*[)\]}]/i;
/**
 * 8-4-4-4-12 hex digits with dashes, or 32 without whose version and variant
 * digits are those of RFC 9562 (so 32 hex letters of something else are not
 * taken for one).
 */
const UUID_IN =
  /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?<![0-9a-f])[0-9a-f]{12}[1-8][0-9a-f]{3}[89ab][0-9a-f]{15}(?![0-9a-f])/i;
/** Exactly a UUID and nothing else. */
const UUID_EXACT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Six pairs of hex digits, one separator: `aa:bb:cc:dd:ee:ff`, `aa-bb-…`, `aa.bb.…`, `aa_bb_…`, `aa bb …`. */
const MAC_PAIRS = /(?<![0-9a-f])[0-9a-f]{2}([:._ -])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}(?![0-9a-f])/i;
/** Three dotted groups of four, as Cisco writes a MAC: `aabb.ccdd.eeff`. */
const MAC_DOTTED = /(?<![0-9a-f])[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}(?![0-9a-f])/i;
/** Twelve hex digits standing alone: a MAC without separators. */
const MAC_BARE = /(?<![0-9a-z])[0-9a-f]{12}(?![0-9a-z])/i;
/**
 * Four groups of one to three digits, each pair joined by one character that
 * is no letter or digit, alike or mixed: `10.0.0.1`, `10-0-0-1`, `10_0.0+1`,
 * `10/0/0/1`.
 */
const IPV4 = /(?<!\d)\d{1,3}(?:[^0-9a-z]\d{1,3}){3}(?!\d)/i;
/**
 * Two colons with at most four hex digits between: IPv6 compressed (`fe80::1`,
 * `::`), full or cut (`2001:db8:85a3:`), mapped (`::ffff:192.0.2.1`), and a
 * MAC written with colons.
 */
const IPV6_COLONS = /:[0-9a-f]{0,4}:/i;
/**
 * IPv6 as a Windows UNC host writes it (`fe80--1ff-fe23-4567-890a.ipv6-literal.net`):
 * dashes for colons, so a compressed address has `--` between hex groups.
 * Full forms (eight dashed groups) are caught by the wide check only.
 */
const IPV6_DASHES =
  /(?<![0-9a-z])[0-9a-f]{1,4}--[0-9a-f]{0,4}|--[0-9a-f]{1,4}(?![0-9a-z])|ipv6-literal/i;

/**
 * The personal value `text` holds, if any, in the spellings validation
 * refuses in `locale` and `device_type`: an e-mail, a MAC, an IP address or a
 * UUID, anywhere in the text.
 */
export function personalShapeOf(text: string): PersonalShape | null {
  if (EMAIL.test(text)) return "email";
  if (UUID_IN.test(text)) return "uuid";
  if (MAC_PAIRS.test(text) || MAC_DOTTED.test(text) || MAC_BARE.test(text)) return "mac";
  if (IPV4.test(text) || IPV6_COLONS.test(text) || IPV6_DASHES.test(text)) return "ip";
  return null;
}

/** True when `text` is exactly a UUID (8-4-4-4-12 hex digits with dashes). */
export function isUuid(text: string): boolean {
  return UUID_EXACT.test(text);
}

// ---- the wide shapes: masked in reject bodies ------------------------------

/**
 * Four groups of one to three digits, joined by anything short that is no
 * digit: letters (`10x0x0x1`), words (`10 dot 0 dot 0 dot 1`), brackets
 * (`10[.]0[.]0[.]1`).
 */
const IPV4_LOOSE = /(?<!\d)\d{1,3}(?:\D{1,5}\d{1,3}){3}(?!\d)/;
/** Digits and dots alone, with a dot: a partial or malformed dotted address (`10.0.1`, `192.168`). */
const DOTTED_DIGITS = /^(?=.*\d)(?=.*\.)[\d.]+$/;
/** Hex groups with a doubled separator of any kind: IPv6 compressed as `fe80--1`, `fe80__1`, `fe80..1`. */
const IPV6_DOUBLED = /[0-9a-f]{0,4}([-_.+/ ])\1[0-9a-f]{1,4}/i;
/** Five or more hex groups with separators of any kind: IPv6 written out, a MAC, nibbles. */
const HEX_GROUPS = /(?<![0-9a-z])[0-9a-f]{1,4}(?:[-_:.+/ ]{1,2}[0-9a-f]{1,4}){4,}(?![0-9a-z])/i;
/**
 * Eight hex digits in a row once everything but letters and digits is taken
 * out: a bare or separated MAC in any case, a UUID, an IPv4 or IPv6 address
 * as hex bytes, text written in hex. Words of hex letters that long are rare.
 */
const HEX_RUN = /[0-9a-f]{8,}/i;
/** `at` between separators: `jane_at_example`, `jane at example`, `jane-at-example`, `jane.at.example`. */
const EMAIL_SPELT = /[\s_.(\[{<-]at[\s_.)\]}>-]/i;
/**
 * Tokens that may be base64 or base64url of something shorter: 7 characters,
 * unpadded, encode 5 bytes, as short as an address gets in the forms checked
 * here (`::001`, `a@b.c`).
 */
const BASE64_TOKEN = /[A-Za-z0-9+/_-]{7,}/g;
/** Printable ASCII runs of decoded bytes worth testing: 5 bytes, as above. */
const PRINTABLE_RUN = /[\x20-\x7e]{5,}/g;

/** Options of `looksPersonal`. */
export interface LooksPersonalOptions {
  /**
   * Spare digits and dots alone (`10.0.1`): the version syntax of a top-level
   * `app_version`, where a partial address cannot be told from a version.
   */
  readonly versionSyntax?: boolean;
}

/**
 * True when `text` could be, hold or encode an IP address, a MAC address, an
 * e-mail, a UUID or an id made of many digits, exactly or disguised. Errs
 * towards yes: used where a false positive only masks a value.
 */
export function looksPersonal(text: string, options: LooksPersonalOptions = {}): boolean {
  return looksPersonalAt(text, options.versionSyntax ?? false, 0);
}

function looksPersonalAt(text: string, versionSyntax: boolean, depth: number): boolean {
  if (personalShapeOf(text) !== null) return true;
  if (IPV4_LOOSE.test(text) || (!versionSyntax && DOTTED_DIGITS.test(text))) return true;
  if (IPV6_DOUBLED.test(text) && /\d/.test(text)) return true;
  if (HEX_GROUPS.test(text) || HEX_RUN.test(text.replace(/[^0-9a-z]/gi, ""))) return true;
  if (EMAIL_SPELT.test(text) || manyDigits(text)) return true;
  // Every address has a dot or a colon; parsing costs more than all the tests above.
  if (/[.:]/.test(text) && canonicalIp(text).ok) return true;
  return depth < 2 && decodesToPersonal(text, depth);
}

/** A run of five digits, or more than six in all: a phone number, an SSN, a serial. */
function manyDigits(text: string): boolean {
  return /\d{5}/.test(text) || (text.match(/\d/g)?.length ?? 0) > 6;
}

/**
 * True when a token of `text` is base64 or base64url of text that looks
 * personal. Each token is decoded from each of its first four offsets (a
 * token glued to a prefix of base64 letters, `id_amFuZUBl…`, still decodes),
 * and each printable run of the result is tested.
 */
function decodesToPersonal(text: string, depth: number): boolean {
  for (const [token] of text.matchAll(BASE64_TOKEN)) {
    const standard = token.replaceAll("-", "+").replaceAll("_", "/");
    for (let offset = 0; offset < 4 && standard.length - offset >= 7; offset++) {
      let slice = standard.slice(offset);
      // atob refuses a length of 4n+1 (no whole byte in the last character).
      if (slice.length % 4 === 1) slice = slice.slice(0, -1);
      let decoded: string;
      try {
        decoded = atob(slice);
      } catch {
        continue;
      }
      for (const [run] of decoded.matchAll(PRINTABLE_RUN)) {
        if (looksPersonalAt(run, false, depth + 1)) return true;
      }
    }
  }
  return false;
}
