/**
 * Resolution: flags > env > config file > defaults, from the settings table,
 * into the frozen config of one command. Each command gets its own type
 * (`configs.ts`) and reads only the settings the table gives it; what it
 * needs of services and keys is read as `commands.ts` says (`needed.ts`).
 * Pure: the environment is a plain record and no file is read here.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import type { CommandName } from "./commands.ts";
import type {
  Base,
  CommandConfig,
  ConfigFor,
  EnvRecord,
  FileLayer,
  FlagValues,
  PiiRequestSettings,
  RekeyConfig,
} from "./configs.ts";
import { neededSettings } from "./needed.ts";
import { AUDIT_ACTOR_MAX_CHARS, AUDIT_TEXT_MAX_CHARS, OPTIONS } from "./options.ts";
import { holdsPassword, Reader, specOf } from "./reader.ts";

/** The types `resolveConfig` returns and takes. */
export type * from "./configs.ts";

function base(read: Reader, warnings: string[]): Base {
  return {
    logFormat: read.choice("log-format"),
    logLevel: read.choice("log-level"),
    verbose: read.boolean("verbose"),
    warnings: Object.freeze(warnings),
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

/** seed's parallel send calls under `--concurrency auto`: sends do not adapt, so a fixed 8. */
const SEED_AUTO_SENDS = 8;

function autoOr(value: number | "auto", auto: number): number {
  return value === "auto" ? auto : value;
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
 * table's defaults, checking every range. Pure. What a command needs (queue,
 * Postgres, keys) comes from `commands.ts` through `neededSettings`; each
 * case lists the command's own settings, so the type checker holds each
 * command's config to its type.
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
      // Read first, as the services and keys are the settings most often missing.
      const needed = command === "drain"
        ? neededSettings("drain", read)
        : neededSettings("run", read);
      const consumer = {
        ...base(read, warnings),
        configPath: read.string("config"),
        batchSize: read.integer("batch-size"),
        concurrency: read.integerOrWord<"auto">("concurrency"),
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
        dryRun: read.boolean("dry-run"),
        summaryJson: read.boolean("summary-json"),
        maxRejects: read.optionalInteger("max-rejects"),
        maxMessages: read.optionalInteger("max-messages"),
        maxDurationSeconds: read.optionalDuration("max-duration"),
      };
      config = command === "drain"
        ? {
          command: "drain",
          ...consumer,
          ...needed,
          idleSeconds: read.integer("idle-seconds"),
          progress: read.choice("progress"),
          progressSeconds: read.integer("progress-seconds"),
          metricsFile: read.string("metrics-file"),
        }
        : {
          command: "run",
          ...consumer,
          ...needed,
          waitSeconds: read.integer("wait-seconds"),
          listen: read.string("listen"),
        };
      break;
    }
    case "seed":
      config = {
        command,
        ...base(read, warnings),
        ...neededSettings("seed", read),
        count: read.integer("count"),
        badRatio: read.number("bad-ratio"),
        seed: read.optionalInteger("seed"),
        samplePath: read.string("sample"),
        concurrency: autoOr(read.integerOrWord<"auto">("concurrency"), SEED_AUTO_SENDS),
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
        ...neededSettings("recover", read),
        ...piiRequest(read),
        audit: read.boolean("audit"),
      };
      break;
    case "forget":
      config = {
        command,
        ...base(read, [...warnings, ...valueFlagWarnings(flags)]),
        ...neededSettings("forget", read),
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
        ...(command === "rekey"
          ? neededSettings("rekey", read)
          : neededSettings("rekey-vault", read)),
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
        ...neededSettings("vault-merge", read),
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
        ...neededSettings("migrate", read),
        dryRun: read.boolean("dry-run"),
        migrateLockWaitSeconds: read.integer("migrate-lock-wait-seconds"),
      };
      break;
    case "check":
      config = {
        command,
        ...base(read, warnings),
        // Each optional here: whether the checked command has what it needs is what check reports.
        ...neededSettings("check", read),
        for: read.choice("for"),
        summaryJson: read.boolean("summary-json"),
      };
      break;
    case "report":
      config = {
        command,
        ...base(read, warnings),
        ...neededSettings("report", read),
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
