/**
 * Every setting in one table (flag, env var, default, range, help), and the
 * pure resolution flags > env > defaults into a frozen `Config`. `--help` and
 * the README's flag table are written from `OPTIONS`.
 *
 * @module
 */

import { PG_ENV_NAMES, type PgTarget, resolvePgTarget } from "../db/connection.ts";
import { ConfigError } from "../errors.ts";
import type { SqsProtocol } from "../sqs/client.ts";

/** The commands of the CLI. */
export type CommandName =
  | "drain"
  | "run"
  | "seed"
  | "demo"
  | "recover"
  | "forget"
  | "rekey"
  | "rekey-vault";

/** All command names, in the order `--help` lists them. */
export const COMMANDS: readonly CommandName[] = [
  "drain",
  "run",
  "seed",
  "demo",
  "recover",
  "forget",
  "rekey",
  "rekey-vault",
];

/** One-line purpose of each command, for `--help`. */
export const COMMAND_SUMMARIES: Readonly<Record<CommandName, string>> = {
  drain: "Consume until the queue is empty, then exit",
  run: "Consume until SIGINT or SIGTERM, then finish in-flight work and exit",
  seed: "Send synthetic login events to the queue (creates it if missing)",
  demo: "Run everything embedded: an SQS emulator, Postgres, seed, drain, report",
  recover: "Print the raw value behind masks from the vault, for authorised people; audited",
  forget: "Erase the vault entry behind masks (crypto-shredding); audited",
  rekey: "Recompute masks of existing rows under another HMAC key id, via the vault; resumable",
  "rekey-vault": "Re-encrypt vault entries under another vault key id; resumable",
};

const CONSUMERS: readonly CommandName[] = ["drain", "run", "demo"];
/** Commands that talk to Postgres. */
const DB_USERS: readonly CommandName[] = [
  "drain",
  "run",
  "recover",
  "forget",
  "rekey",
  "rekey-vault",
];
/** Commands that work on the recovery vault. */
const PII_COMMANDS: readonly CommandName[] = ["recover", "forget", "rekey", "rekey-vault"];
const QUEUE_USERS: readonly CommandName[] = ["drain", "run", "seed"];
const ALL: readonly CommandName[] = COMMANDS;

type Kind = "string" | "integer" | "number" | "boolean" | "choice";

/** The declaration of one setting. */
export interface OptionSpec {
  /** Long flag name without dashes. */
  readonly flag: string;
  /** Environment variable, when the setting has one. */
  readonly env?: string;
  readonly kind: Kind;
  /** Default as the user would type it; absent means "not set". */
  readonly default?: string;
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  readonly commands: readonly CommandName[];
  /** Placeholder shown in help, e.g. `URL`. */
  readonly value?: string;
  readonly help: string;
}

/**
 * The settings table. Units are in the names. Defaults come from the
 * measurements in the README's Performance section.
 */
export const OPTIONS: readonly OptionSpec[] = [
  {
    flag: "queue-url",
    env: "SQS_QUEUE_URL",
    kind: "string",
    default: "http://localhost:4566/000000000000/login-queue",
    commands: QUEUE_USERS,
    value: "URL",
    help: "SQS queue URL; a non-AWS host is also the endpoint unless AWS_ENDPOINT_URL[_SQS] is set",
  },
  {
    flag: "database-url",
    env: "DATABASE_URL",
    kind: "string",
    commands: DB_USERS,
    value: "URL",
    help:
      "Postgres URL, sslmode and sslrootcert as in libpq (default: the PG* variables as psql reads them, else postgres://postgres:postgres@localhost:5432/postgres)",
  },
  {
    flag: "schema",
    env: "LOGIN_ETL_SCHEMA",
    kind: "string",
    default: "public",
    commands: DB_USERS,
    value: "NAME",
    help: "Postgres schema holding user_logins and login-etl's own tables",
  },
  {
    flag: "region",
    env: "AWS_REGION",
    kind: "string",
    commands: QUEUE_USERS,
    value: "REGION",
    help:
      "AWS region to sign with (default: the AWS profile's, else the one in the queue URL, else us-east-1)",
  },
  {
    flag: "sqs-protocol",
    env: "LOGIN_ETL_SQS_PROTOCOL",
    kind: "choice",
    choices: ["auto", "json", "query"],
    default: "auto",
    commands: QUEUE_USERS,
    value: "P",
    help:
      "SQS wire protocol: auto starts with JSON and switches once to Query (LocalStack < 3.0) if the endpoint asks",
  },
  {
    flag: "hmac-key-file",
    env: "PII_HMAC_KEY_FILE",
    kind: "string",
    commands: ["drain", "run", "rekey", "recover"],
    value: "PATH",
    help:
      "File whose contents (minus one trailing newline) are the HMAC secret or key set; or set PII_HMAC_KEY",
  },
  {
    flag: "hmac-key-id",
    env: "PII_HMAC_KEY_ID",
    kind: "string",
    default: "k1",
    commands: [...CONSUMERS, "rekey", "recover"],
    value: "ID",
    help: "Id of the HMAC key, prefixed to every mask (letters, digits, _ and -; up to 16)",
  },
  {
    flag: "vault-key-file",
    env: "PII_VAULT_KEY_FILE",
    kind: "string",
    commands: ["drain", "run", ...PII_COMMANDS],
    value: "PATH",
    help:
      "Recovery vault key (a separate secret of 32+ bytes, or a key-set JSON); or set PII_VAULT_KEY. Off when unset",
  },
  {
    flag: "vault-key-id",
    env: "PII_VAULT_KEY_ID",
    kind: "string",
    default: "v1",
    commands: ["drain", "run", ...PII_COMMANDS],
    value: "ID",
    help: "Id of the vault key when the key is a single secret",
  },
  {
    flag: "masked",
    env: "LOGIN_ETL_MASKED",
    kind: "string",
    commands: ["recover", "forget"],
    value: "MASK",
    help: "The masked value to recover or erase, e.g. k1:Vb0...",
  },
  {
    flag: "from-file",
    env: "LOGIN_ETL_FROM_FILE",
    kind: "string",
    commands: ["recover", "forget"],
    value: "PATH",
    help: "Masked values, one a line (a data-subject request), instead of --masked",
  },
  {
    flag: "replay-audit",
    env: "LOGIN_ETL_REPLAY_AUDIT",
    kind: "string",
    commands: ["forget"],
    value: "PATH",
    help:
      "Erase again every mask erased in this audit export (recover --audit output), e.g. after a restore",
  },
  {
    flag: "reason",
    env: "LOGIN_ETL_REASON",
    kind: "string",
    commands: ["recover", "forget", "rekey", "rekey-vault"],
    value: "TEXT",
    help: "Why: required, and kept in the audit trail",
  },
  {
    flag: "actor",
    env: "LOGIN_ETL_ACTOR",
    kind: "string",
    commands: PII_COMMANDS,
    value: "NAME",
    help: "Who, for the audit trail (default: the OS user)",
  },
  {
    flag: "audit",
    env: "LOGIN_ETL_AUDIT",
    kind: "boolean",
    commands: ["recover"],
    help: "List the audit trail instead of recovering",
  },
  {
    flag: "to",
    env: "LOGIN_ETL_TO",
    kind: "string",
    commands: ["rekey", "rekey-vault"],
    value: "KEYID",
    help: "The key id to move to (it must be in the key set)",
  },
  {
    flag: "listen",
    env: "LOGIN_ETL_LISTEN",
    kind: "string",
    commands: ["run"],
    value: "ADDR",
    help: "Serve /healthz, /readyz and /metrics on HOST:PORT or :PORT (default off)",
  },
  {
    flag: "progress",
    env: "LOGIN_ETL_PROGRESS",
    kind: "choice",
    choices: ["auto", "always", "never"],
    default: "auto",
    commands: ["drain"],
    value: "WHEN",
    help: "Live progress line on stderr: auto shows it on a terminal only",
  },
  {
    flag: "config",
    env: "LOGIN_ETL_CONFIG",
    kind: "string",
    commands: ["drain", "run"],
    value: "PATH",
    help: "JSON file of settings by flag name (flags and env still win); no secrets in it",
  },
  {
    flag: "batch-size",
    env: "LOGIN_ETL_BATCH_SIZE",
    kind: "integer",
    default: "10",
    min: 1,
    max: 10,
    commands: CONSUMERS,
    value: "N",
    help: "Messages asked for per ReceiveMessage call (SQS allows at most 10)",
  },
  {
    flag: "concurrency",
    env: "LOGIN_ETL_CONCURRENCY",
    kind: "integer",
    default: "8",
    min: 1,
    max: 256,
    commands: ALL,
    value: "N",
    help: "Parallel receive loops (seed: parallel send calls)",
  },
  {
    flag: "max-rows",
    env: "LOGIN_ETL_MAX_ROWS",
    kind: "integer",
    default: "1000",
    min: 1,
    max: 20000,
    commands: [...CONSUMERS, "rekey", "rekey-vault"],
    value: "N",
    help: "Most messages written in one transaction",
  },
  {
    flag: "max-wait-ms",
    env: "LOGIN_ETL_MAX_WAIT_MS",
    kind: "integer",
    default: "200",
    min: 0,
    max: 60000,
    commands: CONSUMERS,
    value: "MS",
    help: "Longest a received message waits for its transaction to fill",
  },
  {
    flag: "writers",
    env: "LOGIN_ETL_WRITERS",
    kind: "integer",
    default: "2",
    min: 1,
    max: 16,
    commands: ["drain", "run"],
    value: "N",
    help: "Transactions in flight at once (Postgres connections used: this plus one)",
  },
  {
    flag: "worker-threads",
    env: "LOGIN_ETL_WORKER_THREADS",
    kind: "integer",
    default: "1",
    min: 0,
    max: 8,
    commands: ["drain", "run"],
    value: "N",
    help:
      "Threads that validate, mask and write (0: all in the main thread, which then also drives SQS)",
  },
  {
    flag: "max-retry-seconds",
    env: "LOGIN_ETL_MAX_RETRY_SECONDS",
    kind: "integer",
    default: "300",
    min: 0,
    max: 86400,
    commands: CONSUMERS,
    value: "S",
    help: "How long to keep retrying an unreachable Postgres or SQS before exiting 1",
  },
  {
    flag: "max-receives",
    env: "LOGIN_ETL_MAX_RECEIVES",
    kind: "integer",
    default: "5",
    min: 1,
    max: 1000,
    commands: CONSUMERS,
    value: "N",
    help:
      "A message received more often is rejected as poison (unless the queue has a redrive policy)",
  },
  {
    flag: "write-timeout-seconds",
    env: "LOGIN_ETL_WRITE_TIMEOUT_SECONDS",
    kind: "integer",
    default: "30",
    min: 1,
    max: 3600,
    commands: ["drain", "run"],
    value: "S",
    help: "A transaction not answered in time is abandoned, its connection dropped, and retried",
  },
  {
    flag: "max-body-bytes",
    env: "LOGIN_ETL_MAX_BODY_BYTES",
    kind: "integer",
    default: "65536",
    min: 64,
    max: 1048576,
    commands: CONSUMERS,
    value: "N",
    help: "Larger bodies are rejected as too_large without being parsed",
  },
  {
    flag: "idle-seconds",
    env: "LOGIN_ETL_IDLE_SECONDS",
    kind: "integer",
    default: "1",
    min: 0,
    max: 20,
    commands: ["drain", "demo"],
    value: "S",
    help: "drain: how long the closing empty receive waits before the queue counts as empty",
  },
  {
    flag: "wait-seconds",
    env: "LOGIN_ETL_WAIT_SECONDS",
    kind: "integer",
    default: "20",
    min: 1,
    max: 20,
    commands: ["run"],
    value: "S",
    help: "run: long-poll wait of each receive",
  },
  {
    flag: "ledger-retention-days",
    env: "LOGIN_ETL_LEDGER_RETENTION_DAYS",
    kind: "integer",
    default: "14",
    min: 1,
    max: 3650,
    commands: ["drain", "run"],
    value: "DAYS",
    help: "Keep MessageIds this long (SQS keeps a message at most 14 days)",
  },
  {
    flag: "reject-retention-days",
    env: "LOGIN_ETL_REJECT_RETENTION_DAYS",
    kind: "integer",
    default: "30",
    min: 1,
    max: 3650,
    commands: ["drain", "run"],
    value: "DAYS",
    help: "Keep rejected messages (login_etl_rejects) this long",
  },
  {
    flag: "dry-run",
    env: "LOGIN_ETL_DRY_RUN",
    kind: "boolean",
    commands: ["drain", "run"],
    help: "Print masked rows as JSON Lines on stdout; write nothing, delete nothing",
  },
  {
    flag: "summary-json",
    env: "LOGIN_ETL_SUMMARY_JSON",
    kind: "boolean",
    commands: ALL,
    help: "Print one JSON object with the run's counters on stdout at exit",
  },
  {
    flag: "count",
    env: "LOGIN_ETL_SEED_COUNT",
    kind: "integer",
    default: "1000",
    min: 0,
    max: 10_000_000,
    commands: ["seed", "demo"],
    value: "N",
    help: "How many messages to send",
  },
  {
    flag: "bad-ratio",
    env: "LOGIN_ETL_SEED_BAD_RATIO",
    kind: "number",
    default: "0",
    min: 0,
    max: 1,
    commands: ["seed", "demo"],
    value: "R",
    help: "Share of malformed messages, 0 to 1 (demo default 0.05)",
  },
  {
    flag: "seed",
    env: "LOGIN_ETL_SEED",
    kind: "integer",
    min: 0,
    max: 2 ** 31 - 1,
    commands: ["seed", "demo"],
    value: "N",
    help: "Random seed for reproducible data (default: random, printed)",
  },
  {
    flag: "sample",
    env: "LOGIN_ETL_SAMPLE",
    kind: "string",
    commands: ["demo"],
    value: "FILE",
    help: "Seed this JSON array of messages (.json or .json.gz) instead of synthetic ones",
  },
  {
    flag: "log-format",
    env: "LOGIN_ETL_LOG_FORMAT",
    kind: "choice",
    choices: ["auto", "json", "text"],
    default: "auto",
    commands: ALL,
    value: "F",
    help: "Log lines on stderr: auto is text on a terminal, JSON otherwise",
  },
  {
    flag: "log-level",
    env: "LOGIN_ETL_LOG_LEVEL",
    kind: "choice",
    choices: ["debug", "info", "warn", "error"],
    default: "info",
    commands: ALL,
    value: "L",
    help: "Least severe log level written",
  },
  {
    flag: "verbose",
    env: "LOGIN_ETL_VERBOSE",
    kind: "boolean",
    commands: ALL,
    help: "On failure, print every cause of the error",
  },
];

/** Where a setting's value came from, for messages that tell the user what to fix. */
type Source = { readonly kind: "flag" | "env" | "default"; readonly name: string };

/** Raw values from the command line, keyed by flag name. */
export type FlagValues = Readonly<Record<string, string | boolean | undefined>>;

/** A secret that prints as `[redacted]` in logs, JSON and inspection. */
export class Secret {
  readonly #bytes: Uint8Array;
  /** Where the secret came from, e.g. `PII_HMAC_KEY` or `--hmac-key-file "k.txt"`. */
  readonly origin: string;

  constructor(bytes: Uint8Array, origin: string) {
    this.#bytes = bytes;
    this.origin = origin;
  }

  /** The secret's bytes; call only where the key is imported. */
  reveal(): Uint8Array {
    return this.#bytes;
  }

  toString(): string {
    return "[redacted]";
  }

  toJSON(): string {
    return "[redacted]";
  }

  [Symbol.for("Deno.customInspect")](): string {
    return "[redacted]";
  }
}

/** Where a key (HMAC or vault) is to come from; read by `loadKeySet` in `pii/keyring.ts`. */
export type KeySource =
  | { readonly kind: "env"; readonly secret: Secret }
  | { readonly kind: "file"; readonly path: string; readonly origin: string }
  | { readonly kind: "generate" }
  | { readonly kind: "none" };

/** The resolved, frozen settings of one invocation. */
export interface Config {
  readonly command: CommandName;
  readonly queueUrl: string;
  /** Where Postgres is: URL, PG* variables or the default, with libpq's rules. */
  readonly database: PgTarget;
  readonly schema: string;
  /** `null`: the SDK's region chain, then the queue URL (`sqs/region.ts`). */
  readonly region: string | null;
  readonly sqsProtocol: SqsProtocol;
  readonly hmacKey: KeySource;
  readonly vaultKey: KeySource;
  readonly vaultKeyId: string;
  /** recover/forget: the masks to act on (from --masked or --from-file, read later). */
  readonly masked: string | null;
  readonly fromFile: string | null;
  /** forget: an audit export whose erasures to apply again. */
  readonly replayAudit: string | null;
  readonly reason: string | null;
  readonly actor: string | null;
  readonly audit: boolean;
  /** rekey/rekey-vault: the key id to move to. */
  readonly to: string | null;
  readonly listen: string | null;
  readonly progress: "auto" | "always" | "never";
  readonly configPath: string | null;
  readonly hmacKeyId: string;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly maxRows: number;
  readonly maxWaitMs: number;
  readonly writers: number;
  readonly workerThreads: number;
  readonly maxRetrySeconds: number;
  readonly maxReceives: number;
  readonly writeTimeoutSeconds: number;
  readonly maxBodyBytes: number;
  readonly idleSeconds: number;
  readonly waitSeconds: number;
  readonly ledgerRetentionDays: number;
  readonly rejectRetentionDays: number;
  readonly dryRun: boolean;
  readonly summaryJson: boolean;
  readonly count: number;
  readonly badRatio: number;
  readonly seed: number | null;
  readonly samplePath: string | null;
  readonly logFormat: "auto" | "json" | "text";
  readonly logLevel: "debug" | "info" | "warn" | "error";
  readonly verbose: boolean;
  /** Environment the AWS SDK reads (credentials, endpoints, profile). */
  readonly awsEnv: Readonly<Record<string, string>>;
  /** Warnings found while resolving, for the logger to print once it exists. */
  readonly warnings: readonly string[];
}

/** The options that apply to one command, in table order. */
export function optionsFor(command: CommandName): OptionSpec[] {
  return OPTIONS.filter((o) => o.commands.includes(command));
}

function specOf(flag: string): OptionSpec {
  const spec = OPTIONS.find((o) => o.flag === flag);
  if (spec === undefined) throw new TypeError(`No option --${flag} in the settings table`);
  return spec;
}

function lookup(
  flag: string,
  flags: FlagValues,
  env: Readonly<Record<string, string | undefined>>,
): { raw: string | boolean | undefined; source: Source } {
  const spec = specOf(flag);
  const fromFlag = flags[flag];
  if (fromFlag !== undefined) return { raw: fromFlag, source: { kind: "flag", name: `--${flag}` } };
  const fromEnv = spec.env === undefined ? undefined : env[spec.env];
  if (fromEnv !== undefined && fromEnv !== "") {
    return { raw: fromEnv, source: { kind: "env", name: spec.env as string } };
  }
  return { raw: spec.default, source: { kind: "default", name: `--${flag}` } };
}

function invalid(source: Source, raw: string, must: string): ConfigError {
  const shown = raw.length > 60 ? `${raw.slice(0, 57)}...` : raw;
  return new ConfigError(`Invalid ${source.name} "${shown}": ${must}`);
}

function rangeText(spec: OptionSpec, what: string): string {
  if (spec.min !== undefined && spec.max !== undefined) {
    return `must be ${what} from ${spec.min} to ${spec.max}`;
  }
  return `must be ${what}`;
}

function readInteger(flag: string, flags: FlagValues, env: EnvRecord): number | null {
  const spec = specOf(flag);
  const { raw, source } = lookup(flag, flags, env);
  if (raw === undefined) return null;
  const text = String(raw).trim();
  const value = /^-?\d{1,16}$/.test(text) ? Number(text) : Number.NaN;
  if (
    !Number.isSafeInteger(value) || (spec.min !== undefined && value < spec.min) ||
    (spec.max !== undefined && value > spec.max)
  ) {
    throw invalid(source, String(raw), rangeText(spec, "an integer"));
  }
  return value;
}

function readNumber(flag: string, flags: FlagValues, env: EnvRecord): number {
  const spec = specOf(flag);
  const { raw, source } = lookup(flag, flags, env);
  const text = String(raw ?? "").trim();
  const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : Number.NaN;
  if (
    !Number.isFinite(value) || (spec.min !== undefined && value < spec.min) ||
    (spec.max !== undefined && value > spec.max)
  ) {
    throw invalid(source, String(raw), rangeText(spec, "a number"));
  }
  return value;
}

function readString(flag: string, flags: FlagValues, env: EnvRecord): string | null {
  const { raw, source } = lookup(flag, flags, env);
  if (raw === undefined) return null;
  if (typeof raw !== "string") throw invalid(source, String(raw), "needs a value");
  return raw;
}

function readChoice<T extends string>(flag: string, flags: FlagValues, env: EnvRecord): T {
  const spec = specOf(flag);
  const { raw, source } = lookup(flag, flags, env);
  const text = String(raw ?? "");
  if (!(spec.choices ?? []).includes(text)) {
    throw invalid(source, text, `must be one of ${(spec.choices ?? []).join(", ")}`);
  }
  return text as T;
}

function readBoolean(flag: string, flags: FlagValues, env: EnvRecord): boolean {
  const { raw, source } = lookup(flag, flags, env);
  if (raw === undefined || raw === false) return false;
  if (raw === true) return true;
  const text = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(text)) return true;
  if (["0", "false", "no", "off", ""].includes(text)) return false;
  throw invalid(source, raw, "must be true or false");
}

type EnvRecord = Readonly<Record<string, string | undefined>>;

/** Smallest HMAC secret accepted: 256 bits, the output size of SHA-256. */
export const MIN_SECRET_BYTES = 32;

/** Reads a secret's source: a file flag or variable, else an inline variable. */
function resolveKeySource(
  what: { readonly fileFlag: string; readonly fileEnv: string; readonly inlineEnv: string },
  flags: FlagValues,
  env: EnvRecord,
): KeySource {
  const file = readString(what.fileFlag, flags, env);
  if (file !== null && file !== "") {
    const origin = flags[what.fileFlag] !== undefined
      ? `--${what.fileFlag} "${file}"`
      : `${what.fileEnv} "${file}"`;
    return { kind: "file", path: file, origin };
  }
  const inline = env[what.inlineEnv];
  if (inline !== undefined && inline !== "") {
    const bytes = new TextEncoder().encode(inline);
    // A key set (JSON) is checked when it is parsed; a single secret here.
    if (!inline.trimStart().startsWith("{") && bytes.length < MIN_SECRET_BYTES) {
      throw new ConfigError(
        `Invalid ${what.inlineEnv}: it is ${bytes.length} bytes, need at least ${MIN_SECRET_BYTES}; make one with: openssl rand -base64 32`,
      );
    }
    return { kind: "env", secret: new Secret(bytes, what.inlineEnv) };
  }
  return { kind: "none" };
}

function resolveHmacKey(command: CommandName, flags: FlagValues, env: EnvRecord): KeySource {
  const source = resolveKeySource(
    { fileFlag: "hmac-key-file", fileEnv: "PII_HMAC_KEY_FILE", inlineEnv: "PII_HMAC_KEY" },
    flags,
    env,
  );
  if (source.kind !== "none") return source;
  if (command === "demo") return { kind: "generate" };
  if (command === "drain" || command === "run" || command === "rekey") {
    throw new ConfigError(
      "No HMAC key: set PII_HMAC_KEY or --hmac-key-file to a secret of at least 32 bytes (make one with: openssl rand -base64 32)",
    );
  }
  return source;
}

function validateQueueUrl(url: string, source: Source): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(
      source,
      url,
      "must be an http(s) URL like http://localhost:4566/000000000000/login-queue",
    );
  }
  const segments = parsed.pathname.split("/").filter((s) => s !== "");
  if (!/^https?:$/.test(parsed.protocol) || segments.length < 1) {
    throw invalid(
      source,
      url,
      "must be an http(s) URL ending in the queue name, like http://localhost:4566/000000000000/login-queue",
    );
  }
}

/** A setting the table gives a default, so it is never absent. */
function required<T>(flag: string, value: T | null): T {
  if (value === null) throw new TypeError(`--${flag} has no default in the settings table`);
  return value;
}

function emptyToNull(value: string | null): string | null {
  return value === null || value === "" ? null : value;
}

/** Key ids prefix masks (`k1:`), so they are short and plain. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,16}$/;

function checkKeyId(flag: string, value: string, flags: FlagValues, env: EnvRecord): string {
  if (!KEY_ID_PATTERN.test(value)) {
    // Not echoed: a secret pasted where an id belongs must not reach a log.
    throw new ConfigError(
      `Invalid ${
        lookup(flag, flags, env).source.name
      } (${value.length} characters): must be 1 to 16 letters, digits, _ or -; is a secret in the id's place?`,
    );
  }
  return value;
}

/**
 * AWS variables our code reads to decide the endpoint and whether to sign
 * with the emulators' dummy credentials (`sqs/client.ts`). The SDK reads its
 * own variables itself; the binary may read every `AWS_*` one.
 */
const AWS_ENV_NAMES: readonly string[] = [
  "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_SQS",
  "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
  "AWS_ACCESS_KEY_ID",
  "AWS_PROFILE",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/**
 * Every environment variable `resolveConfig` reads: each setting's variable,
 * the inline secrets and the AWS variables above. `main.ts` reads exactly
 * these (not the whole environment, which would need `--allow-env` for all).
 */
export function envNames(): string[] {
  const names = new Set<string>();
  for (const spec of OPTIONS) if (spec.env !== undefined) names.add(spec.env);
  for (
    const name of [
      "PII_HMAC_KEY",
      "PII_VAULT_KEY",
      ...AWS_ENV_NAMES,
      ...PG_ENV_NAMES,
      // libpq's defaults: the password file and CA under HOME, the OS user name.
      "HOME",
      "USER",
      "LOGNAME",
      "USERNAME",
    ]
  ) names.add(name);
  return [...names];
}

/** AWS variables the SDK reads; passed through so the SDK behaves as it documents. */
function pickAwsEnv(env: EnvRecord): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith("AWS_") && value !== undefined && value !== "") picked[name] = value;
  }
  return picked;
}

/** True for a URL with a password in it, e.g. `postgres://user:pw@host/db`. */
function hasUrlPassword(value: string): boolean {
  return URL.canParse(value) && new URL(value).password !== "";
}

/**
 * Warnings for secrets on the command line, which other users can read in
 * process lists: any flag whose value is a URL with a password. (No flag takes
 * a key itself; keys come from variables or files.)
 */
export function secretFlagWarnings(flags: FlagValues): string[] {
  const warnings: string[] = [];
  for (const [flag, value] of Object.entries(flags)) {
    if (typeof value !== "string" || !hasUrlPassword(value)) continue;
    const env = OPTIONS.find((o) => o.flag === flag)?.env;
    warnings.push(
      `--${flag} holds a password and shows in process lists; ${
        env === undefined ? "pass it another way" : `set ${env} instead`
      }`,
    );
  }
  return warnings;
}

/**
 * Resolves flags > env > defaults into a frozen `Config`, checking every range.
 * Pure: `env` is a plain record and no file is read.
 *
 * @throws {ConfigError} naming the flag or variable to fix
 */
export function resolveConfig(command: CommandName, flags: FlagValues, env: EnvRecord): Config {
  // Defaults live in OPTIONS only; these read settings that always have one.
  const int = (flag: string): number => required(flag, readInteger(flag, flags, env));
  const str = (flag: string): string => required(flag, readString(flag, flags, env));
  const warnings: string[] = [];
  const queue = lookup("queue-url", flags, env);
  const queueUrl = String(queue.raw);
  if (QUEUE_USERS.includes(command)) validateQueueUrl(queueUrl, queue.source);

  const db = lookup("database-url", flags, env);
  // Commands without a database ignore PG* settings, good or bad.
  const database = DB_USERS.includes(command)
    ? resolvePgTarget(
      typeof db.raw === "string" && db.raw !== ""
        ? { value: db.raw, origin: db.source.name }
        : null,
      env,
    )
    : resolvePgTarget(null, {});
  warnings.push(...secretFlagWarnings(flags));

  const schema = str("schema");
  // Lower case only: the name goes unquoted into search_path, where Postgres folds case.
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw invalid(
      lookup("schema", flags, env).source,
      schema,
      "must be a plain lower-case identifier (a-z, digits, _)",
    );
  }
  const hmacKeyId = checkKeyId(
    "hmac-key-id",
    str("hmac-key-id"),
    flags,
    env,
  );
  const dryRun = readBoolean("dry-run", flags, env);
  const hmacKey = resolveHmacKey(command, flags, env);
  const samplePath = readString("sample", flags, env);
  const count = int("count");
  const badRatioSet = flags["bad-ratio"] !== undefined || env["LOGIN_ETL_SEED_BAD_RATIO"];
  const badRatio = command === "demo" && !badRatioSet ? 0.05 : readNumber("bad-ratio", flags, env);

  const config: Config = {
    command,
    queueUrl,
    database,
    schema,
    region: emptyToNull(readString("region", flags, env)),
    sqsProtocol: readChoice("sqs-protocol", flags, env),
    hmacKey: Object.freeze(hmacKey),
    hmacKeyId,
    vaultKey: Object.freeze(
      resolveKeySource(
        { fileFlag: "vault-key-file", fileEnv: "PII_VAULT_KEY_FILE", inlineEnv: "PII_VAULT_KEY" },
        flags,
        env,
      ),
    ),
    vaultKeyId: checkKeyId(
      "vault-key-id",
      str("vault-key-id"),
      flags,
      env,
    ),
    masked: emptyToNull(readString("masked", flags, env)),
    fromFile: emptyToNull(readString("from-file", flags, env)),
    replayAudit: emptyToNull(readString("replay-audit", flags, env)),
    reason: emptyToNull(readString("reason", flags, env)?.trim() ?? null),
    actor: emptyToNull(readString("actor", flags, env)),
    audit: readBoolean("audit", flags, env),
    to: emptyToNull(readString("to", flags, env)),
    listen: emptyToNull(readString("listen", flags, env)),
    progress: readChoice("progress", flags, env),
    configPath: emptyToNull(readString("config", flags, env)),
    batchSize: int("batch-size"),
    concurrency: int("concurrency"),
    maxRows: int("max-rows"),
    maxWaitMs: int("max-wait-ms"),
    writers: int("writers"),
    workerThreads: int("worker-threads"),
    maxRetrySeconds: int("max-retry-seconds"),
    maxReceives: int("max-receives"),
    writeTimeoutSeconds: int("write-timeout-seconds"),
    maxBodyBytes: int("max-body-bytes"),
    idleSeconds: int("idle-seconds"),
    waitSeconds: int("wait-seconds"),
    ledgerRetentionDays: int("ledger-retention-days"),
    rejectRetentionDays: int("reject-retention-days"),
    dryRun,
    summaryJson: readBoolean("summary-json", flags, env),
    count,
    badRatio,
    seed: readInteger("seed", flags, env),
    samplePath: samplePath === "" ? null : samplePath,
    logFormat: readChoice("log-format", flags, env),
    logLevel: readChoice("log-level", flags, env),
    verbose: readBoolean("verbose", flags, env),
    awsEnv: Object.freeze(pickAwsEnv(env)),
    warnings: Object.freeze(warnings),
  };
  return Object.freeze(config);
}

/**
 * Layers a config file's settings (a JSON object keyed by flag name) under
 * flags and env: a setting from the file applies only where neither a flag
 * nor its env var is set. Pure; `main.ts` reads the file.
 *
 * @throws {ConfigError} for an unknown key, a value of the wrong type, or a setting that is a secret
 */
export function applyConfigFile(
  command: CommandName,
  flags: FlagValues,
  env: EnvRecord,
  file: Readonly<Record<string, unknown>>,
  origin: string,
): { flags: FlagValues; env: EnvRecord } {
  const nextFlags: Record<string, string | boolean | undefined> = { ...flags };
  const nextEnv: Record<string, string | undefined> = { ...env };
  for (const [key, value] of Object.entries(file)) {
    const spec = OPTIONS.find((o) => o.flag === key && o.commands.includes(command));
    if (spec === undefined || key === "config") {
      throw new ConfigError(
        `Invalid ${origin}: "${key}" is not a setting of ${command}; keys are flag names without dashes`,
      );
    }
    if (typeof value === "string" && hasUrlPassword(value)) {
      throw new ConfigError(
        `Invalid ${origin}: "${key}" holds a password; keep secrets in ${
          spec.env ?? "the environment"
        } or a secret store`,
      );
    }
    const text =
      typeof value === "boolean" || typeof value === "number" || typeof value === "string"
        ? value
        : undefined;
    if (text === undefined) {
      throw new ConfigError(`Invalid ${origin}: "${key}" must be a string, number or boolean`);
    }
    if (nextFlags[key] !== undefined) continue;
    if (spec.env !== undefined) {
      if (nextEnv[spec.env] === undefined || nextEnv[spec.env] === "") {
        nextEnv[spec.env] = String(text);
      }
    } else {
      nextFlags[key] = typeof text === "boolean" ? text : String(text);
    }
  }
  return { flags: nextFlags, env: nextEnv };
}
