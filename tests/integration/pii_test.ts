// Issue 5 end to end: the recovery vault written by `drain`, then `recover`,
// `forget`, `rekey` and `rekey-vault` through the real CLI, against the real
// Postgres and fauxqs, with sql/roles.sql applied for the privilege tests.
// Every CLI run's stderr (and every stdout not meant to carry raw values) is
// kept and searched for the raw ip/device_id values at the end of each test,
// and so is the text of every table in the test's schema.

import assert from "node:assert/strict";
import postgres from "postgres";
import { Secret } from "../../src/config.ts";
import { canonicalIp } from "../../src/ip.ts";
import { Masker } from "../../src/mask.ts";
import { parseKeySet } from "../../src/pii/keyring.ts";
import { VaultCipher, type VaultField } from "../../src/pii/vault.ts";
import { generateBodies } from "../../src/seed/generate.ts";
import type { Masked } from "../../src/types.ts";
import { type CliResult, runCli } from "../helpers/cli.ts";
import { type ReferenceMasker, referenceMasker } from "../helpers/reference_mask.ts";
import { type Consumer, delay, startConsumer } from "../helpers/consumers.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
  type TestDb,
  type TestSqs,
} from "../helpers/services.ts";

const encoder = new TextEncoder();

/** The vault key of the tests: a separate secret, never the HMAC key. */
const VAULT_SECRET = "login-etl vault test secret, never the HMAC one";
const VAULT_SECRET_2 = "login-etl second vault test secret, 32+ bytes";
const HMAC_SECRET_2 = "login-etl second HMAC test secret, 32+ bytes";

/** An HMAC key set holding k1 (the tests' usual key) and k2. */
function hmacKeySet(current: "k1" | "k2"): string {
  return JSON.stringify({ current, keys: { k1: TEST_SECRET, k2: HMAC_SECRET_2 } });
}

/** A vault key set holding v1 and v2. */
function vaultKeySet(current: "v1" | "v2", ids: readonly ("v1" | "v2")[] = ["v1", "v2"]): string {
  const secrets = { v1: VAULT_SECRET, v2: VAULT_SECRET_2 };
  return JSON.stringify({ current, keys: Object.fromEntries(ids.map((id) => [id, secrets[id]])) });
}

/** A synchronous masker (node:crypto), checked equal to Web Crypto's in mask_test.ts. */
function maskerOf(secret: string, keyId: string): Promise<ReferenceMasker> {
  return Promise.resolve(referenceMasker(secret, keyId));
}

async function cipherOf(keyText: string): Promise<VaultCipher> {
  return await VaultCipher.create(parseKeySet(encoder.encode(keyText), "test", "v1"));
}

/** One login as a message body. */
function body(user: string, ip: string, deviceId: string): string {
  return JSON.stringify({
    "user_id": user,
    "app_version": "2.3.0",
    "device_type": "android",
    ip,
    locale: "FR",
    "device_id": deviceId,
  });
}

/** The login events behind bodies, with the canonical ip the mask and vault are of. */
function eventsOf(bodies: readonly string[]) {
  return bodies.map((b) => {
    const e = JSON.parse(b) as { user_id: string; ip: string; device_id: string };
    const ip = canonicalIp(e.ip);
    assert.ok(ip.ok, `test data holds a valid ip: ${e.ip}`);
    return { user: e.user_id, rawIp: e.ip, ip: ip.canonical, deviceId: e.device_id };
  });
}

/** Every raw spelling in `bodies`: as sent, canonical, and the device ids. */
function rawValuesOf(bodies: readonly string[]): string[] {
  return [...new Set(eventsOf(bodies).flatMap((e) => [e.rawIp, e.ip, e.deviceId]))];
}

/** True when `raw` occurs in `text` as a whole token (not inside a longer address or id). */
function holdsRaw(text: string, raw: string): boolean {
  const escaped = raw.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(?<![0-9A-Za-z.:_-])${escaped}(?![0-9A-Za-z.:_-])`, "i").test(text);
}

/**
 * The CLI runs of one test, sharing an environment, and everything they wrote
 * that must not hold raw values: all stderr, and stdout except where the
 * raw value is the point (`recover`).
 */
class Cli {
  readonly logs: string[] = [];
  readonly env: Record<string, string>;
  runs = 0;

  constructor(env: Record<string, string>) {
    this.env = env;
  }

  /** Runs `login-etl <args>` with the shared env plus `env` (a value of "" unsets it). */
  async run(
    args: readonly string[],
    env: Record<string, string> = {},
    options: { revealing?: boolean } = {},
  ): Promise<CliResult> {
    const result = await runCli(args, { env: this.envWith(env) });
    this.runs++;
    this.logs.push(result.stderr);
    if (options.revealing !== true) this.logs.push(result.stdout);
    return result;
  }

  /** Starts `login-etl <args>` as a child, for kill tests; collect it with `collect`. */
  start(args: readonly string[], env: Record<string, string> = {}): Consumer {
    this.runs++;
    return startConsumer(args, this.envWith(env));
  }

  /** Waits for a started child and keeps its output. */
  async collect(consumer: Consumer): Promise<Awaited<Consumer["done"]>> {
    const result = await consumer.done;
    this.logs.push(result.stderr, result.stdout);
    return result;
  }

  envWith(env: Record<string, string>): Record<string, string> {
    return Object.fromEntries(
      Object.entries({ ...this.env, ...env }).filter(([, v]) => v !== ""),
    );
  }

  /** Asserts that no run wrote any of `raws` where it must not. */
  assertNoRaw(raws: readonly string[]): void {
    const text = this.logs.join("\n");
    const leaked = raws.filter((raw) => holdsRaw(text, raw));
    assert.deepEqual(leaked, [], `raw values in CLI output of ${this.runs} runs`);
  }
}

/** The environment of a test's CLI runs against its schema. */
function cliEnv(db: TestDb, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL,
    LOGIN_ETL_SCHEMA: db.schema,
    PII_HMAC_KEY: TEST_SECRET,
    PII_VAULT_KEY: VAULT_SECRET,
    LOGIN_ETL_LOG_FORMAT: "json",
    ...extra,
  };
}

/** Sends `bodies` to a fresh queue and runs `drain` through the CLI until the queue is empty. */
async function drain(
  sqs: TestSqs,
  cli: Cli,
  bodies: readonly string[],
  env: Record<string, string> = {},
): Promise<{ inserted: number; runs: number }> {
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, bodies);
  let inserted = 0;
  for (let runs = 1;; runs++) {
    const result = await cli.run(
      ["drain", "--queue-url", queueUrl, "--summary-json", "--idle-seconds", "0"],
      env,
    );
    assert.equal(result.code, 0, `drain failed: ${result.stderr.slice(-2000)}`);
    inserted += (JSON.parse(result.stdout) as { inserted: number }).inserted;
    const counts = sqs.counts(queueUrl);
    if (counts.ready === 0 && counts.inFlight === 0) return { inserted, runs };
    assert.ok(runs < 5, `queue not drained after ${runs} runs: ${JSON.stringify(counts)}`);
  }
}

interface AuditRow {
  readonly id: string;
  readonly actor: string;
  readonly "db_user": string;
  readonly action: string;
  readonly "masked_value": string | null;
  readonly reason: string | null;
  readonly outcome: string;
  readonly detail: string | null;
}

/** Audit rows after `afterId`, oldest first. */
async function auditAfter(sql: postgres.Sql, afterId = "0"): Promise<AuditRow[]> {
  return [
    ...await sql<AuditRow[]>`
    SELECT id::text, actor, db_user, action, masked_value, reason, outcome, detail
    FROM login_etl_audit WHERE id > ${afterId}::bigint ORDER BY id`,
  ];
}

/** The newest audit id, "0" when none. */
async function lastAuditId(sql: postgres.Sql): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    SELECT coalesce(max(id), 0)::text AS id FROM login_etl_audit`;
  return row?.id ?? "0";
}

interface VaultRowText {
  readonly "masked_value": string;
  readonly field: VaultField;
  readonly ciphertext: Uint8Array;
  readonly iv: Uint8Array;
  readonly "key_id": string;
}

async function vaultRows(sql: postgres.Sql): Promise<VaultRowText[]> {
  return [
    ...await sql<VaultRowText[]>`
    SELECT masked_value, field, ciphertext, iv, key_id FROM login_etl_vault ORDER BY masked_value`,
  ];
}

/** Decrypts every vault row in the test: mask → raw value. */
function openVault(cipher: VaultCipher, rows: readonly VaultRowText[]): Map<string, string> {
  return new Map(rows.map((r) => [
    r.masked_value,
    cipher.decrypt({
      masked: r.masked_value as Masked,
      field: r.field,
      ciphertext: new Uint8Array(r.ciphertext),
      iv: new Uint8Array(r.iv),
      keyId: r.key_id,
    }),
  ]));
}

/** Tables of the schema whose row text holds any of `raws` (the vault's bytea shows as hex). */
async function tablesHoldingRaw(db: TestDb, raws: readonly string[]): Promise<string[]> {
  const tables = await db.sql<{ name: string }[]>`
    SELECT table_name AS name FROM information_schema.tables WHERE table_schema = ${db.schema}`;
  const found: string[] = [];
  for (const { name } of tables) {
    const rows = await db.sql.unsafe<{ line: string }[]>(
      `SELECT t::text AS line FROM "${db.schema}"."${name}" t`,
    );
    const text = rows.map((r) => r.line).join("\n");
    for (const raw of raws) if (holdsRaw(text, raw)) found.push(`${name}: ${raw}`);
  }
  return found;
}

/** Duplicate groups of a mask column: the sorted user ids of each mask, sorted. */
async function groupsOf(
  sql: postgres.Sql,
  column: "masked_ip" | "masked_device_id",
): Promise<string[]> {
  const rows = await sql<{ users: string }[]>`
    SELECT string_agg(user_id, ',' ORDER BY user_id) AS users
    FROM user_logins GROUP BY ${sql(column)}`;
  return rows.map((r) => r.users).sort();
}

/** Runs `recover` on a list of masks through --from-file. */
async function recoverFile(
  cli: Cli,
  masks: readonly string[],
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const file = await Deno.makeTempFile({ suffix: ".txt" });
  try {
    await Deno.writeTextFile(file, masks.join("\n") + "\n");
    return await cli.run(["recover", "--from-file", file, ...args], env, { revealing: true });
  } finally {
    await Deno.remove(file);
  }
}

/** `MASK\tFIELD\tRAW` lines of a recover run, sorted. */
function recoveredLines(stdout: string): string[] {
  return stdout.split("\n").filter((l) => l !== "").sort();
}

/** Asserts a failure with one `error:` line on stderr matching `pattern`, and nothing on stdout. */
function assertRefused(result: CliResult, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, `exit code; stderr: ${result.stderr}`);
  assert.equal(result.stdout, "", "nothing revealed on stdout");
  const lines = result.stderr.trimEnd().split("\n");
  const last = lines[lines.length - 1] ?? "";
  assert.match(last, /^error: \S/);
  assert.match(last, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
}

// Four logins: spellings of one IPv6 address, an IPv4-mapped address, and a
// device id used twice. Canonical values are what the vault holds.
const PEOPLE = [
  body("u1", "2001:DB8:0:0:0:0:0:1", "111-22-3333"),
  body("u2", "203.0.113.7", "444-55-6666"),
  body("u3", "::ffff:198.51.100.4", "111-22-3333"),
  body("u4", "2001:db8::1", "777-88-9999"),
];

Deno.test("recover prints the raw value behind ip and device_id masks, alone and in bulk, audited before it prints", async () => {
  const started = performance.now();
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  const k1 = await maskerOf(TEST_SECRET, "k1");

  const first = await drain(sqs, cli, PEOPLE);
  assert.equal(first.inserted, 4);
  const ipMask = await k1.mask("ip", "2001:db8::1");
  const deviceMask = await k1.mask("device_id", "111-22-3333");
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
  const again = await drain(sqs, cli, PEOPLE.map((b) => b.replace(/"u(\d)"/, '"again-$1"')));
  assert.equal(again.inserted, 4);
  assert.deepEqual(await vaultRows(db.sql), vault, "vault entries are written once");

  // One ip mask, one device_id mask.
  const before = await lastAuditId(db.sql);
  const ip = await cli.run(
    ["recover", "--masked", ipMask, "--reason", "ticket SEC-7: fraud review", "--actor", "alice"],
    {},
    { revealing: true },
  );
  assert.equal(ip.code, 0, ip.stderr);
  assert.equal(ip.stdout, `${ipMask}\tip\t2001:db8::1\n`, "the canonical address");
  const device = await cli.run(
    [
      "recover",
      "--masked",
      deviceMask,
      "--reason",
      "ticket SEC-7: fraud review",
      "--actor",
      "alice",
    ],
    {},
    { revealing: true },
  );
  assert.equal(device.code, 0, device.stderr);
  assert.equal(device.stdout, `${deviceMask}\tdevice_id\t111-22-3333\n`);
  assert.deepEqual(
    (await auditAfter(db.sql, before)).map((a) => ({ ...a, id: "" })),
    [ipMask, deviceMask].map((m, i) => ({
      id: "",
      actor: "alice",
      "db_user": "postgres",
      action: "recover",
      "masked_value": m,
      reason: "ticket SEC-7: fraud review",
      outcome: "success",
      detail: `field ${i === 0 ? "ip" : "device_id"}`,
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
    ["not_found", "success", "success", "success", "success"],
  );
  assert.equal(bulkAudit.find((a) => a.masked_value === unknown)?.outcome, "not_found");

  // `recover --audit` lists the trail, newest first.
  const listing = await cli.run(["recover", "--audit"]);
  assert.equal(listing.code, 0, listing.stderr);
  const listed = listing.stdout.trim().split("\n").map((l) =>
    JSON.parse(l) as AuditRow & { at: string }
  );
  const all = await auditAfter(db.sql);
  assert.deepEqual(listed.map((l) => l.id), all.map((a) => a.id).reverse());
  assert.deepEqual(
    listed.find((l) => l.masked_value === ipMask),
    {
      ...all.find((a) => a.masked_value === ipMask),
      at: listed.find((l) => l.masked_value === ipMask)?.at,
    },
  );
  assert.match(listed[0]?.at ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  // Audit before reveal: when the audit row cannot be written, nothing is printed.
  await db.sql.unsafe(`
    CREATE FUNCTION "${db.schema}".refuse_audit() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'audit trail unavailable'; END $$;
    CREATE TRIGGER refuse_audit BEFORE INSERT ON "${db.schema}".login_etl_audit
      FOR EACH ROW EXECUTE FUNCTION "${db.schema}".refuse_audit();`).simple();
  const beforeBlind = await lastAuditId(db.sql);
  const blind = await cli.run(
    ["recover", "--masked", ipMask, "--reason", "audit down", "--actor", "alice"],
    {},
    { revealing: true },
  );
  assertRefused(blind, 1, /Cannot write the audit trail .*nothing was revealed/);
  assert.deepEqual(await auditAfter(db.sql, beforeBlind), []);
  await db.sql.unsafe(`DROP TRIGGER refuse_audit ON "${db.schema}".login_etl_audit`);

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

  const k1 = await maskerOf(TEST_SECRET, "k1");
  const mask = await k1.mask("ip", "203.0.113.7");
  const result = await cli.run(
    ["recover", "--masked", mask, "--reason", "check"],
    { PII_VAULT_KEY: VAULT_SECRET },
    { revealing: true },
  );
  assertRefused(result, 1, /No vault entry for that mask/);
  assert.deepEqual((await auditAfter(db.sql)).map((a) => [a.masked_value, a.outcome]), [
    [mask, "not_found"],
  ]);
  const raws = rawValuesOf(PEOPLE);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
});

Deno.test("recover refuses without the vault key or without --reason (exit 2) and audits each refusal as denied", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  await drain(sqs, cli, PEOPLE);
  const mask = (await maskerOf(TEST_SECRET, "k1")).mask("device_id", "444-55-6666");

  const noKey = await cli.run(
    ["recover", "--masked", mask, "--reason", "curious", "--actor", "mallory"],
    { PII_VAULT_KEY: "" },
    { revealing: true },
  );
  assertRefused(noKey, 2, /Refused: recover needs the vault key/);
  const noReason = await cli.run(
    ["recover", "--masked", mask, "--actor", "mallory"],
    {},
    { revealing: true },
  );
  assertRefused(noReason, 2, /Refused: recover needs --reason/);
  const blankReason = await cli.run(
    ["recover", "--masked", mask, "--reason", "   ", "--actor", "mallory"],
    {},
    { revealing: true },
  );
  assertRefused(blankReason, 2, /Refused: recover needs --reason/);

  const audit = await auditAfter(db.sql);
  assert.deepEqual(
    audit.map((a) => [a.actor, a.action, a.masked_value, a.reason, a.outcome]),
    [
      ["mallory", "recover", mask, "curious", "denied"],
      ["mallory", "recover", mask, null, "denied"],
      ["mallory", "recover", mask, null, "denied"],
    ],
  );
  assert.match(audit[0]?.detail ?? "", /vault key/);
  cli.assertNoRaw(rawValuesOf(PEOPLE));
});

Deno.test("recover refuses a database role without SELECT on the vault; sql/roles.sql lets the consumer drain with the vault on and pii_recoverer recover", async (t) => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const suffix = `_${Date.now().toString(36)}_${Deno.pid}`;
  const groups = ["login_etl_owner", "login_etl_consumer", "pii_recoverer"].map((g) => g + suffix);
  const consumerUser = `etl_service${suffix}`;
  const recovererUser = `alice${suffix}`;
  const ownerUser = `etl_migrate${suffix}`;
  const password = crypto.randomUUID();
  const urlOf = (user: string) => {
    const url = new URL(DATABASE_URL);
    url.hostname = "127.0.0.1";
    url.username = user;
    url.password = password;
    return url.toString();
  };
  const clients: postgres.Sql[] = [];
  const connectAs = (user: string) => {
    const sql = postgres(urlOf(user), {
      max: 1,
      onnotice: () => {},
      connection: { search_path: db.schema },
    });
    clients.push(sql);
    return sql;
  };
  try {
    // sql/schema.sql, then sql/roles.sql with this test's role names (roles are cluster-wide).
    const root = new URL("../../sql/", import.meta.url);
    await db.sql.unsafe(await Deno.readTextFile(new URL("schema.sql", root))).simple();
    const roles = (await Deno.readTextFile(new URL("roles.sql", root))).replace(
      /\b(login_etl_owner|login_etl_consumer|pii_recoverer)\b/g,
      `$1${suffix}`,
    );
    await db.sql.unsafe(roles).simple();
    await db.sql.unsafe(`
      CREATE ROLE "${consumerUser}" LOGIN PASSWORD '${password}' IN ROLE "${groups[1]}";
      CREATE ROLE "${recovererUser}" LOGIN PASSWORD '${password}' IN ROLE "${groups[2]}";
      CREATE ROLE "${ownerUser}" LOGIN PASSWORD '${password}' IN ROLE "${groups[0]}";`)
      .simple();
    const cli = new Cli(cliEnv(db));
    const k1 = await maskerOf(TEST_SECRET, "k1");
    const ipMask = await k1.mask("ip", "203.0.113.7");

    await t.step("the consumer role drains with the vault on", async () => {
      const drained = await drain(sqs, cli, PEOPLE, { DATABASE_URL: urlOf(consumerUser) });
      assert.equal(drained.inserted, 4);
      const [n] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_etl_vault`;
      assert.equal(n?.n, 6);
    });

    await t.step(
      "the consumer role cannot read the vault, the rows or the audit trail",
      async () => {
        const asConsumer = connectAs(consumerUser);
        for (const table of ["login_etl_vault", "user_logins", "login_etl_audit"]) {
          await assert.rejects(
            asConsumer.unsafe(`SELECT * FROM ${table}`),
            (e: { code?: string }) => e.code === "42501",
            `SELECT on ${table}`,
          );
        }
      },
    );

    await t.step("a pii_recoverer user recovers, audited under its database user", async () => {
      const before = await lastAuditId(db.sql);
      const result = await cli.run(
        ["recover", "--masked", ipMask, "--reason", "INC-42", "--actor", "alice"],
        { DATABASE_URL: urlOf(recovererUser) },
        { revealing: true },
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${ipMask}\tip\t203.0.113.7\n`);
      const audit = await auditAfter(db.sql, before);
      assert.deepEqual(audit.map((a) => [a.db_user, a.actor, a.outcome]), [
        [recovererUser, "alice", "success"],
      ]);
      const listing = await cli.run(["recover", "--audit"], {
        DATABASE_URL: urlOf(recovererUser),
      });
      assert.equal(listing.code, 0, listing.stderr);
      assert.match(listing.stdout, new RegExp(`"db_user":"${recovererUser}"`));
    });

    await t.step(
      "the pii_recoverer user cannot UPDATE, DELETE or TRUNCATE audit rows",
      async () => {
        const asRecoverer = connectAs(recovererUser);
        for (
          const statement of [
            "UPDATE login_etl_audit SET reason = 'nothing to see'",
            "DELETE FROM login_etl_audit",
            "TRUNCATE login_etl_audit",
          ]
        ) {
          await assert.rejects(
            asRecoverer.unsafe(statement),
            (e: { code?: string }) => e.code === "42501",
            statement,
          );
        }
        const [n] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM login_etl_audit WHERE reason = 'nothing to see'`;
        assert.equal(n?.n, 0);
      },
    );

    await t.step("the pii_recoverer user cannot forge db_user or at in an audit row", async () => {
      // db_user and at are the two facts the trail records without trusting
      // the caller (actor is whatever --actor says); column-level INSERT keeps
      // their defaults.
      const asRecoverer = connectAs(recovererUser);
      await assert.rejects(
        asRecoverer`
          INSERT INTO login_etl_audit (actor, action, outcome, db_user, at)
          VALUES ('alice', 'recover', 'success', 'someone_else', '2000-01-01')`,
        (e: { code?: string }) => e.code === "42501",
        "INSERT naming db_user and at",
      );
      const forged = await db.sql`SELECT FROM login_etl_audit WHERE db_user = 'someone_else'`;
      assert.equal(forged.length, 0);
    });

    await t.step(
      "the consumer user's recover is refused with exit 1 and audited as denied",
      async () => {
        const before = await lastAuditId(db.sql);
        const result = await cli.run(
          ["recover", "--masked", ipMask, "--reason", "just looking", "--actor", "svc"],
          { DATABASE_URL: urlOf(consumerUser) },
          { revealing: true },
        );
        assert.equal(result.code, 1, result.stderr);
        assert.equal(result.stdout, "", "nothing revealed");
        // A denial must leave a trace a reviewer sees: the audit row, written
        // under the consumer's own database user. That needs INSERT on
        // login_etl_audit for the consumer (column-level, so it cannot set
        // db_user or at); without it the attempt fails on the audit insert.
        const audit = await auditAfter(db.sql, before);
        assert.deepEqual(
          audit.map((a) => [a.db_user, a.actor, a.masked_value, a.reason, a.outcome]),
          [[consumerUser, "svc", ipMask, "just looking", "denied"]],
          `denied attempt audited (stderr: ${result.stderr.trim()})`,
        );
        assertRefused(result, 1, /Refused: this database role may not read login_etl_vault/);
      },
    );

    await t.step("an owner user re-keys; the consumer user cannot", async () => {
      const env = { PII_HMAC_KEY: hmacKeySet("k2") };
      const args = ["rekey", "--to", "k2", "--reason", "rotation"];
      const denied = await cli.run(args, { ...env, DATABASE_URL: urlOf(consumerUser) });
      assertRefused(denied, 1, /permission denied/);
      const done = await cli.run(args, { ...env, DATABASE_URL: urlOf(ownerUser) });
      assert.equal(done.code, 0, done.stderr);
      const [left] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM user_logins
        WHERE masked_ip NOT LIKE 'k2:%' OR masked_device_id NOT LIKE 'k2:%'`;
      assert.equal(left?.n, 0);
    });

    cli.assertNoRaw(rawValuesOf(PEOPLE));
  } finally {
    for (const sql of clients) await sql.end();
    const admin = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
    try {
      const existing = (await admin<{ rolname: string }[]>`
        SELECT rolname FROM pg_roles WHERE rolname = ANY(${[
        consumerUser,
        recovererUser,
        ownerUser,
        ...groups,
      ]})`).map((r) => `"${r.rolname}"`).join(", ");
      if (existing !== "") {
        await admin.unsafe(`REASSIGN OWNED BY ${existing} TO CURRENT_USER`);
        await admin.unsafe(`DROP OWNED BY ${existing}`);
        await admin.unsafe(`DROP ROLE ${existing}`);
      }
    } finally {
      await admin.end();
    }
  }
});

Deno.test("recover refuses tampered, swapped and unknown-key vault entries and audits each as failed", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  const people = [
    body("t1", "192.0.2.11", "100-00-0001"),
    body("t2", "192.0.2.12", "100-00-0002"),
    body("t3", "192.0.2.13", "100-00-0003"),
    body("t4", "192.0.2.14", "100-00-0004"),
    body("t5", "192.0.2.15", "100-00-0005"),
  ];
  await drain(sqs, cli, people);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const ip = (n: number) => k1.mask("ip", `192.0.2.1${n}`);
  const device = (n: number) => k1.mask("device_id", `100-00-000${n}`);

  // One byte of one ciphertext flipped.
  await db.sql`
    UPDATE login_etl_vault SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1)
    WHERE masked_value = ${ip(1)}`;
  const before = await lastAuditId(db.sql);
  const flipped = await cli.run(
    ["recover", "--masked", ip(1), "--reason", "tamper check"],
    {},
    { revealing: true },
  );
  assertRefused(flipped, 1, /Vault entries failed authentication for 1 of 1 masks/);
  const flipAudit = await auditAfter(db.sql, before);
  assert.deepEqual(flipAudit.map((a) => [a.masked_value, a.outcome]), [[ip(1), "failed"]]);
  assert.match(flipAudit[0]?.detail ?? "", /failed authentication/);

  // Ciphertext and IV swapped between two ip entries, and between an ip and
  // a device_id entry; one entry relabelled to the other field; one under a
  // key id the set does not hold. One entry untouched.
  await db.sql`
    UPDATE login_etl_vault v SET ciphertext = o.ciphertext, iv = o.iv
    FROM login_etl_vault o
    WHERE (v.masked_value, o.masked_value) IN
      ((${ip(2)}, ${ip(3)}), (${ip(3)}, ${ip(2)}), (${ip(4)}, ${device(4)}), (${device(4)}, ${
    ip(4)
  }))`;
  await db.sql`UPDATE login_etl_vault SET field = 'device_id' WHERE masked_value = ${ip(5)}`;
  await db.sql`UPDATE login_etl_vault SET key_id = 'v9' WHERE masked_value = ${device(5)}`;
  const tampered = [ip(2), ip(3), ip(4), device(4), ip(5), device(5)];
  const beforeBulk = await lastAuditId(db.sql);
  const bulk = await recoverFile(cli, [...tampered, device(1)], ["--reason", "tamper check"]);
  assert.equal(bulk.code, 1, bulk.stderr);
  assert.match(bulk.stderr, /error: Vault entries failed authentication for 6 of \d+ masks/);
  assert.equal(bulk.stdout, `${device(1)}\tdevice_id\t100-00-0001\n`, "only the intact entry");
  const audit = new Map(
    (await auditAfter(db.sql, beforeBulk)).map((a) => [a.masked_value, a] as const),
  );
  for (const mask of tampered) assert.equal(audit.get(mask)?.outcome, "failed", mask);
  assert.equal(audit.get(device(1))?.outcome, "success");
  assert.match(audit.get(device(5))?.detail ?? "", /under key "v9", which the vault key set/);

  const raws = rawValuesOf(people);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
});

Deno.test("forget erases only the vault entry, audited; recover then refuses it as not found; forget without --reason is refused", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  const people = [
    body("f1", "192.0.2.44", "200-00-0001"),
    body("f2", "192.0.2.44", "200-00-0002"),
    body("f3", "192.0.2.45", "200-00-0002"),
  ];
  await drain(sqs, cli, people);
  const k1 = await maskerOf(TEST_SECRET, "k1");
  const mask = await k1.mask("ip", "192.0.2.44");
  const rows = async () => [
    ...await db.sql`SELECT *, create_date::text AS day FROM user_logins ORDER BY user_id`,
  ];
  const rowsBefore = await rows();
  const vaultBefore = await vaultRows(db.sql);
  const erased = vaultBefore.find((v) => v.masked_value === mask);
  assert.ok(erased, "the value was vaulted");
  const erasedHex = new Uint8Array(erased.ciphertext).toHex();

  const result = await cli.run([
    "forget",
    "--masked",
    mask,
    "--reason",
    "GDPR art. 17 request 88",
    "--actor",
    "dpo",
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^Erased 1 of 1 vault entries/);

  const vaultAfter = await vaultRows(db.sql);
  assert.deepEqual(
    vaultAfter,
    vaultBefore.filter((v) => v.masked_value !== mask),
    "exactly that entry is gone; the others are untouched",
  );
  assert.deepEqual(await rows(), rowsBefore, "user_logins rows and masks untouched");
  const opened = openVault(await cipherOf(VAULT_SECRET), vaultAfter);
  assert.ok(![...opened.values()].includes("192.0.2.44"), "no other entry holds the value");
  const tables = await db.sql<{ name: string }[]>`
    SELECT table_name AS name FROM information_schema.tables WHERE table_schema = ${db.schema}`;
  for (const { name } of tables) {
    const [hit] = await db.sql.unsafe<{ n: number }[]>(
      `SELECT count(*)::int AS n FROM "${db.schema}"."${name}" t WHERE t::text LIKE $1`,
      [`%${erasedHex}%`],
    );
    assert.equal(hit?.n, 0, `no copy of the erased ciphertext in ${name}`);
  }
  const [forgot] = await auditAfter(db.sql);
  assert.deepEqual(
    [forgot?.actor, forgot?.action, forgot?.masked_value, forgot?.reason, forgot?.outcome],
    ["dpo", "forget", mask, "GDPR art. 17 request 88", "success"],
  );

  const before = await lastAuditId(db.sql);
  const recovered = await cli.run(
    ["recover", "--masked", mask, "--reason", "after erasure", "--actor", "alice"],
    {},
    { revealing: true },
  );
  assertRefused(recovered, 1, /No vault entry for that mask: never vaulted, or erased/);
  const twice = await cli.run(["forget", "--masked", mask, "--reason", "again"]);
  assert.equal(twice.code, 0, twice.stderr);
  assert.match(twice.stdout, /^Erased 0 of 1/);
  const other = await k1.mask("ip", "192.0.2.45");
  const noReason = await cli.run(["forget", "--masked", other, "--actor", "dpo"]);
  assertRefused(noReason, 2, /Refused: forget needs --reason/);
  assert.ok(
    (await vaultRows(db.sql)).some((v) => v.masked_value === other),
    "a refused forget erases nothing",
  );
  assert.deepEqual(
    (await auditAfter(db.sql, before)).map((a) => [a.action, a.masked_value, a.outcome]),
    [
      ["recover", mask, "not_found"],
      ["forget", mask, "not_found"],
      ["forget", other, "denied"],
    ],
  );

  const raws = rawValuesOf(people);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
});

Deno.test("rekey moves every mask to the new HMAC key through the vault and keeps duplicate groups; without the vault it refuses", async () => {
  const started = performance.now();
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db, { PII_HMAC_KEY: hmacKeySet("k1") }));
  const bodies = [...generateBodies(150, { badRatio: 0, seed: 5, repeatRatio: 0.6 })];
  const events = eventsOf(bodies);
  assert.equal((await drain(sqs, cli, bodies)).inserted, 150);
  const ipGroups = await groupsOf(db.sql, "masked_ip");
  const deviceGroups = await groupsOf(db.sql, "masked_device_id");

  // Without the vault key old and new masks cannot be linked: refused, nothing changed.
  const noVault = await cli.run(
    ["rekey", "--to", "k2", "--reason", "rotation"],
    { PII_HMAC_KEY: hmacKeySet("k2"), PII_VAULT_KEY: "" },
  );
  assertRefused(noVault, 2, /Cannot rekey without the vault: .*old and new masks .*linked/);
  assert.equal(noVault.stderr.trim().split("\n").length, 1, "one line");
  const [stillK1] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM user_logins WHERE masked_ip LIKE 'k1:%' AND masked_device_id LIKE 'k1:%'`;
  assert.equal(stillK1?.n, 150);

  // Consumers restart with k2 current, then rekey moves the old rows.
  const env = { PII_HMAC_KEY: hmacKeySet("k2") };
  const rekey = await cli.run(["rekey", "--to", "k2", "--reason", "annual rotation"], env);
  assert.equal(rekey.code, 0, rekey.stderr);
  const report = JSON.parse(rekey.stdout);
  assert.deepEqual(report.moved, { ip: ipGroups.length, "device_id": deviceGroups.length });
  assert.deepEqual(report.unlinkable, { ip: 0, "device_id": 0 });

  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  const rows = await db.sql<{ user_id: string; masked_ip: string; masked_device_id: string }[]>`
    SELECT user_id, masked_ip, masked_device_id FROM user_logins`;
  const byUser = new Map(events.map((e) => [e.user, e]));
  for (const row of rows) {
    const e = byUser.get(row.user_id);
    assert.ok(e);
    assert.equal(row.masked_ip, k2.mask("ip", e.ip), "the mask a k2 Masker computes");
    assert.equal(row.masked_device_id, k2.mask("device_id", e.deviceId));
  }
  assert.deepEqual(await groupsOf(db.sql, "masked_ip"), ipGroups, "same users grouped by ip");
  assert.deepEqual(await groupsOf(db.sql, "masked_device_id"), deviceGroups);

  const vault = await vaultRows(db.sql);
  const masks = new Set(rows.flatMap((r) => [r.masked_ip, r.masked_device_id]));
  assert.deepEqual(new Set(vault.map((v) => v.masked_value)), masks, "vault keyed by new masks");
  const opened = openVault(await cipherOf(VAULT_SECRET), vault);
  for (const e of events) assert.equal(opened.get(k2.mask("ip", e.ip)), e.ip);

  // The most shared address, recovered through its new mask.
  const top = [...Map.groupBy(events, (e) => e.ip)].sort((a, b) => b[1].length - a[1].length)[0];
  assert.ok(top);
  const topMask = await k2.mask("ip", top[0]);
  const recovered = await cli.run(
    ["recover", "--masked", topMask, "--reason", "post-rotation check"],
    {},
    { revealing: true },
  );
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.equal(recovered.stdout, `${topMask}\tip\t${top[0]}\n`);

  // A consumer on k2 joins the rekeyed group and adds no vault entry for a known value.
  const late = body("late-user", top[0], top[1][0]?.deviceId ?? "");
  await drain(sqs, cli, [late], env);
  const [group] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM user_logins WHERE masked_ip = ${topMask}`;
  assert.equal(group?.n, top[1].length + 1);
  assert.equal((await vaultRows(db.sql)).length, vault.length);

  const raws = rawValuesOf(bodies);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
  reportFigures("rekey", {
    rows: rows.length,
    ip_masks: ipGroups.length,
    repeated_ips: ipGroups.filter((g) => g.includes(",")).length,
    largest_ip_group: top[1].length,
    device_masks: deviceGroups.length,
    batches: report.batches,
    ms: Math.round(performance.now() - started),
  });
});

/**
 * Runs `args` (a rekey or rekey-vault) as a child and SIGKILLs it in the
 * middle of its second batch. A trigger makes the batch's audit insert, the
 * last statement of its transaction, wait on an advisory lock the test holds:
 * the first batch has committed, the second has done all its other writes
 * and waits, uncommitted, when the kill comes. The backend then finds its
 * client gone and rolls back; this returns once it has.
 */
async function killInSecondBatch(
  db: TestDb,
  cli: Cli,
  action: "rekey" | "rekey-vault",
  args: readonly string[],
  env: Record<string, string>,
): Promise<Awaited<Consumer["done"]>> {
  const key = 1 + Math.floor(Math.random() * 2 ** 30);
  const holder = await db.sql.reserve();
  let locked = false;
  let child: Consumer | null = null;
  try {
    await holder`SELECT pg_advisory_lock(${key})`;
    locked = true;
    await db.sql.unsafe(`
      CREATE FUNCTION "${db.schema}".hold_second_batch() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF EXISTS (SELECT FROM "${db.schema}".login_etl_audit WHERE action = NEW.action) THEN
          PERFORM pg_advisory_xact_lock_shared(${key});
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER hold_second_batch BEFORE INSERT ON "${db.schema}".login_etl_audit
        FOR EACH ROW WHEN (NEW.action = '${action}')
        EXECUTE FUNCTION "${db.schema}".hold_second_batch();`).simple();
    child = cli.start(args, env);
    let pid: number | undefined;
    for (const deadline = Date.now() + 30_000; pid === undefined; await delay(20)) {
      const [row] = await db.sql<{ pid: number }[]>`
        SELECT pid FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND objid::bigint = ${key}`;
      pid = row?.pid;
      assert.ok(pid !== undefined || Date.now() < deadline, `no ${action} batch waited in 30 s`);
    }
    child.child.kill("SIGKILL");
    const result = await cli.collect(child);
    child = null;
    await holder`SELECT pg_advisory_unlock(${key})`;
    locked = false;
    for (const deadline = Date.now() + 30_000;; await delay(20)) {
      const alive = await db.sql`SELECT FROM pg_stat_activity WHERE pid = ${pid}`;
      if (alive.length === 0) break;
      assert.ok(Date.now() < deadline, `backend ${pid} still alive after 30 s`);
    }
    await db.sql.unsafe(`DROP TRIGGER hold_second_batch ON "${db.schema}".login_etl_audit`);
    return result;
  } finally {
    if (child !== null) {
      child.child.kill("SIGKILL");
      await child.done;
    }
    if (locked) await holder`SELECT pg_advisory_unlock(${key})`;
    holder.release();
  }
}

Deno.test("rekey killed after a committed batch resumes to the same state as an uninterrupted rekey", async () => {
  const started = performance.now();
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await using control = await freshSchema();
  const cli = new Cli(cliEnv(db, { PII_HMAC_KEY: hmacKeySet("k1") }));
  const bodies = [...generateBodies(300, { badRatio: 0, seed: 11, repeatRatio: 0.35 })];
  const events = eventsOf(bodies);
  assert.equal((await drain(sqs, cli, bodies)).inserted, 300);
  const ipGroups = await groupsOf(db.sql, "masked_ip");
  const deviceGroups = await groupsOf(db.sql, "masked_device_id");

  // The same data in a second schema, re-keyed without interruption, is the reference.
  for (const table of ["user_logins", "login_etl_vault", "login_etl_keys"]) {
    await control.sql.unsafe(
      `CREATE TABLE "${control.schema}"."${table}" (LIKE "${db.schema}"."${table}" INCLUDING ALL)`,
    );
    await control.sql.unsafe(
      `INSERT INTO "${control.schema}"."${table}" SELECT * FROM "${db.schema}"."${table}"`,
    );
  }
  const env = { PII_HMAC_KEY: hmacKeySet("k2") };
  const reference = await cli.run(
    ["rekey", "--to", "k2", "--reason", "rotation"],
    { ...env, LOGIN_ETL_SCHEMA: control.schema },
  );
  assert.equal(reference.code, 0, reference.stderr);

  const args = ["rekey", "--to", "k2", "--reason", "rotation", "--max-rows", "5"];
  const killed = await killInSecondBatch(db, cli, "rekey", args, env);
  assert.equal(killed.signal, "SIGKILL");

  const [mid] = await db.sql<{ k2: number; k1: number; vaultK2: number; audit: number }[]>`
    SELECT (SELECT count(DISTINCT masked_ip) FROM user_logins WHERE masked_ip LIKE 'k2:%')::int AS k2,
           (SELECT count(DISTINCT masked_ip) FROM user_logins WHERE masked_ip LIKE 'k1:%')::int AS k1,
           (SELECT count(*) FROM login_etl_vault WHERE masked_value LIKE 'k2:%')::int AS "vaultK2",
           (SELECT count(*) FROM login_etl_audit WHERE action = 'rekey')::int AS audit`;
  assert.deepEqual(
    mid,
    { k2: 5, k1: ipGroups.length - 5, vaultK2: 5, audit: 1 },
    "killed after one batch of 5: the second, uncommitted, left nothing",
  );

  const resumed = await cli.run(args, env);
  assert.equal(resumed.code, 0, resumed.stderr);
  const report = JSON.parse(resumed.stdout);
  assert.deepEqual(report.moved, { ip: ipGroups.length - 5, "device_id": deviceGroups.length });

  const state = (sql: postgres.Sql) =>
    sql`SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version,
               create_date::text AS day
        FROM user_logins ORDER BY user_id`;
  assert.deepEqual(await state(db.sql), await state(control.sql), "same rows as uninterrupted");
  assert.deepEqual(await groupsOf(db.sql, "masked_ip"), ipGroups);
  assert.deepEqual(await groupsOf(db.sql, "masked_device_id"), deviceGroups);
  const k2 = await maskerOf(HMAC_SECRET_2, "k2");
  const cipher = await cipherOf(VAULT_SECRET);
  const vault = await vaultRows(db.sql);
  const opened = openVault(cipher, vault);
  assert.deepEqual(opened, openVault(cipher, await vaultRows(control.sql)));
  const expected = new Map(events.flatMap((e) => [
    [k2.mask("ip", e.ip), e.ip] as const,
    [k2.mask("device_id", e.deviceId), e.deviceId] as const,
  ]));
  assert.deepEqual(opened, expected, "one vault entry per distinct mask, none left under k1");
  assert.equal(vault.length, ipGroups.length + deviceGroups.length);

  const raws = rawValuesOf(bodies);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
  reportFigures("rekey kill", {
    rows: bodies.length,
    ip_masks: ipGroups.length,
    device_masks: deviceGroups.length,
    moved_before_kill: 5,
    batches_after_resume: report.batches,
    ms: Math.round(performance.now() - started),
  });
});

Deno.test("rekey-vault re-encrypts every entry under the new vault key, resumes after a kill, and a second run moves nothing", async () => {
  const started = performance.now();
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db, { PII_VAULT_KEY: vaultKeySet("v1") }));
  const bodies = [...generateBodies(60, { badRatio: 0, seed: 23, repeatRatio: 0.2 })];
  const events = eventsOf(bodies);
  await drain(sqs, cli, bodies);
  const before = await vaultRows(db.sql);
  assert.ok(before.every((v) => v.key_id === "v1"));
  const original = openVault(await cipherOf(vaultKeySet("v1")), before);

  const env = { PII_VAULT_KEY: vaultKeySet("v2") };
  const args = ["rekey-vault", "--to", "v2", "--reason", "vault key rotation", "--max-rows", "5"];
  const killed = await killInSecondBatch(db, cli, "rekey-vault", args, env);
  assert.equal(killed.signal, "SIGKILL");
  const mid = await vaultRows(db.sql);
  assert.equal(mid.filter((v) => v.key_id === "v2").length, 5, "one batch committed, one not");

  const resumed = await cli.run(args, env);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.equal(JSON.parse(resumed.stdout).moved, before.length - 5);
  const after = await vaultRows(db.sql);
  assert.ok(after.every((v) => v.key_id === "v2"), "every entry under v2");
  assert.deepEqual(after.map((v) => v.masked_value), before.map((v) => v.masked_value));
  // v1 can now be removed from the key set: everything opens with v2 alone.
  const v2Only = vaultKeySet("v2", ["v2"]);
  assert.deepEqual(openVault(await cipherOf(v2Only), after), original);
  const again = await cli.run(args, env);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(JSON.parse(again.stdout), { "key_id": "v2", moved: 0, batches: 0, failed: 0 });

  const e = events[0];
  assert.ok(e);
  const mask = (await maskerOf(TEST_SECRET, "k1")).mask("device_id", e.deviceId);
  const recovered = await cli.run(
    ["recover", "--masked", mask, "--reason", "after vault rotation"],
    { PII_VAULT_KEY: v2Only },
    { revealing: true },
  );
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.equal(recovered.stdout, `${mask}\tdevice_id\t${e.deviceId}\n`);
  const audit = await auditAfter(db.sql);
  assert.deepEqual(
    audit.filter((a) => a.action === "rekey-vault").length,
    1 + Math.ceil((before.length - 5) / 5),
    "one audit row per committed batch",
  );

  const raws = rawValuesOf(bodies);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
  reportFigures("rekey-vault", {
    entries: before.length,
    moved_before_kill: 5,
    moved_after_resume: before.length - 5,
    ms: Math.round(performance.now() - started),
  });
});

Deno.test("forget leaves a tombstone: a later login with the erased value does not vault it again", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  await drain(sqs, cli, [body("t1", "192.0.2.77", "300-00-0001")]);
  const mask = (await maskerOf(TEST_SECRET, "k1")).mask("ip", "192.0.2.77");
  const erased = await cli.run([
    "forget",
    "--masked",
    mask,
    "--reason",
    "erasure request 7",
    "--actor",
    "dpo",
  ]);
  assert.equal(erased.code, 0, erased.stderr);
  // The same person logs in again: the row is written, the value is not vaulted again.
  await drain(sqs, cli, [body("t2", "192.0.2.77", "300-00-0002")]);
  const [rows] = await db.sql`SELECT count(*)::int AS n FROM user_logins WHERE masked_ip = ${mask}`;
  assert.equal(rows?.n, 2, "both logins keep the same opaque mask");
  assert.ok(
    !(await vaultRows(db.sql)).some((v) => v.masked_value === mask),
    "no vault entry came back",
  );
  const [tomb] = await db
    .sql`SELECT count(*)::int AS n FROM login_etl_forgotten WHERE masked_value = ${mask}`;
  assert.equal(tomb?.n, 1);
  const again = await cli.run([
    "recover",
    "--masked",
    mask,
    "--reason",
    "after erasure",
    "--actor",
    "alice",
  ]);
  assert.equal(again.code, 1);
  assert.equal(again.stdout, "");
});

Deno.test("rekey-vault skips an entry that does not decrypt instead of stopping the rotation", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db, { PII_VAULT_KEY: vaultKeySet("v1") }));
  const bodies = [...generateBodies(20, { badRatio: 0, seed: 31 })];
  await drain(sqs, cli, bodies);
  const [victim] = await db.sql<{ masked_value: string }[]>`
    SELECT masked_value FROM login_etl_vault ORDER BY masked_value LIMIT 1`;
  assert.ok(victim);
  // Flip the first ciphertext byte: the entry no longer authenticates.
  await db.sql`
    UPDATE login_etl_vault SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1)
    WHERE masked_value = ${victim.masked_value}`;
  const total = (await vaultRows(db.sql)).length;
  const vaulted = await cli.run([
    "rekey-vault",
    "--to",
    "v2",
    "--reason",
    "rotation",
    "--max-rows",
    "4",
  ], {
    PII_VAULT_KEY: vaultKeySet("v2"),
  });
  assert.equal(vaulted.code, 0, vaulted.stderr);
  assert.deepEqual(JSON.parse(vaulted.stdout).failed, 1);
  assert.equal(JSON.parse(vaulted.stdout).moved, total - 1);
  const rows = await vaultRows(db.sql);
  assert.equal(rows.filter((r) => r.key_id === "v2").length, total - 1);
  assert.equal(
    rows.find((r) => r.masked_value === victim.masked_value)?.key_id,
    "v1",
    "left as it was",
  );
});
