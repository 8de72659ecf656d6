// Unit tests of src/ip.ts: canonicalIp() on IPv4/IPv6 spellings, from a table and fast-check properties.
import assert from "node:assert/strict";
import fc from "fast-check";
import { canonicalIp, type IpResult } from "../../src/ip.ts";
import { byteArb, hextetsArb, ipv4Arb, spellingArb, spellIpv6 } from "../helpers/arbitraries.ts";
import { formatIpv6, isMapped } from "../helpers/oracles.ts";

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
// Addresses and their spellings come from tests/helpers/arbitraries.ts (shared
// with the hostile-input test); the expected text from the RFC 5952 oracle of
// tests/helpers/oracles.ts, written independently of src/ip.ts.

/** What canonicalIp should return for these groups: IPv4 when mapped, else RFC 5952. */
function expectedCanonical(groups: readonly number[]): IpResult {
  return { ok: true, canonical: formatIpv6(groups), version: isMapped(groups) ? 4 : 6 };
}

Deno.test("canonicalIp() gives every spelling of one IPv6 address the same RFC 5952 text", () => {
  fc.assert(
    fc.property(hextetsArb, spellingArb, spellingArb, (groups, s1, s2) => {
      const [a, b] = [spellIpv6(groups, s1), spellIpv6(groups, s2)];
      const expected = expectedCanonical(groups);
      assert.deepEqual(canonicalIp(a), expected, `spelling ${a}`);
      assert.deepEqual(canonicalIp(b), expected, `spelling ${b}`);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("canonicalIp() is idempotent: the canonical text of a canonical text is itself", () => {
  const anyText = fc.oneof(
    fc.tuple(hextetsArb, spellingArb).map(([g, s]) => spellIpv6(g, s)),
    ipv4Arb.map((ip) => ip.text),
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
    fc.property(byteArb, byteArb, byteArb, byteArb, (a, b, c, d) => {
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
