// Release only after its audit commits (issue 19, H2), and the audit note
// that takes only masks (issue 19, Low), as the roles of sql/roles.sql on
// PostgreSQL 13, 15 and 18. A recoverer gets ciphertext only from
// login_etl_release, for a ticket that login_etl_release_request issued with
// its audit rows in a transaction that has committed: rolling back, a
// savepoint, another login's ticket, a used, unknown or expired ticket yield
// nothing. login_etl_recover, which released in the transaction of its audit
// rows, is gone.

import assert from "node:assert/strict";
import type postgres from "postgres";
import { AUDIT_NOTE_MAX_MASKS } from "../../../src/db/migrations.ts";
import { assertRefused, Cli, drain, maskerOf, PEOPLE } from "../../helpers/pii.ts";
import { failureLine } from "../../helpers/cli.ts";
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

/** Rolls back whatever `body` did, as a recoverer hoping to leave no trace would. */
async function rolledBack(
  sql: postgres.Sql,
  body: (tx: postgres.TransactionSql) => Promise<unknown>,
): Promise<unknown> {
  const rollback = new Error("rollback");
  let seen: unknown = null;
  await sql.begin(async (tx) => {
    seen = await body(tx);
    throw rollback;
  }).catch((error: unknown) => {
    if (error !== rollback) throw error;
  });
  return seen;
}

eachMajorWithPsql.test("release only after its audit commits: a rollback, a savepoint, another login's, a used, unknown or expired ticket yield no ciphertext; recover still works", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using db = await hostileDb(pg.url);
  await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  await db.psql([new URL("schema.sql", SQL), new URL("roles.sql", SQL)]);
  await db.joinGroups();
  const cli = new Cli(db.cliEnv());
  const as = (user: string) => ({ DATABASE_URL: db.urlOf(user) });
  await drain(sqs, cli, PEOPLE, as(db.users.consumer));
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const ip = k1.mask("ip", "203.0.113.7");
  const device = k1.mask("device_id", "444-55-6666");
  const alice = db.connectAs(db.users.recoverer);
  const bob = db.connectAs(db.users.recoverer2);
  const request = async (sql: postgres.Sql | postgres.TransactionSql, masks: string[]) => {
    const [row] = await sql<{ ticket: string }[]>`
      SELECT ticket::text FROM ${sql(STATE)}.login_etl_release_request(
        ${masks}::text[], 'alice', 'INC-9') WHERE ticket IS NOT NULL LIMIT 1`;
    assert.ok(row !== undefined, "a ticket for live masks");
    return row.ticket;
  };
  const release = (sql: postgres.Sql | postgres.TransactionSql, ticket: string) =>
    sql<{ masked_value: string; ciphertext: Uint8Array | null; state: string }[]>`
      SELECT masked_value, ciphertext, state FROM ${
      sql(STATE)
    }.login_etl_release(${ticket}::bigint)`;
  const audits = async () =>
    (await db.admin<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${db.admin(STATE)}.login_etl_audit`)[0]?.n ?? -1;

  await t.step(
    "of the recoverer's functions only login_etl_release and login_etl_inbox_claimed hand out ciphertext: login_etl_recover is gone",
    async () => {
      const handing = await alice<{ f: string }[]>`
        SELECT p.proname::text AS f FROM pg_proc p
        WHERE p.pronamespace = to_regnamespace(${STATE}) AND has_function_privilege(p.oid, 'EXECUTE')
          AND 'bytea'::regtype = ANY(p.proallargtypes)
        ORDER BY 1`;
      assert.deepEqual(handing.map((r) => r.f), ["login_etl_inbox_claimed", "login_etl_release"]);
    },
  );

  // The drained entries wait in the vault inbox: a recoverer's merge hands
  // them out under the same rule as a release.
  const claim = async (sql: postgres.Sql | postgres.TransactionSql, masks: string[]) => {
    const [row] = await sql<{ claim: string | null }[]>`
      SELECT claim::text FROM ${sql(STATE)}.login_etl_inbox_claim(
        ${masks}::text[], 0, 100, 'alice', 'INC-9')`;
    assert.ok(row?.claim !== null && row?.claim !== undefined, "a claim of inbox entries");
    return row.claim;
  };
  const claimed = (sql: postgres.Sql | postgres.TransactionSql, id: string) =>
    sql<{ id: string; masked_value: string; ciphertext: Uint8Array }[]>`
      SELECT id::text, masked_value, ciphertext FROM ${
      sql(STATE)
    }.login_etl_inbox_claimed(${id}::bigint)`;

  await t.step(
    "inbox entries: claimed and read in one transaction, or claimed in a savepoint, rolled back: refused, nothing left",
    async () => {
      const before = await audits();
      await assert.rejects(
        rolledBack(alice, async (tx) => await claimed(tx, await claim(tx, [ip]))),
        pgError("25000", /^An inbox claim is read after the transaction that made it commits/),
      );
      await assert.rejects(
        rolledBack(alice, async (tx) => {
          const id = await tx.savepoint(async (sp) => await claim(sp, [ip]));
          return await claimed(tx, id);
        }),
        pgError("25000", /is read after the transaction that made it commits/),
      );
      assert.equal(await audits(), before, "the claims' audit rows went with the rollbacks");
    },
  );

  await t.step(
    "inbox entries of a committed claim: to its own login only, after its per-mask audit row",
    async () => {
      const id = await claim(alice, [ip]);
      await assert.rejects(claimed(bob, id), pgError("22023", /^No inbox claim \d+ of this login/));
      const [audited] = await db.admin<{ outcome: string; detail: string }[]>`
        SELECT outcome, detail FROM ${db.admin(STATE)}.login_etl_audit
        WHERE action = 'merge' AND masked_value = ${ip} ORDER BY id DESC LIMIT 1`;
      assert.deepEqual(audited, {
        outcome: "released",
        detail: `inbox entries released to be verified and merged (claim ${id})`,
      });
      const entries = await claimed(alice, id);
      assert.deepEqual(entries.map((e) => [e.masked_value, e.ciphertext.length > 0]), [[ip, true]]);
      // Judged nothing: kept in the inbox, unclaimed, for the merge below.
      const [settled] = await alice<{ kept: number }[]>`
        SELECT kept FROM ${alice(STATE)}.login_etl_inbox_settle(${id}::bigint, '{}'::bigint[],
          ${entries.map((e) => e.id)}::bigint[], '{}'::bigint[], '{}'::text[])`;
      assert.equal(settled?.kept, 1);
    },
  );

  // The owner's scheduled merge moves the rest into the vault.
  const merged = await cli.run(["vault-merge"], as(db.users.owner));
  assert.equal(merged.code, 0, merged.stderr);
  assert.equal(JSON.parse(merged.stdout).accepted, 6, merged.stdout);

  await t.step(
    "request and release in one transaction, rolled back: refused, nothing left",
    async () => {
      const before = await audits();
      await assert.rejects(
        rolledBack(alice, async (tx) => await release(tx, await request(tx, [ip]))),
        pgError("55000", /^Release ticket \d+ is not committed: commit the request/),
      );
      assert.equal(await audits(), before, "the request's audit rows went with the rollback");
    },
  );

  await t.step(
    "the request in a savepoint, the release after it: still this transaction, refused",
    async () => {
      await assert.rejects(
        rolledBack(alice, async (tx) => {
          const ticket = await tx.savepoint(async (sp) => await request(sp, [ip]));
          return await release(tx, ticket);
        }),
        pgError("55000", /is not committed/),
      );
    },
  );

  await t.step("a committed ticket: released once, to its own login", async () => {
    const ticket = await request(alice, [ip]);
    await assert.rejects(
      release(bob, ticket),
      pgError("P0002", /^No release ticket \d+ for login bob_/),
    );
    const [vault] = await db.admin<{ ciphertext: Uint8Array }[]>`
      SELECT ciphertext FROM ${db.admin(STATE)}.login_etl_vault WHERE masked_value = ${ip}`;
    const released = await release(alice, ticket);
    assert.deepEqual(
      released.map((r) => [r.masked_value, r.state, new Uint8Array(r.ciphertext ?? [])]),
      [[ip, "released", new Uint8Array(vault?.ciphertext ?? [])]],
    );
    await assert.rejects(release(alice, ticket), pgError("55000", /was used already/));
    await assert.rejects(
      release(alice, "987654321"),
      pgError("P0002", /No release ticket 987654321/),
    );
  });

  await t.step("a ticket older than 10 minutes: refused as expired", async () => {
    const ticket = await request(alice, [ip]);
    await db.admin`UPDATE ${db.admin(STATE)}.login_etl_release_tickets
                   SET requested_at = now() - interval '11 minutes' WHERE id = ${ticket}::bigint`;
    await assert.rejects(release(alice, ticket), pgError("55000", /expired \(10 minutes\)/));
  });

  await t.step(
    "a release rolled back leaves its ticket unused; its audit rows stay committed",
    async () => {
      const ticket = await request(alice, [ip]);
      const first = await rolledBack(alice, (tx) => release(tx, ticket)) as unknown[];
      assert.equal(first.length, 1);
      assert.equal((await release(alice, ticket)).length, 1);
    },
  );

  await t.step(
    "a mask erased between request and release comes back erased, without ciphertext",
    async () => {
      const ticket = await request(alice, [ip, device]);
      await alice`SELECT * FROM ${alice(STATE)}.login_etl_forget(${[
        device,
      ]}::text[], 'alice', 'DSAR 3')`;
      const released = await release(alice, ticket);
      assert.deepEqual(
        released.map((r) => [r.masked_value, r.state, r.ciphertext === null]).sort(),
        [[device, "erased", true], [ip, "released", false]].sort(),
      );
    },
  );

  await t.step(
    "recover through the CLI as the recoverer: two transactions, the value printed",
    async () => {
      const result = await cli.run(
        ["recover", "--masked", ip, "--reason", "INC-10", "--actor", "alice"],
        as(db.users.recoverer),
        { revealing: true },
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${ip}\tip\t203.0.113.7\n`);
    },
  );

  await t.step(
    "a release that fails after its request committed: exit 1, nothing printed, audited released then failed",
    async () => {
      const release = `${STATE}.login_etl_release(bigint)`;
      await db.admin.unsafe(`REVOKE EXECUTE ON FUNCTION ${release} FROM "${db.groups.recoverer}"`);
      try {
        const before = await audits();
        const result = await cli.run(
          ["recover", "--masked", ip, "--reason", "INC-11", "--actor", "alice"],
          as(db.users.recoverer),
          { revealing: true },
        );
        assertRefused(
          result,
          1,
          /^error: Cannot recover: the release of ticket \d+ failed: permission denied for function login_etl_release/,
        );
        const trail = await db.admin<{ outcome: string }[]>`
          SELECT outcome FROM ${db.admin(STATE)}.login_etl_audit
          WHERE masked_value = ${ip} ORDER BY id DESC LIMIT 2`;
        assert.deepEqual(trail.map((r) => r.outcome).reverse(), ["released", "failed"]);
        assert.equal(await audits(), before + 2);
      } finally {
        await db.admin.unsafe(`GRANT EXECUTE ON FUNCTION ${release} TO "${db.groups.recoverer}"`);
      }
    },
  );

  await t.step(
    "every release had a committed audit row naming its ticket, for each of its masks",
    async () => {
      const released = await db.admin<{ id: string; masks: string[]; audited: string[] }[]>`
      SELECT t.id::text, t.masks,
             coalesce((SELECT array_agg(a.masked_value ORDER BY a.masked_value)
                       FROM ${db.admin(STATE)}.login_etl_audit a
                       WHERE a.action = 'recover' AND a.outcome = 'released'
                         AND a.detail LIKE 'ciphertext released on ticket ' || t.id || ',%'), '{}') AS audited
      FROM ${db.admin(STATE)}.login_etl_release_tickets t WHERE t.released_at IS NOT NULL`;
      assert.equal(
        released.length,
        4,
        "released: once, after a rollback, the erased pair, the CLI's",
      );
      for (const r of released) assert.deepEqual(r.audited, [...r.masks].sort(), `ticket ${r.id}`);
    },
  );
});

eachMajorWithPsql.test("login_etl_audit_note and login_etl_release_request take only masks, and the note at most 1000 a call; the CLI refuses a non-mask without echoing it", async ({ t, pg }) => {
  await using db = await hostileDb(pg.url);
  await db.admin.unsafe("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  await db.psql([new URL("schema.sql", SQL), new URL("roles.sql", SQL)]);
  await db.joinGroups();
  const consumer = db.connectAs(db.users.consumer);
  const alice = db.connectAs(db.users.recoverer);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const masks = (n: number) => Array.from({ length: n }, (_, i) => k1.mask("ip", `192.0.2.${i}`));
  const note = (sql: postgres.Sql, list: (string | null)[] | null) =>
    sql`SELECT ${
      sql(STATE)
    }.login_etl_audit_note('recover', ${list}::text[], 'svc', 'r', 'denied', 'd')`;
  const audited = async () =>
    (await db.admin<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${db.admin(STATE)}.login_etl_audit`)[0]?.n ?? -1;

  await t.step("the audit note refuses anything but masks, and more than 1000 a call", async () => {
    const shape = /takes only masks: a key id, a colon and 43 base64url characters/;
    for (
      const bad of [
        ["k1:x"],
        ["203.0.113.7"],
        [`k1:${"A".repeat(42)}`],
        [`k1:${"A".repeat(44)}`],
        [`${"k".repeat(17)}:${"A".repeat(43)}`],
        [`k1:${"A".repeat(42)}=`],
        [masks(1)[0]!, null],
        [`${masks(1)[0]!}\n`],
      ]
    ) {
      await assert.rejects(note(consumer, bad), pgError("22023", shape), JSON.stringify(bad));
    }
    await assert.rejects(
      note(consumer, masks(AUDIT_NOTE_MAX_MASKS + 1)),
      pgError("22023", /at most 1000 masks a call, not 1001/),
    );
    assert.equal(await audited(), 0, "nothing written by a refused note");
    await note(consumer, masks(AUDIT_NOTE_MAX_MASKS));
    await assert.rejects(note(alice, null), pgError("22023", /needs at least one mask/));
    assert.equal(
      await audited(),
      AUDIT_NOTE_MAX_MASKS,
      "1000 masks; a note without one is refused",
    );
  });

  await t.step("the release request refuses anything but masks, and an empty list", async () => {
    await assert.rejects(
      alice`SELECT * FROM ${alice(STATE)}.login_etl_release_request(ARRAY['k1:x'], 'alice', 'r')`,
      pgError("22023", /takes only masks/),
    );
    await assert.rejects(
      alice`SELECT * FROM ${alice(STATE)}.login_etl_release_request('{}'::text[], 'alice', 'r')`,
      pgError("22023", /needs at least one mask/),
    );
  });

  const cli = new Cli(db.cliEnv());
  const as = (user: string) => ({ DATABASE_URL: db.urlOf(user) });

  await t.step("recover and forget refuse a non-mask (exit 2) without echoing it", async () => {
    const pasted = "203.0.113.7";
    const recover = await cli.run(
      ["recover", "--masked", pasted, "--reason", "r"],
      as(db.users.recoverer),
    );
    assert.equal(recover.code, 2, recover.stderr);
    assert.match(
      failureLine(recover),
      /^error: --masked is not a mask: a mask is a key id, a colon and 43 base64url characters/,
    );
    const file = await Deno.makeTempFile({ suffix: ".txt" });
    try {
      await Deno.writeTextFile(file, `# DSAR\n${masks(1)[0]}\n${pasted}\n`);
      const forget = await cli.run(
        ["forget", "--from-file", file, "--reason", "r"],
        as(db.users.recoverer),
      );
      assert.equal(forget.code, 2, forget.stderr);
      assert.match(failureLine(forget), /^error: Line 3 of --from-file ".*" is not a mask: /);
    } finally {
      await Deno.remove(file);
    }
    cli.assertNoRaw([pasted]);
  });

  await t.step("a refusal of 1,500 masks is noted in calls of at most 1,000", async () => {
    const before = await audited();
    const file = await Deno.makeTempFile({ suffix: ".txt" });
    try {
      await Deno.writeTextFile(file, masks(1500).join("\n"));
      const result = await cli.run(
        ["recover", "--from-file", file, "--reason", "r"],
        { ...as(db.users.recoverer), PII_VAULT_KEY: "" },
      );
      assert.equal(result.code, 2, result.stderr);
      assert.match(failureLine(result), /^error: Refused: recover needs the vault key/);
    } finally {
      await Deno.remove(file);
    }
    const [denied] = await db.admin<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${db.admin(STATE)}.login_etl_audit WHERE outcome = 'denied'`;
    assert.equal(await audited() - before, 1500);
    assert.ok((denied?.n ?? 0) >= 1500);
  });
});
