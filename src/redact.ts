/**
 * Reject bodies by allowlist: what is kept of a refused message for the
 * operator is only what is known to be safe. A denylist of PII key names
 * leaks whatever a producer names differently (`ipAddress`, `x_forwarded_for`,
 * free text), so here nothing passes unless a rule says it may:
 *
 * - the structure: objects, arrays, `true`/`false`/`null`, keys that are plain
 *   identifiers with at most three digits and like nothing personal, and the
 *   length of every masked string and of every masked array of numbers;
 * - the values of the non-PII fields `user_id`, `app_version`, `device_type`
 *   and `locale` when they are short, of the expected shape and like nothing
 *   personal (personal_shapes.ts: an IP, MAC, e-mail or UUID in any spelling,
 *   many digits, or base64 of any of these); a UUID only as the body's own
 *   `user_id`;
 * - integers up to 9,999 directly under the body's own `app_version`, the one
 *   field whose value is a number by meaning. No other number is kept: small
 *   integers carry bytes and digits (a Node Buffer's `data`, octets,
 *   character codes, a device id cut in pieces).
 *
 * Every other string, number, array of numbers and key becomes its keyed mask
 * (field `value`); values under `ip`/`device_id` keys (any spelling) keep
 * their per-field masks, so a reject links to rows. JSON inside strings is
 * opened to a bounded depth and treated alike. Pure: masks are looked up
 * through the caller's function.
 *
 * @module
 */

import { encodeAppVersion } from "./app_version.ts";
import { canonicalIp } from "./ip.ts";
import type { MaskField } from "./mask.ts";
import { isUuid, looksPersonal } from "./personal_shapes.ts";
import type { PiiField } from "./types.ts";
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
export function piiFieldOf(key: string): PiiField | null {
  const plain = key.toLowerCase().replace(/[^a-z0-9]/g, "");
  return plain === "ip" ? "ip" : plain === "deviceid" ? "device_id" : null;
}

/** The text a PII value is masked as: the canonical IP when it is one, so it matches rows. */
function piiText(field: PiiField, value: unknown): string {
  if (typeof value === "string") {
    if (field === "ip") {
      const ip = canonicalIp(value);
      if (ip.ok) return ip.canonical;
    }
    return value;
  }
  return JSON.stringify(value) ?? "undefined";
}

/** The non-PII login fields whose short, plain values are kept, with each one's shape. */
const KEPT_FIELDS: ReadonlyMap<string, { readonly max: number; readonly shape: RegExp }> = new Map(
  [
    ["user_id", { max: 64, shape: /^[A-Za-z0-9_.:-]+$/ }],
    ["app_version", { max: 32, shape: /^[A-Za-z0-9.+_-]+$/ }],
    ["device_type", { max: 32, shape: /^[A-Za-z0-9 _.-]+$/ }],
    ["locale", { max: 32, shape: /^[A-Za-z_-]+$/ }],
  ],
);

/**
 * Keys kept as they are: identifiers of at most 64 characters with at most
 * three digits (more would more likely make a serial, an id or an address
 * than a name: `ip_10_0_0_1`, `host192168`), and like nothing personal
 * (`mac_aabbccddeeff`, `jane_at_example`).
 */
function isPlainKey(key: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key) && (key.match(/\d/g)?.length ?? 0) <= 3 &&
    !looksPersonal(key);
}

/**
 * True when a value of a kept field may be stored as it is: short, of its
 * field's shape, like nothing personal (`looksPersonal`), with no run of five
 * digits nor more than six digits in all (a phone number, an SSN or a serial
 * in the wrong field). Two exceptions hold for the body's own top-level
 * fields only, the ones validate.ts reads: a `user_id` that is exactly a UUID
 * (user ids are UUIDs, and validation refuses UUIDs in the other kept
 * fields), and an `app_version` that is a real version (1 to 3 dotted
 * numbers, where a partial address such as `10.0.1` cannot be told from a
 * version). The same keys deeper down are any producer's, so a device id or
 * an address under a nested `user_id` or `app_version` is masked.
 */
function isKeptValue(key: string, value: string, topLevel: boolean): boolean {
  const rule = KEPT_FIELDS.get(key);
  if (rule === undefined || value.length > rule.max || !rule.shape.test(value)) return false;
  if (topLevel && key === "user_id" && isUuid(value)) return true;
  const version = topLevel && key === "app_version" && encodeAppVersion(value).ok;
  return !looksPersonal(value, { versionSyntax: version });
}

/**
 * True for an integer kept as it is. The login event has no numeric field
 * (validate.ts: all six are strings); `app_version` is the one whose value is
 * a number by meaning (stored encoded as an integer), so a producer sending
 * `"app_version": 3` shows its 3, bounded as its text is (no run of five
 * digits). Only the body's own top-level field: anywhere else, and in every
 * array, a small integer may be a byte, an octet, a character code or a piece
 * of an id.
 */
function isKeptInteger(key: string | null, value: number, topLevel: boolean): boolean {
  return topLevel && key === "app_version" && Number.isSafeInteger(value) && value >= 0 &&
    value <= 9999;
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
    return isKeptInteger(key, value, depth === 1)
      ? value
      : `[number ${maskOf({ field: "value", text: String(value) })}]`;
  }
  if (typeof value === "string") {
    if (value === "") return value;
    if (key !== null && isKeptValue(key, value, depth === 1)) return value;
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
