/**
 * The PostgreSQL majors the privilege, schema and PII suites run on (13, 15
 * and 18), and where each one's server is. 15 is also the server of the rest
 * of the suite (`DATABASE_URL` in services.ts).
 *
 * - 15 with `DATABASE_URL` set: the server a person points the suite at, used
 *   as it is (a superuser URL). The suite never reconfigures it: no ALTER
 *   SYSTEM, no password change; what it lacks (TLS) is skipped.
 * - `LOGIN_ETL_TEST_PG<major>_URL` (and `_CA`, the CA of its certificate): a
 *   server of that major, used as it is (a superuser URL).
 * - `LOGIN_ETL_TEST_CLUSTERS`: the state file of `scripts/test_clusters.ts`,
 *   which `make test` runs beside the tests; a test waits there until its
 *   major's cluster is ready.
 * - Otherwise (one test file run by hand) the first test that asks starts a
 *   cluster of that major in this process, stopped when the process ends.
 *
 * A major without an npm build in `.tools/postgres/` (13 outside linux-x64, or
 * `make postgres-majors` not run) has its cases skipped, with one line saying why.
 *
 * @module
 */

import {
  type Cluster,
  localhostTls,
  makeOwnedDir,
  missingBuild,
  startCluster,
  SUITE_MAJOR,
} from "./cluster.ts";
import { makePki } from "./pki.ts";
import { lacks, tellSkip, type Tool } from "./tools.ts";

/** The majors each `eachMajor.test` runs on. */
export const MAJORS = [13, 15, 18] as const;
export type Major = typeof MAJORS[number];

/** The server of a test on one major. */
export interface PgServer {
  readonly major: Major;
  /** A superuser URL. */
  readonly url: string;
  /** The CA of its server certificate, when known (the clusters we start). */
  readonly caPath: string | undefined;
}

/** One cluster's entry in the state file of `scripts/test_clusters.ts`. */
export type ClusterState =
  | { readonly status: "starting" }
  | { readonly status: "ready"; readonly url: string; readonly caPath: string }
  | { readonly status: "failed" | "unavailable"; readonly reason: string };

/** The state file of `scripts/test_clusters.ts`: its pid and each major's cluster. */
export interface RunState {
  readonly pid: number;
  readonly clusters: Readonly<Record<string, ClusterState>>;
}

/** How long a test waits for a cluster `make test` is still starting. */
const READY_TIMEOUT_MS = 120_000;

/** The server a person points the suite at with DATABASE_URL, if any: used as it is. */
export const BORROWED_URL: string | undefined = Deno.env.get("DATABASE_URL") || undefined;

/** A server given by URL (and the CA of its certificate), not one we start. */
function explicitServer(major: number): { url: string; caPath: string | undefined } | undefined {
  // A person's server: its TLS is not ours to know.
  if (major === SUITE_MAJOR && BORROWED_URL !== undefined) {
    return { url: BORROWED_URL, caPath: undefined };
  }
  const url = Deno.env.get(`LOGIN_ETL_TEST_PG${major}_URL`) || undefined;
  if (url === undefined) return undefined;
  return { url, caPath: Deno.env.get(`LOGIN_ETL_TEST_PG${major}_CA`) || undefined };
}

/** Why the cases of `major` cannot run here, or null when they can. */
export function unavailable(major: Major): string | null {
  if (explicitServer(major) !== undefined) return null;
  return missingBuild(major);
}

/** Reads the state file; undefined while the script has not written it yet. */
export async function readRunState(path: string): Promise<RunState | undefined> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text === "" ? undefined : JSON.parse(text) as RunState;
}

async function alive(pid: number): Promise<boolean> {
  const out = await new Deno.Command("sh", {
    args: ["-c", 'kill -0 "$1"', "sh", String(pid)],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.success;
}

async function fromRun(path: string, major: Major): Promise<PgServer> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const state = await readRunState(path);
    const cluster = state?.clusters[String(major)];
    if (cluster?.status === "ready") {
      return { major, url: cluster.url, caPath: cluster.caPath };
    }
    if (cluster?.status === "failed" || cluster?.status === "unavailable") {
      throw new Error(`PostgreSQL ${major} did not start (${path}): ${cluster.reason}`);
    }
    if (state !== undefined && !await alive(state.pid)) {
      throw new Error(
        `scripts/test_clusters.ts (pid ${state.pid}) ended before PostgreSQL ${major} was ready`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(
        `PostgreSQL ${major} not ready after ${READY_TIMEOUT_MS / 1000} s: see ${path}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What this process started on demand: stopped when it ends. */
const own = {
  clusters: new Map<Major, Promise<Cluster>>(),
  running: [] as Cluster[],
  pkiDir: undefined as Promise<string> | undefined,
  pkiPath: undefined as string | undefined,
};

function stopOwn(): void {
  for (const cluster of own.running) cluster.disposeSync();
  try {
    if (own.pkiPath !== undefined) Deno.removeSync(own.pkiPath, { recursive: true });
  } catch {
    // Already removed (a sweep): nothing left to do.
  }
}

/** Starts `major`'s cluster in this process once, TLS on with a CA of its own. */
function onDemand(major: Major): Promise<Cluster> {
  let cluster = own.clusters.get(major);
  if (cluster === undefined) {
    // unload listeners cannot await: the clusters stop synchronously.
    if (own.clusters.size === 0) globalThis.addEventListener("unload", stopOwn);
    own.pkiDir ??= makeOwnedDir().then((dir) => (own.pkiPath = dir));
    const tls = own.pkiDir.then(makePki).then(localhostTls);
    // A password new each time, as make test's clusters have: no test may assume one.
    cluster = startCluster({ major, tls, password: crypto.randomUUID() }).then((c) => {
      own.running.push(c);
      return c;
    });
    own.clusters.set(major, cluster);
  }
  return cluster;
}

/** The server of `major` for a test, waiting for (or starting) its cluster. */
export async function pgServer(major: Major): Promise<PgServer> {
  const explicit = explicitServer(major);
  if (explicit !== undefined) return { major, ...explicit };
  const state = Deno.env.get("LOGIN_ETL_TEST_CLUSTERS");
  if (state !== undefined && state !== "") return await fromRun(state, major);
  const cluster = await onDemand(major);
  return { major, url: cluster.url, caPath: cluster.caPath };
}

/** What a test of `eachMajor.test` gets: its context and its major's server. */
export interface MajorTestContext {
  readonly t: Deno.TestContext;
  readonly pg: PgServer;
}

/** Registers `name` once per major; ignored everywhere when `needs` is missing. */
function testEachMajor(
  name: string,
  fn: (context: MajorTestContext) => Promise<void>,
  needs?: Tool,
): void {
  const missing = needs !== undefined && lacks(needs);
  for (const major of MAJORS) {
    const why = unavailable(major);
    if (why !== null) tellSkip(`PostgreSQL ${major}`, why);
    Deno.test({
      name: `${name} (PostgreSQL ${major})`,
      ignore: why !== null || missing,
      fn: async (t) => await fn({ t, pg: await pgServer(major) }),
    });
  }
}

/**
 * `Deno.test` once per major: `eachMajor.test(name, async ({ t, pg }) => ...)`
 * registers `name (PostgreSQL N)` for each of `MAJORS`; a major that cannot
 * run here is ignored, said once per process on stdout.
 * `eachMajor.needing(tool).test(...)` does the same for a test that needs a
 * program beyond make and npm (psql.ts's `PSQL`): where it is missing, the
 * test is ignored on every major, said once too. (Objects with a `test`
 * method taking a one-parameter function, because deno fmt then keeps the
 * call on one line as it does Deno.test's, and a test moved onto it keeps its
 * indentation.)
 */
export const eachMajor = {
  test(name: string, fn: (context: MajorTestContext) => Promise<void>): void {
    testEachMajor(name, fn);
  },
  needing(tool: Tool) {
    return {
      test(name: string, fn: (context: MajorTestContext) => Promise<void>): void {
        testEachMajor(name, fn, tool);
      },
    };
  },
};
