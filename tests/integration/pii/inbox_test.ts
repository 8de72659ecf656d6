// The vault inbox against real Postgres, with a login in each role of
// sql/roles.sql, on PostgreSQL 13, 15 and 18: a consumer's vault write looks
// the same whatever the vault holds (no membership oracle, not even in its
// own transaction's statistics); entries a consumer plants for masks it
// predicts are dropped when a key holder merges the inbox; recover merges
// the masks it is asked for, audited before any ciphertext is handed out.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Masked } from "../../../src/types.ts";
import { eachMajor } from "../../helpers/majors.ts";
import {
  auditAfter,
  body,
  cipherOf,
  Cli,
  cliEnv,
  drain,
  inboxRows,
  lastAuditId,
  maskerOf,
  mergeVault,
  openable,
  piiRoles,
  recoveredLines,
  recoverFile,
  VAULT_SECRET,
  vaultRows,
} from "../../helpers/pii.ts";
import { freshSchema, reportFigures, startSqs, TEST_SECRET } from "../../helpers/services.ts";
import { INBOX_ENTRIES_PER_MASK } from "../../../src/db/migrations.ts";
import { MAX_CIPHERTEXT_BYTES } from "../../../src/pii/seal.ts";

/** Thrown to roll a probe's transaction back with what it saw. */
class Rollback {
  constructor(readonly seen: unknown) {}
}

eachMajor.test("a consumer's vault write looks the same for a known, an erased and an unknown value: the same result and the same pg_stat_xact counts", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  const value = {
    known: "198.51.100.1",
    erased: "198.51.100.2",
    unknown: "198.51.100.3",
    full: "198.51.100.4",
  };
  const mask = {
    known: k1.mask("ip", value.known),
    erased: k1.mask("ip", value.erased),
    unknown: k1.mask("ip", value.unknown),
    full: k1.mask("ip", value.full),
  };
  // The known and the erased values were vaulted; the erased one then
  // erased by a recoverer.
  for (const which of ["known", "erased"] as const) {
    const entry = await cipher.encrypt("ip", mask[which] as Masked, value[which]);
    await db.sql`
      INSERT INTO login_etl_vault (masked_value, field, ciphertext, iv, key_id)
      VALUES (${mask[which]}, 'ip', ${Buffer.from(entry.ciphertext)}, ${
      Buffer.from(entry.iv)
    }, 'v1')`;
  }
  const asRecoverer = roles.connectAs(roles.users.recoverer);
  await asRecoverer`SELECT * FROM login_etl_forget(${[mask.erased]}::text[], 'dpo', 'DSAR 1')`;
  assert.deepEqual(
    (await db.sql<{ m: string; live: boolean }[]>`
      SELECT masked_value AS m, erased_at IS NULL AS live FROM login_etl_vault ORDER BY 1`)
      .map((r) => [r.m, r.live]).sort(),
    [[mask.known, true], [mask.erased, false]].sort(),
  );

  // The consumer host holds both keys: it seals a guess and asks, in a
  // transaction it rolls back, what its own transaction's statistics say.
  const asConsumer = roles.connectAs(roles.users.consumer);
  // The full value's mask has more inbox entries than a claim takes (other
  // consumers saw it, or a flood): a put for it is dropped at the next claim,
  // which must not show here either.
  for (let i = 0; i < INBOX_ENTRIES_PER_MASK + 4; i++) {
    const entry = await cipher.encrypt("ip", mask.full as Masked, value.full);
    await asConsumer`
      SELECT login_etl_vault_put(${[mask.full]}::text[], ${["ip"]}::text[],
        ARRAY[${Buffer.from(entry.ciphertext)}::bytea], ARRAY[${Buffer.from(entry.iv)}::bytea],
        ${["v1"]}::text[])`;
  }
  const probe = async (masked: string, raw: string) => {
    const entry = await cipher.encrypt("ip", masked as Masked, raw);
    return await asConsumer.begin(async (tx) => {
      // Counters before and after the call, in the same transaction: the
      // difference is what the call did (a backend may hold counts of its
      // earlier transactions not yet flushed).
      const counters = async () =>
        new Map(
          (await tx<Record<string, string>[]>`
            SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd, seq_scan,
                   seq_tup_read, coalesce(idx_scan, 0) AS idx_scan,
                   coalesce(idx_tup_fetch, 0) AS idx_tup_fetch
            FROM pg_stat_xact_user_tables WHERE schemaname IN (${db.schema}, ${db.stateSchema})`)
            .map((r) => [r.relname as string, r]),
        );
      const calls = async () =>
        new Map(
          (await tx<{ funcname: string; calls: string }[]>`
            SELECT funcname, calls FROM pg_stat_xact_user_functions`).map((
            r,
          ) => [r.funcname, Number(r.calls)]),
        );
      const [tablesBefore, callsBefore] = [await counters(), await calls()];
      const result = await tx`
        SELECT login_etl_vault_put(${[masked]}::text[], ${["ip"]}::text[],
          ARRAY[${Buffer.from(entry.ciphertext)}::bytea], ARRAY[${Buffer.from(entry.iv)}::bytea],
          ${["v1"]}::text[]) AS r`;
      const [tablesAfter, callsAfter] = [await counters(), await calls()];
      const tables: Record<string, Record<string, number>> = {};
      for (const [name, after] of tablesAfter) {
        const delta: Record<string, number> = {};
        for (const [k, v] of Object.entries(after)) {
          if (k === "relname") continue;
          const d = Number(v) - Number(tablesBefore.get(name)?.[k] ?? 0);
          if (d !== 0) delta[k] = d;
        }
        if (Object.keys(delta).length > 0) tables[name] = delta;
      }
      const functions = Object.fromEntries(
        [...callsAfter].map(([f, n]) => [f, n - (callsBefore.get(f) ?? 0)]).filter(([, n]) =>
          n !== 0
        ),
      );
      throw new Rollback({ result: result.map((r) => ({ ...r })), tables, functions });
    }).catch((error: unknown) => {
      if (error instanceof Rollback) return error.seen;
      throw error;
    });
  };
  // Once first, so that the session's first-call work (catalog look-ups) is
  // behind all three.
  await probe(k1.mask("ip", "198.51.100.9"), "198.51.100.9");
  const seen = {
    known: await probe(mask.known, value.known),
    erased: await probe(mask.erased, value.erased),
    unknown: await probe(mask.unknown, value.unknown),
    full: await probe(mask.full, value.full),
  };
  reportFigures("vault_put as seen by the consumer", seen.known as object);
  assert.deepEqual(seen.erased, seen.known, "an erased value looks like a known one");
  assert.deepEqual(seen.unknown, seen.known, "an unknown value looks like a known one");
  assert.deepEqual(seen.full, seen.known, "a mask past the inbox cap looks like any other");
  // What it does see: one row appended to the inbox, and the vault untouched.
  assert.deepEqual((seen.known as { tables: unknown }).tables, {
    "login_etl_vault_inbox": { "n_tup_ins": 1 },
  });
  assert.equal(
    (await inboxRows(db.sql)).length,
    INBOX_ENTRIES_PER_MASK + 4,
    "every probe rolled back",
  );
});

eachMajor.test("entries a consumer plants for masks it predicts are dropped when recover merges them; the real values are merged, recovered and audited before release", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const cli = new Cli(cliEnv(db));
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  const target = { ip: "203.0.113.80", device: "600-00-0001" };
  const ipMask = k1.mask("ip", target.ip);
  const deviceMask = k1.mask("device_id", target.device);

  // A compromised consumer host predicts the masks of a login it expects and
  // plants entries for them first: another address sealed under the ip's
  // mask, and bytes that decrypt to nothing under the device id's.
  const asConsumer = roles.connectAs(roles.users.consumer);
  const wrong = await cipher.encrypt("ip", ipMask as Masked, "10.66.66.66");
  await asConsumer`
    SELECT login_etl_vault_put(${[ipMask, deviceMask]}::text[], ${["ip", "device_id"]}::text[],
      ARRAY[${Buffer.from(wrong.ciphertext)}::bytea, ${Buffer.alloc(40, 7)}::bytea],
      ARRAY[${Buffer.from(wrong.iv)}::bytea, ${Buffer.alloc(12, 1)}::bytea],
      ${["v1", "v1"]}::text[])`;
  // Then the real login arrives, drained by the consumer's login.
  const consumerEnv = { DATABASE_URL: roles.urlOf(roles.users.consumer) };
  assert.equal(
    (await drain(sqs, cli, [body("sq1", target.ip, target.device)], consumerEnv)).inserted,
    1,
  );
  assert.equal((await inboxRows(db.sql)).length, 4, "planted and real, side by side");
  assert.deepEqual(await vaultRows(db.sql), [], "nothing in the vault before a merge");

  // The recoverer asks: recover merges those masks' entries first.
  const recovererEnv = { DATABASE_URL: roles.urlOf(roles.users.recoverer) };
  const before = await lastAuditId(db.sql);
  const recovered = await recoverFile(
    cli,
    [ipMask, deviceMask],
    ["--reason", "INC-9", "--actor", "alice"],
    recovererEnv,
  );
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.deepEqual(
    recoveredLines(recovered.stdout),
    [`${deviceMask}\tdevice_id\t${target.device}`, `${ipMask}\tip\t${target.ip}`].sort(),
  );
  const audit = await auditAfter(db.sql, before);
  const rows = audit.map((a) => [a.db_user, a.action, a.masked_value ?? "-", a.outcome].join(" "));
  const who = roles.users.recoverer;
  // Each mask's inbox entries audited before they were handed out, the
  // verdicts, then the recovery itself; under the recoverer's login.
  assert.deepEqual(
    rows.slice(0, 2).sort(),
    [
      `${who} merge ${deviceMask} released`,
      `${who} merge ${ipMask} released`,
    ].sort(),
  );
  assert.equal(rows[2], `${who} merge - success`);
  assert.deepEqual(
    rows.slice(3).sort(),
    [
      `${who} recover ${deviceMask} released`,
      `${who} recover ${ipMask} released`,
    ].sort(),
  );
  assert.match(
    audit[2]?.detail ?? "",
    /2 entries accepted, 0 already vaulted, 0 of erased values dropped, 2 refused, 0 kept/,
  );
  assert.deepEqual(await inboxRows(db.sql), [], "planted entries dropped, real ones merged");
  assert.deepEqual(
    (await openable(db.sql, cipher)).map((o) => [o.where, o.mask, o.raw]).sort(),
    [["vault", deviceMask, target.device], ["vault", ipMask, target.ip]].sort(),
  );
  cli.assertNoRaw([target.ip, target.device, "10.66.66.66"]);
});

eachMajor.test("an inbox claim is handed out only to its login, after the transaction that audited it commits; only the owner merges the whole inbox", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  const mask = k1.mask("ip", "192.0.2.200");
  const entry = await cipher.encrypt("ip", mask as Masked, "192.0.2.200");
  const asConsumer = roles.connectAs(roles.users.consumer);
  await asConsumer`
    SELECT login_etl_vault_put(${[mask]}::text[], ${["ip"]}::text[],
      ARRAY[${Buffer.from(entry.ciphertext)}::bytea], ARRAY[${Buffer.from(entry.iv)}::bytea],
      ${["v1"]}::text[])`;
  const asRecoverer = roles.connectAs(roles.users.recoverer);
  const code = (e: { code?: string }) => e.code;

  // Claimed and read in one transaction, then rolled back: no ciphertext, and no trace of the claim.
  const before = await lastAuditId(db.sql);
  const inOne = await asRecoverer.begin(async (tx) => {
    const [claim] = await tx<{ claim: string }[]>`
      SELECT claim::text FROM login_etl_inbox_claim(${[mask]}::text[], 0, 10, 'alice', 'INC-1')`;
    return await tx`SELECT * FROM login_etl_inbox_claimed(${claim?.claim ?? "0"}::bigint)`
      .then(() => "handed out", (e) => code(e));
  }).catch((e) => code(e));
  assert.equal(inOne, "25000", "refused in the claim's own transaction");
  assert.deepEqual(await auditAfter(db.sql, before), [], "rolled back whole");

  // Claimed in one transaction, read in the next: handed out, audited first.
  const [claim] = await asRecoverer<{ claim: string; entries: number }[]>`
    SELECT claim::text, entries FROM login_etl_inbox_claim(${[
    mask,
  ]}::text[], 0, 10, 'alice', 'INC-2')`;
  assert.equal(claim?.entries, 1);
  assert.deepEqual(
    (await auditAfter(db.sql, before)).map((a) => [a.action, a.masked_value, a.outcome]),
    [["merge", mask, "released"]],
  );
  // Another login may not read it, nor settle it; the consumer may not claim at all.
  const asOwner = roles.connectAs(roles.users.owner);
  await assert.rejects(
    asOwner`SELECT * FROM login_etl_inbox_claimed(${claim?.claim ?? "0"}::bigint)`,
    (e: { code?: string }) => e.code === "22023",
  );
  await assert.rejects(
    asConsumer`SELECT * FROM login_etl_inbox_claim(${[mask]}::text[], 0, 10, 'svc', 'x')`,
    (e: { code?: string }) => e.code === "42501",
  );
  const handed = await asRecoverer<{ masked_value: string }[]>`
    SELECT masked_value FROM login_etl_inbox_claimed(${claim?.claim ?? "0"}::bigint)`;
  assert.deepEqual(handed.map((h) => h.masked_value), [mask]);
  // A recoverer names masks, and gives a reason; the whole inbox is the owner's.
  await assert.rejects(
    asRecoverer`SELECT * FROM login_etl_inbox_claim(NULL, 0, 10, 'alice', 'all of it')`,
    (e: { code?: string }) => e.code === "42501",
  );
  await assert.rejects(
    asRecoverer`SELECT * FROM login_etl_inbox_claim(${[mask]}::text[], 0, 10, 'alice', ' ')`,
    (e: { code?: string }) => e.code === "22023",
  );
  const [whole] = await asOwner<{ entries: number }[]>`
    SELECT entries FROM login_etl_inbox_claim(NULL, 0, 10, 'owner', NULL)`;
  assert.equal(whole?.entries, 0, "the one entry is under the recoverer's claim");
});

Deno.test("vault-merge keeps entries under keys it does not hold, and deletes them with --drop-unverifiable", async () => {
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  assert.equal((await cli.run(["migrate"])).code, 0);
  const k9 = await maskerOf("a key this merger does not hold, 32+ bytes", "k9");
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  const foreignHmac = await cipher.encrypt("ip", k9.mask("ip", "192.0.2.9") as Masked, "192.0.2.9");
  const foreignVault = await cipher.encrypt(
    "ip",
    k1.mask("ip", "192.0.2.8") as Masked,
    "192.0.2.8",
  );
  await db.sql`
    SELECT login_etl_vault_put(${[foreignHmac.masked, foreignVault.masked]}::text[],
      ${["ip", "ip"]}::text[],
      ARRAY[${Buffer.from(foreignHmac.ciphertext)}::bytea, ${
    Buffer.from(foreignVault.ciphertext)
  }::bytea],
      ARRAY[${Buffer.from(foreignHmac.iv)}::bytea, ${Buffer.from(foreignVault.iv)}::bytea],
      ${["v1", "v9"]}::text[])`;
  const kept = await cli.run(["vault-merge"]);
  assert.equal(kept.code, 0, kept.stderr);
  assert.deepEqual(
    JSON.parse(kept.stdout),
    { claimed: 2, accepted: 0, known: 0, erased: 0, dropped: 0, kept: 2, expired: 0, batches: 1 },
  );
  assert.equal((await inboxRows(db.sql)).length, 2);
  const dropped = await cli.run(["vault-merge", "--drop-unverifiable"]);
  assert.equal(dropped.code, 0, dropped.stderr);
  assert.equal(JSON.parse(dropped.stdout).dropped, 2);
  assert.deepEqual(await inboxRows(db.sql), []);
  assert.deepEqual(await vaultRows(db.sql), []);
});

eachMajor.test("a claim hands out at most the oldest entries per mask, and deletes unread, counts and audits the rest and entries over the size bound already stored; a merge goes on past a batch of junk", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  const asConsumer = roles.connectAs(roles.users.consumer);
  const target = k1.mask("ip", "192.0.2.77");
  const other = k1.mask("ip", "192.0.2.78");
  // A flood on one mask, one call at a time: each call is well formed.
  for (let i = 0; i < INBOX_ENTRIES_PER_MASK + 4; i++) {
    await asConsumer`
      SELECT login_etl_vault_put(${[target]}::text[], ${["ip"]}::text[],
        ARRAY[${Buffer.alloc(MAX_CIPHERTEXT_BYTES, i)}::bytea], ARRAY[${
      Buffer.alloc(49, 2)
    }::bytea],
        ${["v1"]}::text[])`;
  }
  // Rows over the bounds already stored (written before vault_put refused them).
  await db.sql`
    INSERT INTO login_etl_vault_inbox (masked_value, field, ciphertext, iv, key_id)
    VALUES (${target}, 'ip', decode(repeat('ab', 8 * 1024 * 1024), 'hex'), ${
    Buffer.alloc(49, 2)
  }, 'v1'),
           (${other}, 'ip', ${Buffer.alloc(32, 3)}, ${Buffer.alloc(13, 1)}, 'v1')`;
  const oldest = (await db.sql<{ id: string }[]>`
    SELECT i.id::text AS id FROM login_etl_vault_inbox i WHERE i.masked_value = ${target}
      AND octet_length(i.ciphertext) <= ${MAX_CIPHERTEXT_BYTES}
    ORDER BY i.id LIMIT ${INBOX_ENTRIES_PER_MASK}`).map((r) => r.id);

  const asRecoverer = roles.connectAs(roles.users.recoverer);
  const before = await lastAuditId(db.sql);
  const [claim] = await asRecoverer<{ claim: string; entries: number; dropped: number }[]>`
    SELECT claim::text, entries, dropped FROM login_etl_inbox_claim(${[
    target,
    other,
  ]}::text[], 0, 100, 'alice', 'INC-3')`;
  assert.deepEqual(
    { entries: claim?.entries, dropped: claim?.dropped },
    { entries: INBOX_ENTRIES_PER_MASK, dropped: 4 + 2 },
  );
  const handed = await asRecoverer<{ id: string; n: number }[]>`
    SELECT id::text, octet_length(ciphertext) AS n
    FROM login_etl_inbox_claimed(${claim?.claim ?? "0"}::bigint)`;
  assert.deepEqual(handed.map((h) => h.id), oldest, "the oldest entries of the mask");
  assert.ok(handed.every((h) => h.n <= MAX_CIPHERTEXT_BYTES));
  assert.deepEqual(
    (await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM login_etl_vault_inbox WHERE claim_id IS NULL`)[0]?.n,
    0,
    "the rest deleted",
  );
  const audit = await auditAfter(db.sql, before);
  // Audited per mask, naming the logins that wrote them.
  const superuser = decodeURIComponent(new URL(db.url).username);
  assert.deepEqual(
    audit.filter((a) => a.outcome === "dropped").map((a) => [a.db_user, a.masked_value, a.detail])
      .sort(),
    [
      [
        roles.users.recoverer,
        other,
        `1 inbox entries dropped unread, written by ${superuser}: over the size bound or past the oldest 8 of their mask and login (claim ${claim?.claim})`,
      ],
      [
        roles.users.recoverer,
        target,
        `5 inbox entries dropped unread, written by ${
          [superuser, roles.users.consumer].sort().join(", ")
        }: over the size bound or past the oldest 8 of their mask and login (claim ${claim?.claim})`,
      ],
    ].sort(),
  );

  // The owner's whole-inbox merge, two entries a batch: a first batch of
  // junk alone does not end it before the real entry behind it.
  await db.sql`
    INSERT INTO login_etl_vault_inbox (masked_value, field, ciphertext, iv, key_id)
    SELECT ${other}, 'ip', decode(repeat('ab', 5000), 'hex'), ${Buffer.alloc(49, 2)}, 'v1'
    FROM generate_series(1, 3)`;
  const real = await cipher.encrypt("ip", other as Masked, "192.0.2.78");
  await asConsumer`
    SELECT login_etl_vault_put(${[other]}::text[], ${["ip"]}::text[],
      ARRAY[${Buffer.from(real.ciphertext)}::bytea], ARRAY[${Buffer.from(real.iv)}::bytea],
      ${["v1"]}::text[])`;
  const report = await mergeVault(db, cliEnv(db), 2);
  assert.deepEqual(
    { accepted: report.accepted, dropped: report.dropped, claimed: report.claimed },
    { accepted: 1, dropped: 3, claimed: 1 },
  );
  assert.deepEqual(
    (await openable(db.sql, cipher)).map((o) => [o.where, o.mask, o.raw]),
    [["vault", other, "192.0.2.78"]],
  );
});
