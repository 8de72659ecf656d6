// How many sink worker threads drain starts when --worker-threads is unset:
// one when the process may use two CPUs or more, none on one CPU, narrowed
// for real: by affinity (taskset) and by a cgroup CPU quota of one CPU, as
// Kubernetes sets from limits.cpu (Deno's navigator.hardwareConcurrency reads
// both); an explicit setting wins either way, and every row is written.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { runCli } from "../helpers/cli.ts";
import { DATABASE_URL, enqueue, freshSchema, startSqs, TEST_SECRET } from "../helpers/services.ts";

async function drainWith(
  options: { wrap?: readonly string[]; workerThreads?: string },
): Promise<{ threads: number; inserted: number; rows: number }> {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, [...generateBodies(300, { badRatio: 0, seed: 11 })]);
  const result = await runCli(["drain", "--queue-url", queueUrl, "--summary-json"], {
    env: {
      DATABASE_URL,
      ...db.env,
      PII_HMAC_KEY: TEST_SECRET,
      LOGIN_ETL_LOG_FORMAT: "json",
      ...(options.workerThreads === undefined
        ? {}
        : { LOGIN_ETL_WORKER_THREADS: options.workerThreads }),
    },
    ...(options.wrap === undefined ? {} : { wrap: options.wrap }),
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

Deno.test("drain pinned to one CPU starts no worker thread, unpinned follows the CPUs it may use, and --worker-threads wins; every row written", async () => {
  const oneCpu = await drainWith({ wrap: ["taskset", "-c", "0"] });
  assert.deepEqual(oneCpu, { threads: 0, inserted: 300, rows: 300 });

  const unpinned = await drainWith({});
  const expected = navigator.hardwareConcurrency >= 2 ? 1 : 0;
  assert.deepEqual(unpinned, { threads: expected, inserted: 300, rows: 300 });

  const forced = await drainWith({ wrap: ["taskset", "-c", "0"], workerThreads: "1" });
  assert.deepEqual(forced, { threads: 1, inserted: 300, rows: 300 });
});

/** The cgroup v1 CPU controller, where this machine mounts it writable (as root). */
const CPU_CGROUP = "/sys/fs/cgroup/cpu";
/** Whether a group with a CPU quota can be made here: tried once, then removed. */
const canQuota = (() => {
  const probe = `${CPU_CGROUP}/login_etl_probe_${Deno.pid}`;
  try {
    Deno.mkdirSync(probe);
  } catch {
    return false;
  }
  try {
    Deno.writeTextFileSync(`${probe}/cpu.cfs_quota_us`, "100000");
    // And a process may join it (a container may allow the one and not the other).
    return new Deno.Command("sh", { args: ["-c", `echo $$ > ${probe}/cgroup.procs`] })
      .outputSync().success;
  } catch {
    return false;
  } finally {
    Deno.removeSync(probe);
  }
})();

Deno.test({
  name:
    "drain in a cgroup with a CPU quota of one CPU (limits.cpu: 1) starts no worker thread; every row written",
  // Only where a cgroup can be made: not a silent pass, a named skip.
  ignore: !canQuota || navigator.hardwareConcurrency < 2,
  async fn() {
    const group = `${CPU_CGROUP}/login_etl_test_${Deno.pid}`;
    Deno.mkdirSync(group);
    try {
      Deno.writeTextFileSync(`${group}/cpu.cfs_period_us`, "100000");
      Deno.writeTextFileSync(`${group}/cpu.cfs_quota_us`, "100000");
      // The shell joins the group, then becomes the CLI: it starts inside it.
      const join = ["sh", "-c", `echo $$ > ${group}/cgroup.procs && exec "$@"`, "sh"];
      assert.deepEqual(await drainWith({ wrap: join }), { threads: 0, inserted: 300, rows: 300 });
      const forced = await drainWith({ wrap: join, workerThreads: "1" });
      assert.deepEqual(forced, { threads: 1, inserted: 300, rows: 300 });
    } finally {
      Deno.removeSync(group);
    }
  },
});
