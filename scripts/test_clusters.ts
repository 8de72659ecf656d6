/**
 * The throwaway clusters of one `make test` run:
 *
 *   deno run --allow-all scripts/test_clusters.ts STATE_FILE MAJOR...
 *
 * starts a cluster of each MAJOR from the npm builds in `.tools/postgres/`
 * (all at once, TLS on with a CA made for this run, server certificate for
 * the name localhost), writes each one's state to STATE_FILE as it changes
 * (`RunState` in tests/helpers/majors.ts: starting, ready with its URL and CA,
 * failed or unavailable with the reason), then waits. On SIGTERM or SIGINT it
 * stops the clusters and removes their directories.
 *
 * It stays running rather than exiting once the clusters are up: a cluster
 * belongs to a live process (tests/helpers/cluster.ts sweeps those whose
 * owner is gone), and the Makefile has one process to stop at the end, on
 * Ctrl-C too.
 *
 * @module
 */

import {
  type Cluster,
  localhostTls,
  makeOwnedDir,
  missingBuild,
  startCluster,
  sweepLeftovers,
} from "../tests/helpers/cluster.ts";
import { makePki } from "../tests/helpers/pki.ts";
import type { ClusterState, RunState } from "../tests/helpers/majors.ts";
import postgres from "postgres";

const [stateArg, ...majorArgs] = Deno.args;
if (stateArg === undefined || majorArgs.length === 0 || !majorArgs.every((m) => /^\d+$/.test(m))) {
  // deno-lint-ignore no-console
  console.error("Usage: test_clusters.ts STATE_FILE MAJOR...");
  Deno.exit(2);
}
const statePath: string = stateArg;
const majors = majorArgs.map(Number);

const clusters: Record<string, ClusterState> = {};
/** The last write of the state file; each waits for the one before. */
let written: Promise<void> = Promise.resolve();
function publish(major: number, state: ClusterState): Promise<void> {
  clusters[String(major)] = state;
  // Written aside and renamed: a reader never sees half a file. One write at
  // a time: the majors start concurrently, and two writers of the one
  // temporary file would rename it twice (the second fails, not found).
  const write = written.catch(() => {}).then(async () => {
    const run: RunState = { pid: Deno.pid, clusters };
    await Deno.writeTextFile(`${statePath}.tmp`, JSON.stringify(run));
    await Deno.rename(`${statePath}.tmp`, statePath);
  });
  written = write;
  return write;
}

const started = performance.now();
await sweepLeftovers();
for (const major of majors) await publish(major, { status: "starting" });
const pkiDir = await makeOwnedDir();
const tls = makePki(pkiDir).then(localhostTls);
// The superuser's password, new each run: the clusters listen on loopback,
// which every local user reaches.
const password = crypto.randomUUID();
const running: Cluster[] = [];

const starts = majors.map(async (major) => {
  const missing = missingBuild(major);
  if (missing !== null) return await publish(major, { status: "unavailable", reason: missing });
  try {
    const cluster = await startCluster({ major, tls, password });
    running.push(cluster);
    await publish(major, { status: "ready", url: cluster.url, caPath: cluster.caPath ?? "" });
  } catch (error) {
    await publish(major, { status: "failed", reason: String(error).split("\n")[0] ?? "" });
  }
});

/**
 * The CPU seconds a cluster has used, on Linux: its postmaster's own and its
 * ended backends' (reaped children count in the postmaster's cutime and
 * cstime), from /proc; null where that cannot be read.
 */
async function cpuSeconds(cluster: Cluster): Promise<number | null> {
  try {
    const pid = (await Deno.readTextFile(`${cluster.dir}/data/postmaster.pid`)).split("\n")[0];
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    // utime, stime, cutime, cstime are fields 14-17 of the line: 11-14 after the name.
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + (fields[i] ?? 0), 0);
    return Math.round(ticks) / 100;
  } catch {
    return null;
  }
}

/** How many sessions a cluster has served (pg_stat_database.sessions, PostgreSQL 14 on). */
async function sessions(cluster: Cluster): Promise<number | null> {
  const sql = postgres(cluster.url, { max: 1, onnotice: () => {}, ssl: false });
  try {
    const [row] = await sql<{ n: string | null }[]>`
      SELECT sum(sessions)::text AS n FROM pg_stat_database`;
    return row?.n === undefined || row.n === null ? null : Number(row.n);
  } catch {
    return null;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

let stopping: Promise<void> | undefined;
function stop(): Promise<void> {
  stopping ??= (async () => {
    // A cluster still starting is stopped once it is up (or has failed).
    await Promise.allSettled(starts);
    const used = await Promise.all(
      running.map(async (c) =>
        `PostgreSQL ${c.major} ${await cpuSeconds(c) ?? "?"} s (${
          await sessions(c) ?? "?"
        } sessions)`
      ),
    );
    // deno-lint-ignore no-console
    console.error(`test clusters: CPU used by ${used.join(", ")} (ended backends included)`);
    await Promise.allSettled(running.map((c) => c[Symbol.asyncDispose]()));
    await Deno.remove(pkiDir, { recursive: true }).catch(() => {});
    Deno.exit(0);
  })();
  return stopping;
}
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);

await Promise.all(starts);
const ms = Math.round(performance.now() - started);
// deno-lint-ignore no-console
console.error(
  `test clusters: ${
    majors.map((m) => `PostgreSQL ${m} ${clusters[String(m)]?.status}`).join(", ")
  } in ${ms} ms`,
);
// Waits for a signal: an interval keeps the event loop alive.
setInterval(() => {}, 1 << 30);
