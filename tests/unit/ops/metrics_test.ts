// Unit tests of src/ops/metrics.ts: the exposed names are exactly those the
// dashboard and alerts read (the list in tests/repo/deploy_test.ts), each
// event moves the metrics it concerns (through the one event table), the
// metrics agree with the run's summary, and the per-batch cost is measured.

import assert from "node:assert/strict";
import { silentLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/ops/metrics.ts";
import { startBatchSpan } from "../../../src/ops/tracing.ts";
import { Telemetry, type TelemetryEvent } from "../../../src/ops/telemetry.ts";
import { zeroCounters } from "../../../src/ops/events.ts";
import { reportFigures } from "../../helpers/common.ts";
import { REJECT_REASONS } from "../../../src/types.ts";

/** One sample line of the exposition text: `name{a="b"} value`. */
interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type?.[1] !== undefined && type[2] !== undefined) types.set(type[1], type[2]);
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match?.[1] !== undefined && match[3] !== undefined, `unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key as string] = value as string;
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return { samples, types };
}

function valueOf(
  samples: readonly Sample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  const found = samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  assert.ok(found !== undefined, `no sample ${name} ${JSON.stringify(labels)}`);
  return found.value;
}

/** A run's telemetry with metrics attached, as `run --listen` has them. */
function metered(now?: () => number): { telemetry: Telemetry; metrics: Metrics } {
  const telemetry = new Telemetry(silentLogger);
  const metrics = new Metrics(telemetry.counters, now === undefined ? {} : { now });
  telemetry.addObserver(metrics);
  return { telemetry, metrics };
}

/** The metric lists of tests/repo/deploy_test.ts, read from its source so the two cannot drift. */
function deployTestLists(): Record<"COUNTERS" | "HISTOGRAMS" | "GAUGES", string[]> {
  const source = Deno.readTextFileSync(new URL("../../repo/deploy_test.ts", import.meta.url));
  const list = (name: string) => {
    const match = new RegExp(`const ${name} = \\[([^\\]]*)\\]`).exec(source);
    assert.ok(match?.[1] !== undefined, `deploy_test.ts has no ${name} list`);
    return [...match[1].matchAll(/"([a-z_]+)"/g)].map((m) => m[1] as string);
  };
  return { COUNTERS: list("COUNTERS"), HISTOGRAMS: list("HISTOGRAMS"), GAUGES: list("GAUGES") };
}

Deno.test("Metrics exposes exactly the metrics deploy_test.ts lists, each of its type", async () => {
  const lists = deployTestLists();
  assert.equal(lists.COUNTERS.length + lists.HISTOGRAMS.length + lists.GAUGES.length, 18);
  const { types } = parseExposition(await new Metrics(zeroCounters()).expose());
  const expected = new Map<string, string>([
    ...lists.COUNTERS.map((n) => [n, "counter"] as const),
    ...lists.HISTOGRAMS.map((n) => [n, "histogram"] as const),
    ...lists.GAUGES.map((n) => [n, "gauge"] as const),
  ]);
  assert.deepEqual(
    [...types].sort(([a], [b]) => a.localeCompare(b)),
    [...expected].sort(([a], [b]) => a.localeCompare(b)),
  );
});

Deno.test("Metrics gives each instance its own registry", async () => {
  const a = metered();
  const b = metered();
  a.telemetry.emit({ type: "BatchReceived", messages: 5 });
  const sa = parseExposition(await a.metrics.expose()).samples;
  const sb = parseExposition(await b.metrics.expose()).samples;
  assert.equal(valueOf(sa, "login_etl_messages_received_total"), 5);
  assert.equal(valueOf(sb, "login_etl_messages_received_total"), 0);
  assert.notEqual(a.metrics.registry, b.metrics.registry);
});

Deno.test("Metrics starts every reject reason at zero and the last commit at the start time", async () => {
  const { metrics } = metered(() => 1_700_000_000_000);
  const { samples } = parseExposition(await metrics.expose());
  const reasons = samples.filter((s) => s.name === "login_etl_messages_rejected_total");
  assert.deepEqual(reasons.map((s) => s.labels.reason).sort(), [...REJECT_REASONS].sort());
  assert.ok(reasons.every((s) => s.value === 0));
  assert.equal(valueOf(samples, "login_etl_last_commit_timestamp_seconds"), 1_700_000_000);
  assert.equal(valueOf(samples, "login_etl_messages_in_flight"), 0);
});

Deno.test("Telemetry.emit() moves the metrics each event concerns", async (t) => {
  let clock = 1_000_000;
  const cases: {
    name: string;
    events: TelemetryEvent[];
    expected: [string, Record<string, string>, number][];
  }[] = [
    {
      name: "BatchReceived counts deliveries and in-flight messages",
      events: [{ type: "BatchReceived", messages: 10 }, { type: "BatchReceived", messages: 3 }],
      expected: [
        ["login_etl_messages_received_total", {}, 13],
        ["login_etl_messages_in_flight", {}, 13],
      ],
    },
    {
      name: "BatchCommitted counts rows and redeliveries, observes size and latency",
      events: [
        { type: "BatchReceived", messages: 10 },
        { type: "BatchCommitted", messages: 10, inserted: 7, redelivered: 1, durationMs: 40 },
      ],
      expected: [
        ["login_etl_rows_inserted_total", {}, 7],
        ["login_etl_messages_redelivered_total", {}, 1],
        ["login_etl_messages_in_flight", {}, 0],
        ["login_etl_batch_messages_count", {}, 1],
        ["login_etl_batch_messages_sum", {}, 10],
        ["login_etl_batch_messages_bucket", { le: "5" }, 0],
        ["login_etl_batch_messages_bucket", { le: "10" }, 1],
        ["login_etl_commit_duration_seconds_sum", {}, 0.04],
        ["login_etl_commit_duration_seconds_bucket", { le: "0.025" }, 0],
        ["login_etl_commit_duration_seconds_bucket", { le: "0.05" }, 1],
        ["login_etl_last_commit_timestamp_seconds", {}, 2000],
      ],
    },
    {
      name: "MessagesRejected counts by reason",
      events: [
        { type: "MessagesRejected", byReason: { bad_ip: 2, not_json: 1 }, ids: ["a", "b", "c"] },
        { type: "MessagesRejected", byReason: { bad_ip: 1 }, ids: ["d"] },
      ],
      expected: [
        ["login_etl_messages_rejected_total", { reason: "bad_ip" }, 3],
        ["login_etl_messages_rejected_total", { reason: "not_json" }, 1],
        ["login_etl_messages_rejected_total", { reason: "poison" }, 0],
      ],
    },
    {
      name: "MessagesDeleted and DeleteFailed count messages, not events or logged ids",
      events: [
        { type: "MessagesDeleted", count: 10 },
        { type: "DeleteFailed", count: 25, ids: ["a", "b"], code: "ReceiptHandleIsInvalid" },
      ],
      expected: [
        ["login_etl_messages_deleted_total", {}, 10],
        ["login_etl_delete_failures_total", {}, 25],
      ],
    },
    {
      name: "StageFailed counts by stage and code",
      events: [
        {
          type: "StageFailed",
          stage: "write",
          code: "db_write",
          message: "x",
          attempt: 1,
          retryInMs: 100,
          messages: 10,
        },
        {
          type: "StageFailed",
          stage: "write",
          code: "db_write",
          message: "x",
          attempt: 2,
          retryInMs: null,
          messages: 10,
        },
      ],
      expected: [["login_etl_stage_failures_total", { stage: "write", code: "db_write" }, 2]],
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      clock = 1_000_000;
      const { telemetry, metrics } = metered(() => clock);
      clock = 2_000_000;
      for (const event of c.events) telemetry.emit(event);
      const { samples } = parseExposition(await metrics.expose());
      for (const [name, labels, value] of c.expected) {
        assert.equal(valueOf(samples, name, labels), value, `${name} ${JSON.stringify(labels)}`);
      }
    });
  }
});

Deno.test("Metrics.setQueueDepth() sets the queue depth gauge", async () => {
  const { metrics } = metered();
  metrics.setQueueDepth(37_600);
  assert.equal(
    valueOf(parseExposition(await metrics.expose()).samples, "login_etl_queue_depth_messages"),
    37_600,
  );
});

/** A run's events in pipeline order: receives of ten, commits of 100, some rejects and retries. */
function* runEvents(batches: number): Generator<TelemetryEvent> {
  for (let b = 0; b < batches; b++) {
    for (let r = 0; r < 10; r++) yield { type: "BatchReceived", messages: 10 };
    yield { type: "BatchCommitted", messages: 100, inserted: 93, redelivered: 2, durationMs: 12 };
    yield { type: "MessagesRejected", byReason: { bad_ip: 3, not_json: 2 }, ids: ["x"] };
    yield { type: "MessagesDeleted", count: 100 };
    if (b % 7 === 0) {
      yield {
        type: "StageFailed",
        stage: "receive",
        code: "sqs_receive",
        message: "throttled",
        attempt: 1,
        retryInMs: 100,
        messages: 0,
      };
    }
  }
}

Deno.test("Telemetry.emit() keeps the metrics equal to the summary's counters", async () => {
  const { telemetry, metrics } = metered();
  for (const event of runEvents(50)) telemetry.emit(event);
  telemetry.emit({ type: "BatchReceived", messages: 10 });
  const summary = telemetry.summary();
  const { samples } = parseExposition(await metrics.expose());
  assert.equal(valueOf(samples, "login_etl_messages_received_total"), summary.received);
  assert.equal(valueOf(samples, "login_etl_rows_inserted_total"), summary.inserted);
  assert.equal(valueOf(samples, "login_etl_messages_redelivered_total"), summary.redelivered);
  assert.equal(valueOf(samples, "login_etl_messages_deleted_total"), summary.deleted);
  for (const [reason, n] of Object.entries(summary.rejected_by_reason)) {
    assert.equal(valueOf(samples, "login_etl_messages_rejected_total", { reason }), n);
  }
  assert.equal(
    valueOf(samples, "login_etl_stage_failures_total", { stage: "receive", code: "sqs_receive" }),
    telemetry.counters.stageFailures.receive,
  );
  assert.equal(valueOf(samples, "login_etl_messages_in_flight"), summary.in_flight);
});

Deno.test("the metrics sink and the batch span cost microseconds per batch (figures reported)", () => {
  // A batch of 100 messages is ten receives, a commit, a reject and a delete
  // event; the figures are printed, timing decides no pass.
  const batches = 20_000;
  const events = [...runEvents(batches)];
  const time = (telemetry: Telemetry, spans: boolean) => {
    const started = performance.now();
    for (const event of events) {
      telemetry.emit(event);
      if (spans && event.type === "BatchCommitted") {
        const span = startBatchSpan(event.messages);
        span.record({ inserted: event.inserted, redelivered: event.redelivered, writeMs: 1.234 });
        span.end();
      }
    }
    return ((performance.now() - started) * 1000) / batches;
  };
  // Warm up both paths before measuring.
  time(new Telemetry(silentLogger), false);
  const warm = new Telemetry(silentLogger);
  warm.addObserver(new Metrics(warm.counters));
  time(warm, true);

  const bare = time(new Telemetry(silentLogger), false);
  const withMetrics = new Telemetry(silentLogger);
  withMetrics.addObserver(new Metrics(withMetrics.counters));
  const metered = time(withMetrics, false);
  const withBoth = new Telemetry(silentLogger);
  withBoth.addObserver(new Metrics(withBoth.counters));
  const traced = time(withBoth, true);
  reportFigures("telemetry cost per 100-message batch (us)", {
    counters_and_log_calls: Math.round(bare * 100) / 100,
    plus_prometheus: Math.round(metered * 100) / 100,
    plus_prometheus_and_span_otel_off: Math.round(traced * 100) / 100,
    metrics_overhead_us: Math.round((metered - bare) * 100) / 100,
  });
  assert.ok(Number.isFinite(metered));
});

Deno.test("Metrics names the build in login_etl_build_info, and a finished batch run its outcome", async () => {
  const { metrics } = metered(() => 1_700_000_000_000);
  const before = parseExposition(await metrics.expose()).samples;
  const info = before.filter((s) => s.name === "login_etl_build_info");
  assert.equal(info.length, 1);
  assert.equal(info[0]?.value, 1);
  assert.equal(info[0]?.labels.deno, Deno.version.deno);
  assert.match(info[0]?.labels.version ?? "", /^\d+\.\d+\.\d+/);
  assert.ok(!before.some((s) => s.name === "login_etl_run_succeeded"), "no outcome before the end");
  metrics.finished(false);
  const after = parseExposition(await metrics.expose()).samples;
  assert.equal(valueOf(after, "login_etl_run_succeeded"), 0);
  assert.equal(valueOf(after, "login_etl_run_finished_timestamp_seconds"), 1_700_000_000);
});
