// An erasure outlives the key it was made under, against real Postgres and a
// real SQS endpoint: a value erased by its k1 mask, then rotated to k2,
// drained again by a consumer on k2 alone, is never merged nor shown. The
// attack paths: `rekey --retire k1` (refused while the erasure needs k1), a
// merger or recoverer given k2 only (refused, naming k1), a vault an older
// merge left with a live k2 entry beside the k1 tombstone (recover checks
// every held key's mask and drops it). And the inbox stays bounded: entries
// under keys no merger holds are dropped past an age limit or a cap per key
// id, and `check` shows the inbox's size.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { KeyMissingError } from "../../../src/errors.ts";
import { mergeInbox } from "../../../src/pii/merge.ts";
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
  mergeVault,
  openable,
  piiRoles,
  recoveredLines,
  recoverFile,
  tablesHoldingRaw,
  VAULT_SECRET,
} from "../../helpers/pii.ts";
import { freshSchema, startSqs, TEST_SECRET, type TestDb } from "../../helpers/services.ts";
import { Masker } from "../../../src/mask.ts";
import { Secret } from "../../../src/secret.ts";

/** The data subject who asked to be erased, and someone who did not. */
const VICTIM = { ip: "198.51.100.191", device: "930-00-0001" };
const OTHER = { ip: "198.51.100.192", device: "930-00-0002" };

/** The key set of a process that holds k2 only: k1 destroyed, or never given to it. */
const K2_ONLY = JSON.stringify({ current: "k2", keys: { k2: HMAC_SECRET_2 } });

/** Asserts that no vault or inbox entry decrypts to `raw`, nor does any table hold it. */
async function assertGone(db: TestDb, raw: string): Promise<void> {
  const opened = await openable(db.sql, await cipherOf(VAULT_SECRET));
  assert.deepEqual(opened.filter((o) => o.raw === raw), [], "no entry decrypts to it");
  assert.ok(opened.length > 0, "the others are still there");
  assert.deepEqual(await tablesHoldingRaw(db, [raw]), []);
}

/**
 * Before the rotation, on k1: both drained and merged, the victim erased by
 * the k1 mask of the address. Then rekey to k2 with both keys.
 */
async function erasedThenRotated(
  db: TestDb,
  cli: Cli,
  sqs: Awaited<ReturnType<typeof startSqs>>,
  recovererUrl: string,
): Promise<void> {
  const k1 = await maskerOf(TEST_SECRET, "k1");
  await drain(
    sqs,
    cli,
    [body("a1", VICTIM.ip, VICTIM.device), body("b1", OTHER.ip, OTHER.device)],
    {},
    { merge: db },
  );
  // The whole person, by the masks of a reject or an export: nothing of
  // the row is left to link.
  const masks = await Deno.makeTempFile();
  await Deno.writeTextFile(
    masks,
    `${k1.mask("ip", VICTIM.ip)}\n${k1.mask("device_id", VICTIM.device)}\n`,
  );
  try {
    const erased = await cli.run(
      ["forget", "--from-file", masks, "--reason", "DSAR 191", "--actor", "dpo"],
      { DATABASE_URL: recovererUrl },
    );
    assert.equal(erased.code, 0, erased.stderr);
  } finally {
    await Deno.remove(masks);
  }
  const rekey = await cli.run(["rekey", "--to", "k2", "--reason", "rotation"], {
    PII_HMAC_KEY: hmacKeySet("k2"),
  });
  assert.equal(rekey.code, 0, rekey.stderr);
}

eachMajor.test("rekey --retire k1 is refused while an erasure needs k1; without k1, vault-merge and recover refuse naming it; with it, the value drained again is dropped and never shown", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const cli = new Cli(cliEnv(db));
  const recoverer = roles.urlOf(roles.users.recoverer);
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  await erasedThenRotated(db, cli, sqs, recoverer);

  // The retirement that would make k1 disposable: refused, with its remedy.
  const retire = await cli.run(["rekey", "--retire", "k1", "--reason", "rotation done"], {
    PII_HMAC_KEY: hmacKeySet("k2"),
  });
  assertRefused(
    retire,
    2,
    /^error: Cannot retire HMAC key k1: 2 erased values are known only by their k1 masks .*keep k1 in the HMAC key set of vault-merge, recover and forget/,
  );
  const [retired] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM login_etl_key_retirements`;
  assert.equal(retired?.n, 0);

  // k1 destroyed anyway: consumers on k2 alone see the victim again.
  await drain(sqs, cli, [body("a2", VICTIM.ip, "930-00-0003")], { PII_HMAC_KEY: K2_ONLY });
  const merge = await cli.run(["vault-merge"], { PII_HMAC_KEY: K2_ONLY });
  assertRefused(
    merge,
    2,
    /^error: Refused to merge the vault inbox: the HMAC key set lacks key "k1",/,
  );
  const recovered = await recoverFile(
    cli,
    [k2.mask("ip", VICTIM.ip)],
    ["--reason", "after the rotation"],
    { DATABASE_URL: recoverer, PII_HMAC_KEY: K2_ONLY },
  );
  assertRefused(recovered, 2, /^error: Refused to recover: the HMAC key set lacks key "k1",/);
  const denied = (await auditAfter(db.sql)).filter((a) =>
    a.action === "recover" && a.outcome === "denied"
  );
  assert.equal(denied.length, 1, "the refusal is audited");

  // With k1 kept beside k2 (verification only), the entry is dropped.
  const before = await lastAuditId(db.sql);
  const kept = await cli.run(["vault-merge"], { PII_HMAC_KEY: hmacKeySet("k2") });
  assert.equal(kept.code, 0, kept.stderr);
  assert.equal(JSON.parse(kept.stdout).erased, 1, "the victim's k2 entry dropped as erased");
  assert.ok(
    (await auditAfter(db.sql, before)).some((a) =>
      /1 of erased values dropped/.test(a.detail ?? "")
    ),
  );
  const again = await recoverFile(
    cli,
    [k2.mask("ip", VICTIM.ip)],
    ["--reason", "after the rotation"],
    { DATABASE_URL: recoverer, PII_HMAC_KEY: hmacKeySet("k2") },
  );
  assertRefused(again, 1, /^error: Nothing recovered: that mask was erased by forget/);
  const other = await recoverFile(
    cli,
    [k2.mask("ip", OTHER.ip)],
    ["--reason", "the other one is there"],
    { DATABASE_URL: recoverer, PII_HMAC_KEY: hmacKeySet("k2") },
  );
  assert.equal(other.code, 0, other.stderr);
  assert.deepEqual(recoveredLines(other.stdout), [`${k2.mask("ip", OTHER.ip)}\tip\t${OTHER.ip}`]);
  await assertGone(db, VICTIM.ip);
  cli.assertNoRaw([VICTIM.ip]);
});

eachMajor.test("a merger, rekey, recoverer or eraser given k2 while k1 is in use is refused with key_missing naming k1", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const cli = new Cli(cliEnv(db));
  const recoverer = roles.urlOf(roles.users.recoverer);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  await drain(
    sqs,
    cli,
    [body("a1", VICTIM.ip, VICTIM.device), body("b1", OTHER.ip, OTHER.device)],
    {},
    {
      merge: db,
    },
  );
  const erased = await cli.run(
    ["forget", "--masked", k1.mask("ip", VICTIM.ip), "--reason", "DSAR 191"],
    { DATABASE_URL: recoverer },
  );
  assert.equal(erased.code, 0, erased.stderr);
  // A consumer moved to k2 alone, no rekey yet: k1 is still in use.
  await drain(sqs, cli, [body("a2", VICTIM.ip, "930-00-0003")], { PII_HMAC_KEY: K2_ONLY });

  const k2Only = new Map([[
    "k2",
    await Masker.create(new Secret(new TextEncoder().encode(HMAC_SECRET_2), "t"), "k2"),
  ]]);
  await assert.rejects(
    mergeInbox(db, { cipher: await cipherOf(VAULT_SECRET), maskers: k2Only }, {
      actor: "t",
      reason: null,
      batch: 100,
    }),
    (error: unknown) =>
      error instanceof KeyMissingError && error.code === "key_missing" &&
      error.keyIds.join() === "k1",
  );
  for (
    const [args, env] of [
      [["vault-merge"], {}],
      [["rekey", "--to", "k2", "--reason", "rotation"], {}],
      [["forget", "--ip", VICTIM.ip, "--reason", "DSAR 192"], { DATABASE_URL: recoverer }],
    ] as const
  ) {
    const run = await cli.run(args, { PII_HMAC_KEY: K2_ONLY, ...env });
    assertRefused(run, 2, /the HMAC key set lacks key "k1", recorded in use and not retired/);
  }
  const checked = await cli.run(["check", "--for", "vault-merge"], { PII_HMAC_KEY: K2_ONLY });
  assert.equal(checked.code, 1, checked.stderr);
  assert.match(
    checked.stdout,
    /^fail +hmac keys held +Refused to verify erasures: the HMAC key set lacks key "k1",/m,
  );
  const held = await cli.run(["check", "--for", "vault-merge"], { PII_HMAC_KEY: hmacKeySet("k2") });
  assert.match(
    held.stdout,
    /^ok +hmac keys held +every HMAC key id recorded in use and not retired is in the key set$/m,
  );
  const recovered = await recoverFile(cli, [k2.mask("ip", VICTIM.ip)], ["--reason", "x"], {
    DATABASE_URL: recoverer,
    PII_HMAC_KEY: K2_ONLY,
  });
  assertRefused(recovered, 2, /^error: Refused to recover: the HMAC key set lacks key "k1"/);

  // Nothing merged the k2 entry; with both keys, recover's own merge drops it.
  const both = await recoverFile(cli, [k2.mask("ip", VICTIM.ip)], ["--reason", "x"], {
    DATABASE_URL: recoverer,
    PII_HMAC_KEY: hmacKeySet("k2"),
  });
  assertRefused(both, 1, /^error: Nothing recovered: that mask was erased by forget/);
  await mergeVault(db, { PII_HMAC_KEY: hmacKeySet("k2") });
  await assertGone(db, VICTIM.ip);
  cli.assertNoRaw([VICTIM.ip]);
});

eachMajor.test("recover checks a value's masks under every held key before showing it: a live k2 entry an older merge kept beside the k1 tombstone is dropped, audited without the value", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const cli = new Cli(cliEnv(db));
  const recoverer = roles.urlOf(roles.users.recoverer);
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  await erasedThenRotated(db, cli, sqs, recoverer);
  // What a merge holding k2 alone accepted before this fix: the victim's
  // value under its k2 mask, live, with nothing linking it to the k1 tombstone.
  const fresh = k2.mask("ip", VICTIM.ip);
  const e = await (await cipherOf(VAULT_SECRET)).encrypt("ip", fresh as Masked, VICTIM.ip);
  await db.sql`
    INSERT INTO login_etl_vault (masked_value, field, ciphertext, iv, key_id)
    VALUES (${fresh}, 'ip', ${Buffer.from(e.ciphertext)}, ${Buffer.from(e.iv)}, 'v1')`;

  const before = await lastAuditId(db.sql);
  const recovered = await recoverFile(cli, [fresh], ["--reason", "after the rotation"], {
    DATABASE_URL: recoverer,
    PII_HMAC_KEY: hmacKeySet("k2"),
  });
  assertRefused(recovered, 1, /^error: Nothing recovered: that mask was erased by forget/);
  const audit = await auditAfter(db.sql, before);
  assert.ok(
    audit.some((a) =>
      a.action === "recover" && a.masked_value === fresh && a.outcome === "erased" &&
      /erased under another of its masks/.test(a.detail ?? "")
    ),
    JSON.stringify(audit),
  );
  const [row] = await db.sql<{ erased: boolean }[]>`
    SELECT erased_at IS NOT NULL AS erased FROM login_etl_vault WHERE masked_value = ${fresh}`;
  assert.equal(row?.erased, true, "the k2 entry is a tombstone now");
  await assertGone(db, VICTIM.ip);
  cli.assertNoRaw([VICTIM.ip]);
});

eachMajor.test("a whole-inbox merge drops entries under keys it does not hold past the age limit or the cap per key id, audits the count, and check shows the inbox's size", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const cli = new Cli(cliEnv(db));
  const consumer = roles.connectAs(roles.users.consumer);
  const cipher = await cipherOf(VAULT_SECRET);
  // A consumer's flood under an HMAC key id nobody holds, and one old entry
  // under a vault key id nobody holds.
  const flood = Array.from({ length: 6 }, (_, i) => `k9:${String(i).repeat(43)}`);
  const sealed = await cipher.encryptAll(
    flood.map((m) => ({ field: "ip" as const, masked: m as Masked, raw: "10.9.9.9" })),
  );
  const bytes = (b: Uint8Array) => `\\x${Buffer.from(b).toString("hex")}`;
  await consumer`
    SELECT login_etl_vault_put(${flood}::text[], ${flood.map(() => "ip")}::text[],
      ${sealed.map((s) => bytes(s.ciphertext))}::bytea[], ${
    sealed.map((s) => bytes(s.iv))
  }::bytea[],
      ${flood.map(() => "v1")}::text[])`;
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const old = k1.mask("ip", "10.8.8.8");
  const [o] = await cipher.encryptAll([{ field: "ip", masked: old as Masked, raw: "10.8.8.8" }]);
  await consumer`
    SELECT login_etl_vault_put(${[old]}::text[], ${["ip"]}::text[],
      ${[bytes(o?.ciphertext ?? new Uint8Array())]}::bytea[], ${[
    bytes(o?.iv ?? new Uint8Array()),
  ]}::bytea[],
      ${["v9"]}::text[])`;
  await db.sql`UPDATE login_etl_vault_inbox SET received_at = now() - interval '200 hours'
               WHERE masked_value = ${old}`;
  const checked = await cli.run(["check", "--for", "vault-merge"]);
  assert.match(
    checked.stdout + checked.stderr,
    /vault inbox.*7 entries waiting: k9 6 \(oldest 0 h\), k1 1 \(oldest 200 h\)/,
  );

  const before = await lastAuditId(db.sql);
  const report = await mergeInbox(db, {
    cipher,
    maskers: new Map([[
      "k1",
      await Masker.create(new Secret(new TextEncoder().encode(TEST_SECRET), "t"), "k1"),
    ]]),
  }, { actor: "owner", reason: null, batch: 100, foreignCapPerKey: 4 });
  assert.equal(report.expired, 3, "2 beyond the cap of k9, 1 past the age limit");
  assert.equal(report.kept, 7, "none judged: all seven under keys the merger does not hold");
  const left = await db.sql<{ m: string }[]>`
    SELECT masked_value AS m FROM login_etl_vault_inbox ORDER BY id`;
  assert.deepEqual(left.map((r) => r.m), flood.slice(2));
  const audit = await auditAfter(db.sql, before);
  const expired = audit.filter((a) => /dropped unjudged/.test(a.detail ?? ""));
  assert.equal(expired.length, 1);
  assert.match(expired[0]?.detail ?? "", /^3 inbox entries under keys this merger does not hold/);
  assert.equal(expired[0]?.masked_value, null);
});
