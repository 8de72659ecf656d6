// The vault inbox at and past its bounds, against real Postgres, with a login
// in each role of sql/roles.sql, on PostgreSQL 13, 15 and 18: vault_put
// refuses calls, ciphertexts, ivs, key ids and masks over their bounds or not
// of their shape, writing nothing; a drain vaults entries of the largest
// sealed bucket; junk already in the inbox is dropped unread by the claim; one
// login's junk does not crowd out another's genuine entry. What a consumer
// sees, plants and claims is inbox_test.ts's.

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
} from "../../helpers/pii.ts";
import { freshSchema, reportFigures, startSqs, TEST_SECRET } from "../../helpers/services.ts";
import { runCli } from "../../helpers/cli.ts";
import { INBOX_ENTRIES_PER_MASK, VAULT_PUT_MAX_ENTRIES } from "../../../src/db/migrations.ts";
import { MAX_CIPHERTEXT_BYTES } from "../../../src/pii/seal.ts";

/** What a vault_put call came to: "taken", or a refusal's SQLSTATE, and its message. */
interface PutOutcome {
  readonly code: string;
  readonly message: string;
}
const TAKEN: PutOutcome = { code: "taken", message: "" };
function refusal(error: { code?: string; message?: string }): PutOutcome {
  return { code: error.code ?? "none", message: error.message ?? "" };
}

eachMajor.test("vault_put refuses, writing nothing, a call with more entries than a consumer's largest batch, a ciphertext longer than the largest sealed entry and an iv of neither format; at the bounds it takes them", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const asConsumer = roles.connectAs(roles.users.consumer);
  // n entries of distinct masks, each `bytes` of ciphertext and `iv` of iv,
  // built on the server (the flood is 50,000 entries).
  const put = (n: number, bytes: number, iv: number, tag: string) =>
    asConsumer`
      SELECT login_etl_vault_put(
        ARRAY(SELECT 'k1:' || rpad(${tag} || 'x' || lpad(g::text, 6, '0'), 43, '0') FROM generate_series(1, ${n}::int) AS g),
        ARRAY(SELECT 'ip' FROM generate_series(1, ${n}::int)),
        ARRAY(SELECT decode(repeat('ab', ${bytes}::int), 'hex') FROM generate_series(1, ${n}::int)),
        ARRAY(SELECT decode(repeat('01', ${iv}::int), 'hex') FROM generate_series(1, ${n}::int)),
        ARRAY(SELECT 'v1' FROM generate_series(1, ${n}::int)))`.then(() => TAKEN, refusal);
  const inbox = async () =>
    (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_etl_vault_inbox`)[0]?.n;

  const flood = await put(50_000, 32, 12, "flood");
  assert.equal(flood.code, "54000");
  assert.match(flood.message, new RegExp(`at most ${VAULT_PUT_MAX_ENTRIES} entries`));
  assert.equal((await put(VAULT_PUT_MAX_ENTRIES + 1, 32, 12, "over")).code, "54000");
  assert.equal(await inbox(), 0, "nothing of the refused calls written");

  const huge = await put(1, 8 * 1024 * 1024, 49, "huge");
  assert.equal(huge.code, "54000");
  assert.match(huge.message, /ciphertext is at most 4112 bytes/);
  assert.equal((await put(1, MAX_CIPHERTEXT_BYTES + 1, 49, "long")).code, "54000");
  for (const iv of [0, 11, 13, 48, 50]) {
    const odd = await put(1, 32, iv, `iv${iv}`);
    assert.equal(odd.code, "22023", `iv of ${iv} bytes`);
  }
  // One bad entry among good ones: the whole call refused.
  const mixed = await asConsumer`
    SELECT login_etl_vault_put(${[`k1:${"a".repeat(43)}`, `k1:${"b".repeat(43)}`]}::text[],
      ${["ip", "ip"]}::text[],
      ARRAY[${Buffer.alloc(32, 1)}::bytea, ${Buffer.alloc(MAX_CIPHERTEXT_BYTES + 1, 1)}::bytea],
      ARRAY[${Buffer.alloc(12, 1)}::bytea, ${Buffer.alloc(12, 1)}::bytea], ${["v1", "v1"]}::text[])`
    .then(() => TAKEN, refusal);
  assert.notEqual(mixed, "taken");
  assert.equal(await inbox(), 0, "nothing of the refused calls written");

  // At the bounds: the largest sealed entry, both iv sizes, the largest batch.
  assert.equal((await put(1, MAX_CIPHERTEXT_BYTES, 49, "largest")).code, "taken");
  assert.equal((await put(1, 16, 12, "symmetric")).code, "taken");
  const started = performance.now();
  assert.equal((await put(VAULT_PUT_MAX_ENTRIES, 32, 49, "batch")).code, "taken");
  reportFigures("vault_put of the largest batch", {
    entries: VAULT_PUT_MAX_ENTRIES,
    ms: Math.round(performance.now() - started),
  });
  assert.equal(await inbox(), VAULT_PUT_MAX_ENTRIES + 2);
});

eachMajor.test("a drain with sealed entries of the largest bucket still vaults them, and recover prints them", async ({ pg }) => {
  await using sqs = await startSqs();
  await using db = await freshSchema(pg);
  const base = await Deno.makeTempDir();
  try {
    const made = await runCli(["keygen", "--vault-id", "p1", "--out", `${base}/keys`]);
    assert.equal(made.code, 0, made.stderr);
    const cli = new Cli(cliEnv(db));
    // 256 code points of 4 bytes: the longest device id, the 4,096-byte bucket.
    const device = "\u{1F600}".repeat(256);
    const ip = "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe";
    // As JSON escapes: the queue emulator refuses characters past U+FFFF in
    // a message body (SQS takes them), and the JSON reader turns them back.
    const escaped = body("big", ip, device).replaceAll("\u{1F600}", "\\ud83d\\ude00");
    const drained = await drain(sqs, cli, [escaped], {
      PII_VAULT_KEY: "",
      PII_VAULT_KEY_FILE: `${base}/keys/vault.public.json`,
    });
    assert.equal(drained.inserted, 1);
    assert.deepEqual(
      (await inboxRows(db.sql)).map((r) => [r.field, r.ciphertext.length, r.iv.length]).sort(),
      [["device_id", MAX_CIPHERTEXT_BYTES, 49], ["ip", 64 + 16, 49]],
    );
    const k1 = await maskerOf(TEST_SECRET, "k1");
    const masks = [k1.mask("device_id", device), k1.mask("ip", ip)];
    const recovered = await recoverFile(cli, masks, ["--reason", "INC-4"], {
      PII_VAULT_KEY: "",
      PII_VAULT_KEY_FILE: `${base}/keys/vault.json`,
    });
    assert.equal(recovered.code, 0, recovered.stderr);
    assert.deepEqual(
      recoveredLines(recovered.stdout),
      [`${masks[0]}\tdevice_id\t${device}`, `${masks[1]}\tip\t${ip}`].sort(),
    );
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

eachMajor.test("vault_put refuses, writing nothing, a 60 MB key id or mask, and any mask, key id or field not of its shape; no merge then meets them", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const asConsumer = roles.connectAs(roles.users.consumer);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const good = [k1.mask("device_id", "600-00-0009"), k1.mask("ip", "192.0.2.90")];
  const zeros = (n: number) => Buffer.alloc(n);
  // The attack as found: two well-formed masks, key ids of 60 MB each (built
  // on the server), which every merger then read into its memory.
  const huge = await asConsumer`
    SELECT login_etl_vault_put(${good}::text[], ${["device_id", "ip"]}::text[],
      ARRAY[${zeros(1)}::bytea, ${zeros(1)}::bytea], ARRAY[${zeros(12)}::bytea, ${
    zeros(12)
  }::bytea],
      ARRAY[repeat('v', 60000000), repeat('w', 60000000)])`.then(() => TAKEN, refusal);
  assert.equal(huge.code, "22023");
  assert.match(huge.message, /key id of 1 to 16 letters/);
  const hugeMask = await asConsumer`
    SELECT login_etl_vault_put(ARRAY['k1:' || repeat('B', 60000000)], ${["ip"]}::text[],
      ARRAY[${zeros(1)}::bytea], ARRAY[${zeros(12)}::bytea], ${["v1"]}::text[])`
    .then(() => TAKEN, refusal);
  assert.equal(hugeMask.code, "22023");
  // One entry of another shape among good ones: the whole call refused.
  const put = (mask: string | null, field: string | null, keyId: string | null) =>
    asConsumer`
      SELECT login_etl_vault_put(${[good[1] ?? "", mask]}::text[], ${["ip", field]}::text[],
        ARRAY[${zeros(32)}::bytea, ${zeros(32)}::bytea], ARRAY[${zeros(12)}::bytea, ${
      zeros(12)
    }::bytea],
        ${["v1", keyId]}::text[])`.then(() => TAKEN, refusal);
  const odd: [string | null, string | null, string | null, string][] = [
    ["k1:ip:a", "ip", "v1", "a mask of another shape"],
    [`k1:${"A".repeat(42)}`, "ip", "v1", "42 characters after the key id"],
    [`${"k".repeat(17)}:${"A".repeat(43)}`, "ip", "v1", "a key id of 17 in the mask"],
    [`k1:${"A".repeat(42)}=`, "ip", "v1", "padding"],
    [null, "ip", "v1", "no mask"],
    [good[0] ?? "", "email", "v1", "a field of neither kind"],
    [good[0] ?? "", null, "v1", "no field"],
    [good[0] ?? "", "device_id", "vault:v1", "a key id with a colon"],
    [good[0] ?? "", "device_id", "v".repeat(17), "a key id of 17"],
    [good[0] ?? "", "device_id", "", "an empty key id"],
    [good[0] ?? "", "device_id", null, "no key id"],
  ];
  for (const [mask, field, keyId, what] of odd) {
    assert.equal((await put(mask, field, keyId)).code, "22023", what);
  }
  assert.deepEqual(await inboxRows(db.sql), [], "nothing of the refused calls written");
  // At the bounds: a key id of 16, a mask under a key id of 16, both fields.
  assert.equal(
    (await put(`${"k".repeat(16)}:${"A".repeat(43)}`, "device_id", "v".repeat(16))).code,
    "taken",
  );
  assert.equal((await inboxRows(db.sql)).length, 2);
});

eachMajor.test("junk already in the inbox with columns of any size is dropped unread by the claim, audited, and the merge completes with the genuine entry", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  const squatted = k1.mask("ip", "192.0.2.91");
  const genuine = k1.mask("ip", "192.0.2.92");
  // Rows written where nothing bounded them: a table whose shape check was
  // dropped (by hand, or before it existed), filled by the owner.
  await db
    .sql`ALTER TABLE login_etl_vault_inbox DROP CONSTRAINT IF EXISTS login_etl_vault_inbox_shape`;
  await db.sql`
    INSERT INTO login_etl_vault_inbox (masked_value, field, ciphertext, iv, key_id)
    VALUES (${squatted}, 'ip', ${Buffer.alloc(32, 1)}, ${
    Buffer.alloc(12, 1)
  }, repeat('v', 8000000)),
           ('k1:' || repeat('B', 2000), 'ip', ${Buffer.alloc(32, 1)}, ${Buffer.alloc(12, 1)}, 'v1'),
           ('k1:ip:a', 'device_id', ${Buffer.alloc(32, 1)}, ${Buffer.alloc(12, 1)}, 'v1')`;
  const real = await cipher.encrypt("ip", genuine as Masked, "192.0.2.92");
  await roles.connectAs(roles.users.consumer)`
    SELECT login_etl_vault_put(${[genuine]}::text[], ${["ip"]}::text[],
      ARRAY[${Buffer.from(real.ciphertext)}::bytea], ARRAY[${Buffer.from(real.iv)}::bytea],
      ${["v1"]}::text[])`;
  const before = await lastAuditId(db.sql);
  const report = await mergeVault(db, cliEnv(db));
  assert.deepEqual(
    {
      claimed: report.claimed,
      accepted: report.accepted,
      dropped: report.dropped,
      kept: report.kept,
    },
    { claimed: 1, accepted: 1, dropped: 3, kept: 0 },
  );
  assert.deepEqual(await inboxRows(db.sql), [], "the junk deleted, the genuine entry merged");
  assert.deepEqual(
    (await openable(db.sql, cipher)).map((o) => [o.where, o.mask, o.raw]),
    [["vault", genuine, "192.0.2.92"]],
  );
  const superuser = decodeURIComponent(new URL(db.url).username);
  const dropped = (await auditAfter(db.sql, before)).filter((a) => a.outcome === "dropped");
  assert.deepEqual(
    dropped.map((a) => [a.action, a.masked_value, a.detail?.replace(/\(claim \d+\)$/, "")]),
    [
      [
        "merge",
        squatted,
        `1 inbox entries dropped unread, written by ${superuser}: over the size bound or past the oldest 8 of their mask and login `,
      ],
      [
        "merge",
        null,
        "2 inbox entries dropped unread: no mask of its shape, or a column over its size bound ",
      ],
    ],
  );
});

eachMajor.test("one consumer login's junk on a mask does not crowd out another login's genuine entry; a value dropped by the cap is reported so by recover, not as never vaulted", async ({ pg }) => {
  await using db = await freshSchema(pg);
  await using roles = await piiRoles(db);
  const cli = new Cli(cliEnv(db));
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const cipher = await cipherOf(VAULT_SECRET);
  const value = { target: "203.0.113.91", own: "203.0.113.92" };
  const target = k1.mask("ip", value.target);
  const own = k1.mask("ip", value.own);
  const put = async (sql: ReturnType<typeof roles.connectAs>, mask: string, raw: string) => {
    const entry = await cipher.encrypt("ip", mask as Masked, raw);
    await sql`
      SELECT login_etl_vault_put(${[mask]}::text[], ${["ip"]}::text[],
        ARRAY[${Buffer.from(entry.ciphertext)}::bytea], ARRAY[${Buffer.from(entry.iv)}::bytea],
        ${["v1"]}::text[])`;
  };
  // Login A holds the HMAC key: it computes the target's mask and squats it
  // with more entries than the cap, each sealing another address.
  const loginA = roles.connectAs(roles.users.consumer);
  const loginB = roles.connectAs(roles.users.consumer2);
  for (let i = 0; i < INBOX_ENTRIES_PER_MASK + 2; i++) {
    await put(loginA, target, `10.66.66.${i}`);
    await put(loginA, own, `10.66.67.${i}`);
  }
  // Then login B (another deployment's consumer) writes the genuine entry;
  // so does A for its own mask, past its own cap.
  await put(loginB, target, value.target);
  await put(loginA, own, value.own);

  const report = await mergeVault(db, cliEnv(db));
  assert.deepEqual(
    { accepted: report.accepted, dropped: report.dropped },
    // Accepted: B's entry. Dropped: A's two past the cap on the target, and
    // three past it on its own mask (the genuine one among them); refused:
    // the 16 of A's that do not mask back.
    { accepted: 1, dropped: 2 + 3 + 2 * INBOX_ENTRIES_PER_MASK },
  );
  const recovererEnv = { DATABASE_URL: roles.urlOf(roles.users.recoverer) };
  const recovered = await recoverFile(cli, [target], ["--reason", "INC-7"], recovererEnv);
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.deepEqual(recoveredLines(recovered.stdout), [`${target}\tip\t${value.target}`]);

  // What stays: a login squatting a value only it writes. Recover says what
  // happened to it, not "never vaulted".
  const lost = await recoverFile(cli, [own], ["--reason", "INC-8"], recovererEnv);
  assert.equal(lost.code, 1);
  assert.match(
    lost.stderr,
    /Nothing recovered: that mask's inbox entries were dropped by a merge: past the inbox cap of 8 per mask and login/,
  );
  assert.doesNotMatch(lost.stderr, /never vaulted/);
  const audit = await db.sql<{ masked_value: string; outcome: string; detail: string }[]>`
    SELECT masked_value, outcome, detail FROM login_etl_audit
    WHERE masked_value = ${own} AND action IN ('merge', 'recover') ORDER BY id`;
  assert.deepEqual(
    audit.map((a) => a.outcome),
    ["dropped", "not_found"],
  );
  assert.match(audit[0]?.detail ?? "", new RegExp(`written by ${roles.users.consumer}:`));
  cli.assertNoRaw([value.target, value.own]);
});
