// Shared by the PII command tests (tests/integration/pii/): key sets, test
// logins, a CLI runner that keeps every output for the leak search at the end
// of a test, drain through the CLI, and readers of the vault and the audit.

import assert from "node:assert/strict";
import postgres from "postgres";
import { canonicalIp } from "../../src/ip.ts";
import { Masker } from "../../src/mask.ts";
import { type KeyFormat, parseKeySet, parseVaultKeySet } from "../../src/pii/keyring.ts";
import { KEY_ID_PATTERN, MIN_SECRET_BYTES } from "../../src/config/options.ts";
import { mergeInbox, type MergeReport } from "../../src/pii/merge.ts";
import { VaultCipher } from "../../src/pii/vault.ts";
import type { Masked, PiiField } from "../../src/types.ts";
import { type CliResult, failureLine, runCli } from "./cli.ts";
import { runInProcess } from "./in_process.ts";
import { type ReferenceMasker, referenceMasker } from "./reference_mask.ts";
import { type Consumer, startConsumer } from "./consumers.ts";
import { enqueue, TEST_SECRET, type TestDb, type TestSqs } from "./services.ts";
import { rolesFiles } from "./psql.ts";
import { dropRoles, roleNames } from "./role_names.ts";
import { migrate } from "../../src/db/schema.ts";

const encoder = new TextEncoder();

/** How the commands read a key set: the settings table's rules, and the id a lone secret takes. */
function format(defaultId: string): KeyFormat {
  return { minSecretBytes: MIN_SECRET_BYTES, keyIdPattern: KEY_ID_PATTERN, defaultId };
}

/** The vault key of the tests: a separate secret, never the HMAC key. */
export const VAULT_SECRET = "login-etl vault test secret, never the HMAC one";
export const VAULT_SECRET_2 = "login-etl second vault test secret, 32+ bytes";
export const HMAC_SECRET_2 = "login-etl second HMAC test secret, 32+ bytes";

/** An HMAC key set holding k1 (the tests' usual key) and k2. */
export function hmacKeySet(current: "k1" | "k2"): string {
  return JSON.stringify({ current, keys: { k1: TEST_SECRET, k2: HMAC_SECRET_2 } });
}

/** A vault key set holding v1 and v2. */
export function vaultKeySet(
  current: "v1" | "v2",
  ids: readonly ("v1" | "v2")[] = ["v1", "v2"],
): string {
  const secrets = { v1: VAULT_SECRET, v2: VAULT_SECRET_2 };
  return JSON.stringify({ current, keys: Object.fromEntries(ids.map((id) => [id, secrets[id]])) });
}

/** A synchronous masker (node:crypto), checked equal to Web Crypto's in mask_test.ts. */
export function maskerOf(secret: string, keyId: string): Promise<ReferenceMasker> {
  return Promise.resolve(referenceMasker(secret, keyId));
}

export async function cipherOf(keyText: string): Promise<VaultCipher> {
  return await VaultCipher.create(parseVaultKeySet(encoder.encode(keyText), "test", format("v1")));
}

/** One login as a message body. */
export function body(user: string, ip: string, deviceId: string): string {
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
/** One login as the tests reason about it: who, the ip as sent and canonical, the device. */
export interface TestEvent {
  readonly user: string;
  readonly rawIp: string;
  readonly ip: string;
  readonly deviceId: string;
}

export function eventsOf(bodies: readonly string[]): TestEvent[] {
  return bodies.map((b) => {
    const e = JSON.parse(b) as { user_id: string; ip: string; device_id: string };
    const ip = canonicalIp(e.ip);
    assert.ok(ip.ok, `test data holds a valid ip: ${e.ip}`);
    return { user: e.user_id, rawIp: e.ip, ip: ip.canonical, deviceId: e.device_id };
  });
}

/** Every raw spelling in `bodies`: as sent, canonical, and the device ids. */
export function rawValuesOf(bodies: readonly string[]): string[] {
  return [...new Set(eventsOf(bodies).flatMap((e) => [e.rawIp, e.ip, e.deviceId]))];
}

/** True when `raw` occurs in `text` as a whole token (not inside a longer address or id). */
export function holdsRaw(text: string, raw: string): boolean {
  const escaped = raw.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(?<![0-9A-Za-z.:_-])${escaped}(?![0-9A-Za-z.:_-])`, "i").test(text);
}

/**
 * The CLI runs of one test, sharing an environment, and everything they wrote
 * that must not hold raw values: all stderr, and stdout except where the
 * raw value is the point (`recover`).
 */
export class Cli {
  readonly logs: string[] = [];
  readonly env: Record<string, string>;
  runs = 0;

  constructor(env: Record<string, string>) {
    this.env = env;
  }

  /**
   * Runs `login-etl <args>` with the shared env plus `env` (a value of "" unsets
   * it): in this process (`runInProcess`: the same exit code and output), or
   * as a `deno run` child with `spawn` or `stdin`, where the process is the
   * point (each command keeps such a case).
   */
  async run(
    args: readonly string[],
    env: Record<string, string> = {},
    options: { revealing?: boolean; stdin?: string; spawn?: boolean } = {},
  ): Promise<CliResult> {
    const result = options.spawn === true || options.stdin !== undefined
      ? await runCli(args, {
        env: this.envWith(env),
        ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
      })
      : await runInProcess(args, this.envWith(env));
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
export function cliEnv(db: TestDb, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: db.url,
    ...db.env,
    PII_HMAC_KEY: TEST_SECRET,
    PII_VAULT_KEY: VAULT_SECRET,
    LOGIN_ETL_LOG_FORMAT: "json",
    ...extra,
  };
}

/**
 * Merges the vault inbox of `db` into its vault in process, as the owner's
 * `vault-merge` does, with the key sets of `env` (a CLI run's environment).
 */
export async function mergeVault(
  db: TestDb,
  env: Record<string, string>,
  batch = 1000,
): Promise<MergeReport> {
  const hmac = parseKeySet(encoder.encode(env.PII_HMAC_KEY ?? TEST_SECRET), "test", format("k1"));
  const maskers = new Map<string, Masker>();
  for (const [id, secret] of hmac.keys) maskers.set(id, await Masker.create(secret, id));
  const cipher = await cipherOf(env.PII_VAULT_KEY ?? VAULT_SECRET);
  return await mergeInbox(db, { cipher, maskers }, { actor: "test", reason: null, batch });
}

/**
 * Sends `bodies` to a fresh queue and runs `drain` through the CLI until the
 * queue is empty; with `merge`, then merges that database's vault inbox
 * (what the owner's scheduled `vault-merge` does) with the run's keys.
 */
export async function drain(
  sqs: TestSqs,
  cli: Cli,
  bodies: readonly string[],
  env: Record<string, string> = {},
  options: { readonly merge?: TestDb } = {},
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
    if (counts.ready === 0 && counts.inFlight === 0) {
      if (options.merge !== undefined) await mergeVault(options.merge, cli.envWith(env));
      return { inserted, runs };
    }
    assert.ok(runs < 5, `queue not drained after ${runs} runs: ${JSON.stringify(counts)}`);
  }
}

export interface AuditRow {
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
export async function auditAfter(sql: postgres.Sql, afterId = "0"): Promise<AuditRow[]> {
  return [
    ...await sql<AuditRow[]>`
    SELECT id::text, actor, db_user, action, masked_value, reason, outcome, detail
    FROM login_etl_audit WHERE id > ${afterId}::bigint ORDER BY login_etl_audit.id`,
  ];
}

/** The newest audit id, "0" when none. */
export async function lastAuditId(sql: postgres.Sql): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    SELECT coalesce(max(id), 0)::text AS id FROM login_etl_audit`;
  return row?.id ?? "0";
}

export interface VaultRowText {
  readonly "masked_value": string;
  readonly field: PiiField;
  readonly ciphertext: Uint8Array;
  readonly iv: Uint8Array;
  readonly "key_id": string;
}

/** The live vault entries (tombstones left out), by mask. */
export async function vaultRows(sql: postgres.Sql): Promise<VaultRowText[]> {
  return [
    ...await sql<VaultRowText[]>`
    SELECT masked_value, field, ciphertext, iv, key_id FROM login_etl_vault
    WHERE erased_at IS NULL ORDER BY masked_value`,
  ];
}

/** The vault inbox's entries, oldest first. */
export async function inboxRows(sql: postgres.Sql): Promise<VaultRowText[]> {
  return [
    ...await sql<VaultRowText[]>`
    SELECT masked_value, field, ciphertext, iv, key_id FROM login_etl_vault_inbox ORDER BY id`,
  ];
}

/** The masks the vault holds tombstones for. */
export async function tombstones(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ m: string }[]>`
    SELECT masked_value AS m FROM login_etl_vault WHERE erased_at IS NOT NULL ORDER BY 1`;
  return rows.map((r) => r.m);
}

/** Decrypts every vault row in the test: mask → raw value. */
export async function openVault(
  cipher: VaultCipher,
  rows: readonly VaultRowText[],
): Promise<Map<string, string>> {
  const opened = new Map<string, string>();
  for (const r of rows) {
    opened.set(
      r.masked_value,
      await cipher.decrypt({
        masked: r.masked_value as Masked,
        field: r.field,
        ciphertext: new Uint8Array(r.ciphertext),
        iv: new Uint8Array(r.iv),
        keyId: r.key_id,
      }),
    );
  }
  return opened;
}

/** Tables of both schemas whose row text holds any of `raws` (the vault's bytea shows as hex). */
export async function tablesHoldingRaw(db: TestDb, raws: readonly string[]): Promise<string[]> {
  const tables = await db.sql<{ schema: string; name: string }[]>`
    SELECT table_schema AS schema, table_name AS name FROM information_schema.tables
    WHERE table_schema IN (${db.schema}, ${db.stateSchema})`;
  assert.ok(tables.some((t) => t.schema === db.stateSchema), "the state schema is read too");
  const found: string[] = [];
  for (const { schema, name } of tables) {
    const rows = await db.sql.unsafe<{ line: string }[]>(
      `SELECT t::text AS line FROM "${schema}"."${name}" t`,
    );
    const text = rows.map((r) => r.line).join("\n");
    for (const raw of raws) if (holdsRaw(text, raw)) found.push(`${name}: ${raw}`);
  }
  return found;
}

/** Duplicate groups of a mask column: the sorted user ids of each mask, sorted. */
export async function groupsOf(
  sql: postgres.Sql,
  column: "masked_ip" | "masked_device_id",
): Promise<string[]> {
  const rows = await sql<{ users: string }[]>`
    SELECT string_agg(user_id, ',' ORDER BY user_id) AS users
    FROM user_logins GROUP BY ${sql(column)}`;
  return rows.map((r) => r.users).sort();
}

/** Runs `recover` on a list of masks through --from-file. */
export async function recoverFile(
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
export function recoveredLines(stdout: string): string[] {
  return stdout.split("\n").filter((l) => l !== "").sort();
}

/** Asserts a failure with one `error:` line on stderr matching `pattern`, and nothing on stdout. */
export function assertRefused(result: CliResult, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, `exit code; stderr: ${result.stderr}`);
  assert.equal(result.stdout, "", "nothing revealed on stdout");
  const last = failureLine(result);
  assert.match(last, /^error: \S/);
  assert.match(last, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
}

/** sql/roles.sql's groups under names of one test, a login in three of them, and clients. */
export interface PiiRoles extends AsyncDisposable {
  readonly groups: {
    readonly owner: string;
    readonly consumer: string;
    readonly recoverer: string;
  };
  /** A login per group; `consumer2` is a second consumer login (another deployment's). */
  readonly users: {
    readonly owner: string;
    readonly consumer: string;
    readonly consumer2: string;
    readonly recoverer: string;
  };
  /** A URL of `db`'s server for `user`. */
  urlOf(user: string): string;
  /** A client as `user`, search_path the data schema then the state schema; ended at dispose. */
  connectAs(user: string): postgres.Sql;
}

/**
 * Migrates `db`, applies sql/roles.sql to it (rolesFiles) under role names of
 * this test only (roles are cluster-wide and tests run side by side), and
 * makes a login in the owner, consumer and recoverer groups; all dropped
 * when disposed.
 */
export async function piiRoles(db: TestDb): Promise<PiiRoles> {
  const { suffix, groups: allGroups, rewrite } = roleNames();
  const { analyst, ...groups } = allGroups;
  const users = {
    owner: `etl_migrate${suffix}`,
    consumer: `etl_service${suffix}`,
    consumer2: `etl_service2${suffix}`,
    recoverer: `alice${suffix}`,
  };
  const password = crypto.randomUUID();
  const clients: postgres.Sql[] = [];
  const urlOf = (user: string) => {
    const url = new URL(db.url);
    url.hostname = "127.0.0.1";
    url.username = user;
    url.password = password;
    return url.toString();
  };
  const drop = async () => {
    for (const sql of clients) await sql.end();
    await dropRoles(db.sql, [...Object.values(users), ...Object.values(groups), analyst]);
  };
  try {
    await migrate(db.sql, db.schemas);
    await rolesFiles(db.schema, [new URL("../../sql/roles.sql", import.meta.url)], {
      url: db.url,
      stateSchema: db.stateSchema,
      rewrite,
    });
    await db.sql.unsafe(`
      CREATE ROLE "${users.owner}" LOGIN PASSWORD '${password}' IN ROLE "${groups.owner}";
      CREATE ROLE "${users.consumer}" LOGIN PASSWORD '${password}' IN ROLE "${groups.consumer}";
      CREATE ROLE "${users.consumer2}" LOGIN PASSWORD '${password}' IN ROLE "${groups.consumer}";
      CREATE ROLE "${users.recoverer}" LOGIN PASSWORD '${password}' IN ROLE "${groups.recoverer}";`)
      .simple();
  } catch (error) {
    await drop();
    throw error;
  }
  return {
    groups,
    users,
    urlOf,
    connectAs(user: string) {
      const sql = postgres(urlOf(user), {
        max: 1,
        onnotice: () => {},
        connection: { search_path: `${db.schema}, ${db.stateSchema}` },
      });
      clients.push(sql);
      return sql;
    },
    [Symbol.asyncDispose]: drop,
  };
}

/**
 * Every value the vault and its inbox can give back with `cipher`: each live
 * entry decrypted (entries that do not decrypt are skipped), by mask.
 */
export async function openable(
  sql: postgres.Sql,
  cipher: VaultCipher,
): Promise<{ readonly mask: string; readonly raw: string; readonly where: string }[]> {
  const found: { mask: string; raw: string; where: string }[] = [];
  for (
    const [where, rows] of [["vault", await vaultRows(sql)], [
      "inbox",
      await inboxRows(sql),
    ]] as const
  ) {
    for (const r of rows) {
      try {
        found.push({
          mask: r.masked_value,
          where,
          raw: await cipher.decrypt({
            masked: r.masked_value as Masked,
            field: r.field,
            ciphertext: new Uint8Array(r.ciphertext),
            iv: new Uint8Array(r.iv),
            keyId: r.key_id,
          }),
        });
      } catch {
        // Altered or squatted: gives nothing back.
      }
    }
  }
  return found;
}

// Four logins: spellings of one IPv6 address, an IPv4-mapped address, and a
// device id used twice. Canonical values are what the vault holds.
export const PEOPLE = [
  body("u1", "2001:DB8:0:0:0:0:0:1", "111-22-3333"),
  body("u2", "203.0.113.7", "444-55-6666"),
  body("u3", "::ffff:198.51.100.4", "111-22-3333"),
  body("u4", "2001:db8::1", "777-88-9999"),
];
