// Unit tests of src/config/duration.ts: parseDuration() reads the forms people
// write and refuses everything else (a typo must not become another bound);
// formatDuration() writes what parseDuration() reads back.
import assert from "node:assert/strict";
import fc from "fast-check";
import { formatDuration, parseDuration } from "../../../src/config/duration.ts";

Deno.test("parseDuration() reads seconds, minutes, hours and their combinations", async (t) => {
  const cases: { input: string; expected: number }[] = [
    { input: "90s", expected: 90 },
    { input: "40m", expected: 2400 },
    { input: "1h30m", expected: 5400 },
    { input: "1h", expected: 3600 },
    { input: "2h0m5s", expected: 7205 },
    { input: "1m30s", expected: 90 },
    { input: "90m", expected: 5400 },
    { input: "90", expected: 90 },
    { input: "0", expected: 0 },
    { input: " 45s ", expected: 45 },
    { input: "168h", expected: 604_800 },
  ];
  for (const { input, expected } of cases) {
    await t.step(JSON.stringify(input), () => assert.equal(parseDuration(input), expected));
  }
});

Deno.test("parseDuration() refuses what is not a duration", async (t) => {
  const refused = [
    "",
    " ",
    "40x",
    "1h30mx",
    "1h30",
    "-5m",
    "+5m",
    "1.5h",
    "1 h",
    "1h 30m",
    "30m1h",
    "1h1h",
    "40M",
    "5mins",
    "1d",
    "500ms",
    "h",
    "m30s",
    "0x10",
    "1e3",
    "١٢", // digits of another script
  ];
  for (const input of refused) {
    await t.step(JSON.stringify(input), () => assert.equal(parseDuration(input), null));
  }
});

Deno.test("formatDuration() writes what parseDuration() reads back", () => {
  assert.equal(formatDuration(5400), "1h30m");
  assert.equal(formatDuration(90), "1m30s");
  assert.equal(formatDuration(1), "1s");
  assert.equal(formatDuration(604_800), "168h");
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10_000_000 }), (seconds) => {
      assert.equal(parseDuration(formatDuration(seconds)), seconds);
    }),
  );
});
