// Erasure and rotation agree, against real Postgres: a forget during a
// rekey (held at each of its steps by a lock another session holds, while a
// consumer drains the same value) or after one killed at each step leaves
// the value unrecoverable; a forget of a moved mask erases its successor; an
// erasure by mask reaches the value's masks under later keys; forget by value
// erases every key's mask without logging the value; --replay-audit follows
// rotations; rekey keeps a target entry only if it proves out and refuses
// masks under keys outside the set. "Unrecoverable" is checked twice:
// recover as a pii_recoverer login refuses it, and no vault or inbox entry
// decrypts to it.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import postgres from "postgres";
import { Secret } from "../../../src/secret.ts";
import { Masker } from "../../../src/mask.ts";
import { rekeyRows } from "../../../src/pii/rekey.ts";
import type { Masked, PiiField } from "../../../src/types.ts";
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
  HMAC_SECRET_2,
  hmacKeySet,
  lastAuditId,
  maskerOf,
  mergeVault,
  openable,
  type PiiRoles,
  piiRoles,
  recoveredLines,
  recoverFile,
  tablesHoldingRaw,
  tombstones,
  VAULT_SECRET,
  vaultRows,
} from "../../helpers/pii.ts";
import {
  capturingTelemetry,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
  type TestDb,
  type TestSqs,
} from "../../helpers/services.ts";

/** The value a data subject asks to erase, in the middle of a rotation. */
const VICTIM = { ip: "198.51.100.77", device: "700-00-0001" };

/** Six logins: two of them share the victim's address. */
const PEOPLE = [
  { user: "v1", ip: VICTIM.ip, device: VICTIM.device },
  { user: "v2", ip: VICTIM.ip, device: "700-00-0002" },
  { user: "p3", ip: "198.51.100.3", device: "700-00-0003" },
  { user: "p4", ip: "198.51.100.4", device: "700-00-0004" },
  { user: "p5", ip: "198.51.100.5", device: "700-00-0005" },
  { user: "p6", ip: "198.51.100.6", device: "700-00-0006" },
];

/** Rows and vault entries under k1 and v1, as drain and a merge leave them. */
async function seed(db: TestDb): Promise<void> {
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  for (const p of PEOPLE) {
    await db.sql`
      INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)
      VALUES (${p.user}, 'ios', ${k1.mask("ip", p.ip)}, ${
      k1.mask("device_id", p.device)
    }, 'en', 1000000, '2026-01-02')`;
  }
  const values = new Map<string, [PiiField, string]>();
  for (const p of PEOPLE) {
    values.set(k1.mask("ip", p.ip), ["ip", p.ip]).set(k1.mask("device_id", p.device), [
      "device_id",
      p.device,
    ]);
  }
  for (const [mask, [field, raw]] of values) {
    const e = await cipher.encrypt(field, mask as Masked, raw);
    await db.sql`
      INSERT INTO login_etl_vault (masked_value, field, ciphertext, iv, key_id)
      VALUES (${mask}, ${field}, ${Buffer.from(e.ciphertext)}, ${Buffer.from(e.iv)}, 'v1')`;
  }
}

/**
 * Asserts that `raw` (an ip) cannot be had back: recover as the recoverer
 * login gives nothing for its masks under k1 and k2 (erased, or under k2
 * never vaulted at all), its k1 mask is a tombstone and its k2 mask is one
 * or absent, and after a merge no vault or inbox entry decrypts to it.
 */
async function assertUnrecoverable(
  db: TestDb,
  roles: PiiRoles,
  cli: Cli,
  raw: string,
): Promise<void> {
  const [old, fresh] = [
    (await maskerOf(TEST_SECRET, "k1")).mask("ip", raw),
    (await maskerOf(HMAC_SECRET_2, "k2")).mask("ip", raw),
  ];
  const recovered = await recoverFile(
    cli,
    [old, fresh],
    ["--reason", "erasure check", "--actor", "auditor"],
    { DATABASE_URL: roles.urlOf(roles.users.recoverer), PII_HMAC_KEY: hmacKeySet("k2") },
  );
  assertRefused(recovered, 1, /^error: Nothing recovered: /);
  // What the inbox still holds (the drained login's entry) goes through a merge.
  await mergeVault(db, { PII_HMAC_KEY: hmacKeySet("k2"), PII_VAULT_KEY: VAULT_SECRET });
  const rows = new Map(
    (await db.sql<{ m: string; erased: boolean }[]>`
      SELECT masked_value AS m, erased_at IS NOT NULL AS erased FROM login_etl_vault
      WHERE masked_value IN (${old}, ${fresh})`).map((r) => [r.m, r.erased]),
  );
  assert.equal(rows.get(old), true, "the k1 mask is a tombstone");
  assert.notEqual(rows.get(fresh), false, "the k2 mask is a tombstone or was never vaulted");
  const opened = await openable(db.sql, await cipherOf(VAULT_SECRET));
  assert.deepEqual(opened.filter((o) => o.raw === raw), [], "no entry decrypts to it");
  assert.ok(opened.length > 0, "the others are still there");
}

/** Where a rekey batch is held, and how. */
interface Step {
  readonly name: string;
  /**
   * A BEFORE trigger (table, event, condition) that waits on the test's
   * advisory lock; absent: a row lock on the victim's old entry that only
   * the rekey's re-read (FOR UPDATE) waits for.
   */
  readonly trigger?: { readonly table: string; readonly event: string; readonly when?: string };
}

const STEPS: readonly Step[] = [
  { name: "before it re-reads the old entry in its transaction" },
  {
    name: "inserting the new entry",
    trigger: { table: "state.login_etl_vault", event: "INSERT", when: "NEW.erased_at IS NULL" },
  },
  { name: "updating the rows", trigger: { table: "data.user_logins", event: "UPDATE" } },
  { name: "deleting the old entry", trigger: { table: "state.login_etl_vault", event: "DELETE" } },
  {
    name: "recording the move",
    trigger: { table: "state.login_etl_vault_links", event: "INSERT" },
  },
  {
    name: "writing its audit row",
    trigger: { table: "state.login_etl_audit", event: "INSERT", when: "NEW.action = 'rekey'" },
  },
];

/** A rekey held at `step` until `release`. */
async function hold(db: TestDb, control: postgres.Sql, step: Step) {
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const key = 1 + Math.floor(Math.random() * 2 ** 30);
  const holder = await control.reserve();
  if (step.trigger === undefined) {
    await holder`BEGIN`;
    await holder`
      SELECT FROM ${control(db.stateSchema)}.login_etl_vault
      WHERE masked_value = ${k1.mask("ip", VICTIM.ip)} FOR KEY SHARE`;
  } else {
    const [schema, table] = step.trigger.table.split(".") as [string, string];
    const target = `"${schema === "state" ? db.stateSchema : db.schema}".${table}`;
    await holder`SELECT pg_advisory_lock(${key})`;
    await control.unsafe(`
      CREATE FUNCTION "${db.schema}".hold_rekey() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_advisory_xact_lock_shared(${key});
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
      END $$;
      CREATE TRIGGER hold_rekey BEFORE ${step.trigger.event} ON ${target}
        FOR EACH ROW ${step.trigger.when === undefined ? "" : `WHEN (${step.trigger.when})`}
        EXECUTE FUNCTION "${db.schema}".hold_rekey();`).simple();
  }
  let held = true;
  return {
    /** The backend of the rekey, once it waits there. */
    async waiting(): Promise<number> {
      for (const deadline = Date.now() + 30_000;; await delay(20)) {
        const [row] = await control<{ pid: number }[]>`
          SELECT pid FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()
            AND query LIKE ${`%${db.schema}%`}`;
        if (row !== undefined) return row.pid;
        assert.ok(Date.now() < deadline, `no rekey waited ${step.name} in 30 s`);
      }
    },
    async release(): Promise<void> {
      if (!held) return;
      held = false;
      if (step.trigger === undefined) await holder`COMMIT`;
      else await holder`SELECT pg_advisory_unlock(${key})`;
      holder.release();
    },
    async drop(): Promise<void> {
      await this.release();
      if (step.trigger !== undefined) {
        const [schema, table] = step.trigger.table.split(".") as [string, string];
        await control.unsafe(
          `DROP TRIGGER hold_rekey ON "${schema === "state" ? db.stateSchema : db.schema}".${table};
           DROP FUNCTION "${db.schema}".hold_rekey()`,
        ).simple();
      }
    },
  };
}

/** A client for holding and watching, apart from the test's pool. */
function controlOf(db: TestDb): postgres.Sql {
  return postgres(db.url, {
    max: 3,
    onnotice: () => {},
    connection: { search_path: `${db.schema}, ${db.stateSchema}` },
  });
}

/** Waits until `settled` says so or the recoverer's forget waits on a lock. */
async function settledOrWaiting(
  control: postgres.Sql,
  user: string,
  settled: () => boolean,
): Promise<string> {
  for (const deadline = Date.now() + 30_000;; await delay(20)) {
    if (settled()) return "done";
    const [row] = await control`
      SELECT FROM pg_stat_activity WHERE usename = ${user} AND wait_event_type = 'Lock'`;
    if (row !== undefined) return "waiting";
    assert.ok(Date.now() < deadline, "forget neither finished nor waited in 30 s");
  }
}

eachMajor.test("a rekey held at each of its steps while a consumer drains the value and a recoverer forgets it: the value stays erased under both keys", async ({ t, pg }) => {
  const started = performance.now();
  await using sqs = await startSqs();
  const outcomes: Record<string, string> = {};
  for (const step of STEPS) {
    await t.step(step.name, async () => {
      await using db = await freshSchema(pg);
      await using roles = await piiRoles(db);
      await seed(db);
      const cli = new Cli(cliEnv(db));
      const control = controlOf(db);
      try {
        const held = await hold(db, control, step);
        try {
          const { telemetry } = capturingTelemetry();
          const k1 = await Masker.create(
            new Secret(new TextEncoder().encode(TEST_SECRET), "t"),
            "k1",
          );
          const k2 = await Masker.create(
            new Secret(new TextEncoder().encode(HMAC_SECRET_2), "t"),
            "k2",
          );
          let rekeyDone = false;
          const rekeying = rekeyRows(db, {
            target: k2,
            verify: new Map([["k1", k1]]),
            cipher: await cipherOf(VAULT_SECRET),
            batch: 100,
            actor: "owner",
            reason: "rotation",
            telemetry,
          }).finally(() => (rekeyDone = true));
          await held.waiting();
          // A consumer still on k1 sees the victim log in again...
          await drainOnce(sqs, cli, roles);
          // ...and the recoverer erases the victim's old mask meanwhile.
          const asRecoverer = roles.connectAs(roles.users.recoverer);
          let forgetDone = false;
          const forgetting = asRecoverer`
            SELECT * FROM login_etl_forget(${[(await maskerOf(TEST_SECRET, "k1")).mask(
            "ip",
            VICTIM.ip,
          )]}::text[], 'dpo', 'DSAR 77')`.finally(() => (forgetDone = true));
          outcomes[step.name] = await settledOrWaiting(
            control,
            roles.users.recoverer,
            () => forgetDone,
          );
          assert.equal(rekeyDone, false, "the rekey is still held");
          await held.release();
          await rekeying;
          await forgetting;
        } finally {
          await held.drop();
        }
        await assertUnrecoverable(db, roles, cli, VICTIM.ip);
        const [left] = await db.sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM user_logins WHERE left(masked_ip, 3) <> 'k2:'`;
        assert.equal(left?.n, 0, "every row's ip moved, the drained one's too");
      } finally {
        await control.end();
      }
    });
  }
  reportFigures("rekey held, forget", {
    ...outcomes,
    ms: Math.round(performance.now() - started),
  });
  // Held before its transaction, the forget commits first; held inside it,
  // the forget waits for the rekey's row lock.
  assert.equal(outcomes[STEPS[0]?.name ?? ""], "done");
  for (const step of STEPS.slice(1)) assert.equal(outcomes[step.name], "waiting", step.name);
});

/** The victim's second login, drained once by the consumer's login on k1. */
async function drainOnce(sqs: TestSqs, cli: Cli, roles: PiiRoles): Promise<void> {
  const drained = await drain(sqs, cli, [body("v9", VICTIM.ip, "700-00-0009")], {
    DATABASE_URL: roles.urlOf(roles.users.consumer),
  });
  assert.equal(drained.inserted, 1);
}

Deno.test("a rekey SIGKILLed at each of its steps, then a forget, then the rekey run again: the value stays erased under both keys", async (t) => {
  const started = performance.now();
  for (const step of STEPS) {
    await t.step(step.name, async () => {
      await using db = await freshSchema();
      await using roles = await piiRoles(db);
      await seed(db);
      const cli = new Cli(cliEnv(db, { PII_HMAC_KEY: hmacKeySet("k2") }));
      const control = controlOf(db);
      let child: Consumer | null = null;
      try {
        const held = await hold(db, control, step);
        try {
          child = cli.start(["rekey", "--to", "k2", "--reason", "rotation"]);
          const pid = await held.waiting();
          child.child.kill("SIGKILL");
          const killed = await cli.collect(child);
          child = null;
          assert.equal(killed.signal, "SIGKILL");
          // Its backend goes on once the lock is free, finds its client
          // gone and rolls back.
          await held.release();
          for (const deadline = Date.now() + 30_000;; await delay(20)) {
            const alive = await control`SELECT FROM pg_stat_activity WHERE pid = ${pid}`;
            if (alive.length === 0) break;
            assert.ok(Date.now() < deadline, `backend ${pid} still alive after 30 s`);
          }
        } finally {
          await held.drop();
        }
        const erase = await cli.run(
          ["forget", "--masked", (await maskerOf(TEST_SECRET, "k1")).mask("ip", VICTIM.ip)].concat(
            ["--reason", "DSAR 77", "--actor", "dpo"],
          ),
          { DATABASE_URL: roles.urlOf(roles.users.recoverer) },
        );
        assert.equal(erase.code, 0, erase.stderr);
        const again = await cli.run(["rekey", "--to", "k2", "--reason", "rotation, resumed"]);
        assert.equal(again.code, 0, again.stderr);
        await assertUnrecoverable(db, roles, cli, VICTIM.ip);
      } finally {
        if (child !== null) {
          child.child.kill("SIGKILL");
          await child.done;
        }
        await control.end();
      }
    });
  }
  reportFigures("rekey killed, forget", {
    steps: STEPS.length,
    ms: Math.round(performance.now() - started),
  });
});

eachMajor.test("forget of a moved mask erases its successor; a value erased by mask before a rotation is not vaulted again under the new key", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  // Before the rotation the key set holds k1 alone.
  const cli = new Cli(cliEnv(db));
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  const moved = { ip: "192.0.2.61", device: "800-00-0001" };
  const early = { ip: "192.0.2.62", device: "800-00-0002" };
  await drain(
    sqs,
    cli,
    [body("m1", moved.ip, moved.device), body("e1", early.ip, early.device)],
    {},
    {
      merge: db,
    },
  );
  const recoverer = { DATABASE_URL: roles.urlOf(roles.users.recoverer) };

  // Erased by its k1 mask before the rotation.
  const first = await cli.run(
    ["forget", "--masked", k1.mask("ip", early.ip), "--reason", "DSAR 61", "--actor", "dpo"],
    recoverer,
  );
  assert.equal(first.code, 0, first.stderr);

  // k2 joins the set and consumers move to it; the rows move to k2 through
  // the vault, all but the erased address's (no value, no link to follow).
  const k2env = { PII_HMAC_KEY: hmacKeySet("k2") };
  const rekey = await cli.run(["rekey", "--to", "k2", "--reason", "rotation"], k2env);
  assert.equal(rekey.code, 0, rekey.stderr);
  assert.deepEqual(JSON.parse(rekey.stdout).unlinkable, { ip: 1, "device_id": 0 });

  // A request that names the old mask (from a reject or an older export):
  // the k2 entry the rekey made goes with it.
  const before = await lastAuditId(db.sql);
  const second = await cli.run(
    ["forget", "--masked", k1.mask("ip", moved.ip), "--reason", "DSAR 62", "--actor", "dpo"],
    recoverer,
  );
  assert.equal(second.code, 0, second.stderr);
  assert.match(
    second.stdout,
    /^Erased 0 of 1 vault entries, and 1 linked masks \(the same values under another HMAC key\) with them/,
  );
  assert.deepEqual(
    (await auditAfter(db.sql, before)).map((a) => [a.action, a.masked_value, a.outcome]),
    [["forget", k1.mask("ip", moved.ip), "not_found"], [
      "forget",
      k2.mask("ip", moved.ip),
      "success",
    ]],
  );

  // Both people log in again through consumers on k2; the owner merges.
  await drain(
    sqs,
    cli,
    [body("m2", moved.ip, "800-00-0003"), body("e2", early.ip, "800-00-0004")],
    k2env,
    {
      merge: db,
    },
  );
  for (const raw of [moved.ip, early.ip]) await assertUnrecoverable(db, roles, cli, raw);
  const recovered = await recoverFile(
    cli,
    [k2.mask("device_id", moved.device), k2.mask("device_id", "800-00-0003")],
    ["--reason", "the rest is there"],
    { ...recoverer, ...k2env },
  );
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.equal(recoveredLines(recovered.stdout).length, 2);
  cli.assertNoRaw([moved.ip, early.ip]);
});

eachMajor.test("forget --ip, --device-id and --values-from-file erase a value under every HMAC key of the set, and never log or audit it", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const cli = new Cli(cliEnv(db, { PII_HMAC_KEY: hmacKeySet("k1") }));
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  const a = { ip: "2001:db8::a1", device: "900-00-0001" };
  const b = { ip: "192.0.2.91", device: "900-00-0002" };
  const c = { ip: "192.0.2.92", device: "900-00-0003" };
  await drain(sqs, cli, [a, b, c].map((p, i) => body(`v${i}`, p.ip, p.device)), {}, { merge: db });
  const env = { DATABASE_URL: roles.urlOf(roles.users.recoverer), PII_HMAC_KEY: hmacKeySet("k2") };
  const before = await lastAuditId(db.sql);

  // As flags (another spelling of the address): erased, with a warning.
  const flags = await cli.run(
    ["forget", "--ip", "2001:DB8:0::A1", "--device-id", a.device, "--reason", "DSAR 90"],
    env,
  );
  assert.equal(flags.code, 0, flags.stderr);
  assert.match(flags.stdout, /^Erased 2 of 4 vault entries/);
  assert.match(
    flags.stderr,
    /--ip puts a personal value in process lists and shell history; prefer --values-from-file/,
  );
  // From a file, and from stdin.
  const file = await Deno.makeTempFile();
  await Deno.writeTextFile(file, `# DSAR 91\nip ${b.ip}\n\ndevice_id ${b.device}\n`);
  try {
    const fromFile = await cli.run(
      ["forget", "--values-from-file", file, "--reason", "DSAR 91"],
      env,
    );
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.doesNotMatch(fromFile.stderr, /process lists/);
  } finally {
    await Deno.remove(file);
  }
  const fromStdin = await cli.run(
    ["forget", "--values-from-file", "-", "--reason", "DSAR 92"],
    env,
    { stdin: `ip ${c.ip}\ndevice_id ${c.device}\n` },
  );
  assert.equal(fromStdin.code, 0, fromStdin.stderr);

  const stones = await tombstones(db.sql);
  for (const p of [a, b, c]) {
    for (const m of [k1, k2]) {
      assert.ok(stones.includes(m.mask("ip", p.ip)), `${m.keyId} ip`);
      assert.ok(stones.includes(m.mask("device_id", p.device)), `${m.keyId} device`);
    }
  }
  assert.deepEqual(await vaultRows(db.sql), [], "nothing of theirs left");
  const audit = await auditAfter(db.sql, before);
  assert.equal(audit.length, 12, "one row per mask: 3 people, 2 fields, 2 keys");
  const raws = [a.ip, "2001:DB8:0::A1", a.device, b.ip, b.device, c.ip, c.device];
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), [], "nor in any table (the audit included)");

  // A bad value is refused without being echoed; no key set, no masks.
  const bad = await cli.run(["forget", "--ip", "10.0.0.300", "--reason", "x"], env);
  assertRefused(bad, 2, /^error: Value 1 \(an ip of 10 characters\) is not an IP address/);
  assert.ok(!bad.stderr.includes("10.0.0.300"));
  const noKey = await cli.run(["forget", "--device-id", "x1", "--reason", "x"], {
    ...env,
    PII_HMAC_KEY: "",
  });
  assertRefused(noKey, 2, /Erasing by value needs the HMAC key set/);
  const both = await cli.run([
    "forget",
    "--ip",
    b.ip,
    "--masked",
    k1.mask("ip", b.ip),
    "--reason",
    "x",
  ], env);
  assertRefused(both, 2, /Give forget one kind of request/);
});

Deno.test("forget --replay-audit follows rotations: an export from before a rekey erases the successors, one from after it the predecessors", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db, { PII_HMAC_KEY: hmacKeySet("k1") }));
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  const x = { ip: "192.0.2.71", device: "910-00-0001" };
  const y = { ip: "192.0.2.72", device: "910-00-0002" };
  await drain(sqs, cli, [body("x", x.ip, x.device), body("y", y.ip, y.device)], {}, { merge: db });
  const k2env = { PII_HMAC_KEY: hmacKeySet("k2") };
  const backup = async (name: string) => {
    for (const table of ["login_etl_vault", "login_etl_vault_links", "user_logins"]) {
      await db.sql.unsafe(`CREATE TABLE "${db.schema}".${name}_${table} AS SELECT * FROM ${table}`);
    }
  };
  const restore = async (name: string) => {
    for (const table of ["login_etl_vault", "login_etl_vault_links", "user_logins"]) {
      await db.sql.unsafe(`DELETE FROM ${table}`);
      await db.sql.unsafe(`INSERT INTO ${table} SELECT * FROM "${db.schema}".${name}_${table}`);
    }
  };
  const exportAudit = async () => {
    const out = await cli.run(["recover", "--audit"]);
    assert.equal(out.code, 0, out.stderr);
    const file = await Deno.makeTempFile({ suffix: ".jsonl" });
    await Deno.writeTextFile(file, out.stdout);
    return file;
  };
  const replay = async (file: string, env: Record<string, string> = {}) => {
    const r = await cli.run(["forget", "--replay-audit", file, "--reason", "restore"], env);
    assert.equal(r.code, 0, r.stderr);
  };
  const recoverRefused = async (masks: string[], env: Record<string, string>) => {
    const r = await recoverFile(cli, masks, ["--reason", "check"], env);
    assertRefused(r, 1, /erased by forget/);
  };

  // Before the rotation: a backup, then x erased, then the export.
  await backup("before");
  assert.equal(
    (await cli.run(["forget", "--masked", k1.mask("ip", x.ip), "--reason", "DSAR x"])).code,
    0,
  );
  const beforeRekey = await exportAudit();
  // The rotation, then y erased by its new mask, then the export.
  assert.equal((await cli.run(["rekey", "--to", "k2", "--reason", "rotation"], k2env)).code, 0);
  assert.equal(
    (await cli.run(["forget", "--masked", k2.mask("ip", y.ip), "--reason", "DSAR y"], k2env)).code,
    0,
  );
  const afterRekey = await exportAudit();
  try {
    // Restored to before both, then rotated again before anyone replays:
    // x's k1 entry moved to k2 once more. The older export names x by its
    // k1 mask only; the replay follows the move to the k2 entry.
    await restore("before");
    assert.equal(
      (await cli.run(["rekey", "--to", "k2", "--reason", "rotation again"], k2env)).code,
      0,
    );
    await replay(beforeRekey, k2env);
    await recoverRefused([k1.mask("ip", x.ip), k2.mask("ip", x.ip)], k2env);

    // Restored to before both again, not rotated: the newer export names y
    // by its k2 mask and by the k1 mask it was linked to, so the k1 entry
    // goes too.
    await restore("before");
    await db.sql`DELETE FROM login_etl_vault_links`;
    await replay(afterRekey, k2env);
    await recoverRefused([k1.mask("ip", y.ip), k2.mask("ip", y.ip)], k2env);
    const opened = await openable(db.sql, await cipherOf(VAULT_SECRET));
    assert.deepEqual(opened.filter((o) => o.raw === x.ip || o.raw === y.ip), []);
  } finally {
    await Deno.remove(beforeRekey);
    await Deno.remove(afterRekey);
  }
});

eachMajor.test("rekey keeps an existing target entry only if it proves out, and refuses masks under HMAC keys outside the set", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  await seed(db);
  const cli = new Cli(cliEnv(db, { PII_HMAC_KEY: hmacKeySet("k2") }));
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  const cipher = await cipherOf(VAULT_SECRET);
  const sealed = async (mask: string, raw: string) => {
    const e = await cipher.encrypt("ip", mask as Masked, raw);
    return [Buffer.from(e.ciphertext), Buffer.from(e.iv)] as const;
  };
  // Target masks already holding entries, as a consumer of an older
  // login-etl could squat them: another value under one, an entry under a
  // vault key nobody holds under another, a correct one under a third.
  const squatted = k2.mask("ip", PEOPLE[2]?.ip ?? "");
  const foreign = k2.mask("ip", PEOPLE[3]?.ip ?? "");
  const correct = k2.mask("ip", PEOPLE[4]?.ip ?? "");
  const [sc, si] = await sealed(squatted, "10.66.66.66");
  const [fc, fi] = await sealed(foreign, PEOPLE[3]?.ip ?? "");
  const [cc, ci] = await sealed(correct, PEOPLE[4]?.ip ?? "");
  await db.sql`
    INSERT INTO login_etl_vault (masked_value, field, ciphertext, iv, key_id) VALUES
      (${squatted}, 'ip', ${sc}, ${si}, 'v1'), (${foreign}, 'ip', ${fc}, ${fi}, 'v9'),
      (${correct}, 'ip', ${cc}, ${ci}, 'v1')`;
  // A row whose mask is under a key the set does not hold, with an entry
  // that would regroup it with the victim's rows if moved unchecked.
  const stranger = `k7:${"S".repeat(43)}`;
  const [xc, xi] = await sealed(stranger, VICTIM.ip);
  await db.sql`
    INSERT INTO login_etl_vault (masked_value, field, ciphertext, iv, key_id)
    VALUES (${stranger}, 'ip', ${xc}, ${xi}, 'v1')`;
  await db.sql`
    INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)
    VALUES ('stranger', 'ios', ${stranger}, ${
    k2.mask("device_id", "700-00-0009")
  }, 'en', 1, '2026-01-02')`;

  const rekey = await cli.run(["rekey", "--to", "k2", "--reason", "rotation"]);
  assert.equal(rekey.code, 0, rekey.stderr);
  const report = JSON.parse(rekey.stdout);
  assert.deepEqual(report.replaced, { ip: 2, "device_id": 0 }, "the squatted and the foreign one");
  assert.deepEqual(report.refused, { ip: 1, "device_id": 0 });
  assert.match(rekey.stderr, /under an HMAC key id the key set does not hold/);
  const [left] = await db.sql<{ masked_ip: string }[]>`
    SELECT masked_ip FROM user_logins WHERE user_id = 'stranger'`;
  assert.equal(left?.masked_ip, stranger, "left as it was");
  const recovered = await recoverFile(
    cli,
    [squatted, foreign, correct],
    ["--reason", "after rotation"],
    { DATABASE_URL: roles.urlOf(roles.users.recoverer) },
  );
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.deepEqual(
    recoveredLines(recovered.stdout),
    [
      `${squatted}\tip\t${PEOPLE[2]?.ip}`,
      `${foreign}\tip\t${PEOPLE[3]?.ip}`,
      `${correct}\tip\t${PEOPLE[4]?.ip}`,
    ].sort(),
  );
});

Deno.test("rekey --retire forgets an old key's links once nothing is left under it, and not before", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  const p = { ip: "192.0.2.81", device: "920-00-0001" };
  await drain(sqs, cli, [body("r1", p.ip, p.device)], {}, { merge: db });
  const k2env = { PII_HMAC_KEY: hmacKeySet("k2") };
  const retire = ["rekey", "--retire", "k1", "--reason", "rotation done"];
  assertRefused(
    await cli.run(retire, k2env),
    2,
    /^error: Cannot retire HMAC key k1: 2 live vault entries, 0 inbox entries and 0 rows are still under it/,
  );
  assert.equal((await cli.run(["rekey", "--to", "k2", "--reason", "rotation"], k2env)).code, 0);
  const [links] = await db.sql<
    { n: number }[]
  >`SELECT count(*)::int AS n FROM login_etl_vault_links`;
  assert.equal(links?.n, 2, "old → new, for the ip and the device id");
  const before = await lastAuditId(db.sql);
  const retired = await cli.run(retire, k2env);
  assert.equal(retired.code, 0, retired.stderr);
  assert.deepEqual(JSON.parse(retired.stdout), { retired: "k1", links: 2 });
  assert.deepEqual(
    (await auditAfter(db.sql, before)).map((a) => [a.action, a.outcome, a.detail]),
    [["rekey", "success", "HMAC key k1 retired: 2 links to its masks forgotten"]],
  );
  // From now on an old mask leads nowhere: its erasure no longer reaches the
  // k2 entry (erase by value, or by the k2 mask).
  const old = await cli.run(["forget", "--masked", k1.mask("ip", p.ip), "--reason", "old export"]);
  assert.match(old.stdout, /^Erased 0 of 1 vault entries \(/);
  assert.ok((await vaultRows(db.sql)).some((v) => v.masked_value === k2.mask("ip", p.ip)));
});
