/**
 * The frozen config of each command, as `resolveConfig` returns it. The
 * settings of a service or key come in groups, and which groups a command's
 * config has follows what it needs (`commands.ts`): `NeededSettings<C>` reads the
 * table, so a config type cannot claim a service its command does not need.
 *
 * @module
 */

import { type CheckTarget, type CommandName, SETTINGS_NEEDS } from "./commands.ts";
import type { PgTarget } from "./pg_target.ts";
import type { KeySource } from "../secret.ts";

/** The SQS wire protocols (`--sqs-protocol`); `auto` starts with JSON (`sqs/client.ts`). */
export type SqsProtocol = "auto" | "json" | "query";

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
export interface Base {
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

/** What a command's config holds of the table's groups, as `commands.ts` says it needs. */
export type NeededSettings<C extends CommandName> =
  & (typeof SETTINGS_NEEDS[C]["queue"] extends true ? QueueSettings : Empty)
  & (typeof SETTINGS_NEEDS[C]["rejectQueue"] extends true ? RejectQueueSettings : Empty)
  & (typeof SETTINGS_NEEDS[C]["database"] extends true ? DatabaseSettings : Empty)
  & (typeof SETTINGS_NEEDS[C] extends { hmacKey: "none"; vaultKey: "none" } ? Empty
    : KeySettings);

type Empty = Record<never, never>;

/** Where raw copies of rejected messages go before their delete. */
export interface RejectQueueSettings {
  /** null: nowhere. */
  readonly rejectQueueUrl: string | null;
}

/** What `drain` and `run` share: how a consumer batches, writes, retries and stops. */
interface ConsumerSettings extends Base {
  readonly configPath: string | null;
  readonly batchSize: number;
  /** Receive loops: fixed, or `auto` (`pipeline/concurrency.ts`). */
  readonly concurrency: number | "auto";
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
  /** Rejects past which the run fails (exit 3); null: no limit. */
  readonly maxRejects: number | null;
  /** Most messages the run takes off the queue, then it finishes and exits 0; null: no bound. */
  readonly maxMessages: number | null;
  /** Seconds after the first receive at which the run stops receiving and finishes; null: no bound. */
  readonly maxDurationSeconds: number | null;
}

/** `drain`: until the queue is empty. */
export interface DrainConfig extends ConsumerSettings, NeededSettings<"drain"> {
  readonly command: "drain";
  /** How long the closing empty receive waits. */
  readonly idleSeconds: number;
  /** The live progress line. */
  readonly progress: "auto" | "always" | "never";
  /** Seconds between Progress events off a terminal (0: none). */
  readonly progressSeconds: number;
  /** Where to write the run's metrics at exit. */
  readonly metricsFile: string | null;
}

/** `run`: until a signal. */
export interface RunConfig extends ConsumerSettings, NeededSettings<"run"> {
  readonly command: "run";
  /** Long-poll wait. */
  readonly waitSeconds: number;
  /** Where to serve /healthz, /readyz, /metrics. */
  readonly listen: string | null;
}

/** Either consuming command. */
export type ConsumeConfig = DrainConfig | RunConfig;

/** `seed`. */
export interface SeedConfig extends Base, NeededSettings<"seed"> {
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
export interface PiiRequestSettings {
  readonly masked: string | null;
  readonly fromFile: string | null;
  readonly reason: string | null;
  readonly actor: string | null;
}

/** `recover`. */
export interface RecoverConfig extends Base, NeededSettings<"recover">, PiiRequestSettings {
  readonly command: "recover";
  readonly audit: boolean;
}

/** `forget`. */
export interface ForgetConfig extends Base, NeededSettings<"forget">, PiiRequestSettings {
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
export interface RekeyConfig extends Base, NeededSettings<"rekey"> {
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
export interface VaultMergeConfig extends Base, NeededSettings<"vault-merge"> {
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
export interface MigrateConfig extends Base, NeededSettings<"migrate"> {
  readonly command: "migrate";
  /** Print the pending migrations' SQL instead of applying it. */
  readonly dryRun: boolean;
  /** Most seconds to wait for another migrate's schema lock. */
  readonly migrateLockWaitSeconds: number;
}

/** `check`: the services, privileges and keys of another command. */
export interface CheckConfig extends Base, NeededSettings<"check"> {
  readonly command: "check";
  readonly for: CheckTarget;
  readonly summaryJson: boolean;
}

/** `report`. */
export interface ReportConfig extends Base, NeededSettings<"report"> {
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
