// Unit tests of src/ops/telemetry.ts: emit() updates the counters as the
// EVENTS table of src/ops/events.ts says (each counting event from a table
// written here), writes one log line named after the event unless its level
// is null, feeds observers; summary() balances received against finished and
// in flight.

import assert from "node:assert/strict";
import { type Counters, EVENTS, type Observer } from "../../../src/ops/events.ts";
import { Telemetry, type TelemetryEvent } from "../../../src/ops/telemetry.ts";
import { createLogger } from "../../../src/log.ts";
import { capturingTelemetry } from "../../helpers/common.ts";

/** Counters as plain data: maps as objects, zero reject counts left out, times as set or not. */
function snapshot(c: Counters) {
  return {
    ...c,
    rejected: Object.fromEntries(Object.entries(c.rejected).filter(([, n]) => n !== 0)),
    failuresByCode: Object.fromEntries(c.failuresByCode),
    refusedBySqlstate: Object.fromEntries(c.refusedBySqlstate),
    firstReceivedAt: c.firstReceivedAt === null ? null : "set",
    lastFinishedAt: c.lastFinishedAt === null ? null : "set",
  };
}

type Snapshot = ReturnType<typeof snapshot>;

const ZERO: Snapshot = {
  received: 0,
  inserted: 0,
  redelivered: 0,
  rejected: {},
  deleted: 0,
  deleteFailed: 0,
  visibilityExtended: 0,
  batchesCommitted: 0,
  stageFailures: { receive: 0, write: 0, startup: 0 },
  failuresByCode: {},
  refusedBySqlstate: {},
  inFlight: 0,
  returned: 0,
  returnFailed: 0,
  receiveLoops: 0,
  stoppedAtBound: null,
  firstReceivedAt: null,
  lastFinishedAt: null,
};

/** Every event that counts, with the counters it must leave after one emit on fresh ones. */
const COUNTING: { event: TelemetryEvent; changes: Partial<Snapshot> }[] = [
  {
    event: { type: "BatchReceived", messages: 10 },
    changes: { received: 10, inFlight: 10, firstReceivedAt: "set" },
  },
  {
    event: {
      type: "BatchCommitted",
      messages: 8,
      inserted: 6,
      redelivered: 2,
      durationMs: 12.5,
    },
    changes: {
      inserted: 6,
      redelivered: 2,
      batchesCommitted: 1,
      inFlight: -8,
      lastFinishedAt: "set",
    },
  },
  {
    event: { type: "MessagesRejected", byReason: { "bad_ip": 2, "not_json": 1 }, ids: ["a"] },
    changes: { rejected: { "not_json": 1, "bad_ip": 2 } },
  },
  {
    event: { type: "MessagesRefused", bySqlstate: { "23514": 2, "22001": 1 } },
    changes: { refusedBySqlstate: { "23514": 2, "22001": 1 } },
  },
  { event: { type: "MessagesDeleted", count: 9 }, changes: { deleted: 9, lastFinishedAt: "set" } },
  { event: { type: "VisibilityExtended", count: 4 }, changes: { visibilityExtended: 4 } },
  { event: { type: "MessagesReturned", count: 7 }, changes: { returned: 7 } },
  {
    event: { type: "ReturnFailed", count: 2, code: "InternalError" },
    changes: { returnFailed: 2 },
  },
  {
    event: { type: "ConcurrencyChanged", from: 8, to: 16, reason: "full" },
    changes: { receiveLoops: 16 },
  },
  {
    event: { type: "BoundReached", bound: "max-duration", taken: 40 },
    changes: { stoppedAtBound: "max-duration" },
  },
  {
    event: { type: "DeleteFailed", count: 3, ids: ["a", "b"], code: "ReceiptHandleIsInvalid" },
    changes: { deleteFailed: 3 },
  },
  {
    event: {
      type: "StageFailed",
      stage: "write",
      code: "db_write",
      message: "Cannot write a batch of 5 messages: no answer within 300 ms",
      attempt: 1,
      retryInMs: 200,
      messages: 5,
    },
    changes: {
      stageFailures: { ...ZERO.stageFailures, write: 1 },
      failuresByCode: { "write:db_write": 1 },
    },
  },
];

Deno.test("Telemetry starts with every counter at zero", () => {
  assert.deepEqual(snapshot(capturingTelemetry().telemetry.counters), ZERO);
});

Deno.test("emit() updates the counters as the EVENTS table says, and only those", async (t) => {
  for (const { event, changes } of COUNTING) {
    await t.step(`emit() of ${event.type}`, () => {
      const { telemetry } = capturingTelemetry();
      telemetry.emit(event);
      assert.deepEqual(snapshot(telemetry.counters), { ...ZERO, ...changes });
    });
  }
  await t.step("every event with a count entry has a row here", () => {
    const counting = Object.entries(EVENTS).filter(([, spec]) => "count" in spec);
    assert.deepEqual(
      counting.map(([type]) => type).sort(),
      COUNTING.map((c) => c.event.type).sort(),
    );
  });
});

Deno.test("emit() writes one log line named after the event, except for events whose level is null", async (t) => {
  const others: TelemetryEvent[] = [
    { type: "RunStarted", fields: { command: "drain" } },
    { type: "ConfigWarned", message: "a warning" },
    { type: "KeyRegistered", keyId: "k1" },
  ];
  for (const event of [...COUNTING.map((c) => c.event), ...others]) {
    const level = EVENTS[event.type].level;
    const shown = typeof level === "function" ? "by event" : level;
    await t.step(`emit() of ${event.type} (level ${shown})`, () => {
      const { telemetry, lines } = capturingTelemetry();
      telemetry.emit(event);
      if (level === null) {
        assert.deepEqual(lines, [], "counts only");
        return;
      }
      assert.equal(lines.length, 1);
      const record = JSON.parse(lines[0] ?? "");
      assert.equal(record.event, event.type);
      assert.equal(typeof record.msg, "string");
    });
  }
  await t.step("null levels are the per-delivery events", () => {
    const silent = Object.entries(EVENTS).filter(([, spec]) => spec.level === null);
    assert.deepEqual(silent.map(([type]) => type).sort(), ["BatchReceived", "MessagesDeleted"]);
  });
});

Deno.test("emit() logs the event's fields at its level, a level function deciding per event", () => {
  const { telemetry, lines } = capturingTelemetry();
  const failed = {
    type: "StageFailed",
    stage: "receive",
    code: "sqs_receive",
    message: "Cannot receive from the queue",
    attempt: 3,
    messages: 0,
  } as const;
  telemetry.emit({ ...failed, retryInMs: 400 });
  telemetry.emit({ ...failed, retryInMs: null });
  telemetry.emit({ type: "RunStarted", fields: { command: "drain", "key_id": "k1" } });
  const records = lines.map((line) => JSON.parse(line));
  assert.deepEqual(records.map((r) => [r.level, r.event]), [
    ["warn", "StageFailed"],
    ["error", "StageFailed"],
    ["info", "RunStarted"],
  ]);
  assert.equal(records[0].msg, "Cannot receive from the queue");
  assert.deepEqual(
    [records[0].stage, records[0].code, records[0].attempt, records[0].retry_in_ms],
    ["receive", "sqs_receive", 3, 400],
  );
  assert.equal(records[1].retry_in_ms, null, "no retry: given up");
  assert.equal(records[2].key_id, "k1");
  assert.equal(telemetry.counters.stageFailures.receive, 2, "counted either way");
});

Deno.test("emit() counts an event whether or not its line passes the logger's level", () => {
  const lines: string[] = [];
  const logger = createLogger({ format: "json", level: "warn", write: (l) => lines.push(l) });
  const telemetry = new Telemetry(logger);
  telemetry.emit({ type: "BatchReceived", messages: 3 });
  telemetry.emit({
    type: "BatchCommitted",
    messages: 3,
    inserted: 3,
    redelivered: 0,
    durationMs: 5,
  });
  assert.deepEqual(lines, [], "debug below warn");
  assert.equal(telemetry.counters.inserted, 3);
});

Deno.test("emit() feeds observers a committed batch's size and time until they detach", () => {
  const seen: string[] = [];
  const observer: Observer = {
    batchSize: (n) => seen.push(`size ${n}`),
    commitSeconds: (s) => seen.push(`seconds ${s}`),
    committed: () => seen.push("committed"),
  };
  const { telemetry } = capturingTelemetry();
  const detach = telemetry.addObserver(observer);
  const committed = {
    type: "BatchCommitted",
    messages: 8,
    inserted: 8,
    redelivered: 0,
    durationMs: 250,
  } as const;
  telemetry.emit(committed);
  telemetry.emit({ type: "BatchReceived", messages: 8 }); // observes nothing
  detach();
  telemetry.emit(committed);
  assert.deepEqual(seen, ["size 8", "seconds 0.25", "committed"]);
});

Deno.test("summary() balances received against inserted, redelivered, rejected and in flight", async (t) => {
  const cases: {
    name: string;
    events: TelemetryEvent[];
    expected: Record<string, unknown>;
  }[] = [
    {
      name: "a batch committed and deleted",
      events: [
        { type: "BatchReceived", messages: 10 },
        {
          type: "BatchCommitted",
          messages: 10,
          inserted: 6,
          redelivered: 2,
          durationMs: 3,
        },
        { type: "MessagesRejected", byReason: { "bad_ip": 2 }, ids: ["x", "y"] },
        { type: "MessagesDeleted", count: 10 },
      ],
      expected: {
        received: 10,
        inserted: 6,
        redelivered: 2,
        rejected: 2,
        "rejected_by_reason": { "bad_ip": 2 },
        deleted: 10,
        "in_flight": 0,
        balanced: true,
      },
    },
    {
      name: "messages still in flight",
      events: [{ type: "BatchReceived", messages: 4 }],
      expected: {
        received: 4,
        inserted: 0,
        redelivered: 0,
        rejected: 0,
        "rejected_by_reason": {},
        deleted: 0,
        "in_flight": 4,
        balanced: true,
      },
    },
    {
      name: "a commit that left messages unaccounted for",
      events: [
        { type: "BatchReceived", messages: 5 },
        {
          type: "BatchCommitted",
          messages: 5,
          inserted: 3,
          redelivered: 0,
          durationMs: 3,
        },
      ],
      expected: {
        received: 5,
        inserted: 3,
        redelivered: 0,
        rejected: 0,
        "rejected_by_reason": {},
        deleted: 0,
        "in_flight": 0,
        balanced: false,
      },
    },
  ];
  for (const c of cases) {
    await t.step(`summary() after ${c.name}`, () => {
      const { telemetry } = capturingTelemetry();
      for (const event of c.events) telemetry.emit(event);
      const s = telemetry.summary();
      const { duration_ms: _d, active_ms: activeMs, msgs_per_s: rate, ...rest } = s;
      assert.deepEqual(rest, {
        ...c.expected,
        "delete_failed": 0,
        returned: 0,
        "return_failed": 0,
        "stopped_at_bound": null,
      });
      const done = s.inserted + s.redelivered + s.rejected;
      assert.equal(rate, activeMs > 0 ? Math.round((done * 1000) / activeMs) : 0);
    });
  }
});

Deno.test("markStart() restarts the active time the rate is measured over", () => {
  const { telemetry } = capturingTelemetry();
  telemetry.emit({ type: "BatchReceived", messages: 1 });
  telemetry.emit({ type: "MessagesDeleted", count: 1 });
  assert.ok(telemetry.summary().active_ms >= 1);
  telemetry.markStart();
  assert.equal(telemetry.counters.firstReceivedAt, null);
  assert.equal(telemetry.counters.lastFinishedAt, null);
  assert.equal(telemetry.summary().active_ms, 0);
  assert.equal(telemetry.summary().received, 1, "counts are kept");
});
