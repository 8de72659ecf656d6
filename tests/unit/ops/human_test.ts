// Unit tests of src/ops/human.ts and the report's mask shortening: numbers,
// times and widths as a person reads them on a terminal.

import assert from "node:assert/strict";
import { counted, duration, fit, fold, grouped, middle, wrapList } from "../../../src/ops/human.ts";
import { shortMask } from "../../../src/commands/_report.ts";

Deno.test("duration() rounds a time to the precision a person uses, with its unit", async (t) => {
  const cases = [
    { name: "under a second: whole ms", input: 18.402117, expected: "18 ms" },
    { name: "the issue's retry", input: 2465.699084, expected: "2.5 s" },
    { name: "a whole second shows its tenth", input: 1000, expected: "1.0 s" },
    { name: "tens of seconds: whole", input: 37_400, expected: "37 s" },
    { name: "minutes", input: 250_000, expected: "4 min 10 s" },
    { name: "never negative", input: -5, expected: "0 ms" },
  ];
  for (const c of cases) await t.step(c.name, () => assert.equal(duration(c.input), c.expected));
});

Deno.test("grouped() and counted() group digits and agree in number", () => {
  assert.equal(grouped(1_234_567.4), "1,234,567");
  assert.equal(counted(1, "migration"), "1 migration");
  assert.equal(counted(5_000, "message"), "5,000 messages");
});

Deno.test("fit() cuts to the width with an ellipsis; middle() keeps both ends", async (t) => {
  await t.step("fit() leaves a short line as it is", () => assert.equal(fit("abc", 3), "abc"));
  await t.step("fit() cuts a long one to exactly the width", () => {
    assert.equal(fit("abcdef", 4), "abc…");
  });
  await t.step("middle() shortens in the middle only when it saves", () => {
    assert.equal(middle("6a3617bf-8114-4a5b-98ac-3a42c0e4f685", 8, 4), "6a3617bf…f685");
    assert.equal(middle("abcdefghi", 4, 4), "abcdefghi");
  });
});

Deno.test("shortMask() keeps the key id and the ends of the hash", async (t) => {
  const cases = [
    {
      name: "a mask",
      input: "k1:qDHqv3xR0ZJ9c2O9bYw7JkA8HqgV6kQeM3Ue1Ejh34",
      expected: "k1:qDHq…jh34",
    },
    { name: "a short value stays", input: "k1:abc", expected: "k1:abc" },
    { name: "no key id", input: "qDHqv3xR0ZJ9c2O9bYw7", expected: "qDHq…bYw7" },
  ];
  for (const c of cases) await t.step(c.name, () => assert.equal(shortMask(c.input), c.expected));
});

Deno.test("wrapList() fills lines up to the width, after the indent", () => {
  const items = ["empty 7", "too_long 7", "bad_char 5", "bad_locale 5", "bad_version 4"];
  const lines = wrapList(items, 30, "  ");
  assert.deepEqual(lines, [
    "  empty 7, too_long 7,",
    "  bad_char 5, bad_locale 5,",
    "  bad_version 4",
  ]);
  for (const line of lines) assert.ok(line.length <= 30, line);
});

Deno.test("fold() keeps every character, rows at most the width, later rows after the indent", () => {
  assert.deepEqual(fold("short", 10), ["short"]);
  assert.deepEqual(fold("aaa bbb ccc", 7, "  "), ["aaa bbb", "  ccc"]);
  // A word longer than a row is broken, not lost.
  assert.deepEqual(fold("abcdefghij", 4, " "), ["abcd", " efg", " hij"]);
  const text = "the fix: set PII_HMAC_KEY to a secret of at least 32 bytes";
  const rows = fold(text, 20, "    ");
  for (const row of rows) assert.ok(Array.from(row).length <= 20, row);
  assert.equal(rows.map((r) => r.trim()).join(" "), text);
});
