// Unit tests of src/app_version.ts: encodeAppVersion()/decodeAppVersion() from a table and properties.
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeAppVersion, encodeAppVersion, MAX_VERSION_PART } from "../../src/app_version.ts";

const INT4_MAX = 2 ** 31 - 1;

const ENCODE_CASES: readonly { name: string; input: string; expected: number | null }[] = [
  { name: "encodes 2.3.0 as 2003000", input: "2.3.0", expected: 2003000 },
  { name: "encodes 0.96 as 96000", input: "0.96", expected: 96000 },
  { name: "encodes 7.31 as 7031000", input: "7.31", expected: 7031000 },
  { name: "encodes 5 as 5000000", input: "5", expected: 5000000 },
  { name: "encodes 6.02 as 6002000", input: "6.02", expected: 6002000 },
  { name: "encodes 6.2 as 6002000", input: "6.2", expected: 6002000 },
  { name: "encodes 0 as 0", input: "0", expected: 0 },
  { name: "encodes 0.0.1 as 1", input: "0.0.1", expected: 1 },
  { name: "encodes 999.999.999 as 999999999", input: "999.999.999", expected: 999999999 },
  { name: "encodes 006.002.000 like 6.2.0", input: "006.002.000", expected: 6002000 },
  { name: "refuses v2", input: "v2", expected: null },
  { name: "refuses 1.2.3.4", input: "1.2.3.4", expected: null },
  { name: "refuses 1..2", input: "1..2", expected: null },
  { name: "refuses 1000.0", input: "1000.0", expected: null },
  { name: "refuses 1.1000", input: "1.1000", expected: null },
  { name: "refuses the empty string", input: "", expected: null },
  { name: "refuses a leading space", input: " 1.2", expected: null },
  { name: "refuses a trailing space", input: "1.2 ", expected: null },
  { name: "refuses a trailing newline", input: "1.2\n", expected: null },
  { name: "refuses a trailing dot", input: "1.2.", expected: null },
  { name: "refuses a leading dot", input: ".1", expected: null },
  { name: "refuses a minus sign", input: "-1.2", expected: null },
  { name: "refuses a pre-release suffix", input: "1.2.3-beta", expected: null },
  { name: "refuses Arabic-Indic digits", input: "\u0663.1", expected: null },
];

Deno.test("encodeAppVersion() encodes or refuses each version in the table", async (t) => {
  for (const c of ENCODE_CASES) {
    await t.step(`encodeAppVersion() ${c.name}`, () => {
      const result = encodeAppVersion(c.input);
      if (c.expected === null) {
        assert.equal(result.ok, false);
        if (!result.ok) assert.match(result.detail, /^app_version /);
      } else {
        assert.deepEqual(result, { ok: true, encoded: c.expected });
      }
    });
  }
});

Deno.test("encodeAppVersion() treats 6.02 and 6.2 as the same version", () => {
  assert.deepEqual(encodeAppVersion("6.02"), encodeAppVersion("6.2"));
});

Deno.test("decodeAppVersion() refuses what no version encodes to", async (t) => {
  for (const input of [-1, 1_000_000_000, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    await t.step(`decodeAppVersion() refuses ${input}`, () => {
      assert.throws(() => decodeAppVersion(input), RangeError);
    });
  }
});

const part = fc.integer({ min: 0, max: MAX_VERSION_PART });
const triple = fc.tuple(part, part, part);

function encoded(text: string): number {
  const result = encodeAppVersion(text);
  if (!result.ok) throw new assert.AssertionError({ message: `${text}: ${result.detail}` });
  return result.encoded;
}

Deno.test("decodeAppVersion() inverts encodeAppVersion() for 3-part versions", () => {
  fc.assert(
    fc.property(triple, ([a, b, c]) => {
      const text = `${a}.${b}.${c}`;
      assert.equal(decodeAppVersion(encoded(text)), text);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("encodeAppVersion() inverts decodeAppVersion() over the whole range", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 999_999_999 }), (n) => {
      assert.equal(encoded(decodeAppVersion(n)), n);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("encodeAppVersion() fills missing parts with zero", () => {
  fc.assert(
    fc.property(part, part, (a, b) => {
      assert.equal(encoded(`${a}`), encoded(`${a}.0.0`));
      assert.equal(encoded(`${a}.${b}`), encoded(`${a}.${b}.0`));
    }),
    { numRuns: 500 },
  );
});

Deno.test("encodeAppVersion() orders versions as their parts compare as numbers", () => {
  fc.assert(
    fc.property(triple, triple, (x, y) => {
      const lexical = x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
      const integer = encoded(x.join(".")) - encoded(y.join("."));
      assert.equal(Math.sign(integer), Math.sign(lexical), `${x.join(".")} vs ${y.join(".")}`);
    }),
    { numRuns: 3000 },
  );
});

Deno.test("encodeAppVersion() keeps every version within a Postgres int4", () => {
  assert.ok(encoded("999.999.999") <= INT4_MAX);
  fc.assert(
    fc.property(triple, ([a, b, c]) => {
      const n = encoded(`${a}.${b}.${c}`);
      assert.ok(Number.isSafeInteger(n) && n >= 0 && n <= INT4_MAX, `${n}`);
    }),
    { numRuns: 1000 },
  );
});
