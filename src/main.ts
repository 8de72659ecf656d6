/**
 * Entry point: argv and env in, exit code out. The only caller of `Deno.exit`.
 *
 * @module
 */

import meta from "../deno.json" with { type: "json" };
import { helpText, parseInvocation } from "./cli.ts";
import { readConfigFile } from "./config/file.ts";
import { type CommandConfig, envNames, resolveConfig } from "./config/resolve.ts";
import { consume } from "./commands/consume.ts";
import { demo } from "./commands/demo.ts";
import { seed } from "./commands/seed.ts";
import { ChecksFailedError, EXIT_USAGE, exitCodeOf, formatError } from "./errors.ts";
import { createLogger, writeAllSync, writeStderr } from "./log.ts";
import { Telemetry } from "./ops/telemetry.ts";

/** The version printed by `--version`. */
export const VERSION: string = meta.version;

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

async function execute(
  config: CommandConfig,
  telemetry: Telemetry,
  stop: AbortSignal,
): Promise<void> {
  switch (config.command) {
    case "drain":
    case "run": {
      const summary = await consume(config, { telemetry, stop, writeStdout });
      telemetry.emit({ type: "RunFinished", summary });
      if (config.summaryJson) writeStdout(JSON.stringify({ ...summary, dry_run: config.dryRun }));
      return;
    }
    case "seed": {
      const summary = await seed(config, telemetry);
      if (config.summaryJson) writeStdout(JSON.stringify(summary));
      else {writeStdout(
          config.samplePath === null
            ? `Sent ${summary.sent} messages to ${config.queueUrl} (seed ${summary.seed}).`
            : `Sent ${summary.sent} messages from ${config.samplePath} to ${config.queueUrl}.`,
        );}
      return;
    }
    case "demo": {
      const report = await demo(config, {
        telemetry,
        stop,
        print: config.summaryJson ? writeStderr : writeStdout,
      });
      if (config.summaryJson) writeStdout(JSON.stringify(report));
      return;
    }
    case "recover":
    case "forget":
    case "rekey":
    case "rekey-vault": {
      // Loaded only for these commands, like the demo's embedded services.
      const io = { telemetry, writeStdout, stop };
      if (config.command === "recover") {
        await (await import("./commands/recover.ts")).recoverCommand(config, io);
      } else if (config.command === "forget") {
        await (await import("./commands/forget.ts")).forgetCommand(config, io);
      } else {
        await (await import("./commands/rekey.ts")).rekeyCommand(config, io);
      }
      return;
    }
    case "migrate":
      await (await import("./commands/migrate.ts")).migrateCommand(config, {
        telemetry,
        writeStdout,
      });
      return;
    case "report":
      await (await import("./commands/report.ts")).reportCommand(config, {
        telemetry,
        writeStdout,
      });
      return;
    case "check": {
      const { failed, total } = await (await import("./commands/check.ts")).checkCommand(config, {
        telemetry,
        writeStdout,
      });
      if (failed > 0) throw new ChecksFailedError(failed, total);
      return;
    }
    default:
      throw new TypeError(`No command ${config satisfies never}`);
  }
}

/** Runs the CLI and returns the exit code. */
export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string>>,
): Promise<number> {
  let config: CommandConfig;
  try {
    const invocation = parseInvocation(argv);
    if (invocation.kind === "help") {
      writeStdout(helpText(invocation.command, VERSION));
      return 0;
    }
    if (invocation.kind === "version") {
      writeStdout(`login-etl ${VERSION}`);
      return 0;
    }
    const { command, flags } = invocation;
    config = resolveConfig(command, flags, env, await readConfigFile(command, flags, env));
  } catch (error) {
    writeStderr(`error: ${formatError(error, argv.includes("--verbose"))}`);
    return exitCodeOf(error) === 1 ? EXIT_USAGE : exitCodeOf(error);
  }
  const telemetry = new Telemetry(
    createLogger({ format: config.logFormat, level: config.logLevel }),
  );
  for (const message of config.warnings) telemetry.emit({ type: "ConfigWarned", message });
  const signals = installSignals(telemetry);
  try {
    await execute(config, telemetry, signals.signal);
    return 0;
  } catch (error) {
    const code = exitCodeOf(error);
    if (code === 1 && !(error instanceof Error && "code" in error)) {
      // Not one of ours: a bug. Keep the stack, it is what a report needs.
      writeStderr(`error: ${formatError(error, true)}`);
      if (error instanceof Error && error.stack !== undefined && config.verbose) {
        writeStderr(error.stack);
      }
    } else {
      writeStderr(`error: ${formatError(error, config.verbose)}`);
    }
    if ((config.command === "drain" || config.command === "run") && config.summaryJson) {
      writeStdout(JSON.stringify({ ...telemetry.summary(), error: formatError(error) }));
    }
    return code;
  } finally {
    signals.remove();
  }
}

/**
 * The variables configuration reads, by name: the binary may read only a
 * listed set (`--allow-env=...` in the `etl` task), so the whole environment
 * (`Deno.env.toObject()`) is out of reach by design.
 */
function readEnv(names: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of names) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args, readEnv(envNames())));
}
