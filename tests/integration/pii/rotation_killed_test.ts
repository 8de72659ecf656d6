// A forget after a rekey SIGKILLed at each of its steps, and forget
// --replay-audit across rotations, against real Postgres: the value stays
// unrecoverable ("unrecoverable": tests/helpers/rotation.ts).

import assert from "node:assert/strict";
import { type Consumer, delay } from "../../helpers/consumers.ts";
import {
  assertRefused,
  body,
  cipherOf,
  Cli,
  cliEnv,
  drain,
  HMAC_SECRET_2,
  hmacKeySet,
  maskerOf,
  openable,
  piiRoles,
  recoverFile,
  VAULT_SECRET,
} from "../../helpers/pii.ts";
import {
  assertUnrecoverable,
  controlOf,
  hold,
  seed,
  STEPS,
  VICTIM,
} from "../../helpers/rotation.ts";
import { freshSchema, reportFigures, startSqs, TEST_SECRET } from "../../helpers/services.ts";

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
