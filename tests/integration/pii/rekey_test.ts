// rekey and rekey-vault through the real CLI against the real Postgres and
// fauxqs: every mask moves through the vault, duplicate groups survive, a kill
// mid-rotation resumes to the same state, and a bad entry is skipped. The
// first test runs on PostgreSQL 13, 15 and 18.

import assert from "node:assert/strict";
import type postgres from "postgres";
import { generateBodies } from "../../../src/seed/generate.ts";
import { migrate } from "../../../src/db/schema.ts";
import { type Consumer, delay } from "../../helpers/consumers.ts";
import { eachMajor } from "../../helpers/majors.ts";
import {
  assertRefused,
  auditAfter,
  body,
  cipherOf,
  Cli,
  cliEnv,
  drain,
  eventsOf,
  groupsOf,
  HMAC_SECRET_2,
  hmacKeySet,
  maskerOf,
  openVault,
  rawValuesOf,
  tablesHoldingRaw,
  VAULT_SECRET,
  vaultKeySet,
  vaultRows,
} from "../../helpers/pii.ts";
import {
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
  type TestDb,
} from "../../helpers/services.ts";

eachMajor.test("rekey moves every mask to the new HMAC key through the vault and keeps duplicate groups; without the vault it refuses", async ({ pg }) => {
  const started = performance.now();
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const cli = new Cli(cliEnv(db, { PII_HMAC_KEY: hmacKeySet("k1") }));
  const bodies = [...generateBodies(150, { badRatio: 0, seed: 5, repeatRatio: 0.6 })];
  const events = eventsOf(bodies);
  assert.equal((await drain(sqs, cli, bodies)).inserted, 150);
  const ipGroups = await groupsOf(db.sql, "masked_ip");
  const deviceGroups = await groupsOf(db.sql, "masked_device_id");

  // Without the vault key old and new masks cannot be linked: refused, nothing changed.
  const noVault = await cli.run(
    ["rekey", "--to", "k2", "--reason", "rotation"],
    { PII_HMAC_KEY: hmacKeySet("k2"), PII_VAULT_KEY: "" },
  );
  assertRefused(noVault, 2, /Cannot rekey without the vault: .*old and new masks .*linked/);
  assert.equal(noVault.stderr.trim().split("\n").length, 1, "one line");
  const [stillK1] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM user_logins WHERE masked_ip LIKE 'k1:%' AND masked_device_id LIKE 'k1:%'`;
  assert.equal(stillK1?.n, 150);

  // Consumers restart with k2 current, then rekey moves the old rows.
  const env = { PII_HMAC_KEY: hmacKeySet("k2") };
  const rekey = await cli.run(["rekey", "--to", "k2", "--reason", "annual rotation"], env);
  assert.equal(rekey.code, 0, rekey.stderr);
  const report = JSON.parse(rekey.stdout);
  assert.deepEqual(report.moved, { ip: ipGroups.length, "device_id": deviceGroups.length });
  assert.deepEqual(report.unlinkable, { ip: 0, "device_id": 0 });

  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  const rows = await db.sql<{ user_id: string; masked_ip: string; masked_device_id: string }[]>`
    SELECT user_id, masked_ip, masked_device_id FROM user_logins`;
  const byUser = new Map(events.map((e) => [e.user, e]));
  for (const row of rows) {
    const e = byUser.get(row.user_id);
    assert.ok(e);
    assert.equal(row.masked_ip, k2.mask("ip", e.ip), "the mask a k2 Masker computes");
    assert.equal(row.masked_device_id, k2.mask("device_id", e.deviceId));
  }
  assert.deepEqual(await groupsOf(db.sql, "masked_ip"), ipGroups, "same users grouped by ip");
  assert.deepEqual(await groupsOf(db.sql, "masked_device_id"), deviceGroups);

  const vault = await vaultRows(db.sql);
  const masks = new Set(rows.flatMap((r) => [r.masked_ip, r.masked_device_id]));
  assert.deepEqual(new Set(vault.map((v) => v.masked_value)), masks, "vault keyed by new masks");
  const opened = await openVault(await cipherOf(VAULT_SECRET), vault);
  for (const e of events) assert.equal(opened.get(k2.mask("ip", e.ip)), e.ip);

  // The most shared address, recovered through its new mask.
  const top = [...Map.groupBy(events, (e) => e.ip)].sort((a, b) => b[1].length - a[1].length)[0];
  assert.ok(top);
  const topMask = await k2.mask("ip", top[0]);
  const recovered = await cli.run(
    ["recover", "--masked", topMask, "--reason", "post-rotation check"],
    {},
    { revealing: true },
  );
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.equal(recovered.stdout, `${topMask}\tip\t${top[0]}\n`);

  // A consumer on k2 joins the rekeyed group and adds no vault entry for a known value.
  const late = body("late-user", top[0], top[1][0]?.deviceId ?? "");
  await drain(sqs, cli, [late], env);
  const [group] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM user_logins WHERE masked_ip = ${topMask}`;
  assert.equal(group?.n, top[1].length + 1);
  assert.equal((await vaultRows(db.sql)).length, vault.length);

  const raws = rawValuesOf(bodies);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
  reportFigures("rekey", {
    rows: rows.length,
    ip_masks: ipGroups.length,
    repeated_ips: ipGroups.filter((g) => g.includes(",")).length,
    largest_ip_group: top[1].length,
    device_masks: deviceGroups.length,
    batches: report.batches,
    ms: Math.round(performance.now() - started),
  });
});

/**
 * Runs `args` (a rekey or rekey-vault) as a child and SIGKILLs it in the
 * middle of its second batch. A trigger makes the batch's audit insert, the
 * last statement of its transaction, wait on an advisory lock the test holds:
 * the first batch has committed, the second has done all its other writes
 * and waits, uncommitted, when the kill comes. The backend then finds its
 * client gone and rolls back; this returns once it has.
 */
async function killInSecondBatch(
  db: TestDb,
  cli: Cli,
  action: "rekey" | "rekey-vault",
  args: readonly string[],
  env: Record<string, string>,
): Promise<Awaited<Consumer["done"]>> {
  const key = 1 + Math.floor(Math.random() * 2 ** 30);
  const holder = await db.sql.reserve();
  let locked = false;
  let child: Consumer | null = null;
  try {
    await holder`SELECT pg_advisory_lock(${key})`;
    locked = true;
    await db.sql.unsafe(`
      CREATE FUNCTION "${db.schema}".hold_second_batch() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF EXISTS (SELECT FROM "${db.stateSchema}".login_etl_audit WHERE action = NEW.action) THEN
          PERFORM pg_advisory_xact_lock_shared(${key});
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER hold_second_batch BEFORE INSERT ON "${db.stateSchema}".login_etl_audit
        FOR EACH ROW WHEN (NEW.action = '${action}')
        EXECUTE FUNCTION "${db.schema}".hold_second_batch();`).simple();
    child = cli.start(args, env);
    let pid: number | undefined;
    for (const deadline = Date.now() + 30_000; pid === undefined; await delay(20)) {
      const [row] = await db.sql<{ pid: number }[]>`
        SELECT pid FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND objid::bigint = ${key}`;
      pid = row?.pid;
      assert.ok(pid !== undefined || Date.now() < deadline, `no ${action} batch waited in 30 s`);
    }
    child.child.kill("SIGKILL");
    const result = await cli.collect(child);
    child = null;
    await holder`SELECT pg_advisory_unlock(${key})`;
    locked = false;
    for (const deadline = Date.now() + 30_000;; await delay(20)) {
      const alive = await db.sql`SELECT FROM pg_stat_activity WHERE pid = ${pid}`;
      if (alive.length === 0) break;
      assert.ok(Date.now() < deadline, `backend ${pid} still alive after 30 s`);
    }
    await db.sql.unsafe(`DROP TRIGGER hold_second_batch ON "${db.stateSchema}".login_etl_audit`);
    return result;
  } finally {
    if (child !== null) {
      child.child.kill("SIGKILL");
      await child.done;
    }
    if (locked) await holder`SELECT pg_advisory_unlock(${key})`;
    holder.release();
  }
}

Deno.test("rekey killed after a committed batch resumes to the same state as an uninterrupted rekey", async () => {
  const started = performance.now();
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await using control = await freshSchema();
  const cli = new Cli(cliEnv(db, { PII_HMAC_KEY: hmacKeySet("k1") }));
  const bodies = [...generateBodies(300, { badRatio: 0, seed: 11, repeatRatio: 0.35 })];
  const events = eventsOf(bodies);
  assert.equal((await drain(sqs, cli, bodies, {}, { merge: db })).inserted, 300);
  const ipGroups = await groupsOf(db.sql, "masked_ip");
  const deviceGroups = await groupsOf(db.sql, "masked_device_id");

  // The same data in a second schema, re-keyed without interruption, is the reference.
  await migrate(control.sql, control.schemas);
  for (
    const [from, to, table] of [
      [db.schema, control.schema, "user_logins"],
      [db.stateSchema, control.stateSchema, "login_etl_vault"],
      [db.stateSchema, control.stateSchema, "login_etl_keys"],
    ]
  ) {
    await control.sql.unsafe(`INSERT INTO "${to}"."${table}" SELECT * FROM "${from}"."${table}"`);
  }
  const env = { PII_HMAC_KEY: hmacKeySet("k2") };
  const reference = await cli.run(
    ["rekey", "--to", "k2", "--reason", "rotation"],
    { ...env, ...control.env },
  );
  assert.equal(reference.code, 0, reference.stderr);

  const args = ["rekey", "--to", "k2", "--reason", "rotation", "--max-rows", "5"];
  const killed = await killInSecondBatch(db, cli, "rekey", args, env);
  assert.equal(killed.signal, "SIGKILL");

  const [mid] = await db.sql<{ k2: number; k1: number; vaultK2: number; audit: number }[]>`
    SELECT (SELECT count(DISTINCT masked_ip) FROM user_logins WHERE masked_ip LIKE 'k2:%')::int AS k2,
           (SELECT count(DISTINCT masked_ip) FROM user_logins WHERE masked_ip LIKE 'k1:%')::int AS k1,
           (SELECT count(*) FROM login_etl_vault WHERE masked_value LIKE 'k2:%')::int AS "vaultK2",
           (SELECT count(*) FROM login_etl_audit WHERE action = 'rekey')::int AS audit`;
  assert.deepEqual(
    mid,
    { k2: 5, k1: ipGroups.length - 5, vaultK2: 5, audit: 1 },
    "killed after one batch of 5: the second, uncommitted, left nothing",
  );

  const resumed = await cli.run(args, env);
  assert.equal(resumed.code, 0, resumed.stderr);
  const report = JSON.parse(resumed.stdout);
  assert.deepEqual(report.moved, { ip: ipGroups.length - 5, "device_id": deviceGroups.length });

  const state = (sql: postgres.Sql) =>
    sql`SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version,
               create_date::text AS day
        FROM user_logins ORDER BY user_id`;
  assert.deepEqual(await state(db.sql), await state(control.sql), "same rows as uninterrupted");
  assert.deepEqual(await groupsOf(db.sql, "masked_ip"), ipGroups);
  assert.deepEqual(await groupsOf(db.sql, "masked_device_id"), deviceGroups);
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  const cipher = await cipherOf(VAULT_SECRET);
  const vault = await vaultRows(db.sql);
  const opened = await openVault(cipher, vault);
  assert.deepEqual(opened, await openVault(cipher, await vaultRows(control.sql)));
  const expected = new Map(events.flatMap((e) => [
    [k2.mask("ip", e.ip), e.ip] as const,
    [k2.mask("device_id", e.deviceId), e.deviceId] as const,
  ]));
  assert.deepEqual(opened, expected, "one vault entry per distinct mask, none left under k1");
  assert.equal(vault.length, ipGroups.length + deviceGroups.length);

  const raws = rawValuesOf(bodies);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
  reportFigures("rekey kill", {
    rows: bodies.length,
    ip_masks: ipGroups.length,
    device_masks: deviceGroups.length,
    moved_before_kill: 5,
    batches_after_resume: report.batches,
    ms: Math.round(performance.now() - started),
  });
});

Deno.test("rekey-vault re-encrypts every entry under the new vault key, resumes after a kill, and a second run moves nothing", async () => {
  const started = performance.now();
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db, { PII_VAULT_KEY: vaultKeySet("v1") }));
  const bodies = [...generateBodies(60, { badRatio: 0, seed: 23, repeatRatio: 0.2 })];
  const events = eventsOf(bodies);
  await drain(sqs, cli, bodies, {}, { merge: db });
  const before = await vaultRows(db.sql);
  assert.ok(before.every((v) => v.key_id === "v1"));
  const original = await openVault(await cipherOf(vaultKeySet("v1")), before);

  const env = { PII_VAULT_KEY: vaultKeySet("v2") };
  const args = ["rekey-vault", "--to", "v2", "--reason", "vault key rotation", "--max-rows", "5"];
  const killed = await killInSecondBatch(db, cli, "rekey-vault", args, env);
  assert.equal(killed.signal, "SIGKILL");
  const mid = await vaultRows(db.sql);
  assert.equal(mid.filter((v) => v.key_id === "v2").length, 5, "one batch committed, one not");

  const resumed = await cli.run(args, env);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal(JSON.parse(resumed.stdout).moved, before.length - 5);
  const after = await vaultRows(db.sql);
  assert.ok(after.every((v) => v.key_id === "v2"), "every entry under v2");
  assert.deepEqual(after.map((v) => v.masked_value), before.map((v) => v.masked_value));
  // v1 can now be removed from the key set: everything opens with v2 alone.
  const v2Only = vaultKeySet("v2", ["v2"]);
  assert.deepEqual(await openVault(await cipherOf(v2Only), after), original);
  const again = await cli.run(args, env);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(JSON.parse(again.stdout), { "key_id": "v2", moved: 0, batches: 0, failed: 0 });

  const e = events[0];
  assert.ok(e);
  const mask = (await maskerOf(TEST_SECRET, "k1")).mask("device_id", e.deviceId);
  const recovered = await cli.run(
    ["recover", "--masked", mask, "--reason", "after vault rotation"],
    { PII_VAULT_KEY: v2Only },
    { revealing: true },
  );
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.equal(recovered.stdout, `${mask}\tdevice_id\t${e.deviceId}\n`);
  const audit = await auditAfter(db.sql);
  assert.deepEqual(
    audit.filter((a) => a.action === "rekey-vault").length,
    1 + Math.ceil((before.length - 5) / 5),
    "one audit row per committed batch",
  );

  const raws = rawValuesOf(bodies);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
  reportFigures("rekey-vault", {
    entries: before.length,
    moved_before_kill: 5,
    moved_after_resume: before.length - 5,
    ms: Math.round(performance.now() - started),
  });
});

Deno.test("rekey-vault skips an entry that does not decrypt instead of stopping the rotation", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db, { PII_VAULT_KEY: vaultKeySet("v1") }));
  const bodies = [...generateBodies(20, { badRatio: 0, seed: 31 })];
  await drain(sqs, cli, bodies, {}, { merge: db });
  const [victim] = await db.sql<{ masked_value: string }[]>`
    SELECT masked_value FROM login_etl_vault ORDER BY masked_value LIMIT 1`;
  assert.ok(victim);
  // Flip the first ciphertext byte: the entry no longer authenticates.
  await db.sql`
    UPDATE login_etl_vault SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1)
    WHERE masked_value = ${victim.masked_value}`;
  const total = (await vaultRows(db.sql)).length;
  const vaulted = await cli.run([
    "rekey-vault",
    "--to",
    "v2",
    "--reason",
    "rotation",
    "--max-rows",
    "4",
  ], {
    PII_VAULT_KEY: vaultKeySet("v2"),
  });
  assert.equal(vaulted.code, 0, vaulted.stderr);
  assert.deepEqual(JSON.parse(vaulted.stdout).failed, 1);
  assert.equal(JSON.parse(vaulted.stdout).moved, total - 1);
  const rows = await vaultRows(db.sql);
  assert.equal(rows.filter((r) => r.key_id === "v2").length, total - 1);
  assert.equal(
    rows.find((r) => r.masked_value === victim.masked_value)?.key_id,
    "v1",
    "left as it was",
  );
});
