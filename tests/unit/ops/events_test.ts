// Unit tests of src/ops/events.ts: the log fields every event writes. One
// sample of each event type (the type below makes a new event fail to
// compile until it has one), with fractional times wherever an event takes a
// time, emitted through the real logger in JSON and in text.

import assert from "node:assert/strict";
import { type EventType, type Summary, type TelemetryEvent } from "../../../src/ops/events.ts";
import { Telemetry } from "../../../src/ops/telemetry.ts";
import { createLogger } from "../../../src/log.ts";

/** A run summary as a pipeline that measured with `performance.now()` could hand over. */
const SUMMARY: Summary = {
  received: 12,
  inserted: 10,
  redelivered: 1,
  rejected: 1,
  "rejected_by_reason": { not_json: 1 },
  deleted: 12,
  "delete_failed": 0,
  "in_flight": 0,
  "duration_ms": 1520.734911,
  "active_ms": 1012.250001,
  "msgs_per_s": 11.85,
  balanced: true,
  returned: 0,
  "return_failed": 0,
  "stopped_at_bound": null,
};

/** One event of every type; times carry fractions, as `performance.now()` differences do. */
const SAMPLES: { readonly [K in EventType]: Extract<TelemetryEvent, { type: K }> } = {
  RunStarted: {
    type: "RunStarted",
    fields: { command: "drain", "visibility_timeout_s": 30, concurrency: 8 },
  },
  RunFinished: { type: "RunFinished", summary: SUMMARY },
  ShutdownRequested: { type: "ShutdownRequested", signal: "SIGTERM" },
  ShutdownForced: { type: "ShutdownForced" },
  RejectLimitExceeded: { type: "RejectLimitExceeded", rejected: 5, limit: 2 },
  MetricsFileWritten: { type: "MetricsFileWritten", path: "/tmp/m.prom" },
  ProgressReported: { type: "ProgressReported", summary: SUMMARY, queueDepth: 40 },
  ConfigWarned: { type: "ConfigWarned", message: "a warning" },
  VaultKeyReadable: { type: "VaultKeyReadable", keyIds: ["v1", "p1"], sealing: true },
  RunFailed: {
    type: "RunFailed",
    code: "db_connect",
    message: "Cannot connect to Postgres at postgres://etl@127.0.0.1:1/db",
    exitCode: 1,
  },
  BatchReceived: { type: "BatchReceived", messages: 10 },
  BatchCommitted: {
    type: "BatchCommitted",
    messages: 10,
    inserted: 9,
    redelivered: 1,
    durationMs: 18.402117,
  },
  MessagesRejected: { type: "MessagesRejected", byReason: { not_json: 1 }, ids: ["m-1"] },
  MessagesRefused: { type: "MessagesRefused", bySqlstate: { "22021": 1 } },
  RejectsCopied: { type: "RejectsCopied", count: 1 },
  RejectCopyFailed: { type: "RejectCopyFailed", count: 1, ids: ["m-1"], code: "sqs_send" },
  MessagesDeleted: { type: "MessagesDeleted", count: 10 },
  RegionOverridden: {
    type: "RegionOverridden",
    region: "eu-west-1",
    configured: "us-east-1",
    configuredFrom: "AWS config",
  },
  BoundReached: { type: "BoundReached", bound: "max-messages", taken: 137 },
  MessagesReturned: { type: "MessagesReturned", count: 3 },
  ReturnFailed: { type: "ReturnFailed", count: 3, code: "sqs_visibility" },
  VisibilityExtended: { type: "VisibilityExtended", count: 10 },
  ExtendFailed: { type: "ExtendFailed", count: 10, code: "sqs_receive" },
  DeleteFailed: { type: "DeleteFailed", count: 1, ids: ["m-1"], code: "sqs_delete" },
  StageFailed: {
    type: "StageFailed",
    stage: "write",
    code: "db_write",
    message: "Cannot write",
    attempt: 2,
    retryInMs: 2465.699084,
    messages: 10,
  },
  StoreRecovered: { type: "StoreRecovered", afterAttempts: 3 },
  ConcurrencyChanged: {
    type: "ConcurrencyChanged",
    from: 8,
    to: 16,
    reason: "full",
    seen: {
      receives: 90,
      full: 90,
      empty: 0,
      blocked: 0,
      cpuPerSecond: 0.6123,
      lagMs: 3.51,
      intervalMs: 251.37,
    },
  },
  SqsProtocolSwitched: { type: "SqsProtocolSwitched", protocol: "query", reason: "asked" },
  SentTimestampMissing: { type: "SentTimestampMissing", receivedAtMs: 1_790_000_000_123.456 },
  QueueSeeded: {
    type: "QueueSeeded",
    sent: 100,
    seed: 7,
    badRatio: 0.05,
    durationMs: 310.987654,
    queueUrl: "http://127.0.0.1:1/000000000000/q",
  },
  SchemaMigrated: {
    type: "SchemaMigrated",
    version: 3,
    name: "ledger partitions",
    schema: "public",
    ms: 41.3333,
  },
  SchemaReady: { type: "SchemaReady", schema: "public", applied: 5 },
  KeyRegistered: { type: "KeyRegistered", keyId: "k1" },
  RowsPruned: {
    type: "RowsPruned",
    target: "ledger",
    deleted: 4,
    partitionsCreated: 1,
    partitionsDropped: 1,
  },
  PruneFailed: { type: "PruneFailed", target: "rejects", code: "db_write" },
  ListenStarted: { type: "ListenStarted", address: "127.0.0.1:9464" },
  NotReady: { type: "NotReady", reason: "database: refused" },
  ValuesRecovered: { type: "ValuesRecovered", recovered: 1, notFound: 0, erased: 0, failed: 0 },
  RekeySkipped: { type: "RekeySkipped", what: "rows", masked: "k1:abc", why: "mismatch" },
  RekeyBatchCommitted: { type: "RekeyBatchCommitted", what: "rows", count: 5, keyId: "k2" },
  InboxEntryRefused: { type: "InboxEntryRefused", masked: "k1:abc", why: "mismatch" },
  InboxMerged: {
    type: "InboxMerged",
    accepted: 3,
    known: 1,
    erased: 1,
    dropped: 1,
    kept: 0,
    expired: 2,
  },
};

/**
 * A field holding a duration, by the naming rule of the log fields: a unit
 * suffix (`_ms`, `_s`, `_seconds`) or `ms` alone. `msgs_per_s` is a rate.
 */
function isDuration(key: string): boolean {
  return /(^|_)(ms|s|seconds)$/.test(key) && !/_per_s$/.test(key);
}

/** Every event's log lines, in the given format, at the debug level so none is dropped. */
function linesOf(format: "json" | "text"): string[] {
  const lines: string[] = [];
  const telemetry = new Telemetry(
    createLogger({ format, level: "debug", write: (l) => lines.push(l) }),
  );
  for (const event of Object.values(SAMPLES)) telemetry.emit(event);
  return lines;
}

Deno.test("every event's duration fields are whole milliseconds or seconds in JSON", async (t) => {
  const durations = new Set<string>();
  for (const line of linesOf("json")) {
    const record = JSON.parse(line) as Record<string, unknown>;
    for (const [key, value] of Object.entries(record)) {
      if (!isDuration(key) || value === null) continue;
      durations.add(`${String(record["event"])}.${key}`);
      await t.step(`${String(record["event"])} ${key}=${String(value)}`, () => {
        assert.equal(typeof value, "number");
        assert.ok(Number.isInteger(value), `${key} carries a fraction: ${String(value)}`);
      });
    }
  }
  // The samples reach every event that logs a time, so the checks above ran on them.
  for (
    const field of [
      "StageFailed.retry_in_ms",
      "BatchCommitted.duration_ms",
      "QueueSeeded.duration_ms",
      "SchemaMigrated.ms",
      "RunFinished.duration_ms",
      "RunFinished.active_ms",
      "ConcurrencyChanged.lag_ms",
      "ConcurrencyChanged.interval_ms",
    ]
  ) assert.ok(durations.has(field), `no ${field} in the lines`);
});

Deno.test("every event's duration fields are whole numbers in text lines", () => {
  const lines = linesOf("text");
  for (const line of lines) {
    for (const [, key, value] of line.matchAll(/\b(\w+)=(-?[\d.]+)(?=\s|$)/g)) {
      if (isDuration(key ?? "")) assert.match(value ?? "", /^-?\d+$/, `${key} in: ${line}`);
    }
  }
});

Deno.test("RunFailed is an error record with code and exit_code in JSON, and today's error line in text", async (t) => {
  const failed = SAMPLES.RunFailed;
  const emit = (format: "json" | "text", level: "info" | "error", event: TelemetryEvent) => {
    const lines: string[] = [];
    new Telemetry(createLogger({ format, level, write: (l) => lines.push(l) })).emit(event);
    return lines;
  };
  await t.step("JSON: level error, the message, code and exit_code", () => {
    const [line, ...rest] = emit("json", "error", failed);
    assert.deepEqual(rest, []);
    const { ts, ...record } = JSON.parse(line ?? "") as Record<string, unknown>;
    assert.equal(typeof ts, "string");
    assert.deepEqual(record, {
      level: "error",
      event: "RunFailed",
      msg: failed.message,
      code: "db_connect",
      "exit_code": 1,
    });
  });
  await t.step("text: the error line alone", () => {
    assert.deepEqual(emit("text", "info", failed), [`error: ${failed.message}`]);
  });
  await t.step("a bug's stack, given with --verbose, follows in both", () => {
    const bug = { ...failed, code: "internal", stack: "TypeError: x\n    at f (a.ts:1:1)" };
    assert.equal(JSON.parse(emit("json", "info", bug)[0] ?? "").stack, bug.stack);
    assert.deepEqual(emit("text", "info", bug), [`error: ${failed.message}\n${bug.stack}`]);
  });
  await t.step("a message with newlines cannot forge a line through the stack's head", () => {
    const forged = "x\n12:00:00 INFO  finished 0 messages";
    const bug = {
      ...failed,
      code: "internal",
      message: forged,
      stack: `Error: ${forged}\n    at f (a.ts:1:1)`,
    };
    const [text] = emit("text", "info", bug);
    assert.deepEqual(text?.split("\n"), [
      "error: x\\n12:00:00 INFO  finished 0 messages",
      "Error: x\\n12:00:00 INFO  finished 0 messages",
      "    at f (a.ts:1:1)",
    ]);
  });
});

Deno.test("text lines are a person's: times with units, counts grouped, no message ids, start-up summed up", async (t) => {
  const lines = linesOf("text");
  const text = lines.join("\n");
  await t.step("durations rounded with a unit", () => {
    assert.match(
      text,
      /Cannot write \(write, db_write, attempt 2, 10 messages held\); retry in 2\.5 s$/m,
    );
    assert.match(text, /committed a batch of 10 messages in 18 ms$/m);
    assert.doesNotMatch(text, /\d\.\d{3,}/, "no raw float");
  });
  await t.step("no message id: MessagesRejected hidden, delete and copy failures counted", () => {
    assert.doesNotMatch(text, /\bm-1\b/);
    assert.doesNotMatch(text, /WARN {2}messages rejected/);
    assert.match(text, /could not delete 1 message \(sqs_delete\)/);
  });
  await t.step(
    "start-up: schema ready in place of each migration, the key, no routine prune",
    () => {
      assert.match(text, /schema public ready \(5 migrations applied\)$/m);
      assert.doesNotMatch(text, /applied schema migration/);
      assert.match(text, /key k1 registered$/m);
      assert.match(text, /pruned 4 old ledger rows$/m);
    },
  );
  await t.step("the run's last line: done, rate and rejects by reason", () => {
    assert.match(
      text,
      /finished 12 messages in 1\.5 s \(12 msg\/s\): 10 inserted, 1 redelivered, 1 rejected\n\S+ INFO {2}rejected by reason: 1 not_json$/m,
    );
  });
  await t.step("SchemaReady is a text line only; JSON keeps each SchemaMigrated", () => {
    const events = linesOf("json").map((l) => JSON.parse(l).event);
    assert.ok(!events.includes("SchemaReady"));
    assert.ok(events.includes("SchemaMigrated"));
  });
});

Deno.test("the start line says what drains from where into where", () => {
  const lines: string[] = [];
  new Telemetry(createLogger({ format: "text", level: "info", write: (l) => lines.push(l) })).emit({
    type: "RunStarted",
    fields: {
      command: "drain",
      "queue_url": "http://127.0.0.1:4566/000000000000/login-queue",
      endpoint: "http://127.0.0.1:4566",
      database: "postgres://etl@db:5432/analytics (sslmode=verify-full, from DATABASE_URL)",
      "key_id": "k1",
      "queue_depth": 1000,
    },
  });
  assert.match(
    lines[0] ?? "",
    / INFO {2}draining login-queue from 127\.0\.0\.1:4566 into etl@db:5432\/analytics$/,
  );
});
