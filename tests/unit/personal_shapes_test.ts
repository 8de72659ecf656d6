// Unit tests of src/personal_shapes.ts: the narrow shapes validation refuses
// in locale and device_type (against the oracle restated from the docs), and
// the wide ones reject redaction masks.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { isUuid, looksPersonal, personalShapeOf } from "../../src/personal_shapes.ts";
import { holdsPersonalOracle } from "../helpers/oracles.ts";

Deno.test("personalShapeOf() names the personal value a text holds", async (t) => {
  const cases: { input: string; expected: ReturnType<typeof personalShapeOf> }[] = [
    { input: "jane@example.com", expected: "email" },
    { input: "jane\uff20example", expected: "email" },
    { input: "jane (at) example", expected: "email" },
    { input: "x-424cdd21-063a-43a7-b91b-7ca1a833afae", expected: "uuid" },
    { input: "424CDD21063A43A7B91B7CA1A833AFAE", expected: "uuid" },
    { input: "aa:bb:cc:dd:ee:ff", expected: "mac" },
    { input: "dev AA_BB_CC_DD_EE_FF", expected: "mac" },
    { input: "aabb.ccdd.eeff", expected: "mac" },
    { input: "hw 0a1b2c3d4e5f", expected: "mac" },
    { input: "10.0.0.1", expected: "ip" },
    { input: "ios-10-0-0-1", expected: "ip" },
    { input: "10/0/0/1", expected: "ip" },
    { input: "10+0_0.1", expected: "ip" },
    { input: "fe80::1", expected: "ip" },
    { input: "::", expected: "ip" },
    { input: "fe80--1ff-fe23-4567-890a", expected: "ip" },
    { input: "--1", expected: "ip" },
    { input: "android", expected: null },
    { input: "Pixel 7 Pro", expected: null },
    { input: "iPhone14,2", expected: null },
    { input: "zh-Hant-TW", expected: null },
    { input: "a".repeat(32), expected: null },
    { input: "Android 10 / 11 / 12 / 13", expected: null },
    { input: "1.2.3", expected: null },
    { input: "x' UNION SELECT masked_ip--", expected: null },
  ];
  for (const c of cases) {
    await t.step(JSON.stringify(c.input), () => {
      assert.equal(personalShapeOf(c.input), c.expected);
      assert.equal(holdsPersonalOracle(c.input), c.expected !== null, "the oracle agrees");
    });
  }
});

Deno.test("personalShapeOf() agrees with the documented rule on texts built from its alphabet (property)", () => {
  const unit = fc.constantFrom(
    ..."0123456789abcdefABCDEFxz:.-_ @()[]{}+/",
    "at",
    "\uff20",
    "--",
    "::",
    "ipv6-literal",
    "é",
  );
  fc.assert(
    fc.property(fc.string({ unit, maxLength: 40 }), (text) => {
      assert.equal(personalShapeOf(text) !== null, holdsPersonalOracle(text), JSON.stringify(text));
    }),
    { numRuns: 20_000 },
  );
});

Deno.test("isUuid() takes exactly one dashed UUID", () => {
  assert.ok(isUuid("424cdd21-063a-43a7-b91b-7ca1a833afae"));
  assert.ok(isUuid("424CDD21-063A-43A7-B91B-7CA1A833AFAE"));
  assert.ok(!isUuid("424cdd21063a43a7b91b7ca1a833afae"));
  assert.ok(!isUuid("x424cdd21-063a-43a7-b91b-7ca1a833afae"));
});

Deno.test("looksPersonal() finds disguised and encoded values, and spares plain names", async (t) => {
  const b64 = (text: string) => Buffer.from(text).toString("base64");
  const yes = [
    "10x0x0x1",
    "10 dot 0 dot 0 dot 1",
    "10.0.1",
    "fe80__1",
    "2001-db8-0-0-0-0-0-7",
    "aAbBcCdDeEfF",
    "mac_aa_bb_cc_dd_ee_ff",
    "jane_at_example",
    "555-867-5309",
    b64("192.168.1.20").replace(/=+$/, ""),
    b64("::001").replace(/=+$/, ""), // 7 characters: a property test's counterexample
    Buffer.from("jane@example.com").toString("base64url"),
    `id_${Buffer.from("593-47-5928").toString("base64url")}`,
    Buffer.from("10.0.0.1").toString("hex"),
  ];
  const no = ["android", "Pixel 7 Pro", "en-US", "pt_BR", "u-1", "Message", "SignatureVersion"];
  await t.step("finds", () => {
    for (const text of yes) assert.ok(looksPersonal(text), text);
  });
  await t.step("spares", () => {
    for (const text of no) assert.ok(!looksPersonal(text), text);
  });
  await t.step("spares a version where asked", () => {
    assert.ok(!looksPersonal("10.0.1", { versionSyntax: true }));
    assert.ok(looksPersonal("10.0.0.1", { versionSyntax: true }));
  });
});
