// Unit tests of src/to_row.ts: utcDate(), toRow(), findPiiValues() and toRejectRow() masking with a real Masker.
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  findPiiValues,
  piiKey,
  type PiiValue,
  toRejectRow,
  toRow,
  utcDate,
} from "../../src/to_row.ts";
import { type ParsedBody, validateBody } from "../../src/validate.ts";
import { Masker } from "../../src/mask.ts";
import { Secret } from "../../src/config.ts";
import type { Masked, Problem } from "../../src/types.ts";

const masker = await Masker.create(
  new Secret(new TextEncoder().encode("to-row-test-secret-0123456789abcdef"), "test"),
  "k1",
);

Deno.test("utcDate() gives the UTC calendar date at midnight boundaries", async (t) => {
  const cases = [
    { name: "the epoch", ms: 0, expected: "1970-01-01" },
    { name: "one millisecond before the epoch", ms: -1, expected: "1969-12-31" },
    { name: "New Year's midnight", ms: Date.UTC(2024, 0, 1), expected: "2024-01-01" },
    {
      name: "the last millisecond of a year",
      ms: Date.UTC(2024, 0, 1) - 1,
      expected: "2023-12-31",
    },
    { name: "a leap day", ms: Date.UTC(2024, 1, 29), expected: "2024-02-29" },
    { name: "the end of a leap day", ms: Date.UTC(2024, 2, 1) - 1, expected: "2024-02-29" },
    { name: "March 1st after a leap day", ms: Date.UTC(2024, 2, 1), expected: "2024-03-01" },
    {
      name: "the last millisecond of Feb 2023",
      ms: Date.UTC(2023, 2, 1) - 1,
      expected: "2023-02-28",
    },
    // 23:30 UTC is already the next day in UTC+1 and the same day in UTC: only UTC counts.
    { name: "late evening UTC", ms: Date.UTC(2021, 5, 30, 23, 30), expected: "2021-06-30" },
  ];
  for (const c of cases) {
    await t.step(`utcDate() of ${c.name} is ${c.expected}`, () => {
      assert.equal(utcDate(c.ms), c.expected);
    });
  }
});

Deno.test("utcDate() gives the same date for every millisecond of a UTC day", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1970, max: 9999 }),
      fc.integer({ min: 0, max: 11 }),
      fc.integer({ min: 1, max: 28 }),
      fc.integer({ min: 0, max: 86_399_999 }),
      (year, month, day, offset) => {
        const expected = `${year}-${String(month + 1).padStart(2, "0")}-${
          String(day).padStart(2, "0")
        }`;
        assert.equal(utcDate(Date.UTC(year, month, day) + offset), expected);
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("toRow() copies the event's fields and the masks into a row", async () => {
  const verdict = validateBody(
    JSON.stringify({
      user_id: "u-1",
      app_version: "0.96",
      device_type: "ios",
      ip: "::ffff:10.0.0.1",
      locale: "RU",
      device_id: "593-47-5928",
    }),
    65536,
  );
  assert.ok(verdict.ok);
  const ip = await masker.mask("ip", verdict.event.ip);
  const deviceId = await masker.mask("device_id", verdict.event.device_id);
  const sentAtMs = Date.UTC(2024, 4, 6, 23, 59, 59, 999);
  assert.deepEqual(toRow(verdict.event, sentAtMs, { ip, deviceId }), {
    user_id: "u-1",
    device_type: "ios",
    masked_ip: ip,
    masked_device_id: deviceId,
    locale: "RU",
    app_version: 96000,
    create_date: "2024-05-06",
  });
});

Deno.test("toRow() writes null for an absent or null locale", async (t) => {
  for (const [name, locale] of [["absent", undefined], ["null", null]] as const) {
    await t.step(`toRow() writes null for an ${name} locale`, () => {
      const event = {
        "user_id": "u",
        "app_version": "1",
        "device_type": "ios",
        ip: "1.2.3.4",
        "device_id": "d",
        ...(locale === undefined ? {} : { locale }),
      };
      const verdict = validateBody(JSON.stringify(event), 65536);
      assert.ok(verdict.ok);
      const masks = { ip: "k1:a" as Masked, deviceId: "k1:b" as Masked };
      assert.equal(toRow(verdict.event, 0, masks).locale, null);
    });
  }
});

const json = (value: unknown): ParsedBody => ({ kind: "json", value });
const sortPii = (values: PiiValue[]) =>
  [...values].sort((a, b) => piiKey(a) < piiKey(b) ? -1 : piiKey(a) > piiKey(b) ? 1 : 0);

Deno.test("findPiiValues() finds ip and device_id values at any depth", async (t) => {
  const cases: { name: string; parsed: ParsedBody; expected: PiiValue[] }[] = [
    { name: "nothing in an unparsed body", parsed: { kind: "unparsed" }, expected: [] },
    { name: "nothing in a JSON scalar", parsed: json("1.2.3.4"), expected: [] },
    {
      name: "top-level ip and device_id",
      parsed: json({ ip: "1.2.3.4", device_id: "d-1", user_id: "u" }),
      expected: [{ field: "ip", text: "1.2.3.4" }, { field: "device_id", text: "d-1" }],
    },
    {
      name: "the canonical text of a non-canonical ip",
      parsed: json({ ip: "::FFFF:1.2.3.4" }),
      expected: [{ field: "ip", text: "1.2.3.4" }],
    },
    {
      name: "an invalid ip as it is",
      parsed: json({ ip: "999.1.1.1" }),
      expected: [{ field: "ip", text: "999.1.1.1" }],
    },
    {
      name: "non-string values as their JSON",
      parsed: json({ ip: 42, device_id: null }),
      expected: [{ field: "ip", text: "42" }, { field: "device_id", text: "null" }],
    },
    {
      name: "an object under ip as its JSON, without descending",
      parsed: json({ ip: { ip: "1.2.3.4" } }),
      expected: [{ field: "ip", text: '{"ip":"1.2.3.4"}' }],
    },
    {
      name: "values nested in objects and arrays",
      parsed: json([{ a: { ip: "10.0.0.1" } }, [{ device_id: "d-2" }], { b: [[{ ip: "::1" }]] }]),
      expected: [
        { field: "ip", text: "10.0.0.1" },
        { field: "device_id", text: "d-2" },
        { field: "ip", text: "::1" },
      ],
    },
    {
      name: "values under an own __proto__ key",
      parsed: json(JSON.parse('{"__proto__":{"ip":"10.9.8.7"}}')),
      expected: [{ field: "ip", text: "10.9.8.7" }],
    },
    {
      name: "no value for array elements that happen to be the string ip",
      parsed: json({ list: ["ip", "device_id"] }),
      expected: [],
    },
  ];
  for (const c of cases) {
    await t.step(`findPiiValues() finds ${c.name}`, () => {
      assert.deepEqual(sortPii(findPiiValues(c.parsed)), sortPii(c.expected));
    });
  }
});

/** `{"a":{"a":…{inner}…}}` nested `depth` levels, built without recursion. */
function nest(depth: number, inner: unknown): unknown {
  let value = inner;
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? { a: value } : [value];
  return value;
}

Deno.test("findPiiValues() handles a body nested 10,000 deep without overflowing the stack", () => {
  const text = nest(10_000, { ip: "192.0.2.1", device_id: "deep-device" });
  assert.deepEqual(
    sortPii(findPiiValues(json(text))),
    sortPii([{ field: "ip", text: "192.0.2.1" }, { field: "device_id", text: "deep-device" }]),
  );
  // The same through the parser, as the pipeline sees it.
  const body = `${'{"a":'.repeat(10_000)}{"ip":"192.0.2.1"}${"}".repeat(10_000)}`;
  const verdict = validateBody(body, 1_000_000);
  assert.ok(!verdict.ok);
  assert.deepEqual(findPiiValues(verdict.parsed), [{ field: "ip", text: "192.0.2.1" }]);
});

/** The mask lookup the pipeline builds for a rejected body, from a real Masker. */
async function masksFor(parsed: ParsedBody): Promise<Map<string, Masked>> {
  const masks = new Map<string, Masked>();
  for (const value of findPiiValues(parsed)) {
    masks.set(piiKey(value), await masker.mask(value.field, value.text));
  }
  return masks;
}

const PROBLEM: Problem = { reason: "bad_version", detail: "app_version must be …" };
const RAW = { bodyBytes: 321, bodyHmac: "k1:bodyhmac" as Masked, sentAtMs: 1_700_000_000_000 };

Deno.test("toRejectRow() masks every ip and device_id and keeps the other fields", async () => {
  const value = {
    "user_id": "user-77",
    "app_version": "v2",
    "device_type": "android",
    ip: "::FFFF:203.0.113.9",
    locale: null,
    "device_id": "device-secret-555",
    extra: { history: [{ ip: "198.51.100.23", device_id: "old-device-444" }], note: "kept" },
  };
  const parsed = json(value);
  const row = toRejectRow(PROBLEM, parsed, RAW, await masksFor(parsed));
  assert.equal(row.reason, PROBLEM.reason);
  assert.equal(row.detail, PROBLEM.detail);
  assert.equal(row.body_bytes, RAW.bodyBytes);
  assert.equal(row.body_hmac, RAW.bodyHmac);
  assert.equal(row.sent_at_ms, RAW.sentAtMs);
  assert.ok(row.masked_body !== null);
  for (
    const raw of ["203.0.113.9", "::FFFF", "device-secret-555", "198.51.100.23", "old-device-444"]
  ) {
    assert.ok(!row.masked_body.includes(raw), `${raw} in ${row.masked_body}`);
  }
  assert.deepEqual(JSON.parse(row.masked_body), {
    ...value,
    ip: await masker.mask("ip", "203.0.113.9"),
    device_id: await masker.mask("device_id", "device-secret-555"),
    extra: {
      history: [{
        ip: await masker.mask("ip", "198.51.100.23"),
        device_id: await masker.mask("device_id", "old-device-444"),
      }],
      note: "kept",
    },
  });
});

Deno.test("toRejectRow() stores no body for unparsed text", () => {
  const row = toRejectRow(
    { reason: "not_json", detail: "x" },
    { kind: "unparsed" },
    RAW,
    new Map(),
  );
  assert.equal(row.masked_body, null);
});

Deno.test("toRejectRow() never leaks a raw ip or device_id of a 10,000-deep body", async () => {
  const parsed = json(nest(10_000, { ip: "192.0.2.200", device_id: "deep-device-999" }));
  const row = toRejectRow(PROBLEM, parsed, RAW, await masksFor(parsed));
  for (const raw of ["192.0.2.200", "deep-device-999"]) {
    assert.ok(!(row.masked_body ?? "").includes(raw));
  }
});

// Random JSON with PII values injected at random depths. The values carry a
// marker that fc.jsonValue() never produces, so any occurrence is a leak.
const marker = fc.stringMatching(/^[0-9a-f]{10}$/).map((s) => `PII${s}`);
const piiValue = fc.oneof(
  marker,
  marker.map((m) => ({ nested: m })),
  marker.map((m) => [m, 1]),
);

Deno.test("toRejectRow() output contains no raw ip or device_id value of its input", async () => {
  const bodyArb = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      fc.jsonValue({ maxDepth: 2 }),
      fc.dictionary(fc.string({ maxLength: 6 }), tie("node"), { maxKeys: 4 }),
      fc.array(tie("node"), { maxLength: 3 }),
      fc.record({ ip: piiValue, rest: tie("node") }),
      fc.record({ device_id: piiValue, rest: tie("node") }),
    ),
  })).node;
  await fc.assert(
    fc.asyncProperty(bodyArb, piiValue, piiValue, async (node, ip, deviceId) => {
      const value = { "user_id": "u", ip, "device_id": deviceId, node };
      const parsed = json(value);
      const row = toRejectRow(PROBLEM, parsed, RAW, await masksFor(parsed));
      assert.ok(row.masked_body !== null);
      const leaked = row.masked_body.match(/PII[0-9a-f]{10}/);
      assert.equal(leaked, null, `leaked ${leaked?.[0]} in ${row.masked_body}`);
      assert.ok(!row.masked_body.includes("[masked]"), "a PII value had no mask");
      assert.equal(JSON.parse(row.masked_body).user_id, "u");
    }),
    { numRuns: 300 },
  );
});

Deno.test("toRejectRow() masks PII inside strings that hold JSON (double encoding, SNS envelopes)", async (t) => {
  const event = {
    "user_id": "u1",
    ip: "203.0.113.9",
    "device_id": "123-45-6789",
    "app_version": "1.0",
  };
  const cases = [
    { name: "an event serialised twice", body: JSON.stringify(JSON.stringify(event)) },
    {
      name: "an SNS notification envelope",
      body: JSON.stringify({
        Type: "Notification",
        Message: JSON.stringify(event),
        MessageId: "m1",
      }),
    },
    {
      name: "three levels deep",
      body: JSON.stringify({ a: JSON.stringify({ b: JSON.stringify([event]) }) }),
    },
    {
      name: "keys in other spellings",
      body: JSON.stringify({
        IP: "203.0.113.9",
        "Device_Id": "123-45-6789",
        deviceId: "123-45-6789",
      }),
    },
    {
      name: "JSON behind a byte-order mark",
      body: JSON.stringify({ m: "\uFEFF" + JSON.stringify(event) }),
    },
    {
      name: "a JSON string holding JSON",
      body: JSON.stringify({ m: JSON.stringify(JSON.stringify(event)) }),
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const verdict = validateBody(c.body, 65536);
      assert.equal(verdict.ok, false);
      if (verdict.ok) return;
      const row = toRejectRow(verdict.problem, verdict.parsed, RAW, await masksFor(verdict.parsed));
      assert.ok(row.masked_body !== null);
      assert.ok(!row.masked_body.includes("203.0.113.9"), row.masked_body);
      assert.ok(!row.masked_body.includes("123-45-6789"), row.masked_body);
      assert.ok(
        row.masked_body.includes(masker.mask("ip", "203.0.113.9")),
        "the mask stands in for the value",
      );
    });
  }
});
