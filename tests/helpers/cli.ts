// Runs the CLI as users do: `deno run` with exactly the permission flags the
// binary is compiled with (the `etl` task of deno.json).

import { stateSchemaOf } from "./services.ts";

const root = new URL("../../", import.meta.url).pathname;

/** The permission flags of the `etl` task, the same list `make build` compiles with. */
export function permissionFlags(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(`${root}deno.json`)) as {
    tasks: { etl: string };
  };
  const task = config.tasks.etl;
  const match = /^deno run (.*) src\/main\.ts$/.exec(task);
  if (match?.[1] === undefined) throw new Error(`Unexpected etl task: ${task}`);
  return match[1].split(" ");
}

let cachedDenoDir: string | undefined;
/**
 * This Deno's cache directory, so a child with another HOME still finds the
 * npm packages already downloaded instead of fetching them again.
 */
export function denoDir(): string {
  if (cachedDenoDir === undefined) {
    const output = new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    cachedDenoDir = JSON.parse(new TextDecoder().decode(output.stdout)).denoDir as string;
  }
  return cachedDenoDir;
}

/**
 * A test's environment with a state schema of its own whenever it names a
 * data schema (`stateSchemaOf`): a CLI run of a test must never fall back
 * to the shared default `login_etl`.
 */
export function ownStateSchema(env: Record<string, string>): Record<string, string> {
  const schema = env.LOGIN_ETL_SCHEMA;
  return schema === undefined || env.LOGIN_ETL_STATE_SCHEMA !== undefined
    ? env
    : { ...env, LOGIN_ETL_STATE_SCHEMA: stateSchemaOf(schema) };
}

/** The environment a CLI child starts from: only what Deno itself needs. */
export function baseEnv(): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    NO_COLOR: "1",
    DENO_DIR: denoDir(),
  };
}

/** Result of one CLI run. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `login-etl <args>` from source with a clean environment plus `env`. */
export async function runCli(
  args: readonly string[],
  options: {
    env?: Record<string, string>;
    signal?: AbortSignal;
    /**
     * A command that runs the CLI's command line, e.g. `taskset -c 0`: to
     * narrow the CPUs it may use, as a pod's CPU limit does.
     */
    wrap?: readonly string[];
    /** Text for its stdin (none when absent). */
    stdin?: string;
  } = {},
): Promise<CliResult> {
  const line = [Deno.execPath(), "run", ...permissionFlags(), `${root}src/main.ts`, ...args];
  const [program, ...rest] = [...(options.wrap ?? []), ...line];
  const command = new Deno.Command(program as string, {
    args: rest,
    cwd: root,
    clearEnv: true,
    env: ownStateSchema({ ...baseEnv(), ...options.env }),
    stdout: "piped",
    stderr: "piped",
    stdin: options.stdin === undefined ? "null" : "piped",
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  let output: Deno.CommandOutput;
  if (options.stdin === undefined) output = await command.output();
  else {
    const child = command.spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
    output = await child.output();
  }
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Starts the CLI and returns the child process, for signal tests. */
export function spawnCli(args: readonly string[], env: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissionFlags(), `${root}src/main.ts`, ...args],
    cwd: root,
    clearEnv: true,
    env: ownStateSchema({ ...baseEnv(), ...env }),
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
}

/**
 * A failed run's last stderr line as the `error: ...` line a terminal shows.
 * Off a terminal (as here) the CLI logs JSON, and the failure is then the
 * `RunFailed` record, last: this checks its level, code and that its
 * `exit_code` is the process's, and returns `error: <msg>`. A text line
 * (`--log-format text`) is returned as it is.
 */
export function failureLine(result: Pick<CliResult, "code" | "stderr">): string {
  const last = result.stderr.trimEnd().split("\n").at(-1) ?? "";
  if (!last.startsWith("{")) return last;
  const record = JSON.parse(last) as Record<string, unknown>;
  if (record["event"] !== "RunFailed") {
    throw new Error(`Last stderr line is not RunFailed: ${last}`);
  }
  if (record["level"] !== "error" || typeof record["code"] !== "string") {
    throw new Error(`RunFailed without level error and a code: ${last}`);
  }
  if (record["exit_code"] !== result.code) {
    throw new Error(
      `RunFailed says exit ${record["exit_code"]}, the process exited ${result.code}`,
    );
  }
  return `error: ${record["msg"]}`;
}
