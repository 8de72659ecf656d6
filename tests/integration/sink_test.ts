// Tests of src/sink/sink.ts and src/sink/threads.ts against the real Postgres
// in a fresh schema: localSink() over postgresStore() prepares and writes a
// batch and names its rejected ids, marks values vaulted only once a batch
// commits, and vaults a refused row's values only when a committed row holds
// them; workerSink() does the same in a worker thread and hands a failed
// write back as an EtlError with its code, transient flag and ids;
// workerSinks() spreads batches over threads.

import assert from "node:assert/strict";
import { Secret } from "../../src/secret.ts";
import { Database } from "../../src/db/pool.ts";
import { ensureSchema } from "../../src/db/schema.ts";
import { postgresStore } from "../../src/db/write.ts";
import { EtlError } from "../../src/errors.ts";
import { VaultCipher } from "../../src/pii/vault.ts";
import { localSink } from "../../src/sink/sink.ts";
import {
  type WorkerInit,
  workerSink,
  workerSinks,
  workerThreadsFor,
} from "../../src/sink/threads.ts";
import type { ReceivedMessage, Store, VaultEntries, WriteItem } from "../../src/types.ts";
import { testMasker } from "../helpers/drain.ts";
import { freshSchema, TEST_SECRET, testConnection, type TestDb } from "../helpers/services.ts";

/** An outcome with its reject notes as sorted "id reason" lines, for deepEqual. */
function noted<T extends { rejectNotes: readonly { id: string; reason: string }[] }>(o: T) {
  return { ...o, rejectNotes: o.rejectNotes.map((n) => `${n.id} ${n.reason}`).sort() };
}

const PREPARE = { maxBodyBytes: 65536, maxReceives: null };

function login(user: string, ip: string, deviceId: string): string {
  return JSON.stringify({
    "user_id": user,
    "app_version": "4.5",
    "device_type": "web",
    ip,
    locale: "en-US",
    "device_id": deviceId,
  });
}

function messages(bodies: Record<string, string>): ReceivedMessage[] {
  return Object.entries(bodies).map(([id, body]) => ({
    id,
    receiptHandle: `r-${id}`,
    body,
    sentAtMs: Date.UTC(2024, 4, 1),
    dated: true,
    receiveCount: 1,
  }));
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

/** The real store, keeping the items and vault entries of every batch it is handed. */
function recording(store: Store): Store & {
  readonly batches: (readonly WriteItem[])[];
  readonly vaults: VaultEntries[];
} {
  const batches: (readonly WriteItem[])[] = [];
  const vaults: VaultEntries[] = [];
  return {
    batches,
    vaults,
    write(items, vault) {
      batches.push(items);
      vaults.push(vault ?? new Map());
      return store.write(items, vault);
    },
  };
}

/** A vault cipher under a test secret. */
function testVault(): Promise<VaultCipher> {
  return VaultCipher.create({
    current: "v1",
    keys: new Map([[
      "v1",
      {
        kind: "secret",
        secret: new Secret(new TextEncoder().encode("vault key of the tests, 32+ bytes"), "t"),
      },
    ]]),
  });
}

/** The masks in the vault inbox, sorted. */
async function inboxMasks(db: TestDb): Promise<string[]> {
  const rows = await db.sql<{ masked_value: string }[]>`
    SELECT masked_value FROM login_etl_vault_inbox ORDER BY masked_value`;
  return rows.map((r) => r.masked_value);
}

async function workerInit(db: TestDb): Promise<WorkerInit> {
  return {
    connection: await testConnection(),
    schema: db.schema,
    stateSchema: db.stateSchema,
    poolMax: 2,
    writeTimeoutMs: 10_000,
    systemicIsTransient: false,
    reportEarlierRejects: false,
    secret: new TextEncoder().encode(TEST_SECRET),
    keyId: "k1",
    prepare: PREPARE,
    vault: null,
  };
}

const BATCH = {
  m1: login("u1", "192.0.2.1", "d-1"),
  m2: "not json",
  m3: login("u3", "192.0.2.3", "d-3"),
  m4: login("u4", "192.0.2.4", ""),
};

Deno.test("localSink() prepares and writes a batch over postgresStore(), naming the rejected ids", async () => {
  await using db = await freshSchema();
  await using database = await storeDatabase(db);
  const masker = await testMasker();
  const sink = localSink(masker, postgresStore(database, { writeTimeoutMs: 10_000 }), PREPARE);
  try {
    assert.deepEqual(noted(await sink.write(messages(BATCH))), {
      rejectNotes: ["m2 not_json", "m4 empty"],
      inserted: 2,
      rejected: { "not_json": 1, empty: 1 },
      redelivered: 0,
      refused: [],
      committed: true,
      rejectedIds: ["m2", "m4"],
    });
    const rows = await db.sql<{ user_id: string; masked_ip: string }[]>`
      SELECT user_id, masked_ip FROM user_logins ORDER BY user_id`;
    assert.deepEqual(rows.map((r) => [r.user_id, r.masked_ip]), [
      ["u1", await masker.mask("ip", "192.0.2.1")],
      ["u3", await masker.mask("ip", "192.0.2.3")],
    ]);
    // A redelivered batch writes nothing, and names no reject: its invalid
    // messages were rejected the first time, not now.
    const again = await sink.write(messages(BATCH));
    assert.deepEqual(noted(again), {
      rejectNotes: [],
      inserted: 0,
      rejected: {},
      rejectedIds: [],
      redelivered: 4,
      refused: [],
      committed: true,
    });
  } finally {
    await sink.close();
  }
});

Deno.test("localSink() with a vault marks values vaulted only once their batch commits", async () => {
  await using db = await freshSchema();
  await using database = await storeDatabase(db);
  const masker = await testMasker();
  const vault = await testVault();
  // A store whose first write gets no answer in time (a lock holds it), then the real one.
  const slow = recording(postgresStore(database, { writeTimeoutMs: 300 }));
  const sink = localSink(masker, slow, { ...PREPARE, vault });
  const vaultEntries = (vault: VaultEntries | undefined) => vault?.size ?? 0;
  const blocker = await db.sql.reserve();
  try {
    await blocker`BEGIN`;
    await blocker`LOCK TABLE user_logins IN SHARE MODE`;
    await assert.rejects(sink.write(messages({ a: login("u-a", "192.0.2.9", "d-9") })));
  } finally {
    await blocker`ROLLBACK`;
    blocker.release();
  }
  assert.equal(vaultEntries(slow.vaults[0]), 2, "the failed batch carried both values");

  await sink.write(messages({ a: login("u-a", "192.0.2.9", "d-9") }));
  assert.equal(vaultEntries(slow.vaults[1]), 2, "not marked by the batch that failed");
  await sink.write(messages({ b: login("u-b", "192.0.2.9", "d-9") }));
  assert.equal(vaultEntries(slow.vaults[2]), 0, "marked once committed: not sent again");
  const [stored] = await db.sql<
    { n: number }[]
  >`SELECT count(*)::int AS n FROM login_etl_vault_inbox`;
  assert.equal(stored?.n, 2);
  await sink.close();
});

Deno.test("workerSink() writes a batch in a worker thread as localSink() would", async () => {
  await using db = await freshSchema();
  await using database = await storeDatabase(db);
  const sink = await workerSink(await workerInit(db));
  try {
    assert.deepEqual(noted(await sink.write(messages(BATCH))), {
      rejectNotes: ["m2 not_json", "m4 empty"],
      inserted: 2,
      rejected: { "not_json": 1, empty: 1 },
      redelivered: 0,
      refused: [],
      committed: true,
      rejectedIds: ["m2", "m4"],
    });
  } finally {
    await sink.close();
  }
  const masker = await testMasker();
  const rows = await database.sql<{ masked_device_id: string }[]>`
    SELECT masked_device_id FROM ${database.sql(db.schema)}.user_logins ORDER BY user_id`;
  assert.deepEqual(rows.map((r) => r.masked_device_id), [
    await masker.mask("device_id", "d-1"),
    await masker.mask("device_id", "d-3"),
  ], "the worker masks under the same key");
});

Deno.test("workerSink() hands a failed write back as an EtlError with its code, transient flag and ids", async () => {
  await using db = await freshSchema(); // no tables: every insert fails
  const sink = await workerSink(await workerInit(db));
  try {
    await assert.rejects(sink.write(messages(BATCH)), (error: unknown) => {
      assert.ok(error instanceof EtlError, String(error));
      assert.equal(error.code, "db_write");
      assert.equal(error.transient, false, "a missing table is no passing fault");
      assert.deepEqual(error.messageIds, ["m1", "m2", "m3", "m4"]);
      assert.match(error.message, /Cannot write a batch of 4 messages: .*login_etl_ledger/);
      return true;
    });
  } finally {
    await sink.close();
  }
});

Deno.test("workerSinks() spreads concurrent batches over its threads, each written once", async () => {
  await using db = await freshSchema();
  await using database = await storeDatabase(db);
  const sink = await workerSinks(2, await workerInit(db));
  try {
    const outcomes = await Promise.all(
      Array.from({ length: 6 }, (_, b) =>
        sink.write(messages(Object.fromEntries(
          Array.from(
            { length: 20 },
            (_, i) => [`b${b}-${i}`, login(`u${b}-${i}`, "192.0.2.1", "d")],
          ),
        )))),
    );
    assert.deepEqual(outcomes.map((o) => o.inserted), [20, 20, 20, 20, 20, 20]);
  } finally {
    await sink.close();
  }
  const [count] = await database.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM ${database.sql(db.schema)}.user_logins`;
  assert.equal(count?.n, 120);
});

Deno.test("localSink() with a vault vaults a refused row's values only where a committed row holds them, and records its reject with the row's masks", async () => {
  await using db = await freshSchema();
  await using database = await storeDatabase(db);
  await db.sql`ALTER TABLE user_logins ADD CONSTRAINT no_u_bad CHECK (user_id <> 'u-bad')`;
  const masker = await testMasker();
  const store = recording(postgresStore(database, { writeTimeoutMs: 10_000 }));
  const sink = localSink(masker, store, { ...PREPARE, vault: await testVault() });
  // The refused row comes first: it holds the shared address before the row that commits.
  const outcome = await sink.write(messages({
    bad: login("u-bad", "192.0.2.50", "d-bad-only"),
    ok: login("u-ok", "192.0.2.50", "d-ok"),
  }));
  assert.equal(outcome.inserted, 1);
  assert.deepEqual(outcome.rejected, { "db_refused": 1 });
  assert.deepEqual(outcome.refused.map((r) => r.id), ["bad"]);
  const shared = await masker.mask("ip", "192.0.2.50");
  const badOnly = await masker.mask("device_id", "d-bad-only");
  assert.deepEqual(
    await inboxMasks(db),
    [shared, await masker.mask("device_id", "d-ok")].sort(),
    "the shared address (the committed row holds it) and the committed row's device, not the refused row's own",
  );
  const [reject] = await db.sql<{ masked_body: string; body_hmac: string }[]>`
    SELECT masked_body, body_hmac FROM login_etl_rejects WHERE message_id = 'bad'`;
  const body = JSON.parse(reject?.masked_body ?? "null");
  assert.equal(body.ip, shared, "the reject links to rows by the masks prepared");
  assert.equal(body.device_id, badOnly);
  assert.equal(
    reject?.body_hmac,
    await masker.mask("body", login("u-bad", "192.0.2.50", "d-bad-only")),
  );
  assert.deepEqual(store.vaults.at(-1), new Map(), "the reject is written with no entries");

  // The refused row's own value was not vaulted, so not marked: a later row sends it.
  await sink.write(messages({ later: login("u-later", "192.0.2.50", "d-bad-only") }));
  assert.deepEqual([...(store.vaults.at(-1) ?? new Map()).keys()], [badOnly]);
  assert.ok((await inboxMasks(db)).includes(badOnly));
  await sink.close();
});

Deno.test("workerThreadsFor(): the setting when given; unset, 1 from two CPUs up and 0 on one", () => {
  assert.equal(workerThreadsFor(null, 1), 0);
  assert.equal(workerThreadsFor(null, 2), 1);
  assert.equal(workerThreadsFor(null, 64), 1);
  assert.equal(workerThreadsFor(0, 64), 0);
  assert.equal(workerThreadsFor(3, 1), 3);
});
