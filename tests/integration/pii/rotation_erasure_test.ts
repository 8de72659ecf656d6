// Erasure and rotation agree, against real Postgres: a forget of a moved
// mask erases its successor; an erasure by mask reaches the value's masks
// under later keys; rekey keeps a target entry only if it proves out and
// refuses masks under keys outside the set; --retire forgets an old key's
// links only once nothing is left under it. The races (a rekey held or
// killed at each step) are in rotation_held_test.ts and
// rotation_killed_test.ts, forget by value in rotation_forget_values_test.ts.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Masked } from "../../../src/types.ts";
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
  piiRoles,
  recoveredLines,
  recoverFile,
  VAULT_SECRET,
  vaultRows,
} from "../../helpers/pii.ts";
import { assertUnrecoverable, PEOPLE, seed, VICTIM } from "../../helpers/rotation.ts";
import { freshSchema, startSqs, TEST_SECRET } from "../../helpers/services.ts";

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
