/**
 * Resolution: flags > env > config file > defaults, from the settings table,
 * into the frozen config of one command. Each command gets its own type and
 * reads only the settings the table gives it; a message about a bad value
 * names where it came from (the flag, the variable or the config-file key).
 * Pure: the environment is a plain record and no file is read here.
 *
 * @module
 */

import {
  connectionStringHasSecret,
  PG_ENV_NAMES,
  type PgTarget,
  resolvePgTarget,
} from "../db/connection.ts";
import { ConfigError, redactSecrets, UsageError } from "../errors.ts";
import type { SqsProtocol } from "../sqs/client.ts";
import { DURATION_FORMS, formatDuration, parseDuration } from "./duration.ts";
import { isLoopbackHost } from "./hosts.ts";
import {
  AUDIT_ACTOR_MAX_CHARS,
  AUDIT_TEXT_MAX_CHARS,
  type CommandName,
  KEY_ID_PATTERN,
  MIN_SECRET_BYTES,
  OPTIONS,
  type OptionSpec,
} from "./options.ts";
import { type KeySource, looksLikeKey, Secret } from "./secret.ts";
import { flagSpelling, listOf, nearestName, sameName } from "./suggest.ts";

/** Raw values from the command line, keyed by flag name. */
export type FlagValues = Readonly<Record<string, string | boolean | undefined>>;

/** The environment as configuration reads it. */
export type EnvRecord = Readonly<Record<string, string | undefined>>;

/** A config file's settings, by flag name, and how to name the file in messages. */
export interface FileLayer {
  readonly values: Readonly<Record<string, string | boolean>>;
  /** e.g. `--config "settings.json"`. */
  readonly origin: string;
}

/** Everything resolution reads, most important first. */
export interface Layers {
  readonly flags: FlagValues;
  readonly env: EnvRecord;
  readonly file?: FileLayer;
}

/** Settings of every command. */
interface Base {
  readonly logFormat: "auto" | "json" | "text";
  readonly logLevel: "debug" | "info" | "warn" | "error";
  readonly verbose: boolean;
  /** Warnings found while resolving, for the logger to print once it exists. */
  readonly warnings: readonly string[];
}

/** Where the queue is and how to talk to it. */
export interface QueueSettings {
  readonly queueUrl: string;
  /** --region or AWS_REGION; `null` when unset. An AWS queue URL's region wins (`sqs/region.ts`). */
  readonly region: string | null;
  readonly sqsProtocol: SqsProtocol;
  /** Environment the AWS SDK reads (credentials, endpoints, profile). */
  readonly awsEnv: Readonly<Record<string, string>>;
}

/** Where Postgres is, the schema of the analysts' data and the schema of login-etl's own tables. */
export interface DatabaseSettings {
  readonly database: PgTarget;
  readonly schema: string;
  readonly stateSchema: string;
  /** The role trusted to own login-etl's objects (search_path.ts). */
  readonly ownerRole: string;
}

/** The two key sources: HMAC (masks) and vault (recovery). */
export interface KeySettings {
  readonly hmacKey: KeySource;
  readonly hmacKeyId: string;
  readonly vaultKey: KeySource;
  readonly vaultKeyId: string;
}

/** `drain` and `run`. */
export interface ConsumeConfig extends Base, QueueSettings, DatabaseSettings, KeySettings {
  readonly command: "drain" | "run";
  readonly configPath: string | null;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly maxRows: number;
  readonly maxWaitMs: number;
  readonly writers: number;
  /** Sink worker threads; null: chosen at start from the CPUs available (`workerThreadsFor`). */
  readonly workerThreads: number | null;
  readonly maxRetrySeconds: number;
  readonly maxReceives: number;
  readonly writeTimeoutSeconds: number;
  readonly maxBodyBytes: number;
  readonly ledgerRetentionDays: number;
  /** Most seconds a start that migrates waits for another migrate's schema lock. */
  readonly migrateLockWaitSeconds: number;
  readonly rejectRetentionDays: number;
  readonly dryRun: boolean;
  readonly summaryJson: boolean;
  /** drain: how long the closing empty receive waits; run: unused (0). */
  readonly idleSeconds: number;
  /** run: long-poll wait; drain: unused (the idle wait applies). */
  readonly waitSeconds: number;
  /** run: where to serve /healthz, /readyz, /metrics. */
  readonly listen: string | null;
  /** drain: the live progress line. */
  readonly progress: "auto" | "always" | "never";
  /** drain: seconds between Progress events off a terminal (0: none). */
  readonly progressSeconds: number;
  /** Rejects past which the run fails (exit 3); null: no limit. */
  readonly maxRejects: number | null;
  /** Most messages the run takes off the queue, then it finishes and exits 0; null: no bound. */
  readonly maxMessages: number | null;
  /** Seconds after the first receive at which the run stops receiving and finishes; null: no bound. */
  readonly maxDurationSeconds: number | null;
  /** drain: where to write the run's metrics at exit. */
  readonly metricsFile: string | null;
  /** Where raw copies of rejected messages go before their delete; null: nowhere. */
  readonly rejectQueueUrl: string | null;
}

/** `drain`. */
export type DrainConfig = ConsumeConfig & { readonly command: "drain" };
/** `run`. */
export type RunConfig = ConsumeConfig & { readonly command: "run" };

/** `seed`. */
export interface SeedConfig extends Base, QueueSettings {
  readonly command: "seed";
  readonly count: number;
  readonly badRatio: number;
  readonly seed: number | null;
  /** A JSON array of messages to send instead of synthetic ones. */
  readonly samplePath: string | null;
  readonly concurrency: number;
  readonly summaryJson: boolean;
}

/** `demo`: everything embedded; what it passes to drain it resolves as drain's config. */
export interface DemoConfig extends Base {
  readonly command: "demo";
  readonly count: number;
  readonly badRatio: number;
  readonly seed: number | null;
  readonly samplePath: string | null;
  readonly hmacKeyId: string;
  /** Passed on to the embedded drain as flags. */
  readonly drainFlags: FlagValues;
  readonly summaryJson: boolean;
}

/** What `recover` and `forget` act on and why. */
interface PiiRequestSettings {
  readonly masked: string | null;
  readonly fromFile: string | null;
  readonly reason: string | null;
  readonly actor: string | null;
}

/** `recover`. */
export interface RecoverConfig extends Base, DatabaseSettings, KeySettings, PiiRequestSettings {
  readonly command: "recover";
  readonly audit: boolean;
}

/** `forget`. */
export interface ForgetConfig extends Base, DatabaseSettings, KeySettings, PiiRequestSettings {
  readonly command: "forget";
  /** An audit export whose erasures to apply again. */
  readonly replayAudit: string | null;
  /** Values named by the request (erased under every HMAC key): from --ip and --device-id. */
  readonly ip: string | null;
  readonly deviceId: string | null;
  /** A file (or `-`, stdin) of `FIELD VALUE` lines. */
  readonly valuesFromFile: string | null;
}

/** `rekey` and `rekey-vault`. */
export interface RekeyConfig extends Base, DatabaseSettings, KeySettings {
  readonly command: "rekey" | "rekey-vault";
  /** The key id to move to. */
  readonly to: string | null;
  readonly reason: string | null;
  readonly actor: string | null;
  readonly maxRows: number;
  /** `rekey --retire KEYID[,KEYID…]`: forget those keys' links instead of moving masks. */
  readonly retire: readonly string[] | null;
}

/** `vault-merge`. */
export interface VaultMergeConfig extends Base, DatabaseSettings, KeySettings {
  readonly command: "vault-merge";
  readonly reason: string | null;
  readonly actor: string | null;
  readonly maxRows: number;
  readonly dropUnverifiable: boolean;
}

/** `keygen`. */
export interface KeygenConfig extends Base {
  readonly command: "keygen";
  /** Id of the new key pair. */
  readonly vaultId: string;
  /** Directory the two key set files go in. */
  readonly out: string;
}

/** `migrate`. */
export interface MigrateConfig extends Base, DatabaseSettings {
  readonly command: "migrate";
  /** Print the pending migrations' SQL instead of applying it. */
  readonly dryRun: boolean;
  /** Most seconds to wait for another migrate's schema lock. */
  readonly migrateLockWaitSeconds: number;
}

/** `check`: the services, privileges and keys of another command. */
export interface CheckConfig extends Base, QueueSettings, DatabaseSettings, KeySettings {
  readonly command: "check";
  readonly for: Exclude<CommandName, "check" | "demo" | "keygen">;
  /** drain and run: where raw copies of rejects go, checked for encryption and retention. */
  readonly rejectQueueUrl: string | null;
  readonly summaryJson: boolean;
}

/** `report`. */
export interface ReportConfig extends Base, DatabaseSettings {
  readonly command: "report";
  readonly summaryJson: boolean;
}

/** The config of any command. */
export type CommandConfig =
  | DrainConfig
  | RunConfig
  | SeedConfig
  | DemoConfig
  | RecoverConfig
  | ForgetConfig
  | RekeyConfig
  | VaultMergeConfig
  | KeygenConfig
  | MigrateConfig
  | CheckConfig
  | ReportConfig;

/** The config type of one command. */
export type ConfigFor<C extends CommandName> = Extract<CommandConfig, { readonly command: C }>;

/** Where a setting's value came from, for messages that tell the user what to fix. */
interface Source {
  readonly kind: "flag" | "env" | "file" | "default";
  readonly name: string;
}

function specOf(flag: string): OptionSpec {
  const spec = OPTIONS.find((o) => o.flag === flag);
  if (spec === undefined) throw new TypeError(`No option --${flag} in the settings table`);
  return spec;
}

function invalid(source: Source, raw: string, must: string): ConfigError {
  // Redacted before it is cut: a cut can leave a password without the `@` that marks it.
  const redacted = redactSecrets(raw);
  const shown = redacted.length > 60 ? `${redacted.slice(0, 57)}...` : redacted;
  // A file's key and name are both quoted: the value goes first, or it reads as part of the path.
  return new ConfigError(
    source.kind === "file"
      ? `Invalid value "${shown}" for ${source.name}: ${must}`
      : `Invalid ${source.name} "${shown}": ${must}`,
  );
}

function rangeText(spec: OptionSpec, what: string): string {
  return spec.min !== undefined && spec.max !== undefined
    ? `must be ${what} from ${spec.min} to ${spec.max}`
    : `must be ${what}`;
}

/**
 * True for a URL with a password in it, e.g. `postgres://user:pw@host/db`,
 * and for a libpq connection string holding one (`password=…`, `sslpassword=…`):
 * text a message must not echo.
 */
export function holdsPassword(value: string): boolean {
  return (URL.canParse(value) && new URL(value).password !== "") ||
    connectionStringHasSecret(value) ||
    // Malformed, as libpq splits it (a "/" or "@" in the password): user:…@ still says enough.
    /^[a-z][a-z0-9+.-]*:\/\/[^@]*:[^@]*@/i.test(value);
}

/**
 * Reads the settings of one command from the layers. Asking for a setting
 * the table does not give the command is a bug, not a user error.
 */
class Reader {
  readonly #command: CommandName;
  readonly #layers: Layers;

  constructor(command: CommandName, layers: Layers) {
    this.#command = command;
    this.#layers = layers;
  }

  /** The raw value of a setting and where it came from. */
  lookup(flag: string): { raw: string | boolean | undefined; source: Source } {
    const spec = specOf(flag);
    if (!spec.commands.includes(this.#command)) {
      throw new TypeError(`--${flag} is not a setting of ${this.#command} in the settings table`);
    }
    const { flags, env, file } = this.#layers;
    const fromFlag = flags[flag];
    if (fromFlag !== undefined) {
      return { raw: fromFlag, source: { kind: "flag", name: `--${flag}` } };
    }
    const fromEnv = spec.env === undefined ? undefined : env[spec.env];
    if (fromEnv !== undefined && fromEnv !== "") {
      return { raw: fromEnv, source: { kind: "env", name: spec.env as string } };
    }
    const fromFile = file?.values[flag];
    if (fromFile !== undefined && file !== undefined) {
      return { raw: fromFile, source: { kind: "file", name: `"${flag}" in ${file.origin}` } };
    }
    return { raw: spec.default, source: { kind: "default", name: `--${flag}` } };
  }

  integer(flag: string): number {
    const value = this.optionalInteger(flag);
    if (value === null) throw new TypeError(`--${flag} has no default in the settings table`);
    return value;
  }

  optionalInteger(flag: string): number | null {
    const spec = specOf(flag);
    const { raw, source } = this.lookup(flag);
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

  /** A `duration` setting in whole seconds; `null` when unset. */
  optionalDuration(flag: string): number | null {
    const spec = specOf(flag);
    const { raw, source } = this.lookup(flag);
    if (raw === undefined) return null;
    const seconds = parseDuration(String(raw));
    const min = spec.min ?? 0;
    const max = spec.max ?? Infinity;
    if (seconds === null || seconds < min || seconds > max) {
      throw invalid(
        source,
        String(raw),
        `must be ${DURATION_FORMS}, from ${formatDuration(min)} to ${formatDuration(max)}`,
      );
    }
    return seconds;
  }

  number(flag: string): number {
    const spec = specOf(flag);
    const { raw, source } = this.lookup(flag);
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

  /** A string setting; `null` when unset or empty. */
  string(flag: string): string | null {
    const { raw, source } = this.lookup(flag);
    if (raw === undefined) return null;
    if (typeof raw !== "string") throw invalid(source, String(raw), "needs a value");
    return raw === "" ? null : raw;
  }

  /**
   * Audit text (`--actor`, `--reason`): trimmed, `null` when unset or blank,
   * refused beyond `maxChars` (the audit functions would refuse it later,
   * after the work). Not echoed: a reason may name the person it concerns.
   */
  auditText(flag: string, maxChars: number): string | null {
    const value = this.string(flag)?.trim() || null;
    if (value !== null && value.length > maxChars) {
      throw new ConfigError(
        `Invalid ${this.lookup(flag).source.name}: ${value.length} characters, at most ${maxChars}`,
      );
    }
    return value;
  }

  choice<T extends string>(flag: string): T {
    const spec = specOf(flag);
    const { raw, source } = this.lookup(flag);
    const text = String(raw ?? "");
    if (!(spec.choices ?? []).includes(text)) {
      throw invalid(source, text, `must be one of ${(spec.choices ?? []).join(", ")}`);
    }
    return text as T;
  }

  boolean(flag: string): boolean {
    const { raw, source } = this.lookup(flag);
    if (raw === undefined || raw === false) return false;
    if (raw === true) return true;
    const text = raw.trim().toLowerCase();
    if (["1", "true", "yes", "on"].includes(text)) return true;
    if (["0", "false", "no", "off", ""].includes(text)) return false;
    throw invalid(source, raw, "must be true or false");
  }

  /** A key id: never echoed, since a secret pasted in its place must not reach a log. */
  keyId(flag: string): string {
    const value = this.string(flag) ?? "";
    if (!KEY_ID_PATTERN.test(value)) {
      throw new ConfigError(
        `Invalid ${
          this.lookup(flag).source.name
        } (${value.length} characters): must be 1 to 16 letters, digits, _ or -; is a secret in the id's place?`,
      );
    }
    return value;
  }

  /**
   * A comma-separated list of key ids (`rekey --retire`, so an operator
   * clears several bogus ids in one run), each checked as `keyId`: a comma
   * is not in a key id, so the split is unambiguous.
   */
  keyIds(flag: string): readonly string[] {
    const ids = (this.string(flag) ?? "").split(",").map((id) => id.trim());
    const bad = ids.findIndex((id) => !KEY_ID_PATTERN.test(id));
    if (bad >= 0) {
      throw new ConfigError(
        `Invalid ${this.lookup(flag).source.name} (id ${bad + 1} of ${ids.length}, ${
          ids[bad]!.length
        } characters): each id must be 1 to 16 letters, digits, _ or -, ids separated by commas; is a secret in an id's place?`,
      );
    }
    return [...new Set(ids)];
  }

  /** A key's source: a file flag or variable, else an inline variable. */
  keySource(
    what: { readonly fileFlag: string; readonly inlineEnv: string },
  ): KeySource {
    const file = this.string(what.fileFlag);
    if (file !== null) {
      const setting = this.lookup(what.fileFlag).source.name;
      const pathShown = !looksLikeKey(file);
      return {
        kind: "file",
        path: file,
        origin: pathShown ? `${setting} "${file}"` : setting,
        setting,
        pathShown,
        inlineEnv: what.inlineEnv,
      };
    }
    const inline = this.#layers.env[what.inlineEnv];
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

  get env(): EnvRecord {
    return this.#layers.env;
  }

  get flags(): FlagValues {
    return this.#layers.flags;
  }
}

function base(read: Reader, warnings: string[]): Base {
  return {
    logFormat: read.choice("log-format"),
    logLevel: read.choice("log-level"),
    verbose: read.boolean("verbose"),
    warnings: Object.freeze(warnings),
  };
}

const QUEUE_URL_EXAMPLE = "http://localhost:4566/000000000000/login-queue";
/**
 * Why a queue URL may not carry a user or password: SQS never reads them (it
 * takes signed requests), and the URL is logged, so they would only leak.
 */
const NO_USERINFO =
  "must not hold a user or password: SQS requests are signed with AWS credentials (AWS_* variables or a profile)";

function queueSettings(read: Reader): QueueSettings {
  const { raw, source } = read.lookup("queue-url");
  const queueUrl = String(raw);
  let parsed: URL | null = null;
  try {
    parsed = new URL(queueUrl);
  } catch { /* reported below */ }
  if (parsed === null || !/^https?:$/.test(parsed.protocol)) {
    throw invalid(source, queueUrl, `must be an http(s) URL like ${QUEUE_URL_EXAMPLE}`);
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw invalid(source, queueUrl, NO_USERINFO);
  }
  if (parsed.pathname.split("/").filter((s) => s !== "").length < 1) {
    throw invalid(
      source,
      queueUrl,
      `must be an http(s) URL ending in the queue name, like ${QUEUE_URL_EXAMPLE}`,
    );
  }
  return {
    queueUrl,
    region: read.string("region"),
    sqsProtocol: read.choice("sqs-protocol"),
    awsEnv: Object.freeze(pickAwsEnv(read.env)),
  };
}

/**
 * The same queue URL up to the case of scheme and host and a trailing slash.
 * Another name for the same endpoint (localhost for 127.0.0.1) is not caught.
 */
function sameQueue(a: URL, b: URL): boolean {
  const path = (u: URL) => u.pathname.replace(/\/+$/, "");
  return a.protocol === b.protocol && a.host === b.host && path(a) === path(b);
}

/**
 * --reject-queue-url, checked like --queue-url, and never the queue being
 * drained: its rejects would come back to it and be copied again forever.
 */
function rejectQueueUrl(read: Reader, queueUrl: string): string | null {
  const { raw, source } = read.lookup("reject-queue-url");
  if (typeof raw !== "string" || raw === "") return null;
  let parsed: URL | null = null;
  try {
    parsed = new URL(raw);
  } catch { /* reported below */ }
  if (parsed === null || !/^https?:$/.test(parsed.protocol) || parsed.pathname.length < 2) {
    throw invalid(source, raw, `must be an SQS queue URL like ${QUEUE_URL_EXAMPLE}`);
  }
  if (parsed.username !== "" || parsed.password !== "") throw invalid(source, raw, NO_USERINFO);
  // Its copies are raw messages, PII and all: never in clear over a network.
  if (parsed.protocol === "http:" && !isLoopbackHost(parsed.hostname)) {
    throw invalid(
      source,
      raw,
      "must be https: the copies it gets are raw messages with their PII (http only to a loopback endpoint)",
    );
  }
  if (sameQueue(parsed, new URL(queueUrl))) {
    throw invalid(
      source,
      raw,
      "is the queue being drained; its rejects would loop back into it: give another queue",
    );
  }
  return raw;
}

/**
 * A schema (or the owner role's) name from the settings. Lower case only:
 * the data schema goes unquoted into search_path, where Postgres folds case,
 * and docs and psql lines name them unquoted.
 */
function schemaName(read: Reader, flag: "schema" | "state-schema" | "owner-role"): string {
  const name = read.string(flag) ?? "";
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) {
    throw invalid(
      read.lookup(flag).source,
      name,
      "must be a plain lower-case identifier (a-z, digits, _)",
    );
  }
  if (name.startsWith("pg_")) {
    throw invalid(read.lookup(flag).source, name, "names starting pg_ are Postgres' own");
  }
  return name;
}

function databaseSettings(read: Reader): DatabaseSettings {
  const { raw, source } = read.lookup("database-url");
  const schema = schemaName(read, "schema");
  const stateSchema = schemaName(read, "state-schema");
  if (stateSchema === schema) {
    throw invalid(
      read.lookup("state-schema").source,
      stateSchema,
      `is also --schema; login-etl's own tables go in a schema apart from the analysts' data: give another`,
    );
  }
  return {
    database: resolvePgTarget(
      typeof raw === "string" && raw !== "" ? { value: raw, origin: source.name } : null,
      read.env,
    ),
    schema,
    stateSchema,
    ownerRole: schemaName(read, "owner-role"),
  };
}

function keySettings(read: Reader, options: { readonly hmacRequired: boolean }): KeySettings {
  const hmacKey = read.keySource({ fileFlag: "hmac-key-file", inlineEnv: "PII_HMAC_KEY" });
  if (hmacKey.kind === "none" && options.hmacRequired) {
    throw new ConfigError(
      "No HMAC key: set PII_HMAC_KEY or --hmac-key-file to a secret of at least 32 bytes (make one with: openssl rand -base64 32)",
    );
  }
  return {
    hmacKey: Object.freeze(hmacKey),
    hmacKeyId: read.keyId("hmac-key-id"),
    vaultKey: Object.freeze(
      read.keySource({ fileFlag: "vault-key-file", inlineEnv: "PII_VAULT_KEY" }),
    ),
    vaultKeyId: read.keyId("vault-key-id"),
  };
}

/** Key settings of a command that does not use the HMAC key (rekey-vault): none. */
function vaultOnly(read: Reader): KeySettings {
  return {
    hmacKey: Object.freeze({ kind: "none" }),
    hmacKeyId: "k1",
    vaultKey: Object.freeze(
      read.keySource({ fileFlag: "vault-key-file", inlineEnv: "PII_VAULT_KEY" }),
    ),
    vaultKeyId: read.keyId("vault-key-id"),
  };
}

function piiRequest(read: Reader): PiiRequestSettings {
  return {
    masked: read.string("masked"),
    fromFile: read.string("from-file"),
    reason: read.auditText("reason", AUDIT_TEXT_MAX_CHARS),
    actor: read.auditText("actor", AUDIT_ACTOR_MAX_CHARS),
  };
}

/** The settings demo passes on to its embedded drain, as flags (so they are checked there). */
const DEMO_DRAIN_FLAGS = [
  "batch-size",
  "concurrency",
  "max-rows",
  "max-wait-ms",
  "max-retry-seconds",
  "max-receives",
  "max-body-bytes",
  "idle-seconds",
  "hmac-key-id",
] as const;

/**
 * Resolves one command's config from flags, env, a config file and the
 * table's defaults, checking every range. Pure. Its length is one short case
 * per command, each listing exactly the settings that command has, so the
 * type checker holds each command's config to its type.
 *
 * @throws {ConfigError} naming the flag, variable or config-file key to fix
 */
export function resolveConfig<C extends CommandName>(
  command: C,
  flags: FlagValues,
  env: EnvRecord,
  file?: FileLayer,
): ConfigFor<C> {
  const read = new Reader(command, { flags, env, ...(file === undefined ? {} : { file }) });
  const warnings = secretFlagWarnings(flags);
  let config: CommandConfig;
  switch (command) {
    case "drain":
    case "run": {
      const dryRun = read.boolean("dry-run");
      const queue = queueSettings(read);
      config = {
        command,
        ...base(read, warnings),
        ...queue,
        ...databaseSettings(read),
        ...keySettings(read, { hmacRequired: true }),
        configPath: read.string("config"),
        batchSize: read.integer("batch-size"),
        concurrency: read.integer("concurrency"),
        maxRows: read.integer("max-rows"),
        maxWaitMs: read.integer("max-wait-ms"),
        writers: read.integer("writers"),
        workerThreads: read.optionalInteger("worker-threads"),
        maxRetrySeconds: read.integer("max-retry-seconds"),
        maxReceives: read.integer("max-receives"),
        writeTimeoutSeconds: read.integer("write-timeout-seconds"),
        maxBodyBytes: read.integer("max-body-bytes"),
        ledgerRetentionDays: read.integer("ledger-retention-days"),
        migrateLockWaitSeconds: read.integer("migrate-lock-wait-seconds"),
        rejectRetentionDays: read.integer("reject-retention-days"),
        dryRun,
        summaryJson: read.boolean("summary-json"),
        idleSeconds: command === "drain" ? read.integer("idle-seconds") : 0,
        waitSeconds: command === "run" ? read.integer("wait-seconds") : 0,
        listen: command === "run" ? read.string("listen") : null,
        progress: command === "drain" ? read.choice("progress") : "never",
        progressSeconds: command === "drain" ? read.integer("progress-seconds") : 0,
        maxRejects: read.optionalInteger("max-rejects"),
        maxMessages: read.optionalInteger("max-messages"),
        maxDurationSeconds: read.optionalDuration("max-duration"),
        metricsFile: command === "drain" ? read.string("metrics-file") : null,
        rejectQueueUrl: rejectQueueUrl(read, queue.queueUrl),
      } as ConsumeConfig;
      break;
    }
    case "seed":
      config = {
        command,
        ...base(read, warnings),
        ...queueSettings(read),
        count: read.integer("count"),
        badRatio: read.number("bad-ratio"),
        seed: read.optionalInteger("seed"),
        samplePath: read.string("sample"),
        concurrency: read.integer("concurrency"),
        summaryJson: read.boolean("summary-json"),
      };
      break;
    case "demo": {
      const drainFlags: Record<string, string> = {};
      for (const flag of DEMO_DRAIN_FLAGS) {
        const { raw, source } = read.lookup(flag);
        if (source.kind !== "default" && typeof raw === "string") drainFlags[flag] = raw;
      }
      const ratioSet = read.lookup("bad-ratio").source.kind !== "default";
      config = {
        command,
        ...base(read, warnings),
        count: read.integer("count"),
        // The demo shows rejects too, unless told otherwise.
        badRatio: ratioSet ? read.number("bad-ratio") : 0.05,
        seed: read.optionalInteger("seed"),
        samplePath: read.string("sample"),
        hmacKeyId: read.keyId("hmac-key-id"),
        drainFlags: Object.freeze(drainFlags),
        summaryJson: read.boolean("summary-json"),
      };
      break;
    }
    case "recover":
      config = {
        command,
        ...base(read, warnings),
        ...databaseSettings(read),
        // Not required here: a recover without it is refused and audited.
        ...keySettings(read, { hmacRequired: false }),
        ...piiRequest(read),
        audit: read.boolean("audit"),
      };
      break;
    case "forget":
      config = {
        command,
        ...base(read, [...warnings, ...valueFlagWarnings(flags)]),
        ...databaseSettings(read),
        // Only erasure by value needs it (forget.ts says so when missing).
        ...keySettings(read, { hmacRequired: false }),
        ...piiRequest(read),
        replayAudit: read.string("replay-audit"),
        ip: read.string("ip"),
        deviceId: read.string("device-id"),
        valuesFromFile: read.string("values-from-file"),
      };
      break;
    case "rekey":
    case "rekey-vault":
      config = {
        command,
        ...base(read, warnings),
        ...databaseSettings(read),
        ...(command === "rekey" ? keySettings(read, { hmacRequired: true }) : vaultOnly(read)),
        to: read.string("to"),
        reason: read.auditText("reason", AUDIT_TEXT_MAX_CHARS),
        actor: read.auditText("actor", AUDIT_ACTOR_MAX_CHARS),
        maxRows: read.integer("max-rows"),
        retire: command === "rekey" && read.string("retire") !== null
          ? read.keyIds("retire")
          : null,
      } as RekeyConfig;
      break;
    case "vault-merge":
      config = {
        command,
        ...base(read, warnings),
        ...databaseSettings(read),
        ...keySettings(read, { hmacRequired: true }),
        reason: read.auditText("reason", AUDIT_TEXT_MAX_CHARS),
        actor: read.auditText("actor", AUDIT_ACTOR_MAX_CHARS),
        maxRows: read.integer("max-rows"),
        dropUnverifiable: read.boolean("drop-unverifiable"),
      };
      break;
    case "keygen": {
      const vaultId = read.string("vault-id");
      const out = read.string("out");
      if (vaultId === null || out === null) {
        throw new UsageError(
          `keygen needs ${
            vaultId === null ? "--vault-id ID (the new key pair's id, e.g. p1)" : ""
          }${vaultId === null && out === null ? " and " : ""}${
            out === null ? "--out DIR (where to write its two key set files)" : ""
          }; see login-etl keygen --help`,
        );
      }
      config = { command, ...base(read, warnings), vaultId: read.keyId("vault-id"), out };
      break;
    }
    case "migrate":
      config = {
        command,
        ...base(read, warnings),
        ...databaseSettings(read),
        dryRun: read.boolean("dry-run"),
        migrateLockWaitSeconds: read.integer("migrate-lock-wait-seconds"),
      };
      break;
    case "check": {
      const queue = queueSettings(read);
      config = {
        command,
        ...base(read, warnings),
        ...queue,
        ...databaseSettings(read),
        // Checked when given; whether the checked command needs one is a check of its own.
        ...keySettings(read, { hmacRequired: false }),
        for: read.choice("for"),
        rejectQueueUrl: rejectQueueUrl(read, queue.queueUrl),
        summaryJson: read.boolean("summary-json"),
      };
      break;
    }
    case "report":
      config = {
        command,
        ...base(read, warnings),
        ...databaseSettings(read),
        summaryJson: read.boolean("summary-json"),
      };
      break;
    default:
      throw new TypeError(`No command ${command satisfies never}`);
  }
  return Object.freeze(config) as ConfigFor<C>;
}

/**
 * The log format to report a failure of resolution in: the first valid
 * value among the flag, its variable and the config file, else the default.
 * Lenient where `resolveConfig` is strict, since the failure being reported
 * may be this very setting.
 */
export function fallbackLogFormat(
  flags: FlagValues,
  env: EnvRecord,
  file?: FileLayer,
): Base["logFormat"] {
  const spec = specOf("log-format");
  const layers = [flags["log-format"], env[spec.env ?? ""], file?.values["log-format"]];
  for (const raw of layers) {
    if (typeof raw === "string" && (spec.choices ?? []).includes(raw)) {
      return raw as Base["logFormat"];
    }
  }
  return spec.default as Base["logFormat"];
}

/**
 * AWS variables our code reads to decide the endpoint, the region, whether
 * to sign with the emulators' dummy credentials, and to say which credential
 * source failed (`sqs/`). Never the secret key or session token: the SDK
 * reads its own variables itself; the binary may read every `AWS_*` one.
 */
const AWS_ENV_NAMES: readonly string[] = [
  "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_SQS",
  "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
  "AWS_DEFAULT_REGION",
  "AWS_ACCESS_KEY_ID",
  "AWS_PROFILE",
  "AWS_CONFIG_FILE",
  "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_EC2_METADATA_DISABLED",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/**
 * The variables that hold secrets themselves (not a path to them): `main.ts`
 * deletes them from the environment once read.
 */
export const SECRET_ENV_NAMES: readonly string[] = ["PII_HMAC_KEY", "PII_VAULT_KEY"];

/**
 * Every environment variable resolution reads: each setting's variable, the
 * inline secrets, the AWS and PG* variables, and libpq's defaults. `main.ts`
 * reads exactly these (not the whole environment, which would need
 * `--allow-env` for all).
 */
export function envNames(): string[] {
  const names = new Set<string>();
  for (const spec of OPTIONS) if (spec.env !== undefined) names.add(spec.env);
  for (
    const name of [
      ...SECRET_ENV_NAMES,
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

/**
 * Warnings for secrets on the command line, which other users can read in
 * process lists: any flag whose value is a URL with a password. (No flag takes
 * a key itself; keys come from variables or files.)
 */
export function secretFlagWarnings(flags: FlagValues): string[] {
  const warnings: string[] = [];
  for (const [flag, value] of Object.entries(flags)) {
    if (typeof value !== "string" || !holdsPassword(value)) continue;
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
 * Warnings for a personal value given as a flag (`forget --ip`): argv shows
 * in process lists and shell history. Never quotes the value.
 */
function valueFlagWarnings(flags: FlagValues): string[] {
  return ["ip", "device-id"].filter((flag) => typeof flags[flag] === "string").map((flag) =>
    `--${flag} puts a personal value in process lists and shell history; prefer --values-from-file PATH (or - for stdin)`
  );
}

/**
 * Checks a config file's settings (a JSON object keyed by flag name) for
 * `command`: known settings of that command only, scalar values, no secrets.
 * For `check`, the settings of the command it checks (`options.checked`) are
 * accepted too, so the file a command runs with can be checked as it is;
 * those only `checked` has are left out of the layer.
 *
 * @throws {ConfigError} naming the file and the key, and the key it should
 *   be when it is one spelt another way, a near miss or another command's
 */
export function checkConfigFile(
  command: CommandName,
  parsed: Readonly<Record<string, unknown>>,
  origin: string,
  options: { readonly checked?: CommandName | undefined } = {},
): FileLayer {
  const { checked } = options;
  const values: Record<string, string | boolean> = {};
  const accepted = (spec: OptionSpec) =>
    spec.flag !== "config" &&
    (spec.commands.includes(command) || (checked !== undefined && spec.commands.includes(checked)));
  for (const [key, value] of Object.entries(parsed)) {
    const spec = OPTIONS.find((o) => o.flag === key && accepted(o));
    if (spec === undefined) {
      throw new ConfigError(`Invalid ${origin}: ${unknownKey(key, command, accepted)}`);
    }
    if (typeof value === "string" && holdsPassword(value)) {
      throw new ConfigError(
        `Invalid ${origin}: "${key}" holds a password; keep secrets in ${
          spec.env ?? "the environment"
        } or a secret store`,
      );
    }
    if (!spec.commands.includes(command)) continue;
    if (typeof value === "boolean" || typeof value === "string") values[key] = value;
    else if (typeof value === "number") values[key] = String(value);
    else throw new ConfigError(`Invalid ${origin}: "${key}" must be a string, number or boolean`);
  }
  return { values, origin };
}

/**
 * What a setting's name can look like in any spelling we recognise (`max-rows`,
 * `max_rows`, `maxRows`, `LOGIN_ETL_MAX_ROWS`), with room for a typo; the longest
 * variable name is 31 characters. Any other key is not echoed.
 */
const SETTING_NAME_LIKE = /^[A-Za-z0-9_-]{1,40}$/;

/**
 * Why a config-file key is not taken, and what to write instead: the flag it
 * spells another way (`max_rows`, `maxRows`, or its variable
 * `LOGIN_ETL_MAX_ROWS`), the commands it belongs to, or the nearest setting.
 */
function unknownKey(
  key: string,
  command: CommandName,
  accepted: (spec: OptionSpec) => boolean,
): string {
  if (!SETTING_NAME_LIKE.test(key)) {
    // Not echoed: a connection string or key pasted as a key must not reach a log.
    return `a key that is not a setting name (${key.length} characters) is not a setting of ${command}; keys are flag names without the leading -- (see login-etl ${command} --help), and secrets belong in the environment`;
  }
  const own = OPTIONS.filter(accepted).map((o) => o.flag);
  const byEnv = OPTIONS.find((o) => o.env !== undefined && o.env === key.toUpperCase());
  const respelt = byEnv !== undefined && accepted(byEnv) ? byEnv.flag : sameName(key, own);
  if (respelt !== null) {
    return `"${key}" is spelt "${respelt}" here (keys are flag names without the leading --)`;
  }
  if ((byEnv?.flag ?? flagSpelling(key)) === "config") {
    return `"${key}": a config file cannot name another`;
  }
  const elsewhere = byEnv?.flag ?? sameName(key, OPTIONS.map((o) => o.flag));
  if (elsewhere !== null) {
    const takers = OPTIONS.find((o) => o.flag === elsewhere)?.commands ?? [];
    const spelt = key === elsewhere ? "" : ` ("${elsewhere}")`;
    return `"${key}"${spelt} is a setting of ${
      listOf(takers)
    }, not of ${command}; remove it or run one of those`;
  }
  const nearest = nearestName(key, own);
  return nearest !== null
    ? `"${key}" is not a setting of ${command}; did you mean "${nearest}"?`
    : `"${key}" is not a setting of ${command}; keys are flag names without the leading -- (see login-etl ${command} --help)`;
}
