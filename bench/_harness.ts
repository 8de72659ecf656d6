// What the bench programs share: the SQS endpoint as a process of its own,
// the command line of a `login-etl` run with the binary's flags, and what
// /proc says of a process's CPU and memory.

import postgres from "postgres";
import { permissionFlags } from "../tests/helpers/cli.ts";
import { call } from "./sqs_json.ts";
import { DATABASE_URL } from "./_postgres.ts";

const root = new URL("../", import.meta.url).pathname;

export { DATABASE_URL };
export const BENCH_SECRET = "benchmark secret, not for production use!";

/** A bench's state schema beside its data schema: never the shared `login_etl`. */
export function stateSchemaOf(schema: string): string {
  return `${schema}_state`;
}

/** Drops a bench's data schema and its state schema. */
export async function dropSchemas(
  sql: { unsafe: (query: string) => Promise<unknown> },
  schema: string,
): Promise<void> {
  await sql.unsafe(`DROP SCHEMA IF EXISTS "${stateSchemaOf(schema)}" CASCADE`);
  await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
}

/** fauxqs in a process of its own, so its CPU is not counted against the consumer. */
export async function startFauxqs(): Promise<
  { endpoint: string; pid: number; stop: () => Promise<void> }
> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}bench/fauxqs_server.ts`],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("fauxqs did not start");
    text += value;
  }
  reader.releaseLock();
  return {
    endpoint: `http://127.0.0.1:${text.trim()}`,
    pid: child.pid,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      await child.stdout.cancel().catch(() => {});
    },
  };
}

/** A command line, under `taskset -c 0` when `oneCpu`: as a pod with `limits.cpu: 1`. */
function pinned(line: readonly string[], oneCpu = false): string[] {
  return oneCpu ? ["taskset", "-c", "0", ...line] : [...line];
}

/**
 * `bench/ceiling.ts`, the SDK loop with no processing (`stock`: `new
 * SQSClient()` untuned; `project`: login-etl's client), as a process of its
 * own: `loops` loops until `total` messages of `queueUrl` are gone. `v8Flags`
 * (the binary's V8 flags, to compare like with like), `oneCpu` and `env` as
 * for `loginEtl`; stdout ends with its JSON result, stderr says "ready".
 */
export function ceilingCommand(
  kind: "stock" | "project",
  queueUrl: string,
  total: number,
  loops: number,
  options: {
    readonly v8Flags?: string;
    readonly oneCpu?: boolean;
    readonly env?: Record<string, string>;
  } = {},
): Deno.Command {
  const [program, ...args] = pinned([
    Deno.execPath(),
    "run",
    "-A",
    ...(options.v8Flags === undefined ? [] : [options.v8Flags]),
    `${root}bench/ceiling.ts`,
    kind,
    queueUrl,
    String(total),
    String(loops),
  ], options.oneCpu);
  return new Deno.Command(program as string, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...(options.env === undefined ? {} : { env: options.env }),
  });
}

/**
 * `login-etl <args>` from source with exactly the binary's flags, into
 * `schema` (state in `stateSchemaOf(schema)`), logging JSON; `v8Flags` replaces the binary's own, and `oneCpu`
 * runs it under `taskset -c 0`, as a pod with `limits.cpu: 1`. `entry` runs
 * another program in place of `src/main.ts` that calls its `main` (a profiler's
 * wrapper, `bench/heap_sampling.ts`), with its own arguments before `args`.
 */
export function loginEtl(
  args: readonly string[],
  options: {
    readonly schema: string;
    readonly env?: Record<string, string>;
    readonly v8Flags?: string;
    readonly oneCpu?: boolean;
    readonly entry?: readonly string[];
  },
): Deno.Command {
  const flags = permissionFlags().map((f) =>
    f.startsWith("--v8-flags=") && options.v8Flags !== undefined ? options.v8Flags : f
  );
  const entry = options.entry ?? [`${root}src/main.ts`];
  const [program, ...rest] = pinned(
    [Deno.execPath(), "run", ...flags, ...entry, ...args],
    options.oneCpu,
  );
  return new Deno.Command(program as string, {
    args: rest,
    env: {
      PII_HMAC_KEY: BENCH_SECRET,
      DATABASE_URL,
      LOGIN_ETL_SCHEMA: options.schema,
      LOGIN_ETL_STATE_SCHEMA: stateSchemaOf(options.schema),
      LOGIN_ETL_LOG_FORMAT: "json",
      ...options.env,
    },
    stdout: "piped",
    stderr: "piped",
  });
}

/** CPU-ms (user + system) in a /proc `stat` line: fields 14 and 15, in 10 ms ticks. */
export function statCpuMs(stat: string): number {
  const fields = stat.split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU-ms of a live process, every thread; null once it is gone. */
export function processCpuMs(pid: number): number | null {
  try {
    return statCpuMs(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return null;
  }
}

/** A /proc status field in kB as MiB (`VmHWM`, `VmRSS`); null once the process is gone. */
export function statusMib(pid: number, field: "VmHWM" | "VmRSS"): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : null;
  } catch {
    return null;
  }
}

/** CPU-ms of `pid` and every live process descended from it, all threads. */
export function treeCpuMs(pid: number): number {
  const parentOf = new Map<number, number>();
  const cpuOf = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const fields = stat.split(") ")[1]?.split(" ") ?? [];
      parentOf.set(Number(entry.name), Number(fields[1]));
      cpuOf.set(Number(entry.name), statCpuMs(stat));
    } catch { /* gone */ }
  }
  let total = 0;
  for (const [p, cpu] of cpuOf) {
    for (let q: number | undefined = p; q !== undefined && q > 1; q = parentOf.get(q)) {
      if (q === pid) {
        total += cpu;
        break;
      }
    }
  }
  return total;
}

/**
 * CPU-ms of this process's children that have exited and been waited for,
 * with theirs (`cutime` + `cstime`): a child's whole tree, read once it is
 * gone, so nothing between the last sample and its exit is missed.
 */
export function reapedChildrenCpuMs(): number {
  const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

const encoder = new TextEncoder();

/** A progress line on stderr (stdout is kept for the results). */
export function say(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

/** A new queue on the emulator at `endpoint`, named by `prefix` and `label`. */
export async function freshQueue(endpoint: string, prefix: string, label: string): Promise<string> {
  const name = `${prefix}-${label}-${Date.now()}`;
  await call(endpoint, "CreateQueue", { QueueName: name });
  return `${endpoint}/000000000000/${name}`;
}

/** Runs `fn` with a new schema name, and drops that schema (and its state schema) after. */
export async function withSchema<T>(
  prefix: string,
  fn: (schema: string) => Promise<T>,
): Promise<T> {
  const schema = `${prefix}_${Date.now()}`;
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    return await fn(schema);
  } finally {
    await dropSchemas(sql, schema);
    await sql.end();
  }
}

/** Rows in `schema`'s user_logins: what a contender wrote. */
export async function countRows(schema: string): Promise<number> {
  const sql = postgres(DATABASE_URL, {
    max: 1,
    onnotice: () => {},
    connection: { search_path: schema },
  });
  try {
    const [row] = await sql`SELECT count(*)::int AS n FROM user_logins`;
    return row?.n ?? 0;
  } finally {
    await sql.end();
  }
}

/** The machine a run measured: CPU model, cores, Deno and Postgres versions. */
export async function machine(): Promise<Record<string, string | number>> {
  const cpu =
    /model name\s*:\s*(.*)/.exec(await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))?.[1] ??
      "unknown";
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  const [pg] = await sql`SELECT current_setting('server_version') AS v`;
  await sql.end();
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    postgres: String(pg?.v ?? "?"),
  };
}

/**
 * Replaces what lies between `<!-- name:start -->` and `<!-- name:end -->`
 * in the repository's `doc` (e.g. `docs/performance.md`) with `lines`, then
 * formats the page as `deno fmt` would.
 */
export async function rewriteDocBlock(
  doc: string,
  name: string,
  lines: readonly string[],
): Promise<void> {
  const path = `${root}${doc}`;
  const text = await Deno.readTextFile(path);
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${doc} has no ${start} … ${end} markers`);
  const block = [start, "", ...lines, "", end].join("\n");
  await Deno.writeTextFile(path, text.slice(0, from) + block + text.slice(to + end.length));
  await new Deno.Command(Deno.execPath(), { args: ["fmt", path] }).output();
}
