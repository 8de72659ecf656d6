// The throwaway clusters the suite runs its majors on (scripts/test_clusters.ts,
// tests/helpers/cluster.ts), held to what tests rely on: the major asked for,
// password login with SCRAM only, TLS from the run's own CA for the name
// localhost, a server that is not root, settings for speed; gone after
// SIGTERM; and a cluster whose owner was killed swept by the next start.

import assert from "node:assert/strict";
import postgres from "postgres";
import { checkConnection, connect } from "../../src/db/pool.ts";
import { loadPgConnection } from "../../src/db/connection.ts";
import { resolvePgTarget } from "../../src/config/pg_target.ts";
import { DatabaseError } from "../../src/errors.ts";
import { missingBuild, sweepLeftovers } from "../helpers/cluster.ts";
import { readRunState, type RunState } from "../helpers/majors.ts";

const root = new URL("../../", import.meta.url).pathname;
const majors = [13, 18].filter((m) => missingBuild(m) === null);
const ignore = majors.length === 0;

/** Starts scripts/test_clusters.ts for `wanted` and waits until none is starting. */
async function startRun(wanted: readonly number[]) {
  const dir = await Deno.makeTempDir();
  const statePath = `${dir}/state.json`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `${root}scripts/test_clusters.ts`,
      statePath,
      ...wanted.map(String),
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 90_000;
  let state: RunState | undefined;
  while (
    (state = await readRunState(statePath)) === undefined ||
    Object.values(state.clusters).some((c) => c.status === "starting")
  ) {
    assert.ok(Date.now() < deadline, `clusters not up after 90 s: ${JSON.stringify(state)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { dir, child, state };
}

/** A ready cluster's URL and CA, from the state file. */
function ready(state: RunState, major: number): { url: string; caPath: string } {
  const cluster = state.clusters[String(major)];
  assert.equal(cluster?.status, "ready", JSON.stringify(cluster));
  return cluster as { url: string; caPath: string };
}

/** Connects as login-etl does; the refusal's message when it cannot. */
async function loginEtlSees(url: string): Promise<string> {
  const connection = await loadPgConnection(
    resolvePgTarget({ value: url, origin: "DATABASE_URL" }, {}),
  );
  const sql = connect({ connection, schema: "public", stateSchema: "login_etl", max: 1 });
  try {
    await checkConnection(sql, connection);
    const [row] = await sql<{ ssl: boolean }[]>`
      SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`;
    return row?.ssl ? "tls" : "plain";
  } catch (error) {
    if (error instanceof DatabaseError) return error.message;
    throw error;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

function processGone(pid: number): boolean {
  return !new Deno.Command("sh", { args: ["-c", 'kill -0 "$1"', "sh", String(pid)] })
    .outputSync().success;
}

Deno.test({
  name:
    "scripts/test_clusters.ts starts each major with SCRAM logins, TLS from its own CA, a server that is not root, and removes them on SIGTERM",
  ignore,
  async fn(t) {
    const run = await startRun(majors);
    const seen: { dataDir: string; pid: number; caPath: string }[] = [];
    try {
      for (const major of majors) {
        const { url, caPath } = ready(run.state, major);
        await t.step(`PostgreSQL ${major}`, async () => {
          const sql = postgres(url, { max: 1, onnotice: () => {} });
          try {
            const [s] = await sql<Record<string, string>[]>`
              SELECT current_setting('server_version_num') AS version,
                     current_setting('password_encryption') AS encryption,
                     current_setting('fsync') AS fsync,
                     current_setting('data_directory') AS "dataDir",
                     pg_backend_pid()::text AS pid,
                     (SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules) AS auth`;
            assert.equal(Math.floor(Number(s?.version) / 10000), major);
            assert.deepEqual([s?.encryption, s?.fsync, s?.auth], [
              "scram-sha-256",
              "off",
              "scram-sha-256",
            ]);
            seen.push({ dataDir: s?.dataDir ?? "", pid: Number(s?.pid), caPath });
            const ps = new Deno.Command("ps", { args: ["-o", "uid=", "-p", String(s?.pid)] })
              .outputSync();
            assert.notEqual(
              new TextDecoder().decode(ps.stdout).trim(),
              "0",
              "the server is not root",
            );
          } finally {
            await sql.end();
          }
          const wrong = new URL(url);
          wrong.password = "not-the-password";
          assert.match(await loginEtlSees(wrong.toString()), /password authentication failed/);
          // The run's CA signed a certificate for the name localhost only.
          const ca = `sslrootcert=${encodeURIComponent(caPath)}`;
          assert.equal(await loginEtlSees(`${url}?sslmode=verify-ca&${ca}`), "tls");
          assert.match(
            await loginEtlSees(`${url}?sslmode=verify-full&${ca}`),
            /the certificate of 127\.0\.0\.1:\d+ does not name host 127\.0\.0\.1/,
          );
        });
      }
    } finally {
      run.child.kill("SIGTERM");
      await run.child.status;
      await Deno.remove(run.dir, { recursive: true });
    }
    for (const { dataDir, caPath } of seen) {
      assert.throws(() => Deno.statSync(dataDir), Deno.errors.NotFound, dataDir);
      assert.throws(() => Deno.statSync(caPath), Deno.errors.NotFound, caPath);
    }
    // The backends ended with their server (the pids were read while it ran).
    for (const { pid } of seen) assert.ok(processGone(pid), `backend ${pid} still runs`);
  },
});

Deno.test({
  name:
    "a cluster whose owner was killed outright keeps running until the next start sweeps it away",
  ignore,
  async fn() {
    const major = majors.at(-1) as number;
    const run = await startRun([major]);
    const { url } = ready(run.state, major);
    try {
      // Read while its owner lives: once the owner is dead, another test
      // file's start may sweep the cluster at any moment.
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      let dataDir: string;
      try {
        const [s] = await sql<{ dir: string }[]>`SELECT current_setting('data_directory') AS dir`;
        dataDir = s?.dir ?? "";
      } finally {
        await sql.end();
      }
      run.child.kill("SIGKILL");
      await run.child.status;
      const clusterDir = dataDir.replace(/\/data$/, "");
      assert.ok(Deno.statSync(clusterDir).isDirectory, "left behind by the killed owner");
      // Another test process starting a cluster meanwhile may sweep it first: either way it goes.
      await sweepLeftovers();
      assert.throws(() => Deno.statSync(clusterDir), Deno.errors.NotFound);
      assert.match(await loginEtlSees(url), /ECONNREFUSED/);
    } finally {
      await Deno.remove(run.dir, { recursive: true });
    }
  },
});
