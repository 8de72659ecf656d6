// recover through the real CLI against the real Postgres and fauxqs: the vault
// that drain writes, recovery audited in the database function before the
// ciphertext leaves, refusals audited, and every released value proven: it
// must decrypt and mask back to the requested mask, so tampered, swapped and
// injected entries are refused. The first test runs on PostgreSQL 13, 15 and 18.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Masked } from "../../../src/types.ts";
import {
  assertRefused,
  auditAfter,
  type AuditRow,
  body,
  cipherOf,
  Cli,
  cliEnv,
  drain,
  inboxRows,
  lastAuditId,
  maskerOf,
  PEOPLE,
  rawValuesOf,
  recoveredLines,
  recoverFile,
  tablesHoldingRaw,
  VAULT_SECRET,
  vaultRows,
} from "../../helpers/pii.ts";
import { failureLine } from "../../helpers/cli.ts";
import { eachMajor } from "../../helpers/majors.ts";
import { freshSchema, reportFigures, startSqs, TEST_SECRET } from "../../helpers/services.ts";

eachMajor.test("recover prints the raw value behind ip and device_id masks, alone and in bulk, audited before they are released", async ({ pg }) => {
  const started = performance.now();
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const cli = new Cli(cliEnv(db));
  const k1 = await maskerOf(TEST_SECRET, "k1");

  const first = await drain(sqs, cli, PEOPLE, {}, { merge: db });
  assert.equal(first.inserted, 4);
  const ipMask = k1.mask("ip", "2001:db8::1");
  const deviceMask = k1.mask("device_id", "111-22-3333");
  const vault = await vaultRows(db.sql);
  assert.equal(vault.length, 6, "one entry per distinct value: 3 ips and 3 device ids");
  const inRows = await db.sql<{ m: string }[]>`
    SELECT masked_ip AS m FROM user_logins UNION SELECT masked_device_id FROM user_logins`;
  assert.deepEqual(
    vault.map((v) => v.masked_value).sort(),
    inRows.map((r) => r.m).sort(),
    "the vault is keyed by exactly the masks in user_logins",
  );
  for (const v of vault) {
    assert.equal(v.key_id, "v1");
    assert.equal(v.iv.length, 12, "96-bit GCM IV");
    const bytes = new TextDecoder("latin1").decode(v.ciphertext);
    for (const raw of rawValuesOf(PEOPLE)) assert.ok(!bytes.includes(raw), "ciphertext, not text");
  }

  // Insert-once: the same values again (new messages, a new process) leave the entries as they were.
  const again = await drain(
    sqs,
    cli,
    PEOPLE.map((b) => b.replace(/"u(\d)"/, '"again-$1"')),
    {},
    { merge: db },
  );
  assert.equal(again.inserted, 4);
  assert.deepEqual(await vaultRows(db.sql), vault, "vault entries are written once");

  const before = await lastAuditId(db.sql);
  const reason = "ticket SEC-7: fraud review";
  // Through the binary's process and permission flags: recover's CLI case.
  const ip = await cli.run(
    ["recover", "--masked", ipMask, "--reason", reason, "--actor", "alice"],
    {},
    { revealing: true, spawn: true },
  );
  assert.equal(ip.code, 0, ip.stderr);
  assert.equal(ip.stdout, `${ipMask}\tip\t2001:db8::1\n`, "the canonical address");
  const device = await cli.run(
    ["recover", "--masked", deviceMask, "--reason", reason, "--actor", "alice"],
    {},
    { revealing: true },
  );
  assert.equal(device.code, 0, device.stderr);
  assert.equal(device.stdout, `${deviceMask}\tdevice_id\t111-22-3333\n`);
  assert.deepEqual(
    (await auditAfter(db.sql, before)).map((a) => ({
      ...a,
      id: "",
      detail: a.detail?.replace(/ticket \d+/, "ticket N") ?? null,
    })),
    [ipMask, deviceMask].map((m, i) => ({
      id: "",
      actor: "alice",
      "db_user": "postgres",
      action: "recover",
      "masked_value": m,
      reason,
      outcome: "released",
      detail: `ciphertext released on ticket N, field ${i === 0 ? "ip" : "device_id"}`,
    })),
  );

  // A data-subject access request: several masks from a file, with a comment,
  // a blank line, a repeat and a mask that was never vaulted.
  const unknown = `k1:${"A".repeat(43)}`;
  const request = [
    "# DSAR 2024-117",
    k1.mask("ip", "198.51.100.4"),
    k1.mask("ip", "203.0.113.7"),
    "",
    k1.mask("device_id", "444-55-6666"),
    k1.mask("device_id", "777-88-9999"),
    k1.mask("ip", "203.0.113.7"),
    unknown,
  ];
  const beforeBulk = await lastAuditId(db.sql);
  const bulk = await recoverFile(cli, request, ["--reason", "DSAR 2024-117", "--actor", "dpo"]);
  assert.equal(bulk.code, 0, bulk.stderr);
  assert.deepEqual(
    recoveredLines(bulk.stdout),
    [
      `${k1.mask("ip", "198.51.100.4")}\tip\t198.51.100.4`,
      `${k1.mask("ip", "203.0.113.7")}\tip\t203.0.113.7`,
      `${k1.mask("device_id", "444-55-6666")}\tdevice_id\t444-55-6666`,
      `${k1.mask("device_id", "777-88-9999")}\tdevice_id\t777-88-9999`,
    ].sort(),
  );
  const bulkAudit = await auditAfter(db.sql, beforeBulk);
  assert.equal(bulkAudit.length, 5, "one audit row per distinct mask asked for");
  assert.ok(bulkAudit.every((a) => a.actor === "dpo" && a.reason === "DSAR 2024-117"));
  assert.deepEqual(
    bulkAudit.map((a) => a.outcome).sort(),
    ["not_found", "released", "released", "released", "released"],
  );
  assert.equal(bulkAudit.find((a) => a.masked_value === unknown)?.outcome, "not_found");

  // `recover --audit` exports the whole trail, oldest first.
  const listing = await cli.run(["recover", "--audit"]);
  assert.equal(listing.code, 0, listing.stderr);
  const listed = listing.stdout.trim().split("\n").map((l) =>
    JSON.parse(l) as AuditRow & { at: string }
  );
  const all = await auditAfter(db.sql);
  assert.deepEqual(listed.map((l) => l.id), all.map((a) => a.id));
  assert.deepEqual(
    listed.find((l) => l.masked_value === ipMask),
    {
      ...all.find((a) => a.masked_value === ipMask),
      at: listed.find((l) => l.masked_value === ipMask)?.at,
    },
  );
  assert.match(listed[0]?.at ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  // Audit before reveal: when the audit row cannot be written, nothing leaves the database.
  await db.sql.unsafe(`
    CREATE FUNCTION "${db.schema}".refuse_audit() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'audit trail unavailable'; END $$;
    CREATE TRIGGER refuse_audit BEFORE INSERT ON "${db.stateSchema}".login_etl_audit
      FOR EACH ROW EXECUTE FUNCTION "${db.schema}".refuse_audit();`).simple();
  const beforeBlind = await lastAuditId(db.sql);
  const blind = await cli.run(
    ["recover", "--masked", ipMask, "--reason", "audit down", "--actor", "alice"],
    {},
    { revealing: true },
  );
  assertRefused(blind, 1, /audit trail .*nothing was revealed/);
  assert.deepEqual(await auditAfter(db.sql, beforeBlind), []);
  await db.sql.unsafe(`DROP TRIGGER refuse_audit ON "${db.stateSchema}".login_etl_audit`);

  const raws = rawValuesOf(PEOPLE);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), [], "no raw value in any table");
  reportFigures("recover round trip", {
    rows: 8,
    vault_entries: vault.length,
    audit_rows: all.length,
    cli_runs: cli.runs,
    ms: Math.round(performance.now() - started),
  });
});

Deno.test("drain without PII_VAULT_KEY stores nothing reversible: the vault stays empty and recover finds nothing", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db, { PII_VAULT_KEY: "" }));
  assert.equal((await drain(sqs, cli, PEOPLE)).inserted, 4);
  const [vault] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_etl_vault`;
  assert.equal(vault?.n, 0);
  const vaultKeys = await db.sql`SELECT key_id FROM login_etl_keys WHERE key_id LIKE 'vault:%'`;
  assert.equal(vaultKeys.length, 0, "no vault key registered");

  const mask = (await maskerOf(TEST_SECRET, "k1")).mask("ip", "203.0.113.7");
  const result = await cli.run(
    ["recover", "--masked", mask, "--reason", "check"],
    { PII_VAULT_KEY: VAULT_SECRET },
    { revealing: true },
  );
  assertRefused(result, 1, /No vault entry for that mask: never vaulted/);
  assert.deepEqual((await auditAfter(db.sql)).map((a) => [a.masked_value, a.outcome]), [
    [mask, "not_found"],
  ]);
  const raws = rawValuesOf(PEOPLE);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
});

Deno.test("recover refuses without the vault key, the HMAC key or a reason (exit 2) and audits each refusal as denied", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  await drain(sqs, cli, PEOPLE);
  const mask = (await maskerOf(TEST_SECRET, "k1")).mask("device_id", "444-55-6666");
  const attempt = (args: string[], env: Record<string, string> = {}) =>
    cli.run(["recover", "--masked", mask, "--actor", "mallory", ...args], env, {
      revealing: true,
    });

  assertRefused(
    await attempt(["--reason", "curious"], { PII_VAULT_KEY: "" }),
    2,
    /Refused: recover needs the vault key/,
  );
  assertRefused(
    await attempt(["--reason", "curious"], { PII_HMAC_KEY: "" }),
    2,
    /Refused: recover needs the HMAC key .* masks back to its mask/,
  );
  assertRefused(await attempt([]), 2, /Refused: recover needs --reason/);
  assertRefused(await attempt(["--reason", "   "]), 2, /Refused: recover needs --reason/);

  const audit = await auditAfter(db.sql);
  assert.deepEqual(
    audit.map((a) => [a.actor, a.action, a.masked_value, a.reason, a.outcome]),
    [
      ["mallory", "recover", mask, "curious", "denied"],
      ["mallory", "recover", mask, "curious", "denied"],
      ["mallory", "recover", mask, null, "denied"],
      ["mallory", "recover", mask, null, "denied"],
    ],
  );
  assert.match(audit[0]?.detail ?? "", /vault key/);
  assert.ok(audit.every((a) => a.db_user === "postgres"), "under the login that tried");
  cli.assertNoRaw(rawValuesOf(PEOPLE));
});

Deno.test("recover refuses tampered, swapped, injected and unknown-key vault entries, audits each as failed, and prints only the intact one", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  const people = [1, 2, 3, 4, 5, 6].map((n) => body(`t${n}`, `192.0.2.1${n}`, `100-00-000${n}`));
  await drain(sqs, cli, people, {}, { merge: db });
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const ip = (n: number) => k1.mask("ip", `192.0.2.1${n}`);
  const device = (n: number) => k1.mask("device_id", `100-00-000${n}`);
  const cipher = await cipherOf(VAULT_SECRET);
  // postgres.js sends a Buffer as bytea; a string would be taken as its characters.
  const hex = (bytes: Uint8Array) => Buffer.from(bytes);

  // One byte of one ciphertext flipped.
  await db.sql`
    UPDATE login_etl_vault SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1)
    WHERE masked_value = ${ip(1)}`;
  // Ciphertext and IV swapped between two ip entries, and between an ip and a
  // device_id entry; one entry relabelled to the other field; one under a key
  // id the set does not hold.
  await db.sql`
    UPDATE login_etl_vault v SET ciphertext = o.ciphertext, iv = o.iv
    FROM login_etl_vault o
    WHERE (v.masked_value, o.masked_value) IN
      ((${ip(2)}, ${ip(3)}), (${ip(3)}, ${ip(2)}), (${ip(4)}, ${device(4)}), (${device(4)}, ${
    ip(4)
  }))`;
  await db.sql`UPDATE login_etl_vault SET field = 'device_id' WHERE masked_value = ${ip(5)}`;
  await db.sql`UPDATE login_etl_vault SET key_id = 'v9' WHERE masked_value = ${device(5)}`;
  // Swapped and re-encrypted by someone holding the vault key (a consumer
  // host): ip 6's entry now holds ip 1's value, sealed for ip 6's mask, so it
  // decrypts cleanly. Only the mask check can tell.
  const resealed = await cipher.encrypt("ip", ip(6) as Masked, "192.0.2.11");
  await db.sql`
    UPDATE login_etl_vault SET ciphertext = ${hex(resealed.ciphertext)},
      iv = ${hex(resealed.iv)} WHERE masked_value = ${ip(6)}`;
  // Injected: an entry for a mask never vaulted, sealed correctly, holding another value.
  const ghost = k1.mask("ip", "198.51.100.200");
  const injected = await cipher.encrypt("ip", ghost as Masked, "10.9.9.9");
  await db.sql`
    INSERT INTO login_etl_vault (masked_value, field, ciphertext, iv, key_id)
    VALUES (${ghost}, 'ip', ${hex(injected.ciphertext)}, ${hex(injected.iv)}, 'v1')`;

  const refused = [ip(1), ip(2), ip(3), ip(4), device(4), ip(5), device(5), ip(6), ghost];
  const before = await lastAuditId(db.sql);
  const bulk = await recoverFile(cli, [...refused, device(1)], ["--reason", "tamper check"]);
  assert.equal(bulk.code, 1, bulk.stderr);
  assert.match(failureLine(bulk), /^error: Refused 9 of 10 vault entries/);
  assert.equal(bulk.stdout, `${device(1)}\tdevice_id\t100-00-0001\n`, "only the intact entry");
  const audit = await auditAfter(db.sql, before);
  const outcomes = (mask: string) =>
    audit.filter((a) => a.masked_value === mask).map((a) => a.outcome);
  for (const mask of refused) {
    assert.deepEqual(outcomes(mask), ["released", "failed"], `${mask}: ${JSON.stringify(audit)}`);
  }
  assert.deepEqual(outcomes(device(1)), ["released"]);
  const detail = (mask: string) =>
    audit.find((a) => a.outcome === "failed" && a.masked_value === mask)?.detail;
  assert.match(detail(ip(1)) ?? "", /failed authentication/);
  assert.match(detail(device(5)) ?? "", /under key "v9", which the vault key set/);
  assert.match(detail(ip(6)) ?? "", /does not mask back to its mask: injected or swapped/);
  assert.match(detail(ghost) ?? "", /does not mask back to its mask/);

  const raws = [...rawValuesOf(people), "10.9.9.9"];
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
});

Deno.test("a refused row's vault entry is still written when a committed row of its batch shares the value: every mask in user_logins can be recovered", async () => {
  // An attacker's review found it: a value is vaulted once per batch, on the
  // first row holding it; when that row was refused, the committed row
  // sharing the value was left with a mask nobody could recover.
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  const migrated = await cli.run(["migrate"]);
  assert.equal(migrated.code, 0, migrated.stderr);
  await db.sql`ALTER TABLE user_logins ADD CONSTRAINT no_mallory CHECK (user_id <> 'mallory')`;
  const k1 = await maskerOf(TEST_SECRET, "k1");
  // mallory first: her row would carry the entries of the values bob shares.
  const bodies = [
    body("mallory", "203.0.113.50", "555-00-1111"),
    body("bob", "203.0.113.50", "555-00-1111"),
    body("carol", "198.51.100.9", "555-00-2222"),
  ];
  const result = await drain(sqs, cli, bodies, {}, { merge: db });
  assert.equal(result.inserted, 2);
  const [refused] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM login_etl_rejects WHERE reason = 'db_refused'`;
  assert.equal(refused?.n, 1);
  const inRows = await db.sql<{ m: string }[]>`
    SELECT masked_ip AS m FROM user_logins UNION SELECT masked_device_id FROM user_logins`;
  assert.deepEqual(
    (await vaultRows(db.sql)).map((v) => v.masked_value).sort(),
    inRows.map((r) => r.m).sort(),
    "every mask in user_logins has its vault entry, and the vault holds nothing else",
  );
  const ipMask = k1.mask("ip", "203.0.113.50");
  const recovered = await cli.run(
    ["recover", "--masked", ipMask, "--reason", "refusal check", "--actor", "alice"],
    {},
    { revealing: true },
  );
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.equal(recovered.stdout, `${ipMask}\tip\t203.0.113.50\n`);
});

Deno.test("recover never prints a value no valid login event carries: a consumer's forged device_id or ip under a mask that checks out is refused in the merge and in the last check, and what it prints is escaped", async () => {
  // A consumer holds the HMAC key and the vault key (or its public half), so
  // it can vault any string under a mask that masks back (issue 19, F3).
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  // Valid (no C0/C1 control), but a bidirectional override: printed escaped.
  const bidi = "dev-\u202eevil";
  await drain(sqs, cli, [body("f1", "192.0.2.31", bidi)], {}, { merge: db });
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  const fakeMask = `k1:${"A".repeat(43)}`;
  const forgedDevice = `dev1\n${fakeMask}\tip\t203.0.113.9\u001b[31mRED\u001b[0m`;
  const forgedIp = "203.0.113.9\u001b[2J";
  const forgedKept = "dev2\r\u001b]0;pwned\u0007";
  const entries = [
    { field: "device_id" as const, raw: forgedDevice },
    { field: "ip" as const, raw: forgedIp },
    { field: "ip" as const, raw: "not an address" },
  ];
  const inboxMasks: string[] = [];
  for (const e of entries) {
    const mask = await k1.mask(e.field, e.raw);
    inboxMasks.push(mask);
    const sealed = await cipher.encrypt(e.field, mask as Masked, e.raw);
    // As a consumer's drain writes the inbox.
    await db.sql`
      SELECT login_etl_vault_put(ARRAY[${mask}]::text[], ARRAY[${e.field}]::text[],
        ARRAY[${Buffer.from(sealed.ciphertext)}::bytea], ARRAY[${Buffer.from(sealed.iv)}::bytea],
        ARRAY['v1']::text[])`;
  }
  // Straight into the vault, past the merge: recover's last check alone refuses it.
  const keptMask = await k1.mask("device_id", forgedKept);
  const kept = await cipher.encrypt("device_id", keptMask as Masked, forgedKept);
  await db.sql`
    INSERT INTO login_etl_vault (masked_value, field, ciphertext, iv, key_id)
    VALUES (${keptMask}, 'device_id', ${Buffer.from(kept.ciphertext)}, ${
    Buffer.from(kept.iv)
  }, 'v1')`;
  const good = await k1.mask("device_id", bidi);
  const before = await lastAuditId(db.sql);
  const run = await recoverFile(cli, [...inboxMasks, keptMask, good], [
    "--reason",
    "forged values",
  ]);
  for (const output of [run.stdout, run.stderr]) {
    // deno-lint-ignore no-control-regex -- looking for control characters is the point
    assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f\u202e]/.test(output), `raw control: ${output}`);
    assert.ok(!output.includes("203.0.113.9"), "no forged value shown");
  }
  assert.equal(
    run.stdout,
    `${good}\tdevice_id\tdev-\\u202eevil\n`,
    "only the valid value, escaped",
  );
  assert.equal(run.code, 1, run.stderr);
  assert.match(
    failureLine(run),
    /^error: Refused 1 of 5 vault entries: .*held a value no valid login event carries/,
  );
  const audit = await auditAfter(db.sql, before);
  const refusal = audit.find((a) => a.masked_value === keptMask && a.outcome === "failed");
  assert.match(
    refusal?.detail ?? "",
    /no valid login event carries \(device_id contains a control character or a lone surrogate\): injected, refused/,
  );
  assert.ok(!audit.some((a) => /203\.0\.113\.9|pwned/.test(a.detail ?? "")), "no value audited");
  // The merge refused the inbox's three: dropped, never in the vault.
  const live = (await vaultRows(db.sql)).map((r) => r.masked_value);
  for (const mask of inboxMasks) assert.ok(!live.includes(mask), `${mask} merged`);
  assert.deepEqual((await inboxRows(db.sql)).map((r) => r.masked_value), []);
});
