// `run --listen` as users run it (the CLI with the binary's permission
// flags): /metrics scraped during a real run until every valid message is a
// row, counters that only grow and that equal the --summary-json summary at
// the end, /healthz, and /readyz following the database through a proxy that
// resets every connection. The process_* metrics against what the kernel
// says of the same process, in /metrics and in drain's --metrics-file (and
// no process_open_fds: Deno keeps /proc/self from the binary). Also
// the one-line errors of a bad --listen.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { validateBody } from "../../src/validate.ts";
import { failureLine, runCli } from "../helpers/cli.ts";
import { delay, startConsumer } from "../helpers/consumers.ts";
import { listenedPort } from "../helpers/faults.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
} from "../helpers/services.ts";
import { targetOf, TcpProxy, viaProxy } from "../helpers/tcp_proxy.ts";

/** Samples of the exposition text by series, e.g. `login_etl_messages_rejected_total{reason="bad_ip"}`. */
function parseMetrics(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    series.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return series;
}

function metricNames(text: string): string[] {
  return [...text.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1] as string).sort();
}

async function get(port: number, path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, text: await response.text() };
}

async function waitFor<T>(
  what: string,
  timeoutMs: number,
  attempt: () => Promise<T | null>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt().catch(() => null);
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(100);
  }
}

const REJECTED = "login_etl_messages_rejected_total";

Deno.test("run --listen: /metrics during a run ends equal to the summary; /healthz; /readyz follows the database", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  await using pg = TcpProxy.start(targetOf(DATABASE_URL));
  const queueUrl = sqs.createQueue();
  const bodies = [...generateBodies(3000, { badRatio: 0.1, seed: 20261125 })];
  enqueue(sqs, queueUrl, bodies);
  const rejectsByReason: Record<string, number> = {};
  for (const body of bodies) {
    const verdict = validateBody(body, 65536);
    if (!verdict.ok) {
      rejectsByReason[verdict.rejection.reason] = (rejectsByReason[verdict.rejection.reason] ?? 0) +
        1;
    }
  }
  const rejects = Object.values(rejectsByReason).reduce((a, b) => a + b, 0);
  const valid = bodies.length - rejects;
  assert.ok(rejects > 100 && valid > 2000, "the load has both kinds");

  const started = Date.now() / 1000;
  const consumer = startConsumer([
    "run",
    "--queue-url",
    queueUrl,
    "--listen",
    "127.0.0.1:0",
    "--summary-json",
    "--wait-seconds",
    "1",
    "--max-rows",
    "250",
    "--writers",
    "1",
  ], {
    PII_HMAC_KEY: TEST_SECRET,
    DATABASE_URL: viaProxy(DATABASE_URL, pg),
    ...db.env,
  });
  let stopped = false;
  try {
    const port = await listenedPort(consumer);
    const health = await waitFor("/healthz", 30_000, async () => {
      const r = await get(port, "/healthz");
      return r.status === 200 ? r : null;
    });
    assert.deepEqual(JSON.parse(health.text), { status: "ok" });

    // Scrape while the run works: counters never go down, until every valid message is a row.
    const scrapes: Map<string, number>[] = [];
    await waitFor("every valid message inserted", 60_000, async () => {
      const r = await get(port, "/metrics");
      assert.equal(r.status, 200);
      const series = parseMetrics(r.text);
      scrapes.push(series);
      return series.get("login_etl_rows_inserted_total") === valid ? series : null;
    });
    for (let i = 1; i < scrapes.length; i++) {
      for (const [name, value] of scrapes[i - 1] as Map<string, number>) {
        if (!name.includes("_total") && !name.includes("_count")) continue;
        assert.ok((scrapes[i]?.get(name) ?? 0) >= value, `${name} went down`);
      }
    }

    const ready = await get(port, "/readyz");
    assert.equal(ready.status, 200, ready.text);
    assert.deepEqual(JSON.parse(ready.text), {
      status: "ready",
      checks: { queue: "ok", database: "ok" },
    });

    // The database goes away: not ready, naming the check and nothing of the error; then back.
    pg.setMode("reset");
    const down = await waitFor("/readyz 503", 20_000, async () => {
      const r = await get(port, "/readyz");
      return r.status === 503 ? r : null;
    });
    assert.equal(down.text.trimEnd().split("\n").length, 1);
    const answer = JSON.parse(down.text) as { status: string; checks: Record<string, string> };
    assert.equal(answer.status, "unavailable");
    assert.equal(answer.checks["database"], "failed");
    assert.doesNotMatch(down.text, /postgres:postgres@|127\.0\.0\.1|ECONN/, "no error text");
    assert.equal((await get(port, "/healthz")).status, 200, "still alive");
    pg.setMode("pass");
    await waitFor("/readyz 200 again", 30_000, async () => {
      const r = await get(port, "/readyz");
      return r.status === 200 ? r : null;
    });

    // The queue is empty and every message deleted: the last scrape before SIGTERM.
    const final = await waitFor("every message deleted", 30_000, async () => {
      const r = await get(port, "/metrics");
      const series = parseMetrics(r.text);
      return series.get("login_etl_messages_deleted_total") === bodies.length
        ? { series, text: r.text }
        : null;
    });
    consumer.child.kill("SIGTERM");
    stopped = true;
    const result = await consumer.done;
    assert.equal(result.code, 0, result.stderr.slice(-3000));
    // Why /readyz said no is in the log, for operators, not in the HTTP answer.
    assert.match(result.stderr, /"event":"NotReady".*"reason":"database: /);
    const summary = JSON.parse(result.stdout) as {
      received: number;
      inserted: number;
      redelivered: number;
      rejected: number;
      "rejected_by_reason": Record<string, number>;
      deleted: number;
      "delete_failed": number;
      "in_flight": number;
    };
    const m = final.series;
    assert.equal(m.get("login_etl_messages_received_total"), summary.received);
    assert.equal(m.get("login_etl_rows_inserted_total"), summary.inserted);
    assert.equal(m.get("login_etl_messages_redelivered_total"), summary.redelivered);
    assert.equal(m.get("login_etl_messages_deleted_total"), summary.deleted);
    assert.equal(m.get("login_etl_delete_failures_total"), summary.delete_failed);
    assert.equal(m.get("login_etl_messages_in_flight"), summary.in_flight);
    const scrapedByReason: Record<string, number> = {};
    for (const [name, value] of m) {
      const reasonLabel = /^login_etl_messages_rejected_total\{reason="(\w+)"\}$/.exec(name)?.[1];
      if (reasonLabel !== undefined && value > 0) scrapedByReason[reasonLabel] = value;
    }
    assert.deepEqual(scrapedByReason, summary.rejected_by_reason);
    // And both equal what was sent.
    assert.equal(summary.received, bodies.length);
    assert.equal(summary.inserted, valid);
    assert.deepEqual(summary.rejected_by_reason, rejectsByReason);
    // Every delivery went through a transaction; the gauges say so too.
    assert.equal(m.get("login_etl_batch_messages_sum"), summary.received);
    assert.equal(
      m.get("login_etl_commit_duration_seconds_count"),
      m.get("login_etl_batch_messages_count"),
    );
    assert.ok((m.get("login_etl_batch_messages_count") ?? 0) >= bodies.length / 250);
    assert.equal(m.get("login_etl_queue_depth_messages"), 0, "refreshed by the /readyz probes");
    const lastCommit = m.get("login_etl_last_commit_timestamp_seconds") ?? 0;
    assert.ok(lastCommit >= started && lastCommit <= Date.now() / 1000, `${lastCommit}`);
    assert.equal(m.get(`${REJECTED}{reason="poison"}`), 0, "every reason has a series");
    assert.deepEqual(metricNames(final.text), [
      "login_etl_batch_messages",
      "login_etl_build_info",
      "login_etl_commit_duration_seconds",
      "login_etl_delete_failures_total",
      "login_etl_last_commit_timestamp_seconds",
      "login_etl_messages_deleted_total",
      "login_etl_messages_in_flight",
      "login_etl_messages_received_total",
      "login_etl_messages_redelivered_total",
      "login_etl_messages_refused_total",
      "login_etl_messages_rejected_total",
      "login_etl_queue_depth_messages",
      "login_etl_receive_loops",
      "login_etl_rows_inserted_total",
      "login_etl_stage_failures_total",
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "process_start_time_seconds",
    ]);
    // The server is gone with the process.
    await assert.rejects(() => get(port, "/healthz"));
    reportFigures("run --listen", {
      messages: bodies.length,
      scrapes_during_run: scrapes.length,
      inserted: summary.inserted,
      rejected: summary.rejected,
      batches: m.get("login_etl_batch_messages_count"),
      not_ready_checks: answer.checks,
    });
  } finally {
    if (!stopped) {
      consumer.child.kill("SIGKILL");
      await consumer.done;
    }
  }
});

Deno.test("run with a bad --listen exits 2 with one line", async (t) => {
  const env = { PII_HMAC_KEY: TEST_SECRET, SQS_QUEUE_URL: "http://127.0.0.1:9/000000000000/q" };
  await t.step("not an address", async () => {
    const result = await runCli(["run", "--listen", "9464"], { env });
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr.trimEnd().split("\n").length, 1, result.stderr);
    assert.match(failureLine(result), /^error: Invalid --listen "9464": must be :PORT, HOST:PORT/);
  });
  await t.step("an address in use", async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const result = await runCli(
      ["run", "--listen", `127.0.0.1:${listener.addr.port}`, "--log-level", "error"],
      { env },
    );
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      failureLine(result),
      /^error: Cannot listen on --listen "127\.0\.0\.1:\d+": the address is in use; pick another port$/,
    );
  });
});

/** What Linux says of a process, as `ps` reads it: resident bytes and CPU seconds. */
async function procStats(pid: number): Promise<{ rss: number; cpu: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const rssKb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
  // Fields after the command name, which may hold spaces: utime and stime are the 12th and 13th.
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  const clock = new TextDecoder().decode(
    (await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output()).stdout,
  );
  return { rss: rssKb * 1024, cpu: ticks / Number(clock.trim()) };
}

const PROCESS_METRICS = [
  "process_cpu_seconds_total",
  "process_resident_memory_bytes",
  "process_start_time_seconds",
];

Deno.test({
  name: "run --listen and drain --metrics-file expose the process's own memory, CPU and start time",
  ignore: Deno.build.os !== "linux",
  fn: async (t) => {
    await using sqs = await startSqs();
    await using db = await freshSchema();
    const queueUrl = sqs.createQueue();
    const env = {
      PII_HMAC_KEY: TEST_SECRET,
      DATABASE_URL,
      LOGIN_ETL_SCHEMA: db.schema,
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
    };
    await t.step("run --listen: values the kernel agrees with, CPU growing with work", async () => {
      const spawnedAt = Date.now() / 1000;
      const consumer = startConsumer(
        ["run", "--queue-url", queueUrl, "--listen", "127.0.0.1:0", "--wait-seconds", "1"],
        env,
      );
      try {
        const port = await listenedPort(consumer);
        const first = await waitFor("/metrics", 30_000, async () => {
          const r = await get(port, "/metrics");
          return r.status === 200 ? parseMetrics(r.text) : null;
        });
        const scrapedAt = Date.now() / 1000;
        const kernel = await procStats(consumer.child.pid);
        const rss = first.get("process_resident_memory_bytes") ?? 0;
        assert.ok(rss > 20 * 2 ** 20, `RSS ${rss}`);
        assert.ok(
          Math.abs(rss - kernel.rss) < 0.25 * kernel.rss,
          `RSS ${rss}, VmRSS ${kernel.rss}`,
        );
        const start = first.get("process_start_time_seconds") ?? 0;
        assert.ok(start >= spawnedAt - 1 && start <= scrapedAt, `start ${start}`);
        const cpu1 = first.get("process_cpu_seconds_total") ?? 0;
        assert.ok(cpu1 > 0 && cpu1 <= kernel.cpu + 0.05, `CPU ${cpu1}, kernel ${kernel.cpu}`);
        assert.ok(cpu1 >= kernel.cpu - 1, `CPU ${cpu1}, kernel ${kernel.cpu} later`);

        enqueue(sqs, queueUrl, [...generateBodies(2000, { badRatio: 0, seed: 18 })]);
        const second = await waitFor("2000 rows", 60_000, async () => {
          const series = parseMetrics((await get(port, "/metrics")).text);
          return series.get("login_etl_rows_inserted_total") === 2000 ? series : null;
        });
        const cpu2 = second.get("process_cpu_seconds_total") ?? 0;
        assert.ok(cpu2 > cpu1, `CPU ${cpu1} then ${cpu2}`);
        assert.equal(second.get("process_start_time_seconds"), start, "the start time stays");
        reportFigures("process metrics of run --listen", {
          rss_mib: Math.round(rss / 2 ** 20),
          vmrss_mib: Math.round(kernel.rss / 2 ** 20),
          cpu_s_idle: cpu1,
          cpu_s_after_2000: cpu2,
        });
      } finally {
        consumer.child.kill("SIGTERM");
        const result = await consumer.done;
        assert.equal(result.code, 0, result.stderr.slice(-2000));
      }
    });
    await t.step("drain --metrics-file holds them too", async () => {
      const dir = await Deno.makeTempDir();
      try {
        const startedAt = Date.now() / 1000;
        const result = await runCli(
          ["drain", "--queue-url", queueUrl, "--metrics-file", `${dir}/m.prom`],
          { env },
        );
        assert.equal(result.code, 0, result.stderr);
        const text = await Deno.readTextFile(`${dir}/m.prom`);
        const series = parseMetrics(text);
        for (const name of PROCESS_METRICS) assert.ok(metricNames(text).includes(name), name);
        assert.ok((series.get("process_resident_memory_bytes") ?? 0) > 20 * 2 ** 20);
        assert.ok((series.get("process_cpu_seconds_total") ?? 0) > 0);
        const start = series.get("process_start_time_seconds") ?? 0;
        assert.ok(start >= startedAt - 1 && start <= Date.now() / 1000, `start ${start}`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});
