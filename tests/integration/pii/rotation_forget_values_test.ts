// Forget by value (--ip, --device-id, --values-from-file) during a rotation,
// against real Postgres: each value is erased under every HMAC key of the
// set, and never logged or audited. On PostgreSQL 15 alone: what is particular
// here (reading the values, masking them under each key, keeping them out of
// logs and the audit) happens in the client, and the SQL it ends in,
// login_etl_forget as the recoverer, runs on 13 and 18 in forget_test.ts and
// rotation_erasure_test.ts.

import assert from "node:assert/strict";
import {
  assertRefused,
  auditAfter,
  body,
  Cli,
  cliEnv,
  drain,
  HMAC_SECRET_2,
  hmacKeySet,
  lastAuditId,
  maskerOf,
  piiRoles,
  tablesHoldingRaw,
  tombstones,
  vaultRows,
} from "../../helpers/pii.ts";
import { freshSchema, startSqs, TEST_SECRET } from "../../helpers/services.ts";

Deno.test("forget --ip, --device-id and --values-from-file erase a value under every HMAC key of the set, and never log or audit it", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
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
