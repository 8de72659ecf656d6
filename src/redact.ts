/**
 * Reject bodies by allowlist: what is kept of a refused message for the
 * operator is only what is known to be safe. A denylist of PII key names
 * leaks whatever a producer names differently (`ipAddress`, `x_forwarded_for`,
 * free text), so here nothing passes unless a rule says it may:
 *
 * - the structure: objects, arrays, `true`/`false`/`null`, keys that are plain
 *   identifiers holding no address, and the length of every masked string and
 *   of every masked array of numbers;
 * - the values of the non-PII fields `user_id`, `app_version`, `device_type`
 *   and `locale` when they are short, of the expected shape and look like no
 *   IP address, MAC address or e-mail;
 * - integers up to 9,999 directly under `app_version`, the one field whose
 *   value is a number by meaning. No other number is kept: small integers
 *   carry bytes and digits (a Node Buffer's `data`, octets, character codes,
 *   a device id cut in pieces).
 *
 * Every other string, number, array of numbers and key becomes its keyed mask
 * (field `value`); values under `ip`/`device_id` keys (any spelling) keep
 * their per-field masks, so a reject links to rows. JSON inside strings is
 * opened to a bounded depth and treated alike. Pure: masks are looked up
 * through the caller's function.
 *
 * @module
 */

import { canonicalIp } from "./ip.ts";
import type { MaskField } from "./mask.ts";
import type { ParsedBody } from "./validate.ts";

/** Longest masked body kept for a reject, in UTF-16 units. */
export const MAX_MASKED_BODY = 16_384;

/** Nesting kept, counting objects, arrays and JSON opened inside strings. */
export const MAX_DEPTH = 16;

/** A value to mask, under the field whose subkey masks it. */
export interface MaskRequest {
  readonly field: MaskField;
  readonly text: string;
}

/** Key of a mask request in a lookup map. */
export function maskKey(request: MaskRequest): string {
  return `${request.field}\u0000${request.text}`;
}

/**
 * The PII field a key names, whatever its spelling: `ip`, `IP`, `device_id`,
 * `Device-Id`, `deviceId` and the like. Their values keep per-field masks.
 */
export function piiFieldOf(key: string): "ip" | "device_id" | null {
  const plain = key.toLowerCase().replace(/[^a-z0-9]/g, "");
  return plain === "ip" ? "ip" : plain === "deviceid" ? "device_id" : null;
}

/** The text a PII value is masked as: the canonical IP when it is one, so it matches rows. */
function piiText(field: "ip" | "device_id", value: unknown): string {
  if (typeof value === "string") {
    if (field === "ip") {
      const ip = canonicalIp(value);
      if (ip.ok) return ip.canonical;
    }
    return value;
  }
  return JSON.stringify(value) ?? "undefined";
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The non-PII login fields whose short, plain values are kept, with each one's shape. */
const KEPT_FIELDS: ReadonlyMap<string, { readonly max: number; readonly shape: RegExp }> = new Map(
  [
    ["user_id", { max: 64, shape: /^[A-Za-z0-9_.:-]+$/ }],
    ["app_version", { max: 32, shape: /^[A-Za-z0-9.+_-]+$/ }],
    ["device_type", { max: 32, shape: /^[A-Za-z0-9 _.-]+$/ }],
    ["locale", { max: 32, shape: /^[A-Za-z_-]+$/ }],
  ],
);

// Shapes of addresses and e-mails, looked for anywhere in a kept value or a
// key. Regular expressions rather than ipaddr.js: the question is what looks
// like an address, a partial or disguised one included, not what parses as
// one (`canonicalIp` still answers for every exact address).

/** Four groups of one to three digits, one separator: `10.0.0.1`, `ip-10-0-0-1`, `10_0_0_1`. */
const IPV4_LIKE = /(?<!\d)\d{1,3}([._ -])\d{1,3}\1\d{1,3}\1\d{1,3}(?!\d)/;
/** Digits and dots alone, with a dot: a partial or malformed dotted address (`10.0.1`, `192.168`). */
const DOTTED_DIGITS = /^(?=.*\d)(?=.*\.)[\d.]+$/;
/**
 * Two colons with at most four hex digits between: IPv6 compressed (`fe80::1`,
 * `::`), full or cut (`2001:db8:85a3:`), mapped (`::ffff:192.0.2.1`), and a
 * MAC written with colons.
 */
const IPV6_LIKE = /:[0-9a-f]{0,4}:/i;
/** Six groups of two hex digits, one separator: `aa:bb:cc:dd:ee:ff`, `aa-bb-…`, `aa.bb.…`, `aa_bb_…`. */
const MAC_LIKE = /(?<![0-9a-f])[0-9a-f]{2}([:._-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}(?![0-9a-f])/i;
/** A MAC in three dotted groups of four, as Cisco writes it: `aabb.ccdd.eeff`. */
const MAC_DOTTED = /(?<![0-9a-f])[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}(?![0-9a-f])/i;
/** A MAC without separators: twelve hex digits and nothing else. */
const MAC_BARE = /^[0-9a-f]{12}$/i;
/** `local@domain`, or spelt out: `jane at example.com`, `jane_at_example_dot_com`. */
const EMAIL_LIKE = /[^\s@]@[^\s@]|[\s_(-]at[\s_)-].*(?:\.|dot)/i;

/**
 * True when `text` looks like an IP address, a MAC address or an e-mail,
 * exact or not. `versionSyntax` spares what reads as a version: one to three
 * dotted numbers are how `app_version` is written, so there a partial address
 * (`10.0.1`) cannot be told from a version; four groups still count.
 */
function looksLikeAddress(text: string, versionSyntax: boolean): boolean {
  return IPV4_LIKE.test(text) || (!versionSyntax && DOTTED_DIGITS.test(text)) ||
    IPV6_LIKE.test(text) || MAC_LIKE.test(text) || MAC_DOTTED.test(text) ||
    MAC_BARE.test(text) || EMAIL_LIKE.test(text) ||
    // Every address has a dot or a colon; parsing costs more than all the tests above.
    (/[.:]/.test(text) && canonicalIp(text).ok);
}

/**
 * Keys kept as they are: identifiers of at most 64 characters without a run
 * of four digits, which would more likely be a serial or an id than a name,
 * and holding no address (`ip_10_0_0_1`, `mac_aa_bb_cc_dd_ee_ff`).
 */
function isPlainKey(key: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key) && !/\d{4}/.test(key) &&
    !looksLikeAddress(key, false);
}

/**
 * True when a value of a kept field may be stored as it is: short, of its
 * field's shape, like no IP address, MAC address or e-mail, and with no run
 * of five digits nor more than six digits in all (a phone number, an SSN or
 * a serial in the wrong field), a UUID excepted.
 */
function isKeptValue(key: string, value: string): boolean {
  const rule = KEPT_FIELDS.get(key);
  if (rule === undefined || value.length > rule.max || !rule.shape.test(value)) return false;
  if (looksLikeAddress(value, key === "app_version")) return false;
  if (UUID.test(value)) return true;
  return !/\d{5}/.test(value) && (value.match(/\d/g)?.length ?? 0) <= 6;
}

/**
 * True for an integer kept as it is. The login event has no numeric field
 * (validate.ts: all six are strings); `app_version` is the one whose value is
 * a number by meaning (stored encoded as an integer), so a producer sending
 * `"app_version": 3` shows its 3, bounded as its text is (no run of five
 * digits). Anywhere else, and in every array, a small integer may be a byte,
 * an octet, a character code or a piece of an id.
 */
function isKeptInteger(key: string | null, value: number): boolean {
  return key === "app_version" && Number.isSafeInteger(value) && value >= 0 && value <= 9999;
}

/**
 * The JSON inside a string, when the string is a JSON object or array: a
 * producer that serialised twice, or an SNS envelope carrying the event in
 * `Message`. A string that fails to parse (truncated JSON, free text) is not
 * opened; it is masked whole like any other string.
 */
export function nestedJson(text: string): object | undefined {
  // trimStart also drops a byte-order mark, which JSON.parse would refuse.
  let inner = text.trimStart();
  for (let depth = 0; depth < 8; depth++) {
    const start = inner[0];
    if (start !== "{" && start !== "[" && start !== '"') return undefined;
    let value: unknown;
    try {
      value = JSON.parse(inner);
    } catch {
      return undefined;
    }
    if (value !== null && typeof value === "object") return value;
    // A JSON string holding JSON: serialised more than once.
    if (typeof value !== "string") return undefined;
    inner = value.trimStart();
  }
  return undefined;
}

/** Looks up (or, in the first pass, records) the mask of one value. */
type MaskOf = (request: MaskRequest) => string;

/** The stand-in for a masked string: its length and its mask, e.g. `[string 13 k1:…]`. */
function maskedString(text: string, maskOf: MaskOf): string {
  return `[string ${text.length} ${maskOf({ field: "value", text })}]`;
}

/**
 * The stand-in for an array of numbers: its length and one mask of the whole,
 * e.g. `[numbers 4 k1:…]`. A mask per item would be a substitution code: each
 * byte value always gets the same token, so a Buffer or character codes would
 * read back by letter frequency, or from one known plaintext, without the key.
 */
function maskedNumbers(items: readonly number[], maskOf: MaskOf): string {
  return `[numbers ${items.length} ${maskOf({ field: "value", text: JSON.stringify(items) })}]`;
}

function isNumberArray(items: readonly unknown[]): items is number[] {
  return items.length > 0 && items.every((item) => typeof item === "number");
}

function redactValue(value: unknown, key: string | null, depth: number, maskOf: MaskOf): unknown {
  const pii = key === null ? null : piiFieldOf(key);
  if (pii !== null) return maskOf({ field: pii, text: piiText(pii, value) });
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "number") {
    return isKeptInteger(key, value)
      ? value
      : `[number ${maskOf({ field: "value", text: String(value) })}]`;
  }
  if (typeof value === "string") {
    if (value === "") return value;
    if (key !== null && isKeptValue(key, value)) return value;
    const inner = depth < MAX_DEPTH ? nestedJson(value) : undefined;
    if (inner !== undefined) return JSON.stringify(redactValue(inner, null, depth + 1, maskOf));
    return maskedString(value, maskOf);
  }
  if (typeof value !== "object") return maskedString(String(value), maskOf);
  if (depth >= MAX_DEPTH) return "[too deep]";
  if (Array.isArray(value)) {
    if (isNumberArray(value)) return maskedNumbers(value, maskOf);
    // Items have no key: a number among other items is masked alone.
    return value.map((item) => redactValue(item, null, depth + 1, maskOf));
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const name = isPlainKey(k) || piiFieldOf(k) !== null ? k : maskedString(k, maskOf);
    out[name] = redactValue(v, k, depth + 1, maskOf);
  }
  return out;
}

/**
 * The stored text of a rejected body: the JSON with everything not known to
 * be safe replaced by its mask, cut at `MAX_MASKED_BODY`; `null` for a body
 * that did not parse (its length and keyed hash identify it).
 */
export function redactBody(parsed: ParsedBody, maskOf: MaskOf): string | null {
  if (parsed.kind !== "json") return null;
  const text = JSON.stringify(redactValue(parsed.value, null, 0, maskOf));
  // Enough to see what was wrong; the size and keyed hash identify the whole body.
  return text.length > MAX_MASKED_BODY ? `${text.slice(0, MAX_MASKED_BODY)}…[truncated]` : text;
}

/** Every value `redactBody` will ask the mask of, once each. */
export function masksWanted(parsed: ParsedBody): MaskRequest[] {
  const wanted = new Map<string, MaskRequest>();
  redactBody(parsed, (request) => {
    wanted.set(maskKey(request), request);
    return "";
  });
  return [...wanted.values()];
}
