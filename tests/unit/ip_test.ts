// Unit tests of src/ip.ts: canonicalIp() on IPv4/IPv6 spellings, from a table and fast-check properties.
import assert from "node:assert/strict";
import fc from "fast-check";
import { canonicalIp, type IpResult } from "../../src/ip.ts";

type Case =
  | { name: string; input: string; canonical: string; version: 4 | 6 }
  | { name: string; input: string; refused: true; detail?: string };

const CASES: readonly Case[] = [
  // IPv4 accepted
  { name: "accepts 1.2.3.4", input: "1.2.3.4", canonical: "1.2.3.4", version: 4 },
  { name: "accepts 0.0.0.0", input: "0.0.0.0", canonical: "0.0.0.0", version: 4 },
  {
    name: "accepts 255.255.255.255",
    input: "255.255.255.255",
    canonical: "255.255.255.255",
    version: 4,
  },
  { name: "accepts 10.0.0.1", input: "10.0.0.1", canonical: "10.0.0.1", version: 4 },
  // IPv4 refused
  { name: "refuses a leading zero in the first part", input: "01.2.3.4", refused: true },
  { name: "refuses a leading zero in the last part", input: "1.2.3.04", refused: true },
  { name: "refuses a leading zero in a middle part", input: "1.02.3.4", refused: true },
  { name: "refuses an all-zero padded part", input: "1.2.3.000", refused: true },
  { name: "refuses 3-part IPv4", input: "1.2.3", refused: true },
  { name: "refuses 2-part IPv4", input: "127.1", refused: true },
  { name: "refuses 5-part IPv4", input: "1.2.3.4.5", refused: true },
  { name: "refuses a trailing dot", input: "1.2.3.4.", refused: true },
  { name: "refuses a hex part", input: "0x7f.0.0.1", refused: true },
  { name: "refuses a hex integer", input: "0x7f000001", refused: true },
  { name: "refuses a decimal integer", input: "2130706433", refused: true },
  { name: "refuses a part above 255 first", input: "256.1.1.1", refused: true },
  { name: "refuses a part above 255 last", input: "1.2.3.256", refused: true },
  { name: "refuses a part of 999", input: "999.1.1.1", refused: true },
  { name: "refuses a negative part", input: "-1.2.3.4", refused: true },
  { name: "refuses a leading space", input: " 1.2.3.4", refused: true },
  { name: "refuses a trailing space", input: "1.2.3.4 ", refused: true },
  { name: "refuses a trailing newline", input: "1.2.3.4\n", refused: true },
  { name: "refuses a tab inside", input: "1.2.\t3.4", refused: true },
  { name: "refuses Arabic-Indic digits", input: "\u0661.2.3.4", refused: true },
  { name: "refuses the empty string", input: "", refused: true },
  { name: "refuses a host name", input: "localhost", refused: true },
  // IPv6 accepted
  {
    name: "keeps compressed 2001:db8::1",
    input: "2001:db8::1",
    canonical: "2001:db8::1",
    version: 6,
  },
  {
    name: "lower-cases upper-case hex",
    input: "2001:DB8::ABCD",
    canonical: "2001:db8::abcd",
    version: 6,
  },
  {
    name: "compresses the fully expanded form",
    input: "2001:0db8:0000:0000:0000:0000:0000:0001",
    canonical: "2001:db8::1",
    version: 6,
  },
  { name: "accepts ::1", input: "::1", canonical: "::1", version: 6 },
  { name: "accepts ::", input: "::", canonical: "::", version: 6 },
  { name: "accepts a trailing ::", input: "1::", canonical: "1::", version: 6 },
  {
    name: "compresses the longest zero run",
    input: "1:0:0:2:0:0:0:3",
    canonical: "1:0:0:2::3",
    version: 6,
  },
  {
    name: "compresses the first of two equal zero runs",
    input: "2001:db8:0:0:1:0:0:1",
    canonical: "2001:db8::1:0:0:1",
    version: 6,
  },
  {
    name: "does not compress a single zero group",
    input: "2001:db8:0:1:1:1:1:1",
    canonical: "2001:db8:0:1:1:1:1:1",
    version: 6,
  },
  {
    name: "expands a :: that stands for one group",
    input: "2001:db8::1:1:1:1:1",
    canonical: "2001:db8:0:1:1:1:1:1",
    version: 6,
  },
  {
    name: "maps ::ffff:1.2.3.4 to 1.2.3.4",
    input: "::ffff:1.2.3.4",
    canonical: "1.2.3.4",
    version: 4,
  },
  {
    name: "maps ::ffff:102:304 to 1.2.3.4",
    input: "::ffff:102:304",
    canonical: "1.2.3.4",
    version: 4,
  },
  {
    name: "maps ::FFFF:1.2.3.4 to 1.2.3.4",
    input: "::FFFF:1.2.3.4",
    canonical: "1.2.3.4",
    version: 4,
  },
  {
    name: "maps the expanded ::ffff:0102:0304 to 1.2.3.4",
    input: "0000:0000:0000:0000:0000:ffff:0102:0304",
    canonical: "1.2.3.4",
    version: 4,
  },
  {
    name: "does not map ::1.2.3.4 (it is ::102:304)",
    input: "::1.2.3.4",
    canonical: "::102:304",
    version: 6,
  },
  {
    name: "does not map the NAT64 prefix 64:ff9b::1.2.3.4",
    input: "64:ff9b::1.2.3.4",
    canonical: "64:ff9b::102:304",
    version: 6,
  },
  {
    name: "does not map the IPv4-translated ::ffff:0:1.2.3.4",
    input: "::ffff:0:1.2.3.4",
    canonical: "::ffff:0:102:304",
    version: 6,
  },
  {
    name: "accepts the longest valid text (45 characters)",
    input: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
    canonical: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    version: 6,
  },
  {
    name: "maps a 45-character expanded mapped address",
    input: "0000:0000:0000:0000:0000:ffff:255.255.255.255",
    canonical: "255.255.255.255",
    version: 4,
  },
  // IPv6 refused
  {
    name: "refuses a leading zero in an embedded IPv4 (mapped)",
    input: "::ffff:01.2.3.4",
    refused: true,
  },
  { name: "refuses a leading zero in an embedded IPv4", input: "::01.2.3.4", refused: true },
  { name: "refuses a 3-part embedded IPv4", input: "::ffff:1.2.3", refused: true },
  { name: "refuses an embedded IPv4 part above 255", input: "::ffff:256.1.1.1", refused: true },
  { name: "refuses a zone id", input: "fe80::1%eth0", refused: true },
  { name: "refuses a numeric zone id", input: "fe80::1%1", refused: true },
  { name: "refuses a URL-escaped zone id", input: "fe80::1%25eth0", refused: true },
  { name: "refuses brackets", input: "[::1]", refused: true },
  { name: "refuses brackets around a full address", input: "[2001:db8::1]", refused: true },
  { name: "refuses nine groups", input: "1:2:3:4:5:6:7:8:9", refused: true },
  { name: "refuses two ::", input: "1::2::3", refused: true },
  { name: "refuses a five-digit group", input: "2001:db8::00001", refused: true },
  { name: "refuses a non-hex letter", input: "g::1", refused: true },
  { name: "refuses :::", input: ":::", refused: true },
  { name: "refuses a leading space", input: " ::1", refused: true },
  { name: "refuses a trailing space", input: "::1 ", refused: true },
  {
    name: "refuses text over 45 characters",
    input: "0000:0000:0000:0000:0000:0000:0000:0000:0000:1",
    refused: true,
    detail: "45",
  },
  { name: "refuses 46 digits", input: "1".repeat(46), refused: true, detail: "45" },
  {
    name: "refuses 46 characters of a mapped address with a padded group",
    input: "00000:0000:0000:0000:0000:ffff:255.255.255.255",
    refused: true,
    detail: "45",
  },
];

Deno.test("canonicalIp() canonicalises or refuses each spelling in the table", async (t) => {
  for (const c of CASES) {
    await t.step(`canonicalIp() ${c.name}`, () => {
      const result = canonicalIp(c.input);
      if ("refused" in c) {
        assert.equal(result.ok, false, `expected ${JSON.stringify(c.input)} to be refused`);
        if (!result.ok && c.detail !== undefined) assert.match(result.detail, new RegExp(c.detail));
      } else {
        assert.deepEqual(result, { ok: true, canonical: c.canonical, version: c.version });
      }
    });
  }
});

// ---- Properties -------------------------------------------------------------

type Groups = readonly number[];

/** RFC 5952 text of eight 16-bit groups, written independently of src/ip.ts. */
function rfc5952(groups: Groups): string {
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLength < 2) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

/** What canonicalIp should return for these groups: IPv4 when mapped, else RFC 5952. */
function expectedCanonical(groups: Groups): { canonical: string; version: 4 | 6 } {
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) {
    const [g6, g7] = [groups[6] ?? 0, groups[7] ?? 0];
    return { canonical: `${g6 >> 8}.${g6 & 255}.${g7 >> 8}.${g7 & 255}`, version: 4 };
  }
  return { canonical: rfc5952(groups), version: 6 };
}

interface Spelling {
  readonly upper: readonly boolean[];
  /** Extra leading zeros per group (capped at four hex digits). */
  readonly pad: readonly number[];
  /** Which zero run to compress (index into the runs), and how much of it. */
  readonly run: number;
  readonly runLength: number;
  readonly compress: boolean;
  /** Write the last 32 bits as dotted decimal. */
  readonly ipv4Tail: boolean;
}

/** One RFC 4291 spelling of the address `groups`, chosen by `s`. */
function spell(groups: Groups, s: Spelling): string {
  const tokens: string[] = groups.map((g, i) => {
    const hex = g.toString(16);
    const padded = "0".repeat(Math.min(s.pad[i] ?? 0, 4 - hex.length)) + hex;
    return s.upper[i] === true ? padded.toUpperCase() : padded;
  });
  const limit = s.ipv4Tail ? 6 : 8; // groups a '::' may cover
  if (s.ipv4Tail) {
    const [g6, g7] = [groups[6] ?? 0, groups[7] ?? 0];
    tokens.splice(6, 2, `${g6 >> 8}.${g6 & 255}.${g7 >> 8}.${g7 & 255}`);
  }
  if (!s.compress) return tokens.join(":");
  const runs: [number, number][] = [];
  for (let i = 0; i < limit;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < limit && groups[j] === 0) j++;
    runs.push([i, j - i]);
    i = j;
  }
  const picked = runs[s.run % Math.max(runs.length, 1)];
  if (picked === undefined) return tokens.join(":");
  const [start, length] = picked;
  const used = Math.max(1, Math.min(s.runLength, length));
  return `${tokens.slice(0, start).join(":")}::${tokens.slice(start + used).join(":")}`;
}

const groupArb = fc.oneof(
  { weight: 2, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 0xf }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
const u16 = fc.integer({ min: 0, max: 0xffff });
const groupsArb: fc.Arbitrary<Groups> = fc.oneof(
  { weight: 4, arbitrary: fc.array(groupArb, { minLength: 8, maxLength: 8 }) },
  // IPv4-mapped, and near misses of it
  { weight: 1, arbitrary: fc.tuple(u16, u16).map(([a, b]) => [0, 0, 0, 0, 0, 0xffff, a, b]) },
  { weight: 1, arbitrary: fc.tuple(u16, u16).map(([a, b]) => [0, 0, 0, 0, 0, 0, a, b]) },
  { weight: 1, arbitrary: fc.tuple(u16, u16).map(([a, b]) => [0, 0, 0, 0, 0xffff, 0, a, b]) },
);
const spellingArb: fc.Arbitrary<Spelling> = fc.record({
  upper: fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
  pad: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }),
  run: fc.nat(7),
  runLength: fc.integer({ min: 1, max: 8 }),
  compress: fc.boolean(),
  ipv4Tail: fc.boolean(),
});

const byte = fc.integer({ min: 0, max: 255 });
const ipv4Arb = fc.tuple(byte, byte, byte, byte).map((b) => b.join("."));

Deno.test("canonicalIp() gives every spelling of one IPv6 address the same RFC 5952 text", () => {
  fc.assert(
    fc.property(groupsArb, spellingArb, spellingArb, (groups, s1, s2) => {
      const [a, b] = [spell(groups, s1), spell(groups, s2)];
      const expected: IpResult = { ok: true, ...expectedCanonical(groups) };
      assert.deepEqual(canonicalIp(a), expected, `spelling ${a}`);
      assert.deepEqual(canonicalIp(b), expected, `spelling ${b}`);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("canonicalIp() is idempotent: the canonical text of a canonical text is itself", () => {
  const anyText = fc.oneof(
    fc.tuple(groupsArb, spellingArb).map(([g, s]) => spell(g, s)),
    ipv4Arb,
    fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEF:."), maxLength: 45 }),
    fc.string({ maxLength: 50 }),
  );
  fc.assert(
    fc.property(anyText, (text) => {
      const first = canonicalIp(text);
      if (!first.ok) return;
      assert.deepEqual(canonicalIp(first.canonical), first);
    }),
    { numRuns: 3000 },
  );
});

Deno.test("canonicalIp() round-trips any IPv4 address made of four bytes", () => {
  fc.assert(
    fc.property(byte, byte, byte, byte, (a, b, c, d) => {
      const text = `${a}.${b}.${c}.${d}`;
      const expected: IpResult = { ok: true, canonical: text, version: 4 };
      assert.deepEqual(canonicalIp(text), expected);
      assert.deepEqual(canonicalIp(`::ffff:${text}`), expected);
      const hex = `::ffff:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
      assert.deepEqual(canonicalIp(hex), expected);
    }),
    { numRuns: 2000 },
  );
});
