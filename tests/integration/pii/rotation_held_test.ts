// A forget during a rekey, against real Postgres on each major: the rekey is
// held at each of its steps by a lock another session holds, while a
// consumer drains the same value and a recoverer forgets it; the value stays
// unrecoverable ("unrecoverable": tests/helpers/rotation.ts).

import assert from "node:assert/strict";
import { Secret } from "../../../src/secret.ts";
import { Masker } from "../../../src/mask.ts";
import { rekeyRows } from "../../../src/pii/rekey.ts";
import { eachMajor } from "../../helpers/majors.ts";
import {
  body,
  cipherOf,
  Cli,
  cliEnv,
  drain,
  HMAC_SECRET_2,
  maskerOf,
  type PiiRoles,
  piiRoles,
  VAULT_SECRET,
} from "../../helpers/pii.ts";
import {
  assertUnrecoverable,
  controlOf,
  hold,
  seed,
  settledOrWaiting,
  STEPS,
  VICTIM,
} from "../../helpers/rotation.ts";
import {
  capturingTelemetry,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
  type TestSqs,
} from "../../helpers/services.ts";

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
