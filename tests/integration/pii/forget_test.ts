// forget through the real CLI against the real Postgres and fauxqs: erasure
// that sticks. The vault entry becomes a tombstone that recover refuses; a
// later login, a direct re-insert and a forget racing the consumer's writes
// all leave it erased; and after a backup restore, `forget --replay-audit`
// erases again what the audit trail says was erased. The first two tests run
// on PostgreSQL 13, 15 and 18.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import postgres from "postgres";
import type { Masked } from "../../../src/types.ts";
import { generateBodies } from "../../../src/seed/generate.ts";
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
  inboxRows,
  lastAuditId,
  maskerOf,
  mergeVault,
  rawValuesOf,
  tablesHoldingRaw,
  tombstones,
  VAULT_SECRET,
  vaultRows,
} from "../../helpers/pii.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
} from "../../helpers/services.ts";

eachMajor.test("forget turns the vault entry into a tombstone, audited; recover then refuses it as erased; forget without --reason is refused", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const cli = new Cli(cliEnv(db));
  const people = [
    body("f1", "192.0.2.44", "200-00-0001"),
    body("f2", "192.0.2.44", "200-00-0002"),
    body("f3", "192.0.2.45", "200-00-0002"),
  ];
  await drain(sqs, cli, people, {}, { merge: db });
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const mask = k1.mask("ip", "192.0.2.44");
  const rows = async () => [
    ...await db.sql`SELECT *, create_date::text AS day FROM user_logins ORDER BY user_id`,
  ];
  const rowsBefore = await rows();
  const vaultBefore = await vaultRows(db.sql);
  const erased = vaultBefore.find((v) => v.masked_value === mask);
  assert.ok(erased, "the value was vaulted");
  const erasedHex = new Uint8Array(erased.ciphertext).toHex();

  const beforeForget = await lastAuditId(db.sql);
  const result = await cli.run([
    "forget",
    "--masked",
    mask,
    "--reason",
    "GDPR art. 17 request 88",
    "--actor",
    "dpo",
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^Erased 1 of 1 vault entries/);

  assert.deepEqual(
    await vaultRows(db.sql),
    vaultBefore.filter((v) => v.masked_value !== mask),
    "exactly that entry is gone; the others are untouched",
  );
  assert.deepEqual(await tombstones(db.sql), [mask], "a tombstone keeps its place");
  assert.deepEqual(await rows(), rowsBefore, "user_logins rows and masks untouched");
  const tables = await db.sql<{ schema: string; name: string }[]>`
    SELECT table_schema AS schema, table_name AS name FROM information_schema.tables
    WHERE table_schema IN (${db.schema}, ${db.stateSchema})`;
  assert.ok(tables.some((t) => t.name === "login_etl_vault"), "the vault's schema is searched");
  for (const { schema, name } of tables) {
    const [hit] = await db.sql.unsafe<{ n: number }[]>(
      `SELECT count(*)::int AS n FROM "${schema}"."${name}" t WHERE t::text LIKE $1`,
      [`%${erasedHex}%`],
    );
    assert.equal(hit?.n, 0, `no copy of the erased ciphertext in ${schema}.${name}`);
  }
  const [forgot] = await auditAfter(db.sql, beforeForget);
  assert.deepEqual(
    [forgot?.actor, forgot?.action, forgot?.masked_value, forgot?.reason, forgot?.outcome],
    ["dpo", "forget", mask, "GDPR art. 17 request 88", "success"],
  );

  const before = await lastAuditId(db.sql);
  const recovered = await cli.run(
    ["recover", "--masked", mask, "--reason", "after erasure", "--actor", "alice"],
    {},
    { revealing: true },
  );
  assertRefused(recovered, 1, /Nothing recovered: that mask was erased by forget/);
  const twice = await cli.run(["forget", "--masked", mask, "--reason", "again"]);
  assert.equal(twice.code, 0, twice.stderr);
  assert.match(twice.stdout, /^Erased 0 of 1/);
  const other = k1.mask("ip", "192.0.2.45");
  const noReason = await cli.run(["forget", "--masked", other, "--actor", "dpo"]);
  assertRefused(noReason, 2, /Refused: forget needs --reason/);
  assert.ok(
    (await vaultRows(db.sql)).some((v) => v.masked_value === other),
    "a refused forget erases nothing",
  );
  assert.deepEqual(
    (await auditAfter(db.sql, before)).map((a) => [a.action, a.masked_value, a.outcome]),
    [
      ["recover", mask, "erased"],
      ["forget", mask, "not_found"],
      ["forget", other, "denied"],
    ],
  );

  const raws = rawValuesOf(people);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
});

eachMajor.test("an erased value stays erased: a later login and a direct re-insert through the consumer's function leave the tombstone", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const cli = new Cli(cliEnv(db));
  await drain(sqs, cli, [body("t1", "192.0.2.77", "300-00-0001")]);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const mask = k1.mask("ip", "192.0.2.77");
  // Forget a mask that was never vaulted, too: its tombstone keeps it from ever being.
  const never = k1.mask("ip", "192.0.2.78");
  const file = await Deno.makeTempFile();
  await Deno.writeTextFile(file, `${mask}\n${never}\n`);
  const erased = await cli.run([
    "forget",
    "--from-file",
    file,
    "--reason",
    "erasure request 7",
    "--actor",
    "dpo",
  ]);
  await Deno.remove(file);
  assert.equal(erased.code, 0, erased.stderr);
  assert.deepEqual(await tombstones(db.sql), [mask, never].sort());

  // The same person logs in again, and someone new logs in from the never-vaulted address.
  await drain(sqs, cli, [
    body("t2", "192.0.2.77", "300-00-0002"),
    body("t3", "192.0.2.78", "300-00-0003"),
  ]);
  const [rows] = await db.sql`SELECT count(*)::int AS n FROM user_logins WHERE masked_ip = ${mask}`;
  assert.equal(rows?.n, 2, "both logins keep the same opaque mask");
  // Someone holding the vault key calls the consumer's function with a fresh, valid entry.
  const cipher = await cipherOf(VAULT_SECRET);
  const sealed = await cipher.encrypt("ip", mask as Masked, "192.0.2.77");
  await db.sql`SELECT login_etl_vault_put(${[mask]}::text[], ${["ip"]}::text[],
    ARRAY[${Buffer.from(sealed.ciphertext)}::bytea], ARRAY[${Buffer.from(sealed.iv)}::bytea],
    ${["v1"]}::text[])`;
  assert.deepEqual(await tombstones(db.sql), [mask, never].sort(), "still tombstones");
  assert.ok(
    !(await vaultRows(db.sql)).some((v) => v.masked_value === mask || v.masked_value === never),
  );
  for (const m of [mask, never]) {
    const again = await cli.run(
      ["recover", "--masked", m, "--reason", "after erasure", "--actor", "alice"],
      {},
      { revealing: true },
    );
    assertRefused(again, 1, /erased by forget/);
  }
  // The later logins' entries wait in the inbox (a consumer cannot be told
  // the value is erased); the merge drops them and keeps the tombstones.
  assert.ok((await inboxRows(db.sql)).some((v) => v.masked_value === mask));
  const merged = await mergeVault(db, cli.env);
  assert.equal(merged.erased, 2, "the later login's entry and the direct one");
  assert.ok(!(await inboxRows(db.sql)).some((v) => [mask, never].includes(v.masked_value)));
  assert.deepEqual(await tombstones(db.sql), [mask, never].sort(), "still tombstones");
  cli.assertNoRaw(["192.0.2.77", "192.0.2.78", "300-00-0001", "300-00-0002", "300-00-0003"]);
});

Deno.test("forget racing the consumer's writes of the same values: every erased mask ends a tombstone", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  // Tables and functions first, so the race is between writes, not set-up.
  await drain(sqs, cli, [body("warm", "192.0.2.1", "warm-device")]);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const bodies = [...generateBodies(600, { badRatio: 0, seed: 77 })];
  const events = eventsOf(bodies);
  const masks = [
    ...new Set(events.flatMap((e) => [k1.mask("ip", e.ip), k1.mask("device_id", e.deviceId)])),
  ];
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, bodies);
  const dpo = postgres(DATABASE_URL, {
    max: 4,
    onnotice: () => {},
    connection: { search_path: `${db.schema}, ${db.stateSchema}` },
  });
  try {
    // The drain writes its batches while forget erases the same masks, in slices, from four sessions.
    const draining = cli.run([
      "drain",
      "--queue-url",
      queueUrl,
      "--summary-json",
      "--max-rows",
      "50",
    ]);
    const slices = Array.from({ length: 24 }, (_, i) => masks.filter((_, j) => j % 24 === i));
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < slices.length) {
        const slice = slices[next++] ?? [];
        await dpo`SELECT * FROM login_etl_forget(${slice}::text[], 'dpo', 'race test')`;
        await new Promise((r) => setTimeout(r, 15));
      }
    }));
    const drained = await draining;
    assert.equal(drained.code, 0, drained.stderr);
    assert.equal(JSON.parse(drained.stdout).inserted, 600);
  } finally {
    await dpo.end();
  }
  // The drain's entries wait in the inbox; the owner's merge drops every
  // erased one (an erased mask is a tombstone whichever came first).
  const merged = await mergeVault(db, cli.env);
  assert.deepEqual(await inboxRows(db.sql), [], "the merge empties the inbox");
  const live = new Set((await vaultRows(db.sql)).map((v) => v.masked_value));
  const stillLive = masks.filter((m) => live.has(m));
  const erased = new Set(await tombstones(db.sql));
  reportFigures("forget race", {
    masks: masks.length,
    tombstones: erased.size,
    live: stillLive.length,
    merged_erased: merged.erased,
    merged_accepted: merged.accepted,
  });
  assert.deepEqual(stillLive, [], "no erased value is recoverable");
  assert.ok(masks.every((m) => erased.has(m)));
});

Deno.test("after a backup restore brings erased entries back, forget --replay-audit erases them again from the audit export", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  const people = [body("r1", "192.0.2.91", "400-00-0001"), body("r2", "192.0.2.92", "400-00-0002")];
  await drain(sqs, cli, people, {}, { merge: db });
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const mask = k1.mask("ip", "192.0.2.91");
  // The nightly backup of the vault, before the erasure.
  await db.sql`CREATE TABLE vault_backup AS SELECT * FROM login_etl_vault`;
  assert.equal(
    (await cli.run(["forget", "--masked", mask, "--reason", "DSAR 9", "--actor", "dpo"])).code,
    0,
  );
  // The audit export kept outside the database (recover --audit, shipped off nightly).
  const exported = await cli.run(["recover", "--audit"]);
  assert.equal(exported.code, 0, exported.stderr);
  const file = await Deno.makeTempFile({ suffix: ".jsonl" });
  await Deno.writeTextFile(file, exported.stdout);
  try {
    // The restore: the vault as it was before the erasure.
    await db.sql`DELETE FROM login_etl_vault`;
    await db.sql`INSERT INTO login_etl_vault SELECT * FROM vault_backup`;
    assert.ok(
      (await vaultRows(db.sql)).some((v) => v.masked_value === mask),
      "the restore undid it",
    );

    const replay = await cli.run([
      "forget",
      "--replay-audit",
      file,
      "--reason",
      "restore of 2026-11-28",
      "--actor",
      "dba",
    ]);
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stdout, /^Erased 1 of 1 vault entries/);
    assert.deepEqual(await tombstones(db.sql), [mask]);
    const audit = await auditAfter(db.sql);
    assert.equal(audit.at(-1)?.reason, `restore of 2026-11-28 (replay of ${file})`);
    const refused = await cli.run(
      ["recover", "--masked", mask, "--reason", "check", "--actor", "alice"],
      {},
      { revealing: true },
    );
    assertRefused(refused, 1, /erased by forget/);
    const bad = await Deno.makeTempFile();
    await Deno.writeTextFile(bad, "not json\n");
    assertRefused(
      await cli.run(["forget", "--replay-audit", bad, "--reason", "x"]),
      2,
      /line 1 is not JSON; give the output of recover --audit/,
    );
    await Deno.remove(bad);
  } finally {
    await Deno.remove(file);
  }
  cli.assertNoRaw(rawValuesOf(people));
});
