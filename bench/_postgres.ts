/**
 * The Postgres a benchmark runs against: the server at `DATABASE_URL` when
 * set (a superuser URL, used as it is), otherwise a throwaway PostgreSQL 15
 * cluster of its own from the npm build (`make postgres-majors`), started when
 * this module is first imported and removed when the process ends; the bench
 * programs it starts find it in their DATABASE_URL.
 *
 * The throwaway cluster keeps a server's durability settings (fsync,
 * full-page writes, synchronous commit, replica WAL) and 128 MB of shared
 * buffers, PostgreSQL's own defaults, rather than the test suite's disposable
 * ones: a benchmark's figures then do not depend on a server's leftover
 * settings, nor flatter the write path. TLS is on (a CA made for the run),
 * since production connections use it.
 *
 * @module
 */

import { localhostTls, makeOwnedDir, startCluster, SUITE_MAJOR } from "../tests/helpers/cluster.ts";
import { makePki } from "../tests/helpers/pki.ts";

/** A server's settings, not the suite's disposable ones. */
const SERVER_SETTINGS: Readonly<Record<string, string>> = {
  fsync: "on",
  "full_page_writes": "on",
  "synchronous_commit": "on",
  "wal_level": "replica",
  "max_wal_senders": "10",
  "shared_buffers": "'128MB'",
};

async function throwaway(): Promise<string> {
  const pkiDir = await makeOwnedDir();
  const cluster = await startCluster({
    major: SUITE_MAJOR,
    tls: makePki(pkiDir).then(localhostTls),
    settings: SERVER_SETTINGS,
  });
  globalThis.addEventListener("unload", () => {
    cluster.disposeSync();
    try {
      Deno.removeSync(pkiDir, { recursive: true });
    } catch {
      // Already removed by a sweep.
    }
  });
  // The bench programs this one starts (peer.ts, threads.ts, ...) use it too.
  Deno.env.set("DATABASE_URL", cluster.url);
  // deno-lint-ignore no-console
  console.error(
    `bench: a throwaway PostgreSQL ${cluster.major} cluster at 127.0.0.1:${cluster.port}`,
  );
  return cluster.url;
}

/** A superuser URL of the benchmark's Postgres. */
export const DATABASE_URL: string = Deno.env.get("DATABASE_URL") || await throwaway();
