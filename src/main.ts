/**
 * Entry point: argv and env in, exit code out. The only caller of `Deno.exit`.
 *
 * @module
 */

import { helpText, loggingFlags, parseInvocation } from "./cli.ts";
import { readConfigFile } from "./config/file.ts";
import type { CommandConfig, FileLayer } from "./config/configs.ts";
import { envNames, SECRET_ENV_NAMES } from "./config/env.ts";
import { fallbackLogFormat, resolveConfig } from "./config/resolve.ts";
import type { CommandIo } from "./commands/_io.ts";
import { demoCommand } from "./commands/demo.ts";
import { drainCommand } from "./commands/drain.ts";
import { seedCommand } from "./commands/seed.ts";
import { EtlError, EXIT_USAGE, exitCodeOf, formatError, UsageError } from "./errors.ts";
import { createLogger, writeAllSync, writeStderr } from "./log.ts";
import { Telemetry } from "./ops/telemetry.ts";
import { VERSION, versionLines } from "./version.ts";

function writeStdout(line: string): void {
  writeAllSync(Deno.stdout, line + "\n");
}

/**
 * SIGINT/SIGTERM abort the returned signal once (finish in-flight work); a
 * second signal exits at once with 130, leaving uncommitted messages to SQS.
 */
function installSignals(telemetry: Telemetry): { signal: AbortSignal; remove: () => void } {
  const controller = new AbortController();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const handler = (name: Deno.Signal) => () => {
    if (controller.signal.aborted) {
      telemetry.emit({ type: "ShutdownForced" });
      Deno.exit(130);
    }
    telemetry.emit({ type: "ShutdownRequested", signal: name });
    controller.abort();
  };
  const installed = signals.map((name) => {
    const fn = handler(name);
    Deno.addSignalListener(name, fn);
    return [name, fn] as const;
  });
  return {
    signal: controller.signal,
    remove: () => installed.forEach(([name, fn]) => Deno.removeSignalListener(name, fn)),
  };
}

/**
 * Runs the command. Each prints its own output and result (`commands/_io.ts`);
 * the rarely used ones are loaded only when named, like the demo's embedded
 * services.
 */
async function execute(config: CommandConfig, io: CommandIo): Promise<void> {
  switch (config.command) {
    case "drain":
    case "run":
      return await drainCommand(config, io);
    case "seed":
      return await seedCommand(config, io);
    case "demo":
      return await demoCommand(config, io);
    case "recover":
      return await (await import("./commands/recover.ts")).recoverCommand(config, io);
    case "forget":
      return await (await import("./commands/forget.ts")).forgetCommand(config, io);
    case "rekey":
    case "rekey-vault":
      return await (await import("./commands/rekey.ts")).rekeyCommand(config, io);
    case "vault-merge":
      return await (await import("./commands/vault_merge.ts")).vaultMergeCommand(config, io);
    case "keygen":
      return await (await import("./commands/keygen.ts")).keygenCommand(config, io);
    case "migrate":
      return await (await import("./commands/migrate.ts")).migrateCommand(config, io);
    case "report":
      return await (await import("./commands/report.ts")).reportCommand(config, io);
    case "check":
      return await (await import("./commands/check.ts")).checkCommand(config, io);
    default:
      throw new TypeError(`No command ${config satisfies never}`);
  }
}

/**
 * Ends a run that failed: the summary on stdout when asked for, then the
 * `RunFailed` event, last on stderr (the `error: ...` line on a terminal, a
 * JSON record a log pipeline can alert on otherwise).
 *
 * @returns the exit code
 */
function reportFailure(
  telemetry: Telemetry,
  error: unknown,
  options: { readonly verbose: boolean; readonly exitCode: number },
): number {
  // Not one of ours: a bug. Keep its name and causes, and with --verbose its
  // stack: it is what a report needs.
  const bug = options.exitCode === 1 && !(error instanceof Error && "code" in error);
  const stack = bug && options.verbose && error instanceof Error ? error.stack : undefined;
  telemetry.emit({
    type: "RunFailed",
    code: error instanceof EtlError ? error.code : "internal",
    message: formatError(error, bug || options.verbose),
    exitCode: options.exitCode,
    ...(stack === undefined ? {} : { stack }),
  });
  return options.exitCode;
}

/**
 * Telemetry for a failure before the settings resolved: in the log format
 * the flags, the environment or the config file ask for, each taken only
 * when valid, since the failure may be any other setting.
 */
function earlyTelemetry(
  argv: readonly string[],
  env: Readonly<Record<string, string>>,
  file: FileLayer | undefined,
): Telemetry {
  const format = fallbackLogFormat(loggingFlags(argv), env, file);
  return new Telemetry(createLogger({ format, level: "error" }));
}

/** Runs the CLI and returns the exit code. */
export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string>>,
): Promise<number> {
  let config: CommandConfig;
  let file: FileLayer | undefined;
  try {
    const invocation = parseInvocation(argv);
    if (invocation.kind === "missing") {
      writeStderr(helpText(null, VERSION));
      throw new UsageError("No command given: name one of the commands listed above");
    }
    if (invocation.kind === "help") {
      writeStdout(helpText(invocation.command, VERSION));
      return 0;
    }
    if (invocation.kind === "version") {
      for (const line of versionLines(invocation.verbose)) writeStdout(line);
      return 0;
    }
    const { command, flags } = invocation;
    file = await readConfigFile(command, flags, env);
    config = resolveConfig(command, flags, env, file);
  } catch (error) {
    return reportFailure(earlyTelemetry(argv, env, file), error, {
      verbose: argv.includes("--verbose"),
      exitCode: exitCodeOf(error) === 1 ? EXIT_USAGE : exitCodeOf(error),
    });
  }
  const telemetry = new Telemetry(
    createLogger({ format: config.logFormat, level: config.logLevel }),
  );
  for (const message of config.warnings) telemetry.emit({ type: "ConfigWarned", message });
  const signals = installSignals(telemetry);
  try {
    await execute(config, { telemetry, stop: signals.signal, writeStdout });
    return 0;
  } catch (error) {
    return reportFailure(telemetry, error, {
      verbose: config.verbose,
      exitCode: exitCodeOf(error),
    });
  } finally {
    signals.remove();
  }
}

/**
 * The variables configuration reads, by name: the binary may read only a
 * listed set (`--allow-env=...` in the `etl` task), so the whole environment
 * (`Deno.env.toObject()`) is out of reach by design. The variables in
 * `secrets` are deleted once read, so that nothing started or loaded later
 * (a library, a worker thread, a child process) finds them there. The
 * process's initial environment block keeps its copy (`/proc/PID/environ`):
 * the `*_FILE` variables keep a key out of the environment altogether.
 */
export function takeEnv(
  names: readonly string[],
  secrets: readonly string[],
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of names) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  for (const name of secrets) if (env[name] !== undefined) Deno.env.delete(name);
  return env;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args, takeEnv(envNames(), SECRET_ENV_NAMES)));
}
