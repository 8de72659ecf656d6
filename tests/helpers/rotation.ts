// Shared by the rotation and erasure tests of tests/integration/pii/
// (rotation_*_test.ts, split so that no one file bounds a parallel run): the
// victim and the six logins seeded under k1 and v1, the check that a value
// cannot be had back, and the steps at which a rekey is held or killed.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import postgres from "postgres";
import type { Masked } from "../../src/types.ts";
import { delay } from "./consumers.ts";
import {
  assertRefused,
  cipherOf,
  Cli,
  HMAC_SECRET_2,
  hmacKeySet,
  maskerOf,
  mergeVault,
  openable,
  type PiiRoles,
  recoverFile,
  VAULT_SECRET,
} from "./pii.ts";
import { TEST_SECRET, type TestDb } from "./services.ts";

/** The value a data subject asks to erase, in the middle of a rotation. */
export const VICTIM = { ip: "198.51.100.77", device: "700-00-0001" };

/** Six logins: two of them share the victim's address. */
export const PEOPLE = [
  { user: "v1", ip: VICTIM.ip, device: VICTIM.device },
  { user: "v2", ip: VICTIM.ip, device: "700-00-0002" },
  { user: "p3", ip: "198.51.100.3", device: "700-00-0003" },
  { user: "p4", ip: "198.51.100.4", device: "700-00-0004" },
  { user: "p5", ip: "198.51.100.5", device: "700-00-0005" },
  { user: "p6", ip: "198.51.100.6", device: "700-00-0006" },
];

/** Rows and vault entries under k1 and v1, as drain and a merge leave them. */
export async function seed(db: TestDb): Promise<void> {
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  for (const p of PEOPLE) {
    await db.sql`
      INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)
      VALUES (${p.user}, 'ios', ${k1.mask("ip", p.ip)}, ${
      k1.mask("device_id", p.device)
    }, 'en', 1000000, '2026-01-02')`;
  }
  const values = new Map<string, ["ip" | "device_id", string]>();
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
export async function assertUnrecoverable(
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
export interface Step {
  readonly name: string;
  /**
   * A BEFORE trigger (table, event, condition) that waits on the test's
   * advisory lock; absent: a row lock on the victim's old entry that only
   * the rekey's re-read (FOR UPDATE) waits for.
   */
  readonly trigger?: { readonly table: string; readonly event: string; readonly when?: string };
}

export const STEPS: readonly Step[] = [
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

/** A rekey held at a step: find its backend, let it go, and remove the hold. */
export interface Held {
  /** The backend of the rekey, once it waits there. */
  waiting(): Promise<number>;
  release(): Promise<void>;
  drop(): Promise<void>;
}

/** A rekey held at `step` until `release`. */
export async function hold(db: TestDb, control: postgres.Sql, step: Step): Promise<Held> {
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
  const self: Held = {
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
      await self.release();
      if (step.trigger !== undefined) {
        const [schema, table] = step.trigger.table.split(".") as [string, string];
        await control.unsafe(
          `DROP TRIGGER hold_rekey ON "${schema === "state" ? db.stateSchema : db.schema}".${table};
           DROP FUNCTION "${db.schema}".hold_rekey()`,
        ).simple();
      }
    },
  };
  return self;
}

/** A client for holding and watching, apart from the test's pool. */
export function controlOf(db: TestDb): postgres.Sql {
  return postgres(db.url, {
    max: 3,
    onnotice: () => {},
    connection: { search_path: `${db.schema}, ${db.stateSchema}` },
  });
}

/** Waits until `settled` says so or the recoverer's forget waits on a lock. */
export async function settledOrWaiting(
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
