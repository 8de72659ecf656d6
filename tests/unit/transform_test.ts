// Unit tests of src/transform.ts: prepare() turns a batch of deliveries into
// one write item each (a row, or a reject with its reason), masks each
// distinct value once, applies the poison rule, encrypts each distinct new
// value once, keyed by its mask, and turns a refused row into its reject
// without masking its values again. A real Masker and VaultCipher under test
// keys; no database.

import assert from "node:assert/strict";
import fc from "fast-check";
import { Secret } from "../../src/secret.ts";
import type { Masker } from "../../src/mask.ts";
import { VaultCipher } from "../../src/pii/vault.ts";
import { POISON_PARSE_LIMIT, prepare } from "../../src/transform.ts";
import type { Masked, ReceivedMessage, WriteItem } from "../../src/types.ts";
import { validateBody } from "../../src/validate.ts";
import { entriesOf, eventArb, hostileText, objectText } from "../helpers/arbitraries.ts";
import { testMasker } from "../helpers/drain.ts";
import { MAX_BODY_BYTES, utf8Bytes } from "../helpers/oracles.ts";

/** 2024-05-01 23:59:30 UTC: late in the day, so a local-time date would differ. */
const SENT = Date.UTC(2024, 4, 1, 23, 59, 30);
const OPTIONS = { maxBodyBytes: MAX_BODY_BYTES, maxReceives: null };

/** The items `prepare` makes of a batch. */
async function itemsOf(...args: Parameters<typeof prepare>): Promise<readonly WriteItem[]> {
  return (await prepare(...args)).items;
}

function message(id: string, body: string, overrides: Partial<ReceivedMessage> = {}) {
  return {
    id,
    receiptHandle: `r-${id}`,
    body,
    sentAtMs: SENT,
    dated: true,
    receiveCount: 1,
    ...overrides,
  } satisfies ReceivedMessage;
}

function login(fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    "user_id": "u1",
    "app_version": "2.3",
    "device_type": "ios",
    ip: "2001:DB8:0:0:0:0:0:1",
    locale: "RU",
    "device_id": "593-47-5928",
    ...fields,
  });
}

/**
 * The real masker behind a Proxy that records what prepare asks of it:
 * the values of each `maskAll` call, and the field of each direct `mask` call.
 */
function countingMasker(masker: Masker) {
  const batched: { field: string; text: string }[] = [];
  const direct: string[] = [];
  const counted = new Proxy(masker, {
    get(target, property) {
      if (property === "maskAll") {
        return (values: Parameters<Masker["maskAll"]>[0]) => {
          batched.push(...values);
          return target.maskAll(values);
        };
      }
      if (property === "mask") {
        return (field: Parameters<Masker["mask"]>[0], value: string) => {
          direct.push(field);
          return target.mask(field, value);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { masker: counted, batched, direct };
}

Deno.test("prepare() gives one item per message, in order, with its id: a row when valid, else a reject with validateBody's reason", async () => {
  const masker = await testMasker();
  const bodyArb = fc.oneof(
    eventArb.map((e) => objectText(entriesOf(e))),
    hostileText,
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc.constantFrom(login(), login({ ip: "1.2.3.999" }), "{", "[]", login({ locale: 5 })),
  );
  const batchArb = fc.uniqueArray(
    fc.record({ id: fc.uuid(), body: bodyArb, dated: fc.boolean() }),
    { selector: (m) => m.id, maxLength: 40 },
  );
  await fc.assert(
    fc.asyncProperty(batchArb, async (batch) => {
      const messages = batch.map((m) => message(m.id, m.body, { dated: m.dated }));
      const items = await itemsOf(messages, masker, OPTIONS);
      assert.equal(items.length, messages.length);
      assert.deepEqual(items.map((i) => i.id), messages.map((m) => m.id));
      items.forEach((item, i) => {
        const m = messages[i] as ReceivedMessage;
        const verdict = validateBody(m.body, MAX_BODY_BYTES);
        assert.equal(item.kind, verdict.ok ? "row" : "reject", m.body);
        if (item.kind === "reject" && !verdict.ok) {
          assert.equal(item.reject.reason, verdict.rejection.reason);
        }
        assert.equal(item.sentDate, m.dated ? "2024-05-01" : null);
      });
    }),
    { numRuns: 150 },
  );
});

Deno.test("prepare() makes a valid body the row of its masked, canonical values", async () => {
  const masker = await testMasker();
  const items = await itemsOf([message("m1", login())], masker, OPTIONS);
  assert.deepEqual(items, [{
    kind: "row",
    id: "m1",
    sentDate: "2024-05-01",
    row: {
      "user_id": "u1",
      "device_type": "ios",
      "masked_ip": await masker.mask("ip", "2001:db8::1"),
      "masked_device_id": await masker.mask("device_id", "593-47-5928"),
      locale: "RU",
      "app_version": 2_003_000,
      "create_date": "2024-05-01",
    },
  }]);
});

Deno.test("prepare() gives an undated message no ledger day but still a create_date", async () => {
  const masker = await testMasker();
  const [row, reject] = await itemsOf(
    [
      message("m1", login(), { dated: false }),
      message("m2", "not json", { dated: false }),
    ],
    masker,
    OPTIONS,
  );
  assert.equal(row?.sentDate, null);
  assert.equal(row?.kind === "row" && row.row.create_date, "2024-05-01");
  assert.equal(reject?.sentDate, null);
});

Deno.test("prepare() makes an invalid body a reject with its reason, size, keyed hash and redacted body", async (t) => {
  const masker = await testMasker();
  const cases: { name: string; body: string; reason: string; keepsBody: boolean }[] = [
    { name: "not JSON", body: '{"ip": "203.0.113.9"', reason: "not_json", keepsBody: false },
    {
      name: "too large",
      body: login({ pad: "p".repeat(MAX_BODY_BYTES) }),
      reason: "too_large",
      keepsBody: false,
    },
    { name: "an array", body: `[${login()}]`, reason: "not_object", keepsBody: true },
    {
      name: "a missing field",
      body: login({ user_id: undefined }),
      reason: "missing_field",
      keepsBody: true,
    },
    {
      name: "a number for text",
      body: login({ app_version: 1 }),
      reason: "wrong_type",
      keepsBody: true,
    },
    {
      name: "a bad address",
      body: login({ ip: "203.0.113.999" }),
      reason: "bad_ip",
      keepsBody: true,
    },
    {
      name: "a long locale",
      body: login({ locale: "x".repeat(33) }),
      reason: "too_long",
      keepsBody: true,
    },
  ];
  for (const c of cases) {
    await t.step(`prepare() rejects ${c.name} as ${c.reason}`, async () => {
      const [item] = await itemsOf([message("m1", c.body)], masker, OPTIONS);
      assert.ok(item?.kind === "reject", `a reject, not ${item?.kind}`);
      const reject = item.reject;
      assert.equal(reject.reason, c.reason);
      assert.ok(reject.detail.length > 0, "a detail");
      assert.equal(reject.body_bytes, utf8Bytes(c.body));
      assert.equal(reject.body_hmac, await masker.mask("body", c.body));
      assert.equal(reject.sent_at_ms, SENT);
      if (!c.keepsBody) {
        assert.equal(reject.masked_body, null);
        return;
      }
      assert.ok(reject.masked_body !== null, "a redacted body");
      assert.ok(!reject.masked_body.includes("593-47-5928"), "no raw device id");
      assert.ok(
        reject.masked_body.includes(await masker.mask("device_id", "593-47-5928")),
        "the device id's mask, as a row would hold it",
      );
    });
  }
});

Deno.test("prepare() masks each distinct value of a batch once, and equal values alike", async () => {
  const real = await testMasker();
  const { masker, batched, direct } = countingMasker(real);
  // Three spellings of one address, one device id three times, two bad bodies.
  const messages = [
    message("a", login({ ip: "2001:db8::1" })),
    message("b", login({ ip: "2001:DB8:0:0:0:0:0:1" })),
    message("c", login({ ip: "2001:0db8::0001" })),
    message("d", login({ ip: "2001:db8::1", app_version: "1.2.3.4" })),
    message("e", "not json"),
  ];
  const items = await itemsOf(messages, masker, OPTIONS);
  const keys = batched.map((r) => `${r.field}:${r.text}`);
  assert.deepEqual(keys.filter((k, i) => keys.indexOf(k) !== i), [], "no value asked twice");
  assert.equal(keys.filter((k) => k === "ip:2001:db8::1").length, 1, "one address, one mask");
  assert.equal(keys.filter((k) => k === "device_id:593-47-5928").length, 1);
  assert.equal(batched.filter((r) => r.field === "body").length, 2, "one keyed hash per reject");
  assert.deepEqual(direct, [], "nothing masked one by one: all through maskAll's bounded runners");
  const rows = items.flatMap((i) => (i.kind === "row" ? [i.row] : []));
  assert.equal(rows.length, 3);
  assert.equal(new Set(rows.map((r) => r.masked_ip)).size, 1, "spellings share a mask");
  assert.equal(new Set(rows.map((r) => r.masked_device_id)).size, 1);
});

Deno.test("prepare() rejects as poison only a large message received more than maxReceives times", async (t) => {
  const masker = await testMasker();
  const large = login({ pad: "p".repeat(POISON_PARSE_LIMIT) });
  const atLimit = login({ pad: "" });
  const exactly = login({ pad: "p".repeat(POISON_PARSE_LIMIT - atLimit.length) });
  assert.equal(exactly.length, POISON_PARSE_LIMIT);
  const cases: {
    name: string;
    body: string;
    receiveCount: number;
    maxReceives: number | null;
    expected: string;
  }[] = [
    {
      name: "large, over maxReceives",
      body: large,
      receiveCount: 6,
      maxReceives: 5,
      expected: "poison",
    },
    {
      name: "large, not JSON, over maxReceives",
      body: `${large}x`,
      receiveCount: 6,
      maxReceives: 5,
      expected: "poison",
    },
    {
      name: "large, at maxReceives",
      body: large,
      receiveCount: 5,
      maxReceives: 5,
      expected: "row",
    },
    {
      name: "small, far over maxReceives",
      body: login(),
      receiveCount: 50,
      maxReceives: 5,
      expected: "row",
    },
    {
      name: "exactly the parse limit, over maxReceives",
      body: exactly,
      receiveCount: 6,
      maxReceives: 5,
      expected: "row",
    },
    {
      name: "large, with a redrive policy (no maxReceives)",
      body: large,
      receiveCount: 50,
      maxReceives: null,
      expected: "row",
    },
  ];
  for (const c of cases) {
    await t.step(`prepare() gives ${c.expected} for a message ${c.name}`, async () => {
      const [item] = await itemsOf(
        [message("m1", c.body, { receiveCount: c.receiveCount })],
        masker,
        { maxBodyBytes: MAX_BODY_BYTES, maxReceives: c.maxReceives },
      );
      assert.equal(item?.kind === "reject" ? item.reject.reason : item?.kind, c.expected);
      if (item?.kind === "reject") {
        assert.match(item.reject.detail, /received 6 times, more than --max-receives 5/);
        assert.equal(item.reject.masked_body, null, "a poison body is not parsed, so not kept");
      }
    });
  }
});

Deno.test("prepare() encrypts each distinct new value of the valid messages once, keyed by its mask, and skips known ones", async () => {
  const masker = await testMasker();
  const cipher = await VaultCipher.create({
    current: "v1",
    keys: new Map([[
      "v1",
      {
        kind: "secret",
        secret: new Secret(new TextEncoder().encode("vault key of the tests, 32+ bytes"), "test"),
      },
    ]]),
  });
  const known = new Set<Masked>([await masker.mask("device_id", "known-device")]);
  const prepared = await prepare(
    [
      message("a", login({ ip: "10.0.0.1", device_id: "d-1" })),
      message("b", login({ ip: "::ffff:10.0.0.1", device_id: "d-2" })),
      message("c", login({ ip: "10.0.0.2", device_id: "known-device" })),
      message("d", login({ ip: "10.0.0.3", device_id: "d-4", app_version: "x" })),
    ],
    masker,
    { ...OPTIONS, vault: { cipher, known: (m) => known.has(m) } },
  );
  assert.equal(prepared.items[3]?.kind, "reject");
  const entries = await Promise.all(
    [...prepared.vault].map(async ([masked, e]) => {
      assert.equal(masked, e.masked, "keyed by the entry's own mask");
      assert.equal(masked, await masker.mask(e.field, await cipher.decrypt(e)), "its value's mask");
      return `${e.field}=${await cipher.decrypt(e)}`;
    }),
  );
  assert.deepEqual(
    entries.sort(),
    ["device_id=d-1", "device_id=d-2", "ip=10.0.0.1", "ip=10.0.0.2"],
    "one entry for the address a and b share, none for the known device id nor the reject's values",
  );
  const masks = new Set(
    prepared.items.flatMap((i) =>
      i.kind === "row" ? [i.row.masked_ip, i.row.masked_device_id] : []
    ),
  );
  for (const masked of prepared.vault.keys()) assert.ok(masks.has(masked), "a row holds each");
  assert.equal(
    (await prepare([message("a", login())], masker, OPTIONS)).vault.size,
    0,
    "no vault, no entries",
  );
});

Deno.test("prepare()'s refusedRejects() makes a refused row its db_refused reject, masking none of the row's values again", async () => {
  const real = await testMasker();
  const { masker, batched, direct } = countingMasker(real);
  const body = login({ ip: "2001:DB8::1", extra: "free text" });
  const prepared = await prepare(
    [message("a", body), message("b", login({ user_id: "u2" })), message("c", "not json")],
    masker,
    OPTIONS,
  );
  batched.length = 0;
  const refusal = {
    id: "a",
    sqlstate: "23514",
    detail: "Postgres refused the row: SQLSTATE 23514",
  };
  const [item, ...others] = await prepared.refusedRejects([refusal]);
  assert.deepEqual(others, [], "one reject per refusal");
  assert.ok(item?.kind === "reject", `a reject, not ${item?.kind}`);
  assert.equal(item.id, "a");
  assert.equal(item.sentDate, "2024-05-01");
  assert.equal(item.reject.reason, "db_refused");
  assert.equal(item.reject.detail, refusal.detail);
  assert.equal(item.reject.body_bytes, utf8Bytes(body));
  assert.equal(item.reject.body_hmac, await real.mask("body", body));
  assert.equal(item.reject.sent_at_ms, SENT);
  const row = prepared.items[0];
  assert.ok(row?.kind === "row");
  const redacted = JSON.parse(item.reject.masked_body ?? "null");
  assert.equal(redacted.ip, row.row.masked_ip, "the row's masks, so the reject links to rows");
  assert.equal(redacted.device_id, row.row.masked_device_id);
  assert.ok(!item.reject.masked_body?.includes("free text"), "other values masked");
  assert.deepEqual(
    batched.map((r) => r.field).sort(),
    ["body", "value"],
    "only the body's keyed hash and the value the row did not hold",
  );
  assert.deepEqual(direct, []);
});
