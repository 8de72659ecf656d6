// Unit tests of src/to_row.ts: utcDate(), toRow() and toRejectionRow().
import assert from "node:assert/strict";
import fc from "fast-check";
import { toRejectionRow, toRow, utcDate } from "../../src/to_row.ts";
import { validateBody } from "../../src/validate.ts";
import type { Masked, Rejection } from "../../src/types.ts";

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

Deno.test("toRow() copies the event's fields and the masks into a row", () => {
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
  const ip = "k1:ip-mask" as Masked;
  const deviceId = "k1:device-mask" as Masked;
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

Deno.test("toRejectionRow() carries the rejection, the sizes and the redacted body as given", () => {
  const rejection: Rejection = { reason: "missing_field", detail: "ip is missing" };
  const row = toRejectionRow(rejection, {
    bodyBytes: 12,
    bodyHmac: "k1:h" as Masked,
    sentAtMs: Date.UTC(2026, 0, 2),
    maskedBody: '{"a":1}',
  });
  assert.deepEqual(row, {
    reason: "missing_field",
    detail: "ip is missing",
    masked_body: '{"a":1}',
    body_bytes: 12,
    body_hmac: "k1:h",
    sent_at_ms: Date.UTC(2026, 0, 2),
  });
});
