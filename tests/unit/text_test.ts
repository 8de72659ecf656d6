// Unit tests of src/text.ts: codePointLength() and utf8Length() on examples,
// and against the platform's counts on any string, well-formed or not.
import assert from "node:assert/strict";
import fc from "fast-check";
import { codePointLength, utf8Length } from "../../src/text.ts";

const EURO = "\u20ac"; // 3 UTF-8 bytes, 1 UTF-16 unit
const EMOJI = "\u{1f600}"; // 4 UTF-8 bytes, 2 UTF-16 units, 1 code point

Deno.test("codePointLength() and utf8Length() on examples", async (t) => {
  const cases = [
    { input: "", codePoints: 0, utf8: 0 },
    { input: "abc", codePoints: 3, utf8: 3 },
    { input: "\u00e9", codePoints: 1, utf8: 2 },
    { input: EURO, codePoints: 1, utf8: 3 },
    { input: EMOJI, codePoints: 1, utf8: 4 },
    { input: "a\ud800b", codePoints: 3, utf8: 5 },
    { input: "\udc00\ud800", codePoints: 2, utf8: 6 },
    { input: "\ud800\ud83d\ude00", codePoints: 2, utf8: 7 },
  ];
  for (const c of cases) {
    await t.step(`codePointLength() and utf8Length() of ${JSON.stringify(c.input)}`, () => {
      assert.equal(codePointLength(c.input), c.codePoints);
      assert.equal(utf8Length(c.input), c.utf8);
    });
  }
});

Deno.test("codePointLength() equals [...s].length and utf8Length() the encoded length", () => {
  const encoder = new TextEncoder();
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: "binary", maxLength: 200 }),
        fc.string({ unit: "grapheme", maxLength: 100 }),
      ),
      (s) => {
        assert.equal(codePointLength(s), [...s].length);
        assert.equal(utf8Length(s), encoder.encode(s).length);
      },
    ),
    { numRuns: 3000 },
  );
});

Deno.test("codePointLength() and utf8Length() agree with the platform on ill-formed UTF-16 too", () => {
  // TextEncoder writes a lone surrogate as U+FFFD (3 bytes), as utf8Length counts it.
  const encoder = new TextEncoder();
  const unit = fc.oneof(
    fc.integer({ min: 0xd800, max: 0xdfff }),
    fc.integer({ min: 0, max: 0xffff }),
  ).map((n) => String.fromCharCode(n));
  fc.assert(
    fc.property(fc.string({ unit, maxLength: 100 }), (s) => {
      assert.equal(codePointLength(s), [...s].length);
      assert.equal(utf8Length(s), encoder.encode(s).length);
    }),
    { numRuns: 3000 },
  );
});
