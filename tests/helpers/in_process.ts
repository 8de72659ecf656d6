// Runs `login-etl <args>` in this process, through src/main.ts's `main`, with
// its stdout and stderr kept as a CLI run's would be: the same parsing,
// configuration, command, exit code and output, without the CPU a `deno run`
// costs (docs/testing.md, "A command through the CLI or in process"). For
// tests whose point is a command's outcome; what only a child process shows
// (the binary's permission flags, start-up, signals, stdin, the environment
// block, AWS_* variables) stays with `runCli` (tests/helpers/cli.ts).

import { AsyncLocalStorage } from "node:async_hooks";
import { envNames } from "../../src/config/env.ts";
import { main } from "../../src/main.ts";
import { baseEnv, type CliResult, ownStateSchema } from "./cli.ts";

/** What one in-process run wrote. */
interface Capture {
  readonly stdout: string[];
  readonly stderr: string[];
}

/** The run whose writes these are: runs may overlap, each keeps its own. */
const running = new AsyncLocalStorage<Capture>();
let installed = false;

/**
 * Routes writes to stdout and stderr made inside a run to that run (as a
 * pipe, not a terminal, as for a CLI child); writes outside any run go on
 * to the real streams.
 */
function installCapture(): void {
  if (installed) return;
  installed = true;
  for (const [stream, key] of [[Deno.stdout, "stdout"], [Deno.stderr, "stderr"]] as const) {
    const write = stream.writeSync.bind(stream);
    const isTerminal = stream.isTerminal.bind(stream);
    const decoder = new TextDecoder();
    Object.defineProperty(stream, "writeSync", {
      configurable: true,
      value: (bytes: Uint8Array): number => {
        const capture = running.getStore();
        if (capture === undefined) return write(bytes);
        capture[key].push(decoder.decode(bytes));
        return bytes.length;
      },
    });
    Object.defineProperty(stream, "isTerminal", {
      configurable: true,
      value: (): boolean => running.getStore() === undefined && isTerminal(),
    });
  }
}

/**
 * Runs `login-etl <args>` in this process with the environment a `runCli`
 * child would have (its base, `env`, a state schema of its own), of which
 * `main` reads what the binary may read (`envNames`, as `takeEnv` does).
 */
export async function runInProcess(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  // The AWS SDK's chain reads credentials, profiles and endpoints from the
  // process's own environment, not from `env`: such runs need a child.
  const aws = Object.keys(env).filter((n) =>
    n.startsWith("AWS_") && n !== "AWS_EC2_METADATA_DISABLED"
  );
  if (aws.length > 0) {
    throw new Error(`runInProcess cannot give ${aws.join(", ")} to the AWS SDK: use runCli`);
  }
  installCapture();
  const readable = new Set(envNames());
  const full = ownStateSchema({ ...baseEnv(), ...env });
  const taken = Object.fromEntries(Object.entries(full).filter(([name]) => readable.has(name)));
  const capture: Capture = { stdout: [], stderr: [] };
  const code = await running.run(capture, () => main(args, taken));
  return { code, stdout: capture.stdout.join(""), stderr: capture.stderr.join("") };
}
