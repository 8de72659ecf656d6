/**
 * The settings table: every flag with its environment variable, default,
 * range, the commands it applies to, and its help line. `--help`, the
 * configuration reference (docs/configuration.md) and resolution all read it,
 * so they cannot drift apart. Which commands get the settings of a service
 * or key follows what each command needs (`commands.ts`).
 *
 * Over 500 lines because it is one table, one entry per setting: split, a
 * setting's flag, variable, default and help would no longer be read (and
 * reviewed) in one place.
 *
 * @module
 */

import { CHECK_TARGETS, type CommandName, COMMANDS, commandsNeeding } from "./commands.ts";
import { formatDuration } from "./duration.ts";

const CONSUMERS: readonly CommandName[] = ["drain", "run", "demo"];
// Who has the settings of a service or key: what each command needs (commands.ts).
const DB_USERS = commandsNeeding((n) => n.database);
const QUEUE_USERS = commandsNeeding((n) => n.queue);
const HMAC_USERS = commandsNeeding((n) => n.hmacKey !== "none");
const VAULT_USERS = commandsNeeding((n) => n.vaultKey !== "none");
/** Commands that work on the recovery vault. */
const PII_COMMANDS: readonly CommandName[] = [
  "recover",
  "forget",
  "rekey",
  "rekey-vault",
  "vault-merge",
];
const ALL: readonly CommandName[] = COMMANDS;

/** `duration`: whole seconds written as `90s`, `40m`, `1h30m` or a number (`duration.ts`); `min` and `max` in seconds. */
type Kind = "string" | "integer" | "number" | "boolean" | "choice" | "duration";

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
  /** Words an `integer` setting takes besides a number, e.g. `auto`. */
  readonly words?: readonly string[];
  readonly commands: readonly CommandName[];
  /** Placeholder shown in help, e.g. `URL`. */
  readonly value?: string;
  readonly help: string;
}

/**
 * Longest ledger retention: SQS keeps a message at most 14 days, and each
 * day kept is a partition (docs/design.md), which every maintenance call and
 * plan walks; `login_etl_ledger_maintain`, which consumers call, refuses more.
 */
export const LEDGER_RETENTION_MAX_DAYS = 400;

/**
 * Most messages a consumer writes in one transaction (`--max-rows`'s
 * ceiling): `login_etl_vault_put` refuses a call with more entries than
 * such a batch vaults.
 */
export const MAX_ROWS_MAX = 20_000;

/**
 * Most characters of an audit row's actor (`--actor`): a login name or an
 * e-mail fits. `login_etl_audit_note`, which any caller may use, refuses more.
 */
export const AUDIT_ACTOR_MAX_CHARS = 200;

/**
 * Most characters of an audit row's reason (`--reason`) and of the detail
 * `login_etl_audit_note` records: any caller may note a refusal, so each
 * row's size is bounded as well as their number.
 */
export const AUDIT_TEXT_MAX_CHARS = 1000;

/**
 * The settings table. Units are in the names. Defaults come from the
 * measurements in docs/performance.md.
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
      "libpq connection string: a postgres:// URL or keyword=value pairs, any libpq parameter (default: the PG* variables and service file as psql reads them, else postgres://postgres:postgres@localhost:5432/postgres)",
  },
  {
    flag: "schema",
    env: "LOGIN_ETL_SCHEMA",
    kind: "string",
    default: "public",
    commands: DB_USERS,
    value: "NAME",
    help: "Postgres schema of the analysts' data: user_logins, its views, app_version_text()",
  },
  {
    flag: "state-schema",
    env: "LOGIN_ETL_STATE_SCHEMA",
    kind: "string",
    default: "login_etl",
    commands: DB_USERS,
    value: "NAME",
    help:
      "Postgres schema of login-etl's own tables (ledger, rejects, keys, vault, audit); one per --schema",
  },
  {
    flag: "owner-role",
    env: "LOGIN_ETL_OWNER_ROLE",
    kind: "string",
    default: "login_etl_owner",
    commands: DB_USERS,
    value: "ROLE",
    help:
      "Postgres role that owns login-etl's tables and functions (sql/roles.sql's); besides superusers, the data schema's owner and the role migrating, the only one trusted to create or own objects in either schema",
  },
  {
    flag: "region",
    env: "AWS_REGION",
    kind: "string",
    commands: QUEUE_USERS,
    value: "REGION",
    help:
      "Region to sign with when the queue URL is not on AWS (an AWS queue URL's region wins, a different one only warns); default: AWS_DEFAULT_REGION, the AWS profile's, a LocalStack URL's, us-east-1",
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
    commands: HMAC_USERS,
    value: "PATH",
    help:
      "File whose contents (minus one trailing newline) are the HMAC secret or key set; or set PII_HMAC_KEY",
  },
  {
    flag: "hmac-key-id",
    env: "PII_HMAC_KEY_ID",
    kind: "string",
    default: "k1",
    // demo passes it on to its embedded drain.
    commands: [...HMAC_USERS, "demo"],
    value: "ID",
    help: "Id of the HMAC key, prefixed to every mask (letters, digits, _ and -; up to 16)",
  },
  {
    flag: "vault-key-file",
    env: "PII_VAULT_KEY_FILE",
    kind: "string",
    commands: VAULT_USERS,
    value: "PATH",
    help:
      "Recovery vault key: a key set from login-etl keygen (drain and run need only vault.public.json; recover, vault-merge and the rekeys vault.json), or a separate secret of 32+ bytes; or set PII_VAULT_KEY. Off when unset",
  },
  {
    flag: "vault-key-id",
    env: "PII_VAULT_KEY_ID",
    kind: "string",
    default: "v1",
    commands: VAULT_USERS,
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
    flag: "ip",
    kind: "string",
    commands: ["forget"],
    value: "VALUE",
    help:
      "An IP address to erase under every HMAC key of the set; visible in process lists (use --values-from-file)",
  },
  {
    flag: "device-id",
    kind: "string",
    commands: ["forget"],
    value: "VALUE",
    help:
      "A device id to erase under every HMAC key of the set; visible in process lists (use --values-from-file)",
  },
  {
    flag: "values-from-file",
    env: "LOGIN_ETL_VALUES_FROM_FILE",
    kind: "string",
    commands: ["forget"],
    value: "PATH",
    help:
      'Values to erase, one "ip VALUE" or "device_id VALUE" a line, from this file or - for stdin; erased under every HMAC key of the set',
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
    commands: ["recover", "forget", "rekey", "rekey-vault", "vault-merge"],
    value: "TEXT",
    help:
      "Why: required (vault-merge: optional), and kept in the audit trail (at most 1000 characters)",
  },
  {
    flag: "actor",
    env: "LOGIN_ETL_ACTOR",
    kind: "string",
    commands: PII_COMMANDS,
    value: "NAME",
    help: "Who, for the audit trail (default: the OS user; at most 200 characters)",
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
    flag: "retire",
    env: "LOGIN_ETL_RETIRE",
    kind: "string",
    commands: ["rekey"],
    value: "KEYID[,KEYID…]",
    help:
      "Instead of moving masks: forget the old → new links of these HMAC key ids (comma-separated), once rekey has moved everything off each (then destroy the key); write --retire=ID for an id that starts with -",
  },
  {
    flag: "drop-unverifiable",
    env: "LOGIN_ETL_DROP_UNVERIFIABLE",
    kind: "boolean",
    commands: ["vault-merge"],
    help:
      "Delete inbox entries under HMAC or vault key ids the key sets do not hold at all (a pair's public half counts as held), instead of keeping them",
  },
  {
    flag: "vault-id",
    env: "LOGIN_ETL_KEYGEN_VAULT_ID",
    kind: "string",
    commands: ["keygen"],
    value: "ID",
    help:
      "Id of the new vault key pair, stored with every entry sealed to it (letters, digits, _ and -; up to 16), e.g. p1",
  },
  {
    flag: "out",
    env: "LOGIN_ETL_KEYGEN_OUT",
    kind: "string",
    commands: ["keygen"],
    value: "DIR",
    help:
      "Directory to write vault.json (private key set: recover, rekey, rekey-vault) and vault.public.json (public key set: drain, run) into, mode 0400; made if missing, existing files are never overwritten",
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
    flag: "progress-seconds",
    env: "LOGIN_ETL_PROGRESS_SECONDS",
    kind: "integer",
    default: "10",
    min: 0,
    max: 3600,
    commands: ["drain"],
    value: "S",
    help: "Log a Progress event this often when stderr is not a terminal (0: never)",
  },
  {
    flag: "max-rejects",
    env: "LOGIN_ETL_MAX_REJECTS",
    kind: "integer",
    min: 0,
    max: 1_000_000_000,
    commands: ["drain", "run"],
    value: "N",
    help:
      "Fail the run (exit 3) once more than N messages are rejected; valid rows are still written first",
  },
  {
    flag: "max-messages",
    env: "LOGIN_ETL_MAX_MESSAGES",
    kind: "integer",
    min: 1,
    max: 1_000_000_000,
    commands: ["drain", "run"],
    value: "N",
    help:
      "Take at most N messages off the queue (each becomes a row, a reject or a counted redelivery), commit and delete them, and exit 0",
  },
  {
    flag: "max-duration",
    env: "LOGIN_ETL_MAX_DURATION",
    kind: "duration",
    min: 1,
    // 7 days: a longer bound is an orchestrator's job (and past 24.8 days a timer cannot hold it).
    max: 604_800,
    commands: ["drain", "run"],
    value: "D",
    help:
      "Stop receiving D after the first receive (90s, 40m, 1h30m or seconds), commit what is held and exit 0; messages that arrive later go back to the queue at once",
  },
  {
    flag: "metrics-file",
    env: "LOGIN_ETL_METRICS_FILE",
    kind: "string",
    commands: ["drain"],
    value: "PATH",
    help:
      "At exit, write the run's metrics here in Prometheus text format (node_exporter textfile)",
  },
  {
    flag: "for",
    env: "LOGIN_ETL_CHECK_FOR",
    kind: "choice",
    choices: CHECK_TARGETS,
    default: "drain",
    commands: ["check"],
    value: "CMD",
    help: "The command whose needs to check: its services, privileges and keys",
  },
  {
    flag: "config",
    env: "LOGIN_ETL_CONFIG",
    kind: "string",
    commands: ALL,
    value: "PATH",
    help:
      "JSON file of this command's settings by flag name (flags and env still win); no secrets in it. check also takes the checked command's",
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
    default: "auto",
    min: 1,
    max: 256,
    words: ["auto"],
    commands: [...CONSUMERS, "seed"],
    value: "N",
    help:
      "Parallel receive loops: auto grows them (2 to 128, from 8) while receives come back full and there is room and CPU to spare, and shrinks them when receives come back empty or the CPU is saturated; a number fixes them (seed: parallel send calls, auto is 8)",
  },
  {
    flag: "max-rows",
    env: "LOGIN_ETL_MAX_ROWS",
    kind: "integer",
    default: "1000",
    min: 1,
    max: MAX_ROWS_MAX,
    commands: [...CONSUMERS, "rekey", "rekey-vault", "vault-merge"],
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
    min: 0,
    max: 8,
    commands: ["drain", "run"],
    value: "N",
    help:
      "Threads that validate, mask and write; unset: 1 when this process may use 2 CPUs or more (its CPU affinity and cgroup quota), else 0, which runs them in the main thread. Each adds about 45 MiB",
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
    max: LEDGER_RETENTION_MAX_DAYS,
    commands: ["drain", "run"],
    value: "DAYS",
    help: "Keep MessageIds this long (SQS keeps a message at most 14 days)",
  },
  {
    flag: "migrate-lock-wait-seconds",
    env: "LOGIN_ETL_MIGRATE_LOCK_WAIT_SECONDS",
    kind: "integer",
    default: "60",
    min: 1,
    max: 3600,
    commands: ["migrate", "drain", "run"],
    value: "S",
    help:
      "How long applying migrations waits for another migrate to finish, then fails naming the session that holds the schema lock",
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
    flag: "reject-queue-url",
    env: "LOGIN_ETL_REJECT_QUEUE_URL",
    kind: "string",
    commands: commandsNeeding((n) => n.rejectQueue),
    value: "URL",
    help:
      "Before deleting a rejected message, send its raw body here with its reason (replay by draining it). Holds PII: https unless loopback; check reports its encryption and retention",
  },
  {
    flag: "dry-run",
    env: "LOGIN_ETL_DRY_RUN",
    kind: "boolean",
    commands: ["drain", "run", "migrate"],
    help:
      "Change nothing: drain and run print masked rows as JSON Lines, each message once, and make every message visible again as soon as it is printed (a dry run ends at the first receive that brings no message it has not printed); migrate prints the SQL it would run",
  },
  {
    flag: "summary-json",
    env: "LOGIN_ETL_SUMMARY_JSON",
    kind: "boolean",
    commands: [...CONSUMERS, "seed", "check", "report"],
    help: "Print one JSON object with the run's counters (or the checks, or the report) on stdout",
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
    commands: ["demo", "seed"],
    value: "FILE",
    help:
      "Send this JSON array of messages (.json or .json.gz, e.g. the exercise's sample_data.json.gz) instead of synthetic ones",
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

/** A setting's range as help and the docs show it, durations in their units (`1s-168h`). */
export function rangeOf(spec: OptionSpec, dash: string): string {
  const show = (n: number) => spec.kind === "duration" ? formatDuration(n) : String(n);
  const words = (spec.words ?? []).map((w) => ` or ${w}`).join("");
  return `${show(spec.min ?? 0)}${dash}${show(spec.max ?? 0)}${words}`;
}

/** The options that apply to one command, in table order. */
export function optionsFor(command: CommandName): OptionSpec[] {
  return OPTIONS.filter((o) => o.commands.includes(command));
}

/** Smallest HMAC secret accepted: 256 bits, the output size of SHA-256. */
export const MIN_SECRET_BYTES = 32;

/** Key ids prefix masks (`k1:`), so they are short and plain. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,16}$/;
