// deno-lint-ignore-file camelcase -- the bodies are login events, whose keys are snake_case
// Unit tests of src/redact.ts: reject bodies keep only what is known to be
// safe. The adversarial cases are the ones a review found leaking under the
// old denylist; the property test plants raw values anywhere a producer
// could put them and looks for them in the output.
import assert from "node:assert/strict";
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
    attempts: 3,
    mobile: true,
    extra: null,
    tags: [],
    empty: "",
  };
  assert.deepEqual(JSON.parse(redact(body)), body);
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
