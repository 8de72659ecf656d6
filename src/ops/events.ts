/**
 * Every notable thing login-etl does, as a typed event, and the one table
 * that says what each event writes to the log and what it counts. Telemetry
 * emits through the table; the Prometheus metrics are computed from the same
 * counters (and the table's `observe` entries), so the log, the summary and
 * `/metrics` cannot disagree and nothing keeps a second list in step.
 *
 * Over 500 lines because it is one table: the event union and `EVENTS` are
 * the same list twice over (the compiler checks that every event has its
 * entry), and an event is added or changed in both at once.
 *
 * @module
 */

import { escapeControl, type Fields, type Level, type TextForm } from "../log.ts";
import { counted, duration, grouped } from "./human.ts";
import { type ConcurrencyObservation, REJECT_REASONS, type RejectReason } from "../types.ts";

/**
 * The step a `StageFailed` attempt failed in: a bounded label. Only steps that
 * emit `StageFailed` are listed; validation and masking refuse messages as
 * rejects, not failures, and a failed delete or extend has its own event
 * (`DeleteFailed`, `ExtendFailed`, logged with `stage: "ack"`).
 */
export type Stage = "receive" | "write" | "startup";

/**
 * Why the receive loops changed: `start` (the first count, fixed or auto's
 * start), `full` (receives came back full with room and CPU to spare),
 * `empty` (receives came back empty), `cpu` (the process had no CPU to
 * spare), `no_gain` (a step up brought too few more receives: undone),
 * `done` (receiving ended).
 */
export type ConcurrencyReason = "start" | "full" | "empty" | "cpu" | "no_gain" | "done";

/** The run's outcome as printed by `--summary-json`. */
export interface Summary {
  readonly received: number;
  readonly inserted: number;
  /** Deliveries of a MessageId already committed: SQS redelivered them. */
  readonly redelivered: number;
  readonly rejected: number;
  readonly "rejected_by_reason": Readonly<Partial<Record<RejectReason, number>>>;
  readonly deleted: number;
  readonly "delete_failed": number;
  /** Received but neither committed nor known redelivered (only after a hard stop or a dry run). */
  readonly "in_flight": number;
  /** Wall time from the pipeline's start to now (includes the closing idle receive). */
  readonly "duration_ms": number;
  /** From the first message received to the last one committed and deleted. */
  readonly "active_ms": number;
  /** Messages finished per second of `active_ms`. */
  readonly "msgs_per_s": number;
  /** True when received = inserted + redelivered + rejected + in_flight. */
  readonly balanced: boolean;
  /**
   * Deliveries made visible again at once (visibility 0): received past a
   * bound, and in a dry run every message once printed and every repeat. Not
   * counted in `received`.
   */
  readonly returned: number;
  /** Deliveries whose return failed: they reappear when their visibility timeout ends. */
  readonly "return_failed": number;
  /** The bound the run stopped at (`--max-messages`, `--max-duration`), or null. */
  readonly "stopped_at_bound": "max-messages" | "max-duration" | null;
}

/** Everything that happens, each with the facts its log line and counters need. */
export type TelemetryEvent =
  // The run
  | { readonly type: "RunStarted"; readonly fields: Fields }
  | { readonly type: "RunFinished"; readonly summary: Summary }
  | { readonly type: "ShutdownRequested"; readonly signal: string }
  | { readonly type: "ShutdownForced" }
  | { readonly type: "RejectLimitExceeded"; readonly rejected: number; readonly limit: number }
  | { readonly type: "MetricsFileWritten"; readonly path: string }
  | { readonly type: "ProgressReported"; readonly summary: Summary; readonly queueDepth?: number }
  | { readonly type: "ConfigWarned"; readonly message: string }
  | {
    /**
     * A consumer was given vault keys that can read the vault (secrets, or
     * private keys of pairs), where the public key set is all it needs.
     */
    readonly type: "VaultKeyReadable";
    readonly keyIds: readonly string[];
    /** True when the current key is a pair: only the private halves are too much. */
    readonly sealing: boolean;
  }
  | {
    /** The run ends on an error: the last line on stderr (`main.ts`). */
    readonly type: "RunFailed";
    /** The error's stable code (`errors.ts`); `internal` for a bug. */
    readonly code: string;
    /** The one line a user reads, causes included with `--verbose`; no secrets. */
    readonly message: string;
    readonly exitCode: number;
    /** A bug's stack trace, with `--verbose` only. */
    readonly stack?: string;
  }
  // The pipeline, once per batch
  | { readonly type: "BatchReceived"; readonly messages: number }
  | {
    readonly type: "BatchCommitted";
    readonly messages: number;
    readonly inserted: number;
    readonly redelivered: number;
    readonly durationMs: number;
  }
  | {
    readonly type: "MessagesRejected";
    readonly byReason: Readonly<Partial<Record<RejectReason, number>>>;
    readonly ids: readonly string[];
  }
  | {
    readonly type: "MessagesRefused";
    /** How many messages Postgres refused, by SQLSTATE; each became a db_refused reject. */
    readonly bySqlstate: Readonly<Record<string, number>>;
  }
  | { readonly type: "RejectsCopied"; readonly count: number }
  | {
    readonly type: "RejectCopyFailed";
    readonly count: number;
    readonly ids: readonly string[];
    readonly code: string;
  }
  | { readonly type: "MessagesDeleted"; readonly count: number }
  | {
    readonly type: "BoundReached";
    readonly bound: "max-messages" | "max-duration";
    /** Deliveries taken until then. */
    readonly taken: number;
  }
  | { readonly type: "MessagesReturned"; readonly count: number }
  | { readonly type: "ReturnFailed"; readonly count: number; readonly code: string }
  | { readonly type: "VisibilityExtended"; readonly count: number }
  | { readonly type: "ExtendFailed"; readonly count: number; readonly code: string }
  | {
    readonly type: "DeleteFailed";
    /** How many deletes failed; `ids` may hold only the first few. */
    readonly count: number;
    readonly ids: readonly string[];
    readonly code: string;
  }
  | {
    readonly type: "StageFailed";
    readonly stage: Stage;
    readonly code: string;
    readonly message: string;
    readonly attempt: number;
    readonly retryInMs: number | null;
    readonly messages: number;
  }
  | { readonly type: "StoreRecovered"; readonly afterAttempts: number }
  | {
    /** The receive loops a run keeps: set at the start, changed by `--concurrency auto`. */
    readonly type: "ConcurrencyChanged";
    readonly from: number;
    readonly to: number;
    readonly reason: ConcurrencyReason;
    /** What `auto` decided on; absent at the start and end. */
    readonly seen?: ConcurrencyObservation;
  }
  // SQS
  | { readonly type: "SqsProtocolSwitched"; readonly protocol: "query"; readonly reason: string }
  | {
    readonly type: "RegionOverridden";
    /** The region the AWS queue URL names, which requests are signed for. */
    readonly region: string;
    /** The configured region it overrides, and where that came from. */
    readonly configured: string;
    readonly configuredFrom: string;
  }
  | { readonly type: "SentTimestampMissing"; readonly receivedAtMs: number }
  | {
    readonly type: "QueueSeeded";
    readonly sent: number;
    readonly seed: number;
    readonly badRatio: number;
    readonly durationMs: number;
    readonly queueUrl: string;
  }
  // Postgres and start-up
  | {
    readonly type: "SchemaMigrated";
    readonly version: number;
    readonly name: string;
    readonly schema: string;
    readonly ms: number;
  }
  | {
    /**
     * The schema is at the version this login-etl needs. Text format only:
     * its one line stands for the SchemaMigrated lines, which JSON lists.
     */
    readonly type: "SchemaReady";
    readonly schema: string;
    /** Migrations applied by this run (0: it was up to date). */
    readonly applied: number;
  }
  | { readonly type: "KeyRegistered"; readonly keyId: string }
  | {
    readonly type: "RowsPruned";
    readonly target: string;
    readonly deleted: number;
    readonly partitionsCreated: number;
    readonly partitionsDropped: number;
  }
  | { readonly type: "PruneFailed"; readonly target: string; readonly code: string }
  // Operations endpoints
  | { readonly type: "ListenStarted"; readonly address: string }
  | { readonly type: "NotReady"; readonly reason: string }
  // PII commands
  | {
    readonly type: "ValuesRecovered";
    readonly recovered: number;
    readonly notFound: number;
    readonly erased: number;
    readonly failed: number;
  }
  | {
    readonly type: "RekeySkipped";
    readonly what: "rows" | "vault";
    readonly masked: string;
    readonly why: "undecryptable" | "mismatch" | "unknown_key";
  }
  | {
    readonly type: "RekeyBatchCommitted";
    readonly what: "rows" | "vault";
    readonly count: number;
    readonly keyId: string;
  }
  | {
    readonly type: "InboxEntryRefused";
    readonly masked: string;
    readonly why: "undecryptable" | "mismatch" | "invalid";
  }
  | {
    readonly type: "InboxMerged";
    readonly accepted: number;
    readonly known: number;
    readonly erased: number;
    readonly dropped: number;
    readonly kept: number;
    /** Entries under keys not held, dropped past the age limit or the cap per key id. */
    readonly expired: number;
  };

/** An event's type name. */
export type EventType = TelemetryEvent["type"];

/** Counters of one run. `received` counts deliveries, so a redelivery counts again. */
export interface Counters {
  received: number;
  inserted: number;
  redelivered: number;
  rejected: Record<RejectReason, number>;
  deleted: number;
  deleteFailed: number;
  visibilityExtended: number;
  batchesCommitted: number;
  /** Failed attempts by stage. */
  stageFailures: Record<Stage, number>;
  /** Failed attempts by `stage:code`, for the metric's labels. */
  failuresByCode: Map<string, number>;
  /** Messages Postgres refused (recorded as db_refused rejects), by SQLSTATE. */
  refusedBySqlstate: Map<string, number>;
  /** Received but not yet committed or known redelivered. */
  inFlight: number;
  /** Made visible again at once (bounds, dry runs), and the returns that failed. */
  returned: number;
  returnFailed: number;
  /** Receive loops the run keeps now (`ConcurrencyChanged`). */
  receiveLoops: number;
  /** The bound the run stopped at, once it has. */
  stoppedAtBound: "max-messages" | "max-duration" | null;
  /** `performance.now()` of the first receive and of the last commit or delete. */
  firstReceivedAt: number | null;
  lastFinishedAt: number | null;
}

/** Fresh counters at zero. */
export function zeroCounters(): Counters {
  return {
    received: 0,
    inserted: 0,
    redelivered: 0,
    rejected: Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>,
    deleted: 0,
    deleteFailed: 0,
    visibilityExtended: 0,
    batchesCommitted: 0,
    stageFailures: { receive: 0, write: 0, startup: 0 },
    failuresByCode: new Map(),
    refusedBySqlstate: new Map(),
    inFlight: 0,
    returned: 0,
    returnFailed: 0,
    receiveLoops: 0,
    stoppedAtBound: null,
    firstReceivedAt: null,
    lastFinishedAt: null,
  };
}

/** What metrics an event feeds beyond the counters: distributions and times. */
export interface Observer {
  /** Messages per transaction. */
  batchSize(messages: number): void;
  /** Seconds one transaction took, retries included. */
  commitSeconds(seconds: number): void;
  /** A commit happened now. */
  committed(): void;
}

/** What one event writes and counts. */
export interface EventSpec<E> {
  /** Log level, or `null` for an event that only counts (per-delivery events that would flood). */
  readonly level: Level | null | ((e: E) => Level);
  readonly message: string | ((e: E) => string);
  readonly fields?: (e: E) => Fields;
  /**
   * What the text format shows instead of the message and fields
   * (`TextForm`): a person's sentence, with counts grouped and times in
   * units (`human.ts`), and no message ids.
   */
  readonly text?: (e: E) => TextForm;
  /** Updates the run's counters; `now` is `performance.now()`. */
  readonly count?: (c: Counters, e: E, now: number) => void;
  /** Feeds the metrics that are not counters. */
  readonly observe?: (o: Observer, e: E) => void;
}

function sum(record: Readonly<Partial<Record<string, number>>>): number {
  let total = 0;
  for (const value of Object.values(record)) total += value ?? 0;
  return total;
}

/**
 * A time as a log field: whole milliseconds (or seconds). A fraction of a
 * millisecond from `performance.now()` is noise to a reader and a cardinality
 * of its own to a log store. Every duration field goes through this;
 * tests/unit/ops/events_test.ts checks each event's lines for fractions.
 */
function whole(time: number): number {
  return Math.round(time);
}

/** Not shown in the text format: summed up on another line. */
const HIDDEN: TextForm = { hidden: true };

/** A `Fields` value as text, when it is a string or number. */
function fieldText(fields: Fields, key: string): string | null {
  const value = fields[key];
  return typeof value === "string" || typeof value === "number" ? String(value) : null;
}

/** A queue URL's last path segment, the queue's name; never its query (signing values). */
function queueName(queueUrl: string): string {
  try {
    return new URL(queueUrl).pathname.split("/").filter((p) => p !== "").pop() ?? "queue";
  } catch {
    return "queue";
  }
}

/**
 * RunStarted as one line: "draining login-queue from 127.0.0.1:4566 into
 * etl@db:5432/analytics". Schemes, the connection's TLS mode and the
 * settings' sources are left to the JSON record, so the line fits a
 * terminal; the queue's depth is on the progress line that follows.
 */
function startLine(fields: Fields): string {
  const queue = queueName(fieldText(fields, "queue_url") ?? "");
  const endpoint = fieldText(fields, "endpoint") ?? "aws";
  const from = endpoint === "aws"
    ? `AWS ${fieldText(fields, "region") ?? ""}`.trim()
    : endpoint.replace(/^https?:\/\//, "");
  const database = (fieldText(fields, "database") ?? "")
    .replace(/ \(.*\)$/, "")
    .replace(/^postgres(ql)?:\/\//, "");
  const verb = fieldText(fields, "command") === "run" ? "consuming" : "draining";
  return `${verb} ${queue} from ${from} into ${database}`;
}

/** Rejects by reason, most first, at most `shown` of them: "8 missing_field, 6 too_long, +3 more". */
export function reasonsText(
  byReason: Readonly<Partial<Record<string, number>>>,
  shown = 3,
): string {
  const entries = Object.entries(byReason)
    .filter((entry): entry is [string, number] => (entry[1] ?? 0) > 0)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
  const listed = entries.slice(0, shown).map(([reason, n]) => `${grouped(n)} ${reason}`);
  if (entries.length > shown) listed.push(`+${entries.length - shown} more`);
  return listed.join(", ");
}

/**
 * RunFinished's lines: what was done and how fast, then, when there were
 * any, the rejects by reason: the one place a terminal sees them
 * (MessagesRejected is hidden), on a line of their own so that the totals
 * are never cut to make room.
 */
function finishLines(s: Summary): string[] {
  const done = s.inserted + s.redelivered + s.rejected;
  const parts = [`${grouped(s.inserted)} inserted`];
  if (s.redelivered > 0) parts.push(`${grouped(s.redelivered)} redelivered`);
  parts.push(`${grouped(s.rejected)} rejected`);
  if (s.in_flight > 0) parts.push(`${grouped(s.in_flight)} left in flight`);
  if (s.delete_failed > 0) parts.push(`${grouped(s.delete_failed)} deletes failed`);
  const totals = `finished ${counted(done, "message")} in ${duration(s.duration_ms)} (${
    grouped(s.msgs_per_s)
  } msg/s): ${parts.join(", ")}`;
  return s.rejected === 0
    ? [totals]
    : [totals, `rejected by reason: ${reasonsText(s.rejected_by_reason, 6)}`];
}

/** The summary's own fields as log fields. */
function summaryFields(s: Summary): Fields {
  return {
    ...s,
    rejected_by_reason: s.rejected_by_reason as Record<string, number>,
    duration_ms: whole(s.duration_ms),
    active_ms: whole(s.active_ms),
  };
}

/** The one table of events: each event's log line and counters. */
export const EVENTS: {
  readonly [K in EventType]: EventSpec<Extract<TelemetryEvent, { type: K }>>;
} = {
  RunStarted: {
    level: "info",
    message: "run started",
    fields: (e) => e.fields,
    text: (e) => ({ brief: startLine(e.fields) }),
  },
  RunFinished: {
    level: "info",
    message: "run finished",
    fields: (e) => summaryFields(e.summary),
    text: (e) => ({ brief: finishLines(e.summary) }),
  },
  ShutdownRequested: {
    level: "info",
    message: "shutdown requested; finishing in-flight messages",
    fields: (e) => ({ signal: e.signal }),
  },
  ShutdownForced: { level: "warn", message: "second signal: exiting without waiting" },
  ProgressReported: {
    level: "info",
    message: "progress",
    fields: (e) => ({
      received: e.summary.received,
      inserted: e.summary.inserted,
      redelivered: e.summary.redelivered,
      rejected: e.summary.rejected,
      deleted: e.summary.deleted,
      msgs_per_s: e.summary.msgs_per_s,
      ...(e.queueDepth === undefined ? {} : { queue_depth: e.queueDepth }),
    }),
    text: (e) => {
      const s = e.summary;
      const parts = [
        `${grouped(s.inserted + s.redelivered + s.rejected)} done`,
        ...(s.rejected > 0 ? [`${grouped(s.rejected)} rejected`] : []),
        `${grouped(s.msgs_per_s)} msg/s`,
        ...(e.queueDepth === undefined ? [] : [`~${grouped(e.queueDepth)} left in queue`]),
      ];
      return { brief: parts.join(" · ") };
    },
  },
  ConfigWarned: { level: "warn", message: (e) => e.message },
  VaultKeyReadable: {
    level: "warn",
    message: (e) =>
      e.sealing
        ? `this consumer holds vault keys that can open every vault entry (${
          e.keyIds.join(", ")
        }): give drain and run only the public key set (vault.public.json from login-etl keygen)`
        : `this consumer holds vault keys that can read every vault entry (${
          e.keyIds.join(", ")
        }): make a key pair (login-etl keygen), give drain and run only its public key set, and move old entries to it with rekey-vault --to ID`,
    fields: (e) => ({ key_ids: e.keyIds.join(",") }),
  },
  RunFailed: {
    level: "error",
    message: (e) => e.message,
    fields: (e) => ({
      code: e.code,
      exit_code: e.exitCode,
      ...(e.stack === undefined ? {} : { stack: e.stack }),
    }),
    // A terminal keeps the `error: ...` line users and scripts know (and a
    // bug's stack under it); log pipelines get the JSON record.
    text: (e) => ({
      line: `error: ${escapeControl(e.message)}${
        e.stack === undefined ? "" : `\n${stackText(e.stack)}`
      }`,
    }),
  },
  RejectLimitExceeded: {
    level: "error",
    message: "more messages rejected than --max-rejects allows",
    fields: (e) => ({ rejected: e.rejected, limit: e.limit }),
  },
  MetricsFileWritten: {
    level: "info",
    message: "wrote the run's metrics",
    fields: (e) => ({ path: e.path }),
  },
  BatchReceived: {
    level: null,
    message: "batch received",
    count: (c, e, now) => {
      c.firstReceivedAt ??= now;
      c.received += e.messages;
      c.inFlight += e.messages;
    },
  },
  BoundReached: {
    level: "info",
    message: (e) => `stopped receiving at --${e.bound}; finishing what is held`,
    fields: (e) => ({ bound: e.bound, taken: e.taken }),
    count: (c, e) => {
      c.stoppedAtBound = e.bound;
    },
  },
  MessagesReturned: {
    level: "debug",
    message: "messages made visible again",
    fields: (e) => ({ count: e.count }),
    count: (c, e) => {
      c.returned += e.count;
    },
  },
  ReturnFailed: {
    level: "warn",
    message:
      "could not make messages visible again; they reappear when their visibility timeout ends",
    fields: (e) => ({ count: e.count, code: e.code }),
    count: (c, e) => {
      c.returnFailed += e.count;
    },
  },
  BatchCommitted: {
    level: "debug",
    message: "batch committed",
    fields: (e) => ({
      messages: e.messages,
      inserted: e.inserted,
      redelivered: e.redelivered,
      duration_ms: whole(e.durationMs),
    }),
    text: (e) => ({
      brief: `committed a batch of ${counted(e.messages, "message")} in ${duration(e.durationMs)}`,
    }),
    count: (c, e, now) => {
      c.lastFinishedAt = now;
      c.inserted += e.inserted;
      c.redelivered += e.redelivered;
      c.batchesCommitted += 1;
      c.inFlight -= e.messages;
    },
    observe: (o, e) => {
      o.batchSize(e.messages);
      o.commitSeconds(e.durationMs / 1000);
      o.committed();
    },
  },
  MessagesRejected: {
    level: "warn",
    message: "messages rejected",
    fields: (e) => ({
      count: sum(e.byReason),
      reasons: e.byReason as Readonly<Record<string, number>>,
      message_ids: e.ids,
    }),
    // Counted on the progress line and summed up by reason in RunFinished's
    // line: one warning per batch would flood a terminal on a long drain.
    text: () => HIDDEN,
    count: (c, e) => {
      for (const [reason, n] of Object.entries(e.byReason)) {
        c.rejected[reason as RejectReason] += n ?? 0;
      }
    },
  },
  MessagesRefused: {
    level: "warn",
    message:
      "Postgres refused messages the rest of their batch committed without; recorded as db_refused",
    fields: (e) => ({ count: sum(e.bySqlstate), by_sqlstate: e.bySqlstate }),
    count: (c, e) => {
      for (const [code, n] of Object.entries(e.bySqlstate)) {
        c.refusedBySqlstate.set(code, (c.refusedBySqlstate.get(code) ?? 0) + n);
      }
    },
  },
  RejectsCopied: {
    level: "debug",
    message: "raw copies of rejected messages sent to the reject queue",
    fields: (e) => ({ count: e.count }),
  },
  RejectCopyFailed: {
    level: "warn",
    message:
      "could not copy rejected messages to the reject queue; they stay queued and are copied when redelivered",
    fields: (e) => ({ count: e.count, message_ids: e.ids, code: e.code }),
    text: (e) => ({
      brief: `could not copy ${
        counted(e.count, "rejected message")
      } to the reject queue (${e.code}); they stay queued and are copied when redelivered`,
    }),
  },
  MessagesDeleted: {
    level: null,
    message: "messages deleted",
    count: (c, e, now) => {
      c.lastFinishedAt = now;
      c.deleted += e.count;
    },
  },
  VisibilityExtended: {
    level: "debug",
    message: "visibility extended",
    fields: (e) => ({ count: e.count }),
    count: (c, e) => {
      c.visibilityExtended += e.count;
    },
  },
  ExtendFailed: {
    level: "warn",
    message:
      "could not extend visibility; another consumer may receive these, the ledger keeps them single",
    fields: (e) => ({ stage: "ack", code: e.code, count: e.count }),
  },
  DeleteFailed: {
    level: "warn",
    message: "delete failed; the ledger makes redelivery harmless",
    fields: (e) => ({ stage: "ack", code: e.code, count: e.count, message_ids: e.ids }),
    text: (e) => ({
      brief: `could not delete ${
        counted(e.count, "message")
      } (${e.code}); the ledger makes their redelivery harmless`,
    }),
    count: (c, e) => {
      c.deleteFailed += e.count;
    },
  },
  StageFailed: {
    level: (e) => (e.retryInMs === null ? "error" : "warn"),
    message: (e) => e.message,
    fields: (e) => ({
      stage: e.stage,
      code: e.code,
      attempt: e.attempt,
      retry_in_ms: e.retryInMs === null ? null : whole(e.retryInMs),
      messages: e.messages,
    }),
    text: (e) => ({
      brief: `${e.message} (${e.stage}, ${e.code}, attempt ${e.attempt}${
        e.messages > 0 ? `, ${counted(e.messages, "message")} held` : ""
      }); ${e.retryInMs === null ? "giving up" : `retry in ${duration(e.retryInMs)}`}`,
    }),
    count: (c, e) => {
      c.stageFailures[e.stage] += 1;
      const key = `${e.stage}:${e.code}`;
      c.failuresByCode.set(key, (c.failuresByCode.get(key) ?? 0) + 1);
    },
  },
  StoreRecovered: {
    level: "info",
    message: "database writes succeed again; receiving resumes",
    fields: (e) => ({ after_attempts: e.afterAttempts }),
  },
  ConcurrencyChanged: {
    level: "debug",
    message: "receive loops changed",
    fields: (e) => ({
      from: e.from,
      to: e.to,
      reason: e.reason,
      ...(e.seen === undefined ? {} : {
        receives: e.seen.receives,
        full: e.seen.full,
        empty: e.seen.empty,
        blocked: e.seen.blocked,
        cpu_per_s: Math.round(e.seen.cpuPerSecond * 100) / 100,
        lag_ms: whole(e.seen.lagMs),
        interval_ms: whole(e.seen.intervalMs),
      }),
    }),
    count: (c, e) => {
      c.receiveLoops = e.to;
    },
  },
  SqsProtocolSwitched: {
    level: "info",
    message: (e) => `SQS endpoint speaks the ${e.protocol} protocol only: using it`,
    fields: (e) => ({ protocol: e.protocol, reason: e.reason }),
  },
  RegionOverridden: {
    level: "warn",
    message: (e) =>
      `the queue URL names region ${e.region}, but ${e.configuredFrom} says ${e.configured}: signing for ${e.region}, where the queue lives`,
    fields: (e) => ({
      region: e.region,
      configured_region: e.configured,
      configured_from: e.configuredFrom,
    }),
  },
  SentTimestampMissing: {
    level: "warn",
    message:
      "the queue sends no SentTimestamp: create_date is the date each message was received instead",
    fields: (e) => ({ date_used: new Date(e.receivedAtMs).toISOString().slice(0, 10) }),
  },
  QueueSeeded: {
    level: "info",
    message: "messages sent",
    fields: (e) => ({
      sent: e.sent,
      seed: e.seed,
      bad_ratio: e.badRatio,
      duration_ms: whole(e.durationMs),
      queue_url: e.queueUrl,
    }),
    text: (e) => ({
      brief: `sent ${counted(e.sent, "message")} to ${queueName(e.queueUrl)} in ${
        duration(e.durationMs)
      } (seed ${e.seed})`,
    }),
  },
  SchemaMigrated: {
    level: "info",
    message: (e) => `applied schema migration ${e.version}: ${e.name}`,
    fields: (e) => ({ version: e.version, schema: e.schema, ms: whole(e.ms) }),
    // SchemaReady's one line counts them.
    text: () => HIDDEN,
  },
  SchemaReady: {
    level: "info",
    message: "schema ready",
    fields: (e) => ({ schema: e.schema, applied: e.applied }),
    text: (e) => ({
      brief: `schema ${e.schema} ready (${
        e.applied === 0 ? "up to date" : `${counted(e.applied, "migration")} applied`
      })`,
      textOnly: true,
    }),
  },
  KeyRegistered: {
    level: "info",
    message: "recorded new key id with its fingerprint",
    fields: (e) => ({ key_id: e.keyId }),
    text: (e) => ({ brief: `key ${e.keyId} registered` }),
  },
  RowsPruned: {
    level: "info",
    message: (e) => `pruned old ${e.target}`,
    fields: (e) => ({
      target: e.target,
      deleted: e.deleted,
      ...(e.target === "ledger"
        ? { partitions_created: e.partitionsCreated, partitions_dropped: e.partitionsDropped }
        : {}),
    }),
    // Making and dropping the ledger's day partitions is routine; a person
    // hears only of rows deleted.
    text: (e) =>
      e.deleted === 0 ? HIDDEN : { brief: `pruned ${counted(e.deleted, `old ${e.target} row`)}` },
  },
  PruneFailed: {
    level: "warn",
    message: (e) => `${e.target} prune failed; the next one may succeed`,
    fields: (e) => ({ target: e.target, code: e.code }),
  },
  ListenStarted: {
    level: "info",
    message: "serving /healthz, /readyz and /metrics",
    fields: (e) => ({ address: e.address }),
  },
  NotReady: {
    level: "warn",
    message: "/readyz answered 503",
    fields: (e) => ({ reason: e.reason }),
  },
  ValuesRecovered: {
    level: (e) => (e.failed + e.notFound + e.erased > 0 ? "warn" : "info"),
    message: "recovery done (audited)",
    fields: (e) => ({
      recovered: e.recovered,
      not_found: e.notFound,
      erased: e.erased,
      failed: e.failed,
    }),
  },
  RekeySkipped: {
    level: "warn",
    message: (e) =>
      e.why === "undecryptable"
        ? "vault entry does not decrypt; left as it is"
        : e.why === "unknown_key"
        ? "mask under an HMAC key id the key set does not hold, so its entry cannot be checked; left as it is"
        : "vault entry does not mask back to its mask; left as it is",
    fields: (e) => ({ what: e.what, masked: e.masked, why: e.why }),
  },
  RekeyBatchCommitted: {
    level: "info",
    message: (e) =>
      e.what === "rows" ? "batch of masks moved to the new key" : "vault entries re-encrypted",
    fields: (e) => ({ what: e.what, count: e.count, key_id: e.keyId }),
  },
  InboxEntryRefused: {
    level: "warn",
    message: (e) =>
      e.why === "undecryptable"
        ? "vault inbox entry does not decrypt; dropped"
        : e.why === "invalid"
        ? "vault inbox entry holds a value no valid login event carries (forged by a consumer); dropped"
        : "vault inbox entry does not mask back to its mask (squatted or swapped); dropped",
    fields: (e) => ({ masked: e.masked, why: e.why }),
  },
  InboxMerged: {
    level: "info",
    message: "vault inbox merged",
    fields: (e) => ({
      accepted: e.accepted,
      known: e.known,
      erased: e.erased,
      dropped: e.dropped,
      kept: e.kept,
      expired: e.expired,
    }),
  },
};

/**
 * A bug's stack as a terminal shows it: its head (the error's name and
 * message, which may hold any text, newlines included) escaped onto one
 * line, then its frames, a line each, so no message can forge a log line.
 */
function stackText(stack: string): string {
  const at = stack.search(/\n\s+at /);
  return at < 0 ? escapeControl(stack) : escapeControl(stack.slice(0, at)) + stack.slice(at);
}
