// How many sink worker threads drain starts when --worker-threads is unset:
// one when the process may use two CPUs or more, none on one CPU (a pod
// limited to one core), read from the real process's affinity with taskset;
// an explicit setting wins either way, and every row is written in each.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { workerThreadsFor } from "../../src/sink/sink.ts";
import { runCli } from "../helpers/cli.ts";
import { DATABASE_URL, enqueue, freshSchema, startSqs, TEST_SECRET } from "../helpers/services.ts";

async function drainWith(
  options: { cpus?: string; workerThreads?: string },
): Promise<{ threads: number; inserted: number; rows: number }> {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, [...generateBodies(300, { badRatio: 0, seed: 11 })]);
  const result = await runCli(["drain", "--queue-url", queueUrl, "--summary-json"], {
    env: {
      DATABASE_URL,
      LOGIN_ETL_SCHEMA: db.schema,
      PII_HMAC_KEY: TEST_SECRET,
      LOGIN_ETL_LOG_FORMAT: "json",
      ...(options.workerThreads === undefined
        ? {}
        : { LOGIN_ETL_WORKER_THREADS: options.workerThreads }),
    },
    ...(options.cpus === undefined ? {} : { cpus: options.cpus }),
  });
  assert.equal(result.code, 0, result.stderr.slice(-1500));
  const started = result.stderr.split("\n").filter((l) => l.includes('"RunStarted"'))
    .map((l) => JSON.parse(l))[0];
  const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`;
  return {
    threads: started?.worker_threads,
    inserted: JSON.parse(result.stdout).inserted,
    rows: row?.n ?? -1,
  };
}

Deno.test("workerThreadsFor(): the setting when given; unset, 1 from two CPUs up and 0 on one", () => {
  assert.equal(workerThreadsFor(null, 1), 0);
  assert.equal(workerThreadsFor(null, 2), 1);
  assert.equal(workerThreadsFor(null, 64), 1);
  assert.equal(workerThreadsFor(0, 64), 0);
  assert.equal(workerThreadsFor(3, 1), 3);
});

Deno.test("drain pinned to one CPU starts no worker thread, unpinned follows the CPUs it may use, and --worker-threads wins; every row written", async () => {
  const oneCpu = await drainWith({ cpus: "0" });
  assert.deepEqual(oneCpu, { threads: 0, inserted: 300, rows: 300 });

  const unpinned = await drainWith({});
  const expected = navigator.hardwareConcurrency >= 2 ? 1 : 0;
  assert.deepEqual(unpinned, { threads: expected, inserted: 300, rows: 300 });

  const forced = await drainWith({ cpus: "0", workerThreads: "1" });
  assert.deepEqual(forced, { threads: 1, inserted: 300, rows: 300 });
});
