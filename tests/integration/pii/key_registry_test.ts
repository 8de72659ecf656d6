// The key registry from a hostile consumer's side (issue 19 review, F1-F3):
// sql/schema.sql then sql/roles.sql as a DBA runs them, a consumer login
// that tries to plant key ids, and what the owner and `check` then see, on
// PostgreSQL 13, 15 and 18. Role names get a suffix: roles are
// cluster-wide and tests may run side by side.

import assert from "node:assert/strict";
import postgres from "postgres";
import { assertRefused, Cli, cliEnv, drain, hmacKeySet, PEOPLE } from "../../helpers/pii.ts";
import { freshSchema, startSqs, uniqueName } from "../../helpers/services.ts";
import { eachMajorWithPsql, psqlFiles } from "../../helpers/psql.ts";
import { dropRoles } from "../../helpers/role_names.ts";
import { KEY_REGISTRATIONS_PER_DAY } from "../../../src/db/migrations.ts";

/** A fingerprint's shape (22 base64url characters) that matches no secret. */
const BOGUS_FINGERPRINT = "AAAAAAAAAAAAAAAAAAAAAA";
/** A key id that would forge a log line and turn a terminal red, as text output. */
const EVIL_ID = 'evil\nlevel=error msg="203.0.113.7 recovered"\u001b[31m';

eachMajorWithPsql.test("a consumer registers key ids only through login_etl_register_key: checked, attributed, capped, and named in every refusal", async ({ t, pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const suffix = uniqueName("");
  const [owner, consumer] = ["login_etl_owner", "login_etl_consumer"].map((g) => g + suffix) as [
    string,
    string,
  ];
  const consumerUser = `etl_service${suffix}`;
  const ownerUser = `etl_migrate${suffix}`;
  const password = crypto.randomUUID();
  const urlOf = (user: string) => {
    const url = new URL(pg.url);
    url.hostname = "127.0.0.1";
    url.username = user;
    url.password = password;
    return url.toString();
  };
  const clients: postgres.Sql[] = [];
  const connectAs = (user: string) => {
    const sql = postgres(urlOf(user), { max: 1, onnotice: () => {} });
    clients.push(sql);
    return sql;
  };
  const state = `"${db.stateSchema}"`;
  const racerUsers = ["rr", "ser"].map((l) => `etl_${l}${suffix}`);
  const register = (sql: postgres.Sql, keyId: string, fingerprint = BOGUS_FINGERPRINT) =>
    sql<{ outcome: string; registered_by: string }[]>`
      SELECT outcome, registered_by FROM ${
      sql(db.stateSchema)
    }.login_etl_register_key(${keyId}, ${fingerprint})`;
  try {
    const root = new URL("../../../sql/", import.meta.url);
    await psqlFiles(db.schema, [new URL("schema.sql", root), new URL("roles.sql", root)], {
      url: db.url,
      rewrite: (text) =>
        text.replace(
          /\b(login_etl_owner|login_etl_consumer|pii_recoverer|login_etl_analyst)\b/g,
          `$1${suffix}`,
        ),
    });
    await db.sql.unsafe(`
      CREATE ROLE "${consumerUser}" LOGIN PASSWORD '${password}' IN ROLE "${consumer}";
      CREATE ROLE "${ownerUser}" LOGIN PASSWORD '${password}' IN ROLE "${owner}";`).simple();
    const cli = new Cli(cliEnv(db));
    const asConsumer = connectAs(consumerUser);
    const asOwner = { DATABASE_URL: urlOf(ownerUser) };

    await t.step(
      "the consumer may not write login_etl_keys; its drain records its keys under its login",
      async () => {
        for (
          const statement of [
            `INSERT INTO ${state}.login_etl_keys (key_id, fingerprint) VALUES ('zz', 'x')`,
            `UPDATE ${state}.login_etl_keys SET fingerprint = 'x'`,
            `DELETE FROM ${state}.login_etl_keys`,
          ]
        ) {
          await assert.rejects(
            asConsumer.unsafe(statement),
            (e: { code?: string }) => e.code === "42501",
            statement,
          );
        }
        await drain(sqs, cli, PEOPLE, { DATABASE_URL: urlOf(consumerUser) });
        const rows = await db.sql<{ key_id: string; registered_by: string }[]>`
        SELECT key_id, registered_by FROM ${db.sql(db.stateSchema)}.login_etl_keys ORDER BY key_id`;
        assert.ok(rows.some((r) => r.key_id === "k1"), JSON.stringify(rows));
        assert.deepEqual(new Set(rows.map((r) => r.registered_by)), new Set([consumerUser]));
      },
    );

    await t.step(
      "login_etl_register_key refuses what is not a key id or a fingerprint",
      async () => {
        for (
          const [keyId, fingerprint] of [
            [EVIL_ID, BOGUS_FINGERPRINT],
            ["a".repeat(17), BOGUS_FINGERPRINT],
            ["vault:", BOGUS_FINGERPRINT],
            ["k:1", BOGUS_FINGERPRINT],
            ["zz", "x"],
            ["zz", `${BOGUS_FINGERPRINT}\n`],
          ]
        ) {
          await assert.rejects(
            register(asConsumer, keyId!, fingerprint),
            (e: { code?: string }) => e.code === "22023",
            JSON.stringify(keyId),
          );
        }
        const [again] = await register(asConsumer, "k1");
        assert.equal(again?.outcome, "mismatch", "a recorded id keeps its fingerprint");
      },
    );

    await t.step(
      "a bogus id stops vault-merge with key_missing naming its login and the remedy; rekey --retire as the owner, without the key, clears it",
      async () => {
        const [made] = await register(asConsumer, "zz");
        assert.deepEqual(made, { outcome: "new", registered_by: consumerUser });
        const refused = await cli.run(["vault-merge"], {
          ...asOwner,
          PII_HMAC_KEY: hmacKeySet("k1"),
        });
        assertRefused(
          refused,
          2,
          new RegExp(
            `lacks key "zz", recorded in use and not retired \\("zz" registered by login "${consumerUser}" \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC\\).*rekey --retire=ID\\[,ID…\\] --reason TEXT`,
          ),
        );
        const retired = await cli.run([
          "rekey",
          "--retire",
          "zz",
          "--reason",
          "a key id nobody made a key for",
        ], {
          ...asOwner,
          PII_HMAC_KEY: hmacKeySet("k1"),
        });
        assert.equal(retired.code, 0, retired.stderr);
        // Through the binary's process and permission flags: vault-merge's CLI case.
        const merged = await cli.run(["vault-merge"], {
          ...asOwner,
          PII_HMAC_KEY: hmacKeySet("k1"),
        }, { spawn: true });
        assert.equal(merged.code, 0, merged.stderr);
      },
    );

    await t.step(
      "a squatted future id: the rotation's drain refuses with key_mismatch naming who registered it",
      async () => {
        await register(asConsumer, "k2");
        const queueUrl = sqs.createQueue();
        const refused = await cli.run(["drain", "--queue-url", queueUrl, "--idle-seconds", "0"], {
          DATABASE_URL: urlOf(consumerUser),
          PII_HMAC_KEY: hmacKeySet("k2"),
        });
        assertRefused(
          refused,
          2,
          new RegExp(
            `HMAC key id "k2" is recorded with a different secret \\(registered by login "${consumerUser}" \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC\\).*the id was squatted: use another key id, and as the owner role run login-etl rekey --retire=k2`,
          ),
        );
      },
    );

    await t.step("check lists the recorded HMAC key ids with their registering login", async () => {
      const result = await cli.run(["check", "--for", "vault-merge"], {
        ...asOwner,
        PII_HMAC_KEY: hmacKeySet("k1"),
        LOGIN_ETL_LOG_FORMAT: "text",
      });
      const line = result.stdout.split("\n").find((l) => /^ok\s+hmac key ids\s/.test(l)) ?? "";
      const by = `by "${consumerUser}" \\d{4}-\\d\\d-\\d\\d`;
      assert.match(line, new RegExp(`"k1" ${by}`), result.stdout);
      assert.match(line, new RegExp(`"zz" ${by} \\(retired\\)`));
      assert.match(line, new RegExp(`"k2" ${by}(,|;)`));
    });

    await t.step(
      "a key id with control characters reaches text logs and check's lines escaped and quoted",
      async () => {
        // Only the owner can write such an id now; the output must hold anyway.
        await db.sql`INSERT INTO ${
          db.sql(db.stateSchema)
        }.login_etl_keys (key_id, fingerprint) VALUES (${EVIL_ID}, ${BOGUS_FINGERPRINT})`;
        const escaped = '"evil\\nlevel=error msg=\\"203.0.113.7 recovered\\"\\x1b[31m"';
        const text = { ...asOwner, PII_HMAC_KEY: hmacKeySet("k1"), LOGIN_ETL_LOG_FORMAT: "text" };
        const merge = await cli.run(["vault-merge"], text);
        assert.equal(merge.code, 2, merge.stderr);
        const check = await cli.run(["check", "--for", "vault-merge"], text);
        assert.equal(check.code, 1, check.stdout + check.stderr);
        for (
          const [name, output] of [["vault-merge stderr", merge.stderr], [
            "check stdout",
            check.stdout,
          ]]
        ) {
          assert.ok(!output!.includes("\u001b"), `${name}: no raw ESC`);
          assert.ok(output!.includes(escaped), `${name}: the id quoted and escaped: ${output}`);
          for (const line of output!.split("\n")) {
            assert.doesNotMatch(line, /^level=|^msg=|^\S*203\.0\.113\.7/, `${name}: a forged line`);
          }
        }
        assert.match(merge.stderr, /^error: Refused to merge the vault inbox/m);
        for (const line of check.stdout.trimEnd().split("\n")) {
          assert.match(line, /^(ok|fail|skip)\s{2}/, `check: every line is a check line: ${line}`);
        }
        await db.sql`DELETE FROM ${
          db.sql(db.stateSchema)
        }.login_etl_keys WHERE key_id = ${EVIL_ID}`;
      },
    );

    await t.step(
      `a login registers at most ${KEY_REGISTRATIONS_PER_DAY} new key ids a day; the owner role is not capped`,
      async () => {
        const [mine] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM ${
          db.sql(db.stateSchema)
        }.login_etl_keys WHERE registered_by = ${consumerUser}`;
        const left = KEY_REGISTRATIONS_PER_DAY - (mine?.n ?? 0);
        assert.ok(left > 0, `${mine?.n} registered already`);
        // Side by side, as racing consumers would: the cap still holds.
        const racers = Array.from({ length: 3 }, () => connectAs(consumerUser));
        const outcomes = await Promise.allSettled(
          Array.from({ length: left + 3 }, (_, i) => register(racers[i % 3]!, `cap${i}`)),
        );
        const made = outcomes.filter((o) => o.status === "fulfilled").length;
        const capped = outcomes.filter((o) =>
          o.status === "rejected" && (o.reason as { code?: string }).code === "54000"
        );
        assert.equal(made, left);
        assert.equal(capped.length, 3);
        const [known] = await register(asConsumer, "k1");
        assert.equal(known?.outcome, "mismatch", "a recorded id is still answered");
        const asOwnerSql = connectAs(ownerUser);
        const [mineToo] = await register(asOwnerSql, "owner1");
        assert.equal(mineToo?.outcome, "new");
      },
    );

    for (
      const [level, user] of [["repeatable read", racerUsers[0]!], ["serializable", racerUsers[1]!]]
    ) {
      await t.step(
        `the cap holds for 4 sessions of one login racing in ${level} transactions: the losers get a serialization failure`,
        async () => {
          await db.sql.unsafe(
            `CREATE ROLE "${user}" LOGIN PASSWORD '${password}' IN ROLE "${consumer}"`,
          );
          const sessions = Array.from({ length: 4 }, () => connectAs(user!));
          // Each takes its snapshot, then all register at once: without the
          // per-login row, each REPEATABLE READ snapshot counted none of the
          // others' ids (32 registered). SERIALIZABLE held already (SSI saw
          // the count read against the winner's inserts); it stays tested.
          let arrived = 0;
          let go!: () => void;
          const together = new Promise<void>((resolve) => go = resolve);
          const outcomes = await Promise.allSettled(
            sessions.map((session, i) =>
              session.begin(`isolation level ${level}`, async (tx) => {
                await tx`SELECT 1`;
                if (++arrived === sessions.length) go();
                await together;
                for (let j = 0; j < KEY_REGISTRATIONS_PER_DAY; j++) {
                  await register(
                    tx as unknown as postgres.Sql,
                    `${level === "serializable" ? "s" : "r"}${i}x${j}`,
                  );
                }
              })
            ),
          );
          const [registered] = await db.sql<{ n: number }[]>`
            SELECT count(*)::int AS n FROM ${
            db.sql(db.stateSchema)
          }.login_etl_keys WHERE registered_by = ${user!}`;
          assert.equal(registered?.n, KEY_REGISTRATIONS_PER_DAY, JSON.stringify(outcomes));
          assert.equal(outcomes.filter((o) => o.status === "fulfilled").length, 1);
          for (const o of outcomes) {
            if (o.status === "rejected") {
              assert.ok(
                ["40001", "54000"].includes((o.reason as { code?: string }).code ?? ""),
                String(o.reason),
              );
            }
          }
        },
      );
    }

    await t.step(
      "a registration is dated by the clock, not by its transaction's start",
      async () => {
        const asOwnerSql = connectAs(ownerUser);
        const [dated] = await asOwnerSql.begin(async (tx) => {
          const [start] = await tx<{ at: Date }[]>`SELECT now() AS at`;
          await tx`SELECT pg_sleep(0.05)`;
          const [made] = await tx<{ registered_at: Date }[]>`
            SELECT registered_at FROM ${
            tx(db.stateSchema)
          }.login_etl_register_key('clock1', ${BOGUS_FINGERPRINT})`;
          return [{ start: start!.at, made: made!.registered_at }];
        });
        assert.ok(dated!.made > dated!.start, JSON.stringify(dated));
        const [row] = await db.sql<{ later: boolean }[]>`
          SELECT first_used > ${dated!.start} AS later FROM ${
          db.sql(db.stateSchema)
        }.login_etl_keys WHERE key_id = 'clock1'`;
        assert.equal(row?.later, true);
      },
    );

    await t.step(
      "rekey --retire=ID,ID retires several ids in one run; an id starting with - goes in the = form",
      async () => {
        const asOwnerSql = connectAs(ownerUser);
        for (const id of ["-h", "zy", "zx"]) await register(asOwnerSql, id);
        const env = { ...asOwner, PII_HMAC_KEY: hmacKeySet("k1") };
        const flagLike = await cli.run(["rekey", "--retire", "-h", "--reason", "bogus"], env);
        assert.equal(flagLike.code, 2, flagLike.stderr);
        const refused = await cli.run(["vault-merge"], env);
        assertRefused(refused, 2, /login-etl rekey --retire=ID\[,ID…\] --reason TEXT/);
        const retired = await cli.run([
          "rekey",
          "--retire=-h,zy,zx",
          "--reason",
          "key ids nobody made a key for",
        ], env);
        assert.equal(retired.code, 0, retired.stderr);
        assert.deepEqual(
          retired.stdout.trimEnd().split("\n").map((l) => JSON.parse(l)),
          ["-h", "zy", "zx"].map((id) => ({ retired: id, links: 0 })),
        );
        const bad = await cli.run(["rekey", "--retire=zw,not an id", "--reason", "x"], env);
        assertRefused(bad, 2, /Invalid --retire \(id 2 of 2, 9 characters\)/);
      },
    );
  } finally {
    for (const sql of clients) await sql.end();
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      const roles = [consumerUser, ownerUser, ...racerUsers, owner, consumer].concat(
        ["pii_recoverer", "login_etl_analyst"].map((g) => g + suffix),
      );
      await dropRoles(admin, roles);
    } finally {
      await admin.end();
    }
  }
});
