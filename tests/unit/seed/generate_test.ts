// Unit tests of src/seed/generate.ts: reproducible synthetic bodies, their validity and their mix.
import assert from "node:assert/strict";
import { generateBodies } from "../../../src/seed/generate.ts";
import { validateBody } from "../../../src/validate.ts";

const MAX = 65536;

Deno.test("generateBodies() gives identical bodies for the same seed", () => {
  for (const badRatio of [0, 0.3, 1]) {
    const a = [...generateBodies(500, { seed: 42, badRatio })];
    const b = [...generateBodies(500, { seed: 42, badRatio })];
    assert.deepEqual(a, b);
  }
});

Deno.test("generateBodies() gives different bodies for different seeds", () => {
  const a = [...generateBodies(50, { seed: 1, badRatio: 0 })];
  const b = [...generateBodies(50, { seed: 2, badRatio: 0 })];
  assert.notDeepEqual(a, b);
});

Deno.test("generateBodies() yields the count asked for", () => {
  assert.equal([...generateBodies(0, { seed: 1, badRatio: 0 })].length, 0);
  assert.equal([...generateBodies(123, { seed: 1, badRatio: 0.5 })].length, 123);
});

Deno.test("generateBodies() with badRatio 0 makes only bodies validateBody() accepts", () => {
  for (const seed of [1, 7, 2024]) {
    for (const body of generateBodies(3000, { seed, badRatio: 0 })) {
      const verdict = validateBody(body, MAX);
      assert.ok(verdict.ok, `seed ${seed}: ${body} ${verdict.ok ? "" : verdict.rejection.reason}`);
    }
  }
});

Deno.test("generateBodies() with badRatio 1 makes only bodies validateBody() rejects, of each kind", () => {
  const reasons = new Set<string>();
  for (const body of generateBodies(3000, { seed: 11, badRatio: 1 })) {
    const verdict = validateBody(body, MAX);
    assert.ok(!verdict.ok, `accepted: ${body}`);
    reasons.add(verdict.rejection.reason);
  }
  assert.deepEqual(
    [...reasons].sort(),
    [
      "bad_char",
      "bad_device_type",
      "bad_ip",
      "bad_locale",
      "bad_version",
      "empty",
      "missing_field",
      "not_json",
      "not_object",
      "too_long",
      "wrong_type",
    ],
  );
});

interface Sample {
  readonly ip: string;
  readonly locale: string | null;
}

function sample(count: number, seed: number): Sample[] {
  return [...generateBodies(count, { seed, badRatio: 0 })].map((b) => JSON.parse(b) as Sample);
}

Deno.test("generateBodies() makes about 30% of locales null over 5,000 bodies", () => {
  for (const seed of [3, 99]) {
    const share = sample(5000, seed).filter((e) => e.locale === null).length / 5000;
    assert.ok(share > 0.27 && share < 0.33, `seed ${seed}: ${share}`);
  }
});

Deno.test("generateBodies() makes some IPv6 addresses", () => {
  const events = sample(2000, 5);
  const v6 = events.filter((e) => e.ip.includes(":")).length;
  assert.ok(v6 > 0 && v6 < events.length, `${v6} IPv6 of ${events.length}`);
});

Deno.test("generateBodies() repeats some ip values", () => {
  const ips = sample(2000, 5).map((e) => e.ip);
  const distinct = new Set(ips).size;
  assert.ok(distinct < ips.length, "no ip repeats");
  assert.ok(distinct > ips.length / 2, `only ${distinct} distinct ips`);
});
