// deno-lint-ignore-file camelcase -- the bodies are login events, whose keys are snake_case
// Unit tests of src/redact.ts: reject bodies keep only what is known to be
// safe. The adversarial cases are the ones a review found leaking under the
// old denylist; the property test plants raw values anywhere a producer
// could put them and looks for them in the output.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { canonicalIp } from "../../src/ip.ts";
import {
  maskKey,
  masksWanted,
  MAX_DEPTH,
  MAX_MASKED_BODY,
  nestedJson,
  redactBody,
} from "../../src/redact.ts";
import type { ParsedBody } from "../../src/validate.ts";
import {
  disguisedShapeArb,
  nestedPlantedArb,
  personalValueArb,
  type Planted,
  plantedFormArb,
  plantedShapeArb,
} from "../helpers/arbitraries.ts";
import { unmaskedNumbers } from "../helpers/oracles.ts";
import { referenceMasker } from "../helpers/reference_mask.ts";

const masker = referenceMasker("redact-test-secret-0123456789abcdefgh", "k1");
const json = (value: unknown): ParsedBody => ({ kind: "json", value });
/** Redacts as the sink does: the masks of every wanted value, then the body. */
function redact(value: unknown): string {
  const parsed = json(value);
  const masks = new Map(masksWanted(parsed).map((r) => [maskKey(r), masker.mask(r.field, r.text)]));
  const out = redactBody(parsed, (r) => {
    const mask = masks.get(maskKey(r));
    if (mask === undefined) throw new Error(`mask not collected for ${r.field}`);
    return mask;
  });
  assert.ok(out !== null);
  return out;
}

Deno.test("redactBody() masks what the old denylist let through", async (t) => {
  const cases: { name: string; body: unknown; raws: string[] }[] = [
    { name: "a renamed ip key", body: { ipAddress: "198.51.100.23" }, raws: ["198.51.100.23"] },
    {
      name: "a renamed device key",
      body: { deviceSerial: "SN-998877" },
      raws: ["SN-998877", "998877"],
    },
    {
      name: "a nested remote address",
      body: { client: { remote_addr: "203.0.113.50", port: 51234 } },
      raws: ["203.0.113.50", "51234"],
    },
    {
      name: "an x_forwarded_for array",
      body: { x_forwarded_for: ["198.51.100.1", "2001:db8::7"] },
      raws: ["198.51.100.1", "2001:db8::7"],
    },
    {
      name: "truncated JSON inside an SNS Message",
      body: {
        Type: "Notification",
        Message: '{"user_id":"u1","ip":"192.0.2.200","device_id":"ab-12',
      },
      raws: ["192.0.2.200", "ab-12"],
    },
    {
      name: "free text",
      body: { note: "login from ip=192.0.2.9 device_id=ZX-4431-QQ by jane@example.com" },
      raws: ["192.0.2.9", "ZX-4431-QQ", "jane@example.com"],
    },
    {
      name: "an IP used as a key",
      body: { "198.51.100.77": { seen: true } },
      raws: ["198.51.100.77"],
    },
    { name: "an email used as a key", body: { "jane@example.com": 1 }, raws: ["jane@example.com"] },
    { name: "a serial used as a key", body: { SN99887766: 1 }, raws: ["99887766"] },
    {
      name: "deep nesting",
      body: { a: { b: { c: { d: [{ e: { serial: "QX-5566-7788" } }] } } } },
      raws: ["QX-5566-7788"],
    },
    {
      name: "a large number (an IPv4 as an integer)",
      body: { addr: 3325256727 },
      raws: ["3325256727"],
    },
    {
      name: "PII in the non-PII fields",
      body: {
        user_id: "jane@example.com",
        app_version: "10.0.0.1",
        device_type: "555-867-5309",
        locale: "198.51.100.3",
      },
      raws: ["jane@example.com", "10.0.0.1", "555-867-5309", "198.51.100.3"],
    },
    {
      name: "an SSN-like user_id",
      body: { user_id: "593-47-5928" },
      raws: ["593-47-5928"],
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const out = redact(c.body);
      for (const raw of c.raws) assert.ok(!out.includes(raw), `${raw} in ${out}`);
      JSON.parse(out); // still JSON
    });
  }
});

Deno.test("redactBody() keeps the structure and the safe values", () => {
  const body = {
    user_id: "424cdd21-063a-43a7-b91b-7ca1a833afae",
    app_version: "2.3.0",
    device_type: "android",
    locale: "RU",
    mobile: true,
    extra: null,
    tags: [],
    empty: "",
    nested: { device_type: "Pixel 7", locale: "en-US" },
  };
  assert.deepEqual(JSON.parse(redact(body)), body);
});

Deno.test("redactBody() keeps a UUID user_id and an integer or dotted app_version only as the body's own fields", () => {
  const uuid = "424cdd21-063a-43a7-b91b-7ca1a833afae";
  const top = { user_id: uuid, app_version: "10.0.1", device_type: "ios" };
  assert.deepEqual(JSON.parse(redact(top)), top);
  assert.deepEqual(JSON.parse(redact({ app_version: 3 })), { app_version: 3 });
  const out = redact({
    nested: { user_id: uuid, app_version: "10.0.1" },
    deeper: [{ app_version: 3, x: { app_version: "10.0.0.1" } }],
    envelope: JSON.stringify({ user_id: uuid }),
  });
  for (const raw of [uuid, "10.0.1", "10.0.0.1", '"app_version":3']) {
    assert.ok(!out.includes(raw), `${raw} in ${out}`);
  }
  assert.deepEqual(unmaskedNumbers(out), [], out);
});

Deno.test("redactBody() masks the disguised shapes the second review found", async (t) => {
  const uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
  const b64 = (text: string) => Buffer.from(text).toString("base64");
  const b64url = (text: string) => Buffer.from(text).toString("base64url");
  const hex = (text: string) => Buffer.from(text).toString("hex");
  const cases: { name: string; values: string[] }[] = [
    {
      name: "IPv4 with letters, '+', '/', '_' or mixed separators",
      values: ["10x0x0x1", "10+0+0+1", "10/0/0/1", "10_0_0_1", "10.0-0_1", "192o168o1o20"],
    },
    { name: "IPv4 in words or brackets", values: ["10 dot 0 dot 0 dot 1", "10[.]0[.]0[.]1"] },
    {
      name: "e-mail with at spelt out and no dot after",
      values: ["jane_at_example", "jane at example", "jane(at)example", "jane.at.example"],
    },
    {
      name: "IPv6 with dashes, underscores or dots",
      values: [
        "fe80--1ff-fe23-4567-890a",
        "fe80--1ff-fe23-4567-890a.ipv6-literal.net",
        "2001-db8-85a3-0-0-8a2e-370-7334",
        "fe80__1",
        "2001.db8.0.0.0.0.0.7",
      ],
    },
    {
      name: "UUIDs in any spelling",
      values: [uuid, uuid.toUpperCase(), uuid.replaceAll("-", ""), uuid.replaceAll("-", "_")],
    },
    {
      name: "base64, base64url and hex of an IP, an e-mail or a device id",
      values: [
        b64("192.168.1.20"),
        b64url("jane.doe@example.com"),
        b64("jane.doe@example.com").replace(/=+$/, ""),
        b64url("593-47-5928"),
        hex("10.0.0.1"),
        hex("jane@ex.io").toUpperCase(),
        `id_${b64url("jane@example.com")}`,
        b64url(b64url("10.0.0.1")),
      ],
    },
    { name: "a bare MAC inside a value", values: ["hw-aabbccddeeff", "dev_AABBCCDDEEFF_x"] },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      for (const value of c.values) {
        for (const field of ["user_id", "app_version", "device_type", "locale", "note"]) {
          const deep = redact({ deep: [{ [field]: value }] });
          assert.ok(!deep.includes(value), `${field}: ${deep}`);
          // A UUID is the body's own user_id by design (the case above).
          if (field === "user_id" && /^[0-9a-f-]{36}$/i.test(value)) continue;
          const out = redact({ [field]: value });
          assert.ok(!out.includes(value), `${field}: ${out}`);
        }
        assert.ok(!redact({ [value]: 1 }).includes(value), `as a key: ${value}`);
      }
    });
  }
});

Deno.test("redactBody() masks keys holding addresses, digits, MAC hex or UUIDs", () => {
  const keys = [
    "ip_10_0_0_1",
    "host10x0x0x1",
    "k19216811",
    "mac_aabbccddeeff",
    "mac_AA_BB_CC_DD_EE_FF",
    "hw_aAbBcCdDeEfF",
    "jane_at_example",
    "dev_3f2504e0_4f89_11d3_9a0c_0305e82c3301",
    "serial1234",
  ];
  const out = JSON.parse(
    redact(Object.fromEntries([...keys, "ok_key", "part1"].map((k) => [k, true]))),
  );
  assert.deepEqual(Object.keys(out).filter((k) => !k.startsWith("[string ")), ["ok_key", "part1"]);
});

Deno.test("redactBody() masks every number but a small integer app_version, arrays of numbers whole", () => {
  const out = JSON.parse(redact({
    attempts: 3,
    port: 443,
    negative: -1,
    app_version: 2,
    big_version: { app_version: 2003000 },
    list_version: { app_version: [2, 3] },
    octets: [192, 168, 1, 20],
    mixed: ["a", 7],
  }));
  const value = (text: string) => masker.mask("value", text);
  assert.deepEqual(out, {
    attempts: `[number ${value("3")}]`,
    port: `[number ${value("443")}]`,
    negative: `[number ${value("-1")}]`,
    app_version: 2,
    big_version: { app_version: `[number ${value("2003000")}]` },
    list_version: { app_version: `[numbers 2 ${value("[2,3]")}]` },
    // One mask for the whole array: a mask per byte would be a substitution code.
    octets: `[numbers 4 ${value("[192,168,1,20]")}]`,
    mixed: [`[string 1 ${value("a")}]`, `[number ${value("7")}]`],
  });
  const body = { a: [1, 2, 3], b: { c: [1, 2, 3], d: 12 } };
  assert.equal(redact(body), redact(structuredClone(body)), "deterministic");
});

Deno.test("redactBody() masks PII carried as numbers", async (t) => {
  const address = "192.168.1.20";
  const email = "jane.doe@example.com";
  const bytes = [...Buffer.from(address)];
  const codes = Array.from(email, (c) => c.charCodeAt(0));
  const cases: { name: string; body: unknown; raws: string[] }[] = [
    {
      name: "a Node Buffer's JSON of an address",
      body: { payload: Buffer.from(address).toJSON() },
      raws: [bytes.join(","), bytes.slice(0, 3).join(",")],
    },
    {
      name: "the same Buffer in JSON inside a string",
      body: { Message: JSON.stringify({ remote: Buffer.from(address) }) },
      raws: [bytes.slice(0, 3).join(",")],
    },
    {
      name: "an octet array",
      body: { client: { addr: [192, 168, 1, 20] } },
      raws: ["192,168,1,20", "192,168"],
    },
    {
      name: "IPv6 hextets as numbers",
      body: { addr6: [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x7] },
      raws: ["8193,3512"],
    },
    { name: "MAC bytes", body: { hw: [170, 187, 204, 221, 238, 255] }, raws: ["170,187,204"] },
    {
      name: "a device id split into integers",
      body: { device: { a: 593, b: 47, c: 5928 } },
      raws: ['"a":593', '"b":47', '"c":5928'],
    },
    {
      name: "character codes of an e-mail",
      body: { contact: codes },
      raws: [codes.slice(0, 3).join(",")],
    },
    {
      name: "character codes among strings",
      body: { contact: ["to:", ...codes] },
      raws: [codes.slice(0, 2).join(","), `"to:",${codes[0]}`],
    },
    {
      name: "a Uint8Array's JSON (keyed by index)",
      body: { raw: JSON.parse(JSON.stringify(new TextEncoder().encode(address))) },
      raws: [`"0":${bytes[0]}`],
    },
    {
      name: "octets deep down",
      body: { a: [{ b: { c: [[{ d: [10, 20, 30, 40] }]] } }] },
      raws: ["10,20,30"],
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const out = redact(c.body);
      for (const raw of c.raws) assert.ok(!out.includes(raw), `${raw} in ${out}`);
      assert.deepEqual(unmaskedNumbers(out), [], out);
    });
  }
});

Deno.test("redactBody() masks IP-, MAC- and e-mail-like values in the kept fields", async (t) => {
  const shapes: { name: string; value: string; fields?: string[] }[] = [
    { name: "a dotted quad", value: "192.0.2.10" },
    { name: "a dotted quad with leading zeros", value: "010.000.002.001" },
    { name: "a partial IPv4", value: "10.0.1", fields: ["user_id", "device_type"] },
    { name: "two octets", value: "172.16", fields: ["user_id", "device_type"] },
    { name: "an address in a host name", value: "ip-10-0-0-1" },
    { name: "an address with underscores", value: "host_10_0_0_1" },
    { name: "compressed IPv6", value: "fe80::1ff:fe23:4567:890a" },
    { name: "IPv6 cut short", value: "2001:db8:85a3:" },
    { name: "IPv6 mapped", value: "::ffff:192.0.2.1" },
    { name: "IPv6 mapped in hex", value: "::ffff:c000:201" },
    { name: "the unspecified address", value: "::" },
    { name: "a MAC with colons", value: "aa:bb:cc:dd:ee:ff" },
    { name: "a MAC with dashes", value: "AA-BB-CC-DD-EE-FF" },
    { name: "a MAC of hex letters only", value: "ab-cd-ef-ab-cd-ef" },
    { name: "a MAC with dots", value: "0a.1b.2c.3d.4e.5f" },
    { name: "a MAC in groups of four", value: "0a1b.2c3d.4e5f" },
    { name: "a bare MAC", value: "0a1b2c3d4e5f" },
    { name: "an e-mail", value: "jane@example.com" },
    { name: "an e-mail spelt out", value: "jane at example.com" },
    { name: "an e-mail spelt out with underscores", value: "jane_at_example_dot_com" },
  ];
  const fields = ["user_id", "app_version", "device_type", "locale"];
  for (const shape of shapes) {
    await t.step(shape.name, () => {
      for (const field of shape.fields ?? fields) {
        const out = redact({ [field]: shape.value, deep: [{ [field]: shape.value }] });
        assert.ok(!out.includes(shape.value), `${field}: ${out}`);
      }
    });
  }
  // A partial address cannot be told from a version there (docs/pii.md).
  assert.deepEqual(JSON.parse(redact({ app_version: "10.0.1" })), { app_version: "10.0.1" });
  const keys = JSON.parse(redact({ ip_10_0_0_1: true, mac_aa_bb_cc_dd_ee_ff: true, ok_key: 1 }));
  assert.deepEqual(Object.keys(keys).filter((k) => !k.startsWith("[string ")), ["ok_key"]);
});

Deno.test("redactBody() keeps per-field masks under ip and device_id keys, so a reject links to rows", () => {
  const out = JSON.parse(redact({ IP: "2001:DB8::1", deviceId: "123-45-6789", ip_address: "x" }));
  const ip = canonicalIp("2001:DB8::1");
  assert.ok(ip.ok);
  assert.equal(out.IP, masker.mask("ip", ip.canonical));
  assert.equal(out.deviceId, masker.mask("device_id", "123-45-6789"));
  // Other strings show their length and a mask under the `value` subkey.
  assert.equal(out.ip_address, `[string 1 ${masker.mask("value", "x")}]`);
});

Deno.test("redactBody() opens JSON inside strings and redacts it alike", () => {
  const event = { user_id: "u1", ip: "203.0.113.9", device_id: "123-45-6789", app_version: "1.0" };
  const sns = { Type: "Notification", Message: JSON.stringify(event), MessageId: "m-1" };
  const out = JSON.parse(redact(sns));
  const inner = JSON.parse(out.Message);
  assert.equal(inner.ip, masker.mask("ip", "203.0.113.9"));
  assert.equal(inner.user_id, "u1");
  assert.equal(out.Type.startsWith("[string 12 k1:"), true);
  assert.ok(nestedJson("\uFEFF" + JSON.stringify(event)) !== undefined, "behind a byte-order mark");
});

Deno.test(`redactBody() stops at depth ${MAX_DEPTH} and caps the text at ${MAX_MASKED_BODY}`, () => {
  let deep: unknown = { ip: "192.0.2.1", serial: "deep-secret-1" };
  for (let i = 0; i < 10_000; i++) deep = { n: deep };
  const out = redact(deep);
  assert.ok(out.includes("[too deep]"));
  assert.ok(!out.includes("192.0.2.1") && !out.includes("deep-secret-1"));
  const long = redact({ items: Array.from({ length: 5000 }, (_, i) => `item-${i}`) });
  assert.ok(long.length <= MAX_MASKED_BODY + 20);
  assert.ok(long.endsWith("…[truncated]"));
  assert.equal(redactBody({ kind: "unparsed" }, () => "x"), null);
});

// ---- property: raw values planted anywhere never come out --------------------

const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));
const ipv6 = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 })
  .map((g) => g.map((x) => x.toString(16)).join(":"));
const ssn = fc.tuple(
  fc.integer({ min: 100, max: 999 }),
  fc.integer({ min: 10, max: 99 }),
  fc.integer({ min: 1000, max: 9999 }),
).map(([a, b, c]) => `${a}-${b}-${c}`);
const email = fc.tuple(
  fc.stringMatching(/^[a-z]{3,10}$/),
  fc.stringMatching(/^[a-z]{3,10}$/),
).map(([user, host]) => `${user}@${host}.example`);
const serial = fc.tuple(fc.stringMatching(/^[A-Z]{2}$/), fc.integer({ min: 100000, max: 99999999 }))
  .map(([p, n]) => `${p}-${n}`);
/** A value users would call PII, long enough that a mask cannot contain it by chance. */
const planted = fc.oneof(ipv4, ipv6, ssn, email, serial).filter((v) => v.length >= 7);

/** Keys a producer might use; the four kept fields are left out (their own test is above). */
const key = fc.oneof(
  fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/),
  fc.constantFrom(
    "ip",
    "IP",
    "ipAddress",
    "device_id",
    "deviceId",
    "remote_addr",
    "xff",
    "Message",
  ),
  fc.string({ maxLength: 12 }),
).filter((k) => !["user_id", "app_version", "device_type", "locale", "__proto__"].includes(k));

/** Builds a body around the planted value: under keys, in arrays, as a key, in text, in JSON strings. */
function around(value: string, depthBudget: number): fc.Arbitrary<unknown> {
  const leafs: fc.Arbitrary<unknown>[] = [
    fc.constant(value),
    fc.string({ maxLength: 8 }).map((pad) => `${pad} ip=${value}; seen`),
    fc.constant({ [value]: 1 }),
  ];
  if (depthBudget <= 0) return fc.oneof(...leafs);
  const inner = around(value, depthBudget - 1);
  return fc.oneof(
    ...leafs,
    fc.tuple(key, inner).map(([k, v]) => ({ [k]: v, other: "x" })),
    fc.tuple(inner, fc.integer({ min: 0, max: 3 })).map((
      [v, n],
    ) => [...Array.from({ length: n }, () => "pad"), v]),
    inner.map((v) => JSON.stringify({ wrapped: v })), // complete JSON in a string
    inner.map((v) => JSON.stringify({ cut: v }).slice(0, -1)), // truncated JSON in a string
  );
}

Deno.test("redactBody() never outputs a planted IPv4, IPv6, SSN-like id, email or serial (property)", () => {
  fc.assert(
    fc.property(
      planted.chain((value) => fc.tuple(fc.constant(value), around(value, 4))),
      ([value, body]) => {
        const out = redact({ wrapper: body, user_id: "u-1" });
        return !out.includes(value);
      },
    ),
    { numRuns: 3000 },
  );
});

Deno.test("redactBody() never outputs a disguised address, e-mail, UUID or encoding planted in kept fields or keys (property)", () => {
  const planted = disguisedShapeArb.chain((value) => nestedPlantedArb(plantedShapeArb(value), 3));
  fc.assert(
    fc.property(planted, ({ body, needles }: Planted) => {
      const outs = [redact({ wrapper: body, user_id: "u-1" }), redact(body)];
      const found = needles.filter((needle) => outs.some((out) => out.includes(needle)));
      if (found.length > 0) throw new Error(`kept ${found.join(" | ")} in ${outs.join(" ")}`);
    }),
    { numRuns: 3000 },
  );
});

Deno.test("redactBody() never outputs a personal value planted as numbers, pieces or a kept field, nor its numbers in a row (property)", () => {
  const planted = personalValueArb.chain((value) => nestedPlantedArb(plantedFormArb(value), 4));
  fc.assert(
    fc.property(planted, ({ body, needles }: Planted) => {
      const out = redact({ wrapper: body, user_id: "u-1" });
      const found = needles.filter((needle) => out.includes(needle));
      const numbers = unmaskedNumbers(out);
      if (found.length > 0 || numbers.length > 0) {
        throw new Error(`kept ${[...found, ...numbers].join(" | ")} in ${out}`);
      }
    }),
    { numRuns: 3000 },
  );
});
