// Tests of src/db/write.ts: toColumns() is pure (sorted ids, rows and rejects
// split column by column, the vault entries its rows hold in mask order);
// postgresStore() against the real Postgres, in a fresh schema brought up by
// ensureSchema: one write commits rows, rejects and ledger entries together,
// a re-write of the same ids is counted as redelivered and writes nothing,
// only entries a newly inserted row holds reach the vault inbox, a blocked
// write times out as a transient failure and its retry writes the batch once.

import assert from "node:assert/strict";
import fc from "fast-check";
import { DatabaseError } from "../../../src/errors.ts";
import { Database } from "../../../src/db/pool.ts";
import { ensureSchema } from "../../../src/db/schema.ts";
import { postgresStore, toColumns } from "../../../src/db/write.ts";
import { Secret } from "../../../src/secret.ts";
import { VaultCipher } from "../../../src/pii/vault.ts";
import { prepare } from "../../../src/transform.ts";
import type { Masked, ReceivedMessage, VaultEntry, WriteItem } from "../../../src/types.ts";
import { testMasker } from "../../helpers/drain.ts";
import { freshSchema, testConnection, type TestDb } from "../../helpers/services.ts";

/** An outcome with its reject notes as sorted "id reason" lines, for deepEqual. */
function noted<T extends { rejectNotes: readonly { id: string; reason: string }[] }>(o: T) {
  return { ...o, rejectNotes: o.rejectNotes.map((n) => `${n.id} ${n.reason}`).sort() };
}

const SENT = Date.UTC(2024, 4, 1, 12, 0, 0);

function login(user: string, ip: string, deviceId: string): string {
  return JSON.stringify({
    "user_id": user,
    "app_version": "1.2.3",
    "device_type": "android",
    ip,
    locale: null,
    "device_id": deviceId,
  });
}

function messagesOf(bodies: Record<string, string>, dated = true): ReceivedMessage[] {
  return Object.entries(bodies).map(([id, body]) => ({
    id,
    receiptHandle: `r-${id}`,
    body,
    sentAtMs: SENT,
    dated,
    receiveCount: 1,
  }));
}

/** Write items made the way the pipeline makes them: prepare() with the test key. */
async function itemsOf(bodies: Record<string, string>, dated = true): Promise<WriteItem[]> {
  const prepared = await prepare(messagesOf(bodies, dated), await testMasker(), {
    maxBodyBytes: 65536,
    maxReceives: null,
  });
  return [...prepared.items];
}

/** A pool on `db`'s schema with login-etl's tables in it. */
async function storeDatabase(db: TestDb): Promise<Database> {
  const connection = await testConnection();
  const database = new Database({
    connection,
    schema: db.schema,
    stateSchema: db.stateSchema,
    max: 2,
  });
  await ensureSchema(database.sql, { connection, schema: db.schema, stateSchema: db.stateSchema });
  return database;
}

/** What each table holds, for before-and-after comparisons. */
async function tableCounts(db: TestDb) {
  const [row] = await db.sql<{ rows: number; rejects: number; ledger: number }[]>`
    SELECT (SELECT count(*) FROM user_logins)::int AS rows,
           (SELECT count(*) FROM login_etl_rejects)::int AS rejects,
           (SELECT count(*) FROM login_etl_ledger)::int AS ledger`;
  return row;
}

// ---- toColumns(): pure ------------------------------------------------------

const maskArb = fc.string({ unit: fc.constantFrom(..."abcdef0123"), minLength: 4, maxLength: 8 })
  .map((s) => `k1:${s}` as Masked);
const vaultArb: fc.Arbitrary<VaultEntry> = fc.record({
  masked: maskArb,
  field: fc.constantFrom("ip" as const, "device_id" as const),
  ciphertext: fc.uint8Array({ minLength: 1, maxLength: 4 }),
  iv: fc.uint8Array({ minLength: 12, maxLength: 12 }),
  keyId: fc.constant("v1"),
});
const itemArb = (id: string): fc.Arbitrary<WriteItem> =>
  fc.oneof(
    fc.record({
      kind: fc.constant("row" as const),
      id: fc.constant(id),
      sentDate: fc.constantFrom(null, "2024-05-01", "2024-05-02"),
      row: fc.record({
        "user_id": fc.string(),
        "device_type": fc.string(),
        "masked_ip": maskArb,
        "masked_device_id": maskArb,
        locale: fc.option(fc.string()),
        "app_version": fc.nat(999_999_999),
        "create_date": fc.constant("2024-05-01"),
      }),
    }),
    fc.record({
      kind: fc.constant("reject" as const),
      id: fc.constant(id),
      sentDate: fc.constantFrom(null, "2024-05-01"),
      reject: fc.record({
        reason: fc.constantFrom("not_json" as const, "bad_ip" as const),
        detail: fc.string(),
        "masked_body": fc.option(fc.string()),
        "body_bytes": fc.nat(),
        "body_hmac": maskArb,
        "sent_at_ms": fc.integer({ min: 0, max: 4_102_444_800_000 }),
      }),
    }),
  );
const batchArb: fc.Arbitrary<WriteItem[]> = fc.uniqueArray(fc.string({ minLength: 1 }), {
  maxLength: 30,
}).chain((ids) => fc.tuple(...ids.map(itemArb)));
/** A batch and vault entries: some of masks its rows hold, some of masks none holds. */
const batchWithVaultArb = batchArb.chain((items) => {
  const held = items.flatMap((i) =>
    i.kind === "row" ? [i.row.masked_ip, i.row.masked_device_id] : []
  );
  const entryArb = held.length === 0 ? vaultArb : fc.oneof(
    vaultArb,
    fc.tuple(vaultArb, fc.constantFrom(...held)).map(([e, masked]) => ({ ...e, masked })),
  );
  return fc.tuple(
    fc.constant(items),
    fc.array(entryArb, { maxLength: 40 }).map((es) => new Map(es.map((e) => [e.masked, e]))),
  );
});

Deno.test("toColumns() sorts the ids and splits rows from rejects, each column aligned with its id", () => {
  fc.assert(
    fc.property(batchWithVaultArb, ([items, vault]) => {
      const c = toColumns(items, vault);
      const byId = new Map(items.map((i) => [i.id, i]));
      assert.deepEqual(c.ids, [...byId.keys()].sort(), "every id once, in code-unit order");
      assert.deepEqual(c.sentDates, c.ids.map((id) => byId.get(id)?.sentDate ?? "-infinity"));
      const rows = c.ids.flatMap((id) => {
        const item = byId.get(id);
        return item?.kind === "row" ? [item] : [];
      });
      assert.deepEqual(c.rows.ids, rows.map((i) => i.id));
      assert.deepEqual(c.rows.userIds, rows.map((i) => i.row.user_id));
      assert.deepEqual(c.rows.maskedIps, rows.map((i) => i.row.masked_ip));
      assert.deepEqual(c.rows.locales, rows.map((i) => i.row.locale));
      assert.deepEqual(c.rows.appVersions, rows.map((i) => i.row.app_version));
      const rejects = c.ids.flatMap((id) => {
        const item = byId.get(id);
        return item?.kind === "reject" ? [item] : [];
      });
      assert.deepEqual(c.rejects.ids, rejects.map((i) => i.id));
      assert.deepEqual(c.rejects.reasons, rejects.map((i) => i.reject.reason));
      assert.deepEqual(c.rejects.bodies, rejects.map((i) => i.reject.masked_body));
      assert.deepEqual(
        c.rejects.sentAts,
        rejects.map((i) => new Date(i.reject.sent_at_ms).toISOString()),
      );
      // Vault entries: once each, only those a row holds, in mask order (the lock order).
      const held = new Set(rows.flatMap((i) => [i.row.masked_ip, i.row.masked_device_id]));
      assert.deepEqual(c.vault.masked, [...vault.keys()].filter((m) => held.has(m)).sort());
      c.vault.masked.forEach((m, k) => {
        assert.equal(c.vault.fields[k], vault.get(m as Masked)?.field, "aligned with its mask");
        assert.equal(c.vault.keyIds[k], vault.get(m as Masked)?.keyId);
      });
      for (const hex of [...c.vault.ciphertexts, ...c.vault.ivs]) {
        assert.match(hex, /^\\x[0-9a-f]+$/, "bytea hex input form");
      }
    }),
    { numRuns: 300 },
  );
});

// ---- postgresStore(): the real Postgres ---------------------------------------

Deno.test("postgresStore() commits a batch's rows, rejects and ledger entries in one write", async () => {
  await using db = await freshSchema();
  await using database = await storeDatabase(db);
  const store = postgresStore(database, { writeTimeoutMs: 10_000 });
  const items = await itemsOf({
    m1: login("u1", "10.0.0.1", "d-1"),
    m2: login("u2", "2001:DB8::1", "d-2"),
    m3: "not json",
    m4: login("u4", "10.0.0.999", "d-4"),
  });
  assert.deepEqual(noted(await store.write(items)), {
    rejectNotes: ["m3 not_json", "m4 bad_ip"],
    inserted: 2,
    rejected: { "not_json": 1, "bad_ip": 1 },
    rejectedIds: ["m3", "m4"],
    redelivered: 0,
    refused: [],
    committed: true,
  });
  const rows = await db.sql<Record<string, unknown>[]>`
    SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version,
           create_date::text AS create_date
    FROM user_logins ORDER BY user_id`;
  assert.deepEqual(
    [...rows],
    items.flatMap((i) => (i.kind === "row" ? [{ ...i.row }] : [])),
    "rows as prepared, column for column",
  );
  const rejects = await db.sql<{ message_id: string; reason: string; sent_at: Date }[]>`
    SELECT message_id, reason, sent_at FROM login_etl_rejects ORDER BY message_id`;
  assert.deepEqual(rejects.map((r) => [r.message_id, r.reason]), [
    ["m3", "not_json"],
    ["m4", "bad_ip"],
  ]);
  assert.ok(rejects.every((r) => r.sent_at.getTime() === SENT), "sent_at is the SentTimestamp");
  const ledger = await db.sql<{ message_id: string; day: string }[]>`
    SELECT message_id, sent_date::text AS day FROM login_etl_ledger ORDER BY message_id`;
  assert.deepEqual(ledger.map((r) => `${r.message_id} ${r.day}`), [
    "m1 2024-05-01",
    "m2 2024-05-01",
    "m3 2024-05-01",
    "m4 2024-05-01",
  ]);
  assert.deepEqual(
    await store.write([]),
    {
      inserted: 0,
      rejected: {},
      rejectedIds: [],
      redelivered: 0,
      refused: [],
      rejectNotes: [],
      committed: true,
    },
    "an empty batch",
  );
});

Deno.test("postgresStore() counts a re-write of the same ids as redelivered and writes nothing", async (t) => {
  await using db = await freshSchema();
  await using database = await storeDatabase(db);
  const store = postgresStore(database, { writeTimeoutMs: 10_000 });
  for (const dated of [true, false]) {
    await t.step(`postgresStore() skips ids it has (${dated ? "dated" : "undated"})`, async () => {
      const p = dated ? "d" : "u";
      const first = await itemsOf({
        [`${p}1`]: login(`${p}1`, "10.0.0.1", "d-1"),
        [`${p}2`]: "[]",
      }, dated);
      await store.write(first);
      const before = await tableCounts(db);
      assert.deepEqual(noted(await store.write(first)), {
        rejectNotes: [],
        inserted: 0,
        rejected: {},
        rejectedIds: [],
        redelivered: 2,
        refused: [],
        committed: true,
      }, "a redelivered reject is not named again");
      assert.deepEqual(await tableCounts(db), before, "nothing written twice");

      // A batch of old and new ids writes the new ones only.
      const mixed = [
        ...first,
        ...await itemsOf({ [`${p}3`]: login(`${p}3`, "10.0.0.3", "d-3") }, dated),
      ];
      assert.deepEqual(noted(await store.write(mixed)), {
        rejectNotes: [],
        inserted: 1,
        rejected: {},
        rejectedIds: [],
        redelivered: 2,
        refused: [],
        committed: true,
      });
      const after = await tableCounts(db);
      assert.deepEqual(after, {
        rows: (before?.rows ?? 0) + 1,
        rejects: before?.rejects,
        ledger: (before?.ledger ?? 0) + 1,
      });
    });
  }
  const [undated] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM login_etl_ledger WHERE sent_date = '-infinity'`;
  assert.equal(undated?.n, 3, "undated messages are kept under -infinity");
});

Deno.test("postgresStore() puts in the vault inbox only the entries a row it inserts holds", async () => {
  await using db = await freshSchema();
  await using database = await storeDatabase(db);
  const store = postgresStore(database, { writeTimeoutMs: 10_000 });
  const masker = await testMasker();
  const cipher = await VaultCipher.create({
    current: "v1",
    keys: new Map([[
      "v1",
      {
        kind: "secret",
        secret: new Secret(new TextEncoder().encode("vault key of the tests, 32+ bytes"), "t"),
      },
    ]]),
  });
  const options = {
    maxBodyBytes: 65536,
    maxReceives: null,
    vault: { cipher, known: () => false },
  };
  const inbox = async () =>
    (await db.sql<{ masked_value: string }[]>`
      SELECT masked_value FROM login_etl_vault_inbox ORDER BY masked_value`).map((r) =>
      r.masked_value
    );
  const first = await prepare(messagesOf({ a: login("ua", "10.0.0.1", "d-a") }), masker, options);
  await store.write(first.items, first.vault);
  const a = [await masker.mask("ip", "10.0.0.1"), await masker.mask("device_id", "d-a")].sort();
  assert.deepEqual(await inbox(), a, "the new row's two values");

  // A redelivery of a with a fresh entry for its device id, a new row b, and
  // an entry no row of the batch holds.
  const again = await prepare(
    messagesOf({ a: login("ua", "10.0.0.1", "d-a"), b: login("ub", "10.0.0.2", "d-a") }),
    masker,
    options,
  );
  const stray = (await cipher.encryptAll([{
    field: "device_id",
    masked: await masker.mask("device_id", "held-by-none"),
    raw: "held-by-none",
  }]))[0] as VaultEntry;
  const outcome = await store.write(
    again.items,
    new Map([...again.vault, [stray.masked, stray]]),
  );
  assert.equal(outcome.inserted, 1);
  assert.equal(outcome.redelivered, 1);
  assert.deepEqual(
    await inbox(),
    [...a, await masker.mask("ip", "10.0.0.2"), await masker.mask("device_id", "d-a")].sort(),
    "b's values (its device id again, as b holds it), not the stray entry",
  );

  // Only a redelivery: nothing is inserted, so nothing is vaulted.
  await store.write(again.items, again.vault);
  assert.equal((await inbox()).length, 4);
});

Deno.test("postgresStore() reports a write that gets no answer in time as transient with its ids; the batch lands whole or not at all, and once", async () => {
  await using db = await freshSchema();
  await using database = await storeDatabase(db);
  const store = postgresStore(database, { writeTimeoutMs: 300 });
  const items = await itemsOf({ b: login("u-b", "10.0.0.2", "d-b"), a: "not json" });
  // A lock that conflicts with INSERT holds the write mid-statement.
  const blocker = await db.sql.reserve();
  try {
    await blocker`BEGIN`;
    await blocker`LOCK TABLE user_logins IN SHARE MODE`;
    await assert.rejects(store.write(items), (error: unknown) => {
      assert.ok(error instanceof DatabaseError, String(error));
      assert.equal(error.code, "db_write");
      assert.equal(error.transient, true);
      assert.deepEqual(error.messageIds, ["a", "b"]);
      assert.match(error.message, /Cannot write a batch of 2 messages: no answer within 300 ms/);
      return true;
    });
  } finally {
    await blocker`ROLLBACK`;
    blocker.release();
  }
  // The abandoned statement may still run once the lock is gone (write.ts
  // says so): one statement, so all of the batch or none of it.
  const whole = { rows: 1, rejects: 1, ledger: 2 };
  const between = await tableCounts(db);
  assert.ok(
    [JSON.stringify({ rows: 0, rejects: 0, ledger: 0 }), JSON.stringify(whole)].includes(
      JSON.stringify(between),
    ),
    `all or nothing, not ${JSON.stringify(between)}`,
  );
  const retry = await postgresStore(database, { writeTimeoutMs: 10_000 }).write(items);
  assert.equal(retry.committed, true);
  assert.equal(
    retry.inserted + (retry.rejected.not_json ?? 0) + retry.redelivered,
    2,
    "the retry accounts for both messages",
  );
  assert.deepEqual(await tableCounts(db), whole, "written once");
});
