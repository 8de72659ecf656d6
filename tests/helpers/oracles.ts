// The input rules of docs/design.md and docs/pii.md, restated here so tests
// can judge src/ without leaning on it: lengths in code points as Postgres
// counts varchar, which characters Postgres text can hold, RFC 4291 addresses
// in their RFC 5952 form, dotted versions; and where a raw `ip` or
// `device_id` value must never appear (the PII search of rules R1-R5 below).
// Each oracle answers what the rule says for one value; src/ is never
// imported for an answer.

import type { RejectReason } from "../../src/types.ts";

/** Default --max-body-bytes. */
export const MAX_BODY_BYTES = 65536;

/** `user_logins` varchar limits, in characters as Postgres counts them (code points). */
export const LIMIT = { "user_id": 128, "device_type": 32, "device_id": 256, locale: 32 } as const;

/** The six fields of a login event, in the order the tests write them. */
export const FIELDS = [
  "user_id",
  "app_version",
  "device_type",
  "ip",
  "locale",
  "device_id",
] as const;
/** A field of a login event. */
export type Field = typeof FIELDS[number];
/** A field stored as text as it was sent. */
export type TextField = "user_id" | "device_type" | "device_id";
/** The fields stored as text, each with a limit in `LIMIT`. */
export const TEXT_FIELDS: readonly TextField[] = ["user_id", "device_type", "device_id"];

/** A mask as docs/pii.md defines it: key id, colon, unpadded base64url of 32 bytes. */
export const MASK = /^k1:[A-Za-z0-9_-]{43}$/;
/** A mask anywhere in a text. */
export const MASK_TOKEN = /k1:[A-Za-z0-9_-]{43}/;

const encoder = new TextEncoder();

/** Length of `text` in UTF-8 bytes (lone surrogates count as U+FFFD's three). */
export function utf8Bytes(text: string): number {
  return encoder.encode(text).length;
}

/** Length of `text` in code points, as Postgres counts a varchar. */
export function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// deno-lint-ignore no-control-regex -- the rule under test is about control characters
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * The rule: no control character (C0, DEL, C1; NUL included, which Postgres
 * text cannot hold) and no lone surrogate (which has no UTF-8 form).
 */
export function hasBadChar(text: string): boolean {
  CONTROL.lastIndex = 0;
  return CONTROL.test(text) || LONE_SURROGATE.test(text);
}

/** Text with the control characters taken out. */
export function withoutControls(text: string): string {
  return text.replace(CONTROL, "");
}

/** Four bytes of dotted-decimal IPv4 (no leading zeros, each at most 255), or null. */
export function parseIpv4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes: number[] = [];
  for (const part of parts) {
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return null;
    bytes.push(Number(part));
  }
  return bytes;
}

function hexGroups(text: string): number[] | null {
  if (text === "") return [];
  const groups: number[] = [];
  for (const group of text.split(":")) {
    if (!/^[0-9A-Fa-f]{1,4}$/.test(group)) return null;
    groups.push(parseInt(group, 16));
  }
  return groups;
}

/** RFC 4291 text: eight 1-4 digit hex groups, one "::" for one or more zero groups, a dotted tail. */
export function parseIpv6(text: string): number[] | null {
  let hex = text;
  const lastColon = text.lastIndexOf(":");
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    const v4 = parseIpv4(tail);
    if (v4 === null) return null;
    const [a = 0, b = 0, c = 0, d = 0] = v4;
    hex = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${
      ((c << 8) | d).toString(16)
    }`;
  }
  const halves = hex.split("::");
  if (halves.length > 2) return null;
  if (halves.length === 1) {
    const groups = hexGroups(hex);
    return groups !== null && groups.length === 8 ? groups : null;
  }
  const left = hexGroups(halves[0] ?? "");
  const right = hexGroups(halves[1] ?? "");
  if (left === null || right === null || left.length + right.length > 7) return null;
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/** True for an IPv4-mapped address (::ffff:0:0/96), which is stored as its IPv4 form. */
export function isMapped(h: readonly number[]): boolean {
  return h.slice(0, 5).every((x) => x === 0) && h[5] === 0xffff;
}

/** RFC 5952: lower case, no leading zeros, longest run of 2+ zero groups as "::"; mapped → IPv4. */
export function formatIpv6(h: readonly number[]): string {
  const at = (i: number) => h[i] ?? 0;
  if (isMapped(h)) return `${at(6) >> 8}.${at(6) & 255}.${at(7) >> 8}.${at(7) & 255}`;
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (at(i) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && at(j) === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const groups = h.map((x) => x.toString(16));
  if (bestStart < 0) return groups.join(":");
  return `${groups.slice(0, bestStart).join(":")}::${
    groups.slice(bestStart + bestLength).join(":")
  }`;
}

/** The canonical address docs/design.md promises for `text`, or null when it is no address. */
export function canonicalIpOracle(text: string): string | null {
  if (!text.includes(":")) return parseIpv4(text)?.join(".") ?? null;
  const groups = parseIpv6(text);
  return groups === null ? null : formatIpv6(groups);
}

/** docs/design.md: one to three dot-separated parts of 1-3 digits → major*1e6 + minor*1e3 + patch. */
export function encodeVersionOracle(text: string): number | null {
  if (!/^[0-9]{1,3}(?:\.[0-9]{1,3}){0,2}$/.test(text)) return null;
  const [major = 0, minor = 0, patch = 0] = text.split(".").map(Number);
  return major * 1_000_000 + minor * 1_000 + patch;
}

const isHex = (c: string | undefined) => c !== undefined && /^[0-9a-fA-F]$/.test(c);
const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9";
const isAlnum = (c: string | undefined) => c !== undefined && /^[0-9a-zA-Z]$/.test(c);

/** The maximal runs of characters that pass `keep`, with where each starts. */
function runs(text: string, keep: (c: string) => boolean): { at: number; run: string }[] {
  const found: { at: number; run: string }[] = [];
  for (let i = 0; i < text.length;) {
    if (!keep(text[i] ?? "")) {
      i++;
      continue;
    }
    let j = i;
    while (j < text.length && keep(text[j] ?? "")) j++;
    found.push({ at: i, run: text.slice(i, j) });
    i = j;
  }
  return found;
}

/**
 * docs/design.md's rule for `locale` and `device_type`: refused when the text
 * holds an e-mail (`x@y`, full-width `＠`, `(at)`, `[at]`, `{at}`), a UUID
 * (8-4-4-4-12 hex with dashes, or 32 hex digits with an RFC 9562 version and
 * variant), a MAC (six hex pairs with one repeated separator of `: . _ -` or
 * space, three dotted groups of four, twelve hex digits standing alone) or an
 * IP address (four groups of one to three digits with single non-alphanumeric
 * separators, two colons around at most four hex digits, `--` beside a hex
 * group, `ipv6-literal`).
 */
export function holdsPersonalOracle(text: string): boolean {
  const lower = text.toLowerCase();
  // e-mail
  for (let i = 1; i + 1 < text.length; i++) {
    const c = text[i];
    if (c !== "@" && c !== "\uff20") continue;
    const before = text[i - 1] ?? " ";
    const after = text[i + 1] ?? " ";
    const plain = (x: string) => !/\s/.test(x) && x !== "@" && x !== "\uff20";
    if (plain(before) && plain(after)) return true;
  }
  if (/[(\[{]\s*at\s*[)\]}]/.test(lower)) return true;
  // UUID with dashes, and hex runs: a bare MAC (12 standing alone) or a bare UUID (32)
  if (/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/.test(lower)) return true;
  for (const { at, run } of runs(lower, (c) => isHex(c))) {
    const beforeLetter = isAlnum(lower[at - 1]);
    const afterLetter = isAlnum(lower[at + run.length]);
    if (run.length === 12 && !beforeLetter && !afterLetter) return true;
    if (run.length === 32 && /^[1-8]$/.test(run[12] ?? "") && /^[89ab]$/.test(run[16] ?? "")) {
      return true;
    }
  }
  // MAC in pairs or groups of four
  for (const sep of [":", ".", "_", " ", "-"]) {
    const pieces = lower.split(sep);
    for (let i = 0; i + 6 <= pieces.length; i++) {
      const six = pieces.slice(i, i + 6);
      const first = six[0] ?? "";
      const last = six[5] ?? "";
      const inner = six.slice(1, 5).every((p) => p.length === 2 && [...p].every((c) => isHex(c)));
      if (
        inner && first.length >= 2 && isHex(first.at(-1)) && isHex(first.at(-2)) &&
        !isHex(first.at(-3)) && last.length >= 2 && isHex(last[0]) && isHex(last[1]) &&
        !isHex(last[2])
      ) return true;
    }
  }
  if (/(^|[^0-9a-f])[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}($|[^0-9a-f])/.test(lower)) return true;
  // IPv4: four digit runs of one to three, each pair one non-alphanumeric apart
  const numbers = runs(text, (c) => isDigit(c));
  for (let i = 0; i + 4 <= numbers.length; i++) {
    const four = numbers.slice(i, i + 4);
    const short = four.every(({ run }) => run.length <= 3);
    const gaps = four.slice(1).every(({ at }, k) => {
      const prev = four[k];
      return prev !== undefined && at === prev.at + prev.run.length + 1 &&
        !isAlnum(text[at - 1]);
    });
    if (short && gaps) return true;
  }
  // IPv6
  if (/:[0-9a-f]{0,4}:/.test(lower) || lower.includes("ipv6-literal")) return true;
  for (let i = lower.indexOf("--"); i !== -1; i = lower.indexOf("--", i + 1)) {
    const left = /(?:^|[^0-9a-z])[0-9a-f]{1,4}$/.test(lower.slice(0, i));
    const right = /^[0-9a-f]{1,4}(?:[^0-9a-z]|$)/.test(lower.slice(i + 2));
    if (left || right) return true;
  }
  return false;
}

/**
 * What the rule of `field` makes of the string `text` when every other field
 * is valid: "row", or the reason the message is rejected for.
 */
export function stringFieldOracle(field: Field, text: string): "row" | RejectReason {
  switch (field) {
    case "ip":
      if (hasBadChar(text)) return "bad_char";
      return canonicalIpOracle(text) === null ? "bad_ip" : "row";
    case "app_version":
      return encodeVersionOracle(text) === null ? "bad_version" : "row";
    case "locale":
      if (hasBadChar(text)) return "bad_char";
      if (codePoints(text) > LIMIT.locale) return "too_long";
      return holdsPersonalOracle(text) ? "bad_locale" : "row";
    default:
      if (hasBadChar(text)) return "bad_char";
      if (text === "") return "empty";
      if (codePoints(text) > LIMIT[field]) return "too_long";
      return field === "device_type" && holdsPersonalOracle(text) ? "bad_device_type" : "row";
  }
}

/** `text` cut to 160 characters with its length, for a failure message. */
export function excerpt(text: string): string {
  return text.length > 160 ? `${text.slice(0, 160)}… (${text.length} chars)` : text;
}

// ---------------------------------------------------------------------------
// Where a raw ip or device_id must not appear, and what the search looks for.
//
//  R1  Candidates are the string values found under an `ip` or `device_id` key
//      at any depth (a whole subtree under such a key is masked, so every
//      string and key in it counts), also inside a string value that is
//      itself JSON text (an event serialised twice, an SNS envelope's
//      Message), values a body carries but JSON.parse drops (repeated keys,
//      unparseable bodies), and the canonical text of each valid address.
//      Values shorter than 6 code points are left out: "::1" or "1.2.3" occur
//      in ordinary text by chance.
//  R2  A candidate that is a substring of non-PII text of a body that may be
//      stored (at most --max-body-bytes: string values and keys outside
//      ip/device_id subtrees, numbers as JSON writes them) is left out:
//      user_id, device_type, locale and extra fields are stored raw by design.
//  R3  Columns whose format is asserted exactly (masks, body_hmac, message ids,
//      timestamps, integers, dates, reason codes) are checked by format, not
//      searched; in searched JSON text, mask tokens (k1:…) are cut out first.
//  R4  Log fields that echo configuration (queue_url, endpoint, database), `ts`
//      and `message_ids` (checked to be ids we sent) are dropped from log lines
//      before the search; so is `message_id` from dry-run lines.
//  R5  Plain-text columns are searched for the raw value; JSON text (masked
//      bodies, log lines, stdout) for its JSON-escaped form. A candidate made
//      only of number and punctuation characters with one of `,[]{}` is not
//      searched in JSON text, where it would match the syntax between numbers.

/** What the PII search needs of one message. */
export interface SearchedBody {
  readonly category: string;
  readonly body: string;
  /** PII a parse of the body does not show: dropped repeated keys, unparseable bodies. */
  readonly hiddenPii: readonly string[];
}

/** Facts about one body found while collecting its candidates. */
export interface BodyFacts {
  /** Deepest nesting of the parsed body; 0 when it does not parse. */
  readonly depth: number;
}

/** The candidates of R1-R2 in their search forms (R5), with figures on what was left out. */
export interface PiiSearch {
  /** Search form → the input value it stands for. */
  readonly plain: Map<string, string>;
  readonly json: Map<string, string>;
  readonly figures: Record<string, number>;
  /** Per body, in the order given. */
  readonly facts: BodyFacts[];
  /** Candidate → categories of the bodies that carry it. */
  readonly origin: Map<string, Set<string>>;
}

/** A text to search, and where it came from. */
export interface Haystack {
  readonly where: string;
  readonly text: string;
}

/** One raw value found where it must not be. */
export interface Leak {
  readonly value: string;
  readonly where: string;
  readonly category: string;
}

/** Walks a parsed body iteratively (bodies nest 20,000 deep); returns its depth. */
function walkBody(root: unknown, pii: Set<string>, nonPii: string[]): number {
  let depth = 0;
  const stack: [unknown, boolean, number][] = [[root, false, 0]];
  while (stack.length > 0) {
    const [node, inPii, level] = stack.pop() as [unknown, boolean, number];
    if (level > depth) depth = level;
    if (typeof node === "string") {
      if (inPii) {
        pii.add(node);
        continue;
      }
      // A string that is itself JSON text with PII in it is walked as JSON
      // (an event serialised twice, an SNS envelope's Message).
      const nested = parseJsonObject(node);
      if (nested !== undefined) {
        const innerPii = new Set<string>();
        const innerNon: string[] = [];
        walkBody(nested, innerPii, innerNon);
        if (innerPii.size > 0) {
          innerPii.forEach((v) => pii.add(v));
          nonPii.push(...innerNon);
          continue;
        }
      }
      nonPii.push(node);
    } else if (typeof node === "number") {
      if (!inPii) nonPii.push(JSON.stringify(node));
    } else if (node !== null && typeof node === "object") {
      const isArray = Array.isArray(node);
      for (const [key, child] of Object.entries(node)) {
        if (!isArray) inPii ? pii.add(key) : nonPii.push(key);
        const childInPii = inPii || (!isArray && (key === "ip" || key === "device_id"));
        stack.push([child, childInPii, level + 1]);
      }
    }
  }
  return depth;
}

function parseJsonObject(text: string): object | undefined {
  const first = text.trimStart()[0];
  if (first !== "{" && first !== "[") return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Only number and JSON punctuation characters, with one that sits between numbers (R5). */
function looksLikeJsonSyntax(value: string): boolean {
  return /^[\s0-9+\-.eE,[\]{}]+$/.test(value) && /[,[\]{}]/.test(value);
}

/** Builds the candidates of R1 and R2 and their search forms (R5). */
export function piiSearch(bodies: readonly SearchedBody[]): PiiSearch {
  const pii = new Set<string>();
  const nonPii: string[] = [];
  const facts: BodyFacts[] = [];
  const origin = new Map<string, Set<string>>();
  for (const c of bodies) {
    let parsed: unknown;
    let ok = false;
    try {
      parsed = JSON.parse(c.body);
      ok = true;
    } catch {
      // Not JSON: only hiddenPii speaks for it.
    }
    const bodyNonPii: string[] = [];
    const found = new Set(c.hiddenPii);
    const depth = ok ? walkBody(parsed, found, bodyNonPii) : 0;
    facts.push({ depth });
    if (utf8Bytes(c.body) <= MAX_BODY_BYTES) nonPii.push(...bodyNonPii);
    for (const value of found) {
      const canonical = canonicalIpOracle(value);
      for (const v of canonical === null ? [value] : [value, canonical]) {
        pii.add(v);
        const categories = origin.get(v) ?? new Set();
        origin.set(v, categories.add(c.category));
      }
    }
  }
  let short = 0;
  const long = [...pii].filter((value) => {
    if (codePoints(value) >= 6) return true;
    short++;
    return false;
  });
  const explained = findOccurrences(long, nonPii.map((text) => ({ where: "input", text })));
  const plain = new Map<string, string>();
  const json = new Map<string, string>();
  let syntax = 0;
  for (const value of long) {
    if (explained.has(value)) continue;
    plain.set(value, value);
    if (looksLikeJsonSyntax(value)) syntax++;
    else json.set(JSON.stringify(value).slice(1, -1), value);
  }
  return {
    plain,
    json,
    facts,
    origin,
    figures: {
      values: pii.size,
      "searched": plain.size,
      "left_out_short_r1": short,
      "left_out_stored_as_non_pii_r2": explained.size,
      "json_syntax_only_r5": syntax,
    },
  };
}

/** Which needles (all ≥ 6 UTF-16 units) occur in which haystack, via a 6-unit prefix index. */
function findOccurrences(
  needles: Iterable<string>,
  haystacks: readonly Haystack[],
): Map<string, string> {
  const width = 6;
  const index = new Map<string, string[]>();
  for (const needle of needles) {
    const key = needle.slice(0, width);
    const list = index.get(key);
    if (list === undefined) index.set(key, [needle]);
    else list.push(needle);
  }
  const found = new Map<string, string>();
  for (const { where, text } of haystacks) {
    for (let i = 0; i + width <= text.length; i++) {
      const list = index.get(text.slice(i, i + width));
      if (list === undefined) continue;
      for (const needle of list) {
        if (!found.has(needle) && text.startsWith(needle, i)) found.set(needle, where);
      }
    }
  }
  return found;
}

/** Searches plain-text and JSON haystacks for the candidates; returns the leaks. */
export function findLeaks(
  search: PiiSearch,
  plain: readonly Haystack[],
  json: readonly Haystack[],
): Leak[] {
  const cut = json.flatMap(({ where, text }) =>
    text.split(MASK_TOKEN).map((piece) => ({ where, text: piece }))
  );
  const leaks = [
    ...[...findOccurrences(search.plain.keys(), plain)].map(([form, where]) => ({
      value: search.plain.get(form) ?? form,
      where,
    })),
    ...[...findOccurrences(search.json.keys(), cut)].map(([form, where]) => ({
      value: search.json.get(form) ?? form,
      where,
    })),
  ];
  // A value found only as part of a longer leaked value is that leak, not another.
  const distinct = leaks.filter((leak) =>
    !leaks.some((other) =>
      other.value.length > leak.value.length && other.value.includes(leak.value)
    )
  );
  return distinct.map((leak) => ({
    ...leak,
    category: [...search.origin.get(leak.value) ?? ["?"]].sort().join(" / "),
  }));
}

/** Leaks counted by the category of the case they came from, for a failure message. */
export function leakSummary(leaks: readonly { category: string }[]): string {
  const counts = new Map<string, number>();
  for (const { category } of leaks) counts.set(category, (counts.get(category) ?? 0) + 1);
  return [...counts].map(([category, n]) => `${n} from "${category}"`).join(", ");
}

/**
 * Log lines as haystacks with R4 applied (config echoes, timestamps and
 * message ids dropped), and what is wrong with them: a line that is not
 * JSON, a failure logged, a bad `ts`, `message_ids` other than `ids`.
 */
export function logHaystacks(
  lines: readonly string[],
  ids: ReadonlySet<string>,
): { readonly haystacks: Haystack[]; readonly problems: string[] } {
  const haystacks: Haystack[] = [];
  const problems: string[] = [];
  for (const line of lines) {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line);
    } catch {
      problems.push(`not a JSON line: ${excerpt(line)}`);
      haystacks.push({ where: "log", text: line });
      continue;
    }
    if (record.level === "error" || record.event === "StageFailed") {
      problems.push(`failure logged: ${excerpt(line)}`);
    }
    if (typeof record.ts !== "string" || Number.isNaN(Date.parse(record.ts))) {
      problems.push(`bad ts: ${excerpt(line)}`);
    }
    delete record.ts;
    if (record.message_ids !== undefined) {
      const listed = record.message_ids;
      if (!Array.isArray(listed) || !listed.every((id) => ids.has(id))) {
        problems.push(`message_ids other than ours: ${excerpt(line)}`);
      }
      delete record.message_ids;
    }
    if (record.event === "RunStarted") {
      delete record.queue_url;
      delete record.endpoint;
      delete record.database;
    }
    haystacks.push({ where: `log ${String(record.event)}`, text: JSON.stringify(record) });
  }
  return { haystacks, problems };
}

/** Every value under an `ip` or `device_id` key of a stored masked body that is not a mask. */
export function unmaskedPii(maskedBody: string): string[] {
  const found: string[] = [];
  const stack: unknown[] = [];
  try {
    stack.push(JSON.parse(maskedBody));
  } catch {
    return [`masked_body is not JSON: ${excerpt(maskedBody)}`];
  }
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== "object") continue;
    const isArray = Array.isArray(node);
    for (const [key, child] of Object.entries(node)) {
      if (!isArray && (key === "ip" || key === "device_id")) {
        if (typeof child !== "string" || !(MASK.test(child) || child === "[masked]")) {
          found.push(`${key}: ${excerpt(JSON.stringify(child) ?? "")}`);
        }
      } else stack.push(child);
    }
  }
  return found;
}

/**
 * Every number a stored masked body keeps where docs/pii.md says none may be:
 * anywhere but as the value of an `app_version` key, an integer 0-9,999;
 * in an array, never. JSON inside string values is opened and searched alike.
 */
export function unmaskedNumbers(maskedBody: string): string[] {
  const found: string[] = [];
  const stack: [unknown, string | null][] = [];
  try {
    stack.push([JSON.parse(maskedBody), null]);
  } catch {
    return []; // unmaskedPii reports a body that is not JSON
  }
  while (stack.length > 0) {
    const [node, key] = stack.pop() as [unknown, string | null];
    if (typeof node === "number") {
      const kept = key === "app_version" && Number.isInteger(node) && node >= 0 && node <= 9999;
      if (!kept) found.push(`${key ?? "an array item"}: ${node}`);
    } else if (typeof node === "string") {
      const first = node.trimStart()[0];
      if (first !== "{" && first !== "[") continue;
      try {
        stack.push([JSON.parse(node), null]);
      } catch {
        // Not JSON: a masked stand-in or kept text, which holds no number value.
      }
    } else if (node !== null && typeof node === "object") {
      const isArray = Array.isArray(node);
      for (const [k, child] of Object.entries(node)) stack.push([child, isArray ? null : k]);
    }
  }
  return found;
}
