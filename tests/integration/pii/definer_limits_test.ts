// Bounds on what any caller of login-etl's SECURITY DEFINER functions can
// make the owner write (issue 19, attacker review L3 and L4), as the roles of
// sql/roles.sql on PostgreSQL 13, 15 and 18:
// - login_etl_audit_note, which consumers and recoverers may call under any
//   actor, refuses an empty, NULL or oversized actor, a reason or detail
//   beyond 1000 characters, a NULL action or outcome, and a NULL or empty
//   mask list (each refusal writes nothing); the CLI refuses an --actor or
//   --reason beyond the caps before it does anything, without echoing them.
// - login_etl_ledger_maintain, which consumers call, refuses a retention
//   beyond 400 days (1500 created 1,486 day partitions in one transaction,
//   and drains then failed with "out of shared memory") and out-of-range row
//   limits; at 400 days it creates its partitions 32 a call, and a drain
//   keeping the ledger 400 days still works.

import assert from "node:assert/strict";
import type postgres from "postgres";
import {
  AUDIT_ACTOR_MAX_CHARS,
  AUDIT_TEXT_MAX_CHARS,
  LEDGER_PARTITIONS_PER_CALL,
} from "../../../src/db/migrations.ts";
import { LEDGER_RETENTION_MAX_DAYS } from "../../../src/config/options.ts";
import { assertRefused, Cli, drain, maskerOf, PEOPLE } from "../../helpers/pii.ts";
import { hostileDb, STATE } from "../../helpers/hostile.ts";
import { eachMajorWithPsql } from "../../helpers/psql.ts";
import { startSqs, TEST_SECRET } from "../../helpers/services.ts";

const SQL = new URL("../../../sql/", import.meta.url);

/** A Postgres error of SQLSTATE `code` whose message matches `message`. */
function pgError(code: string, message: RegExp) {
  return (error: { code?: string; message?: string }) => {
    assert.equal(error.code, code, error.message);
    assert.match(error.message ?? "", message);
    return true;
  };
}

eachMajorWithPsql.test("login_etl_audit_note refuses unbounded or missing actor, reason, detail, action, outcome and masks; the CLI refuses long --actor and --reason", async ({ t, pg }) => {
  await using db = await hostileDb(pg.url);
  await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  await db.psql([new URL("schema.sql", SQL), new URL("roles.sql", SQL)]);
  await db.joinGroups();
  const consumer = db.connectAs(db.users.consumer);
  const mask = (await maskerOf(TEST_SECRET, "k1")).mask("ip", "192.0.2.1");
  type Note = {
    action?: string | null;
    masks?: (string | null)[] | null;
    actor?: string | null;
    reason?: string | null;
    outcome?: string | null;
    detail?: string | null;
  };
  const note = (sql: postgres.Sql, n: Note) => {
    const v = (key: Exclude<keyof Note, "masks">, fallback: string) =>
      key in n ? n[key] ?? null : fallback;
    const masks = "masks" in n ? n.masks ?? null : [mask];
    return sql`SELECT ${sql(STATE)}.login_etl_audit_note(
      ${v("action", "recover")}::text, ${masks}::text[], ${v("actor", "svc")}::text,
      ${v("reason", "r")}::text, ${v("outcome", "denied")}::text, ${v("detail", "d")}::text)`;
  };
  const audited = async () =>
    (await db.admin<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${db.admin(STATE)}.login_etl_audit`)[0]?.n ?? -1;

  await t.step("each refusal raises 22023 and writes nothing", async () => {
    const refusals: [string, Note, RegExp][] = [
      ["a NULL mask list", { masks: null }, /needs at least one mask/],
      ["an empty mask list", { masks: [] }, /needs at least one mask/],
      ["a NULL mask", { masks: [mask, null] }, /takes only masks/],
      ["an empty mask", { masks: [""] }, /takes only masks/],
      ["a non-mask", { masks: ["203.0.113.7"] }, /takes only masks/],
      ["a NULL actor", { actor: null }, /an actor of 1 to 200 characters/],
      ["a blank actor", { actor: "  " }, /an actor of 1 to 200 characters/],
      ["a long actor", { actor: "a".repeat(AUDIT_ACTOR_MAX_CHARS + 1) }, /1 to 200 characters/],
      [
        "a long reason",
        { reason: "r".repeat(AUDIT_TEXT_MAX_CHARS + 1) },
        /at most 1000 characters/,
      ],
      [
        "a long detail",
        { detail: "d".repeat(AUDIT_TEXT_MAX_CHARS + 1) },
        /at most 1000 characters/,
      ],
      ["a NULL action", { action: null }, /only denied or failed recover and forget/],
      ["a NULL outcome", { outcome: null }, /only denied or failed recover and forget/],
      ["another outcome", { outcome: "success" }, /only denied or failed recover and forget/],
    ];
    for (const [what, bad, message] of refusals) {
      await assert.rejects(note(consumer, bad), pgError("22023", message), what);
    }
    assert.equal(await audited(), 0, "nothing written by a refused note");
  });

  await t.step("a note at every cap is recorded, once per mask", async () => {
    await note(consumer, {
      masks: [mask, mask],
      actor: "a".repeat(AUDIT_ACTOR_MAX_CHARS),
      reason: "r".repeat(AUDIT_TEXT_MAX_CHARS),
      detail: "d".repeat(AUDIT_TEXT_MAX_CHARS),
      outcome: "failed",
    });
    await note(consumer, { reason: null, detail: null });
    assert.equal(await audited(), 3);
  });

  await t.step(
    "the CLI refuses --actor and --reason beyond the caps, without echoing them",
    async () => {
      const cli = new Cli(db.cliEnv({ DATABASE_URL: db.urlOf(db.users.recoverer) }));
      const actor = `x${"A".repeat(AUDIT_ACTOR_MAX_CHARS)}`;
      const reason = `y${"B".repeat(AUDIT_TEXT_MAX_CHARS)}`;
      for (
        const [args, pattern] of [
          [
            ["--actor", actor, "--reason", "INC-1"],
            /^error: Invalid --actor: 201 characters, at most 200$/,
          ],
          [["--reason", reason], /^error: Invalid --reason: 1001 characters, at most 1000$/],
        ] as const
      ) {
        const result = await cli.run(["recover", "--masked", mask, ...args]);
        assertRefused(result, 2, pattern);
        assert.ok(!result.stderr.includes("AAAAAAAAAA") && !result.stderr.includes("BBBBBBBBBB"));
      }
      assert.equal(await audited(), 3, "nothing audited by a refused command");
    },
  );
});

eachMajorWithPsql.test("login_etl_ledger_maintain refuses a retention beyond 400 days and out-of-range limits; at 400 days it works 32 partitions a call and drains still work", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using db = await hostileDb(pg.url);
  await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  await db.psql([new URL("schema.sql", SQL), new URL("roles.sql", SQL)]);
  await db.joinGroups();
  const consumer = db.connectAs(db.users.consumer);
  const maintain = (days: number | null, limit: number | null) =>
    consumer<{ created: number; dropped: number; deleted: number }[]>`
      SELECT * FROM ${consumer(STATE)}.login_etl_ledger_maintain(${days}::int, ${limit}::int)`;
  const partitions = async () =>
    (await db.admin<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = ${`${STATE}.login_etl_ledger`}::regclass
        AND c.relname ~ '^login_etl_ledger_p[0-9]{8}$'`)[0]?.n ?? -1;

  await t.step("the abusive calls are refused and create nothing", async () => {
    const before = await partitions();
    for (
      const [days, limit, message] of [
        [1500, 1000, /keeps the ledger 1 to 400 days, not 1500/],
        [LEDGER_RETENTION_MAX_DAYS + 1, 1000, /1 to 400 days, not 401/],
        [0, 1000, /1 to 400 days, not 0/],
        [-5, 1000, /1 to 400 days, not -5/],
        [null, 1000, /1 to 400 days, not <NULL>/],
        [14, 0, /deletes 1 to 10000 rows a call, not 0/],
        [14, 10_001, /deletes 1 to 10000 rows a call, not 10001/],
        [14, null, /deletes 1 to 10000 rows a call/],
      ] as const
    ) {
      await assert.rejects(maintain(days, limit), pgError("22023", message), `${days}, ${limit}`);
    }
    assert.equal(await partitions(), before);
  });

  await t.step("at the maximum, each call creates at most 32 partitions", async () => {
    const created: number[] = [];
    for (let call = 0; call < 30; call++) {
      const [r] = await maintain(LEDGER_RETENTION_MAX_DAYS, 10_000);
      created.push(r?.created ?? -1);
      if ((r?.created ?? 0) < LEDGER_PARTITIONS_PER_CALL) break;
    }
    assert.ok(created.every((n) => n >= 0 && n <= LEDGER_PARTITIONS_PER_CALL), `${created}`);
    // Every day from the oldest kept to three days ahead.
    assert.equal(await partitions(), LEDGER_RETENTION_MAX_DAYS + 5, `calls: ${created}`);
  });

  await t.step("a drain keeping the ledger 400 days still works", async () => {
    const cli = new Cli(db.cliEnv({
      DATABASE_URL: db.urlOf(db.users.consumer),
      LOGIN_ETL_LEDGER_RETENTION_DAYS: String(LEDGER_RETENTION_MAX_DAYS),
    }));
    const { inserted } = await drain(sqs, cli, PEOPLE);
    assert.equal(inserted, PEOPLE.length);
  });
});
