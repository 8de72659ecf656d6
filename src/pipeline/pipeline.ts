/**
 * The flow of a run: receive loops fill the buffer, a flusher cuts it into
 * transactions of up to `maxRows`, each is committed and then deleted
 * (`commit.ts`), and a heartbeat keeps held messages invisible (`held.ts`).
 * What a receive brings is sorted first (`admission.ts`): within the bounds
 * it is taken, the rest goes back to the queue at once. How many receive
 * loops run is fixed, or decided as the run goes (`concurrency.ts`). The
 * queue and sink come in as narrow interfaces; the clock is injected.
 *
 * Ordering rule: a message is deleted only after the transaction holding its
 * row (or reject) and its ledger entry committed. A crash in between means
 * redelivery, and the ledger turns the redelivery into a counted one.
 *
 * @module
 */

import { EtlError } from "../errors.ts";
import type { Stage, Telemetry } from "../ops/telemetry.ts";
import type { ConcurrencyObservation, Queue, ReceivedMessage, Sink } from "../types.ts";
import { MessageBuffer, Wakeup } from "./buffer.ts";
import { Admission } from "./admission.ts";
import {
  autoOptions,
  type ChangeReason,
  type ControllerState,
  decide,
  DECIDE_MS,
  FIRST_DECIDE_MS,
  initialState,
} from "./concurrency.ts";
import { LoadProbe } from "./load.ts";
import { asEtlError, commitBatch } from "./commit.ts";
import { extendDue, giveBack, HeldMessages } from "./held.ts";
import { retrying } from "./retry.ts";

/** Tunables of the flow; see `config/options.ts` for their ranges and defaults. */
export interface PipelineOptions {
  /** `drain` ends when receives come back empty; `run` ends when `stop` aborts. */
  readonly mode: "drain" | "run";
  /** Messages per ReceiveMessage call (1-10). */
  readonly batchSize: number;
  /** Parallel receive loops: a fixed number, or `auto` (`concurrency.ts`). */
  readonly concurrency: number | "auto";
  /** CPUs the process may use, read by `auto`; `navigator.hardwareConcurrency` unless given. */
  readonly cpus?: number;
  /** Long-poll wait per receive, seconds. */
  readonly waitSeconds: number;
  /** Most messages per transaction. */
  readonly maxRows: number;
  /** Longest a buffered message waits for its transaction to fill, ms. */
  readonly maxWaitMs: number;
  /** Transactions in flight at once. */
  readonly writers: number;
  /** How long to keep retrying a failing service before giving up, ms. */
  readonly maxRetryMs: number;
  /** The queue's visibility timeout; held messages are extended before it ends. */
  readonly visibilityTimeoutSeconds: number;
  /** Aborting it stops receiving; what is in flight is finished. */
  readonly stop?: AbortSignal;
  /** `--max-messages`: take at most this many deliveries, then finish. */
  readonly maxMessages?: number | null;
  /** `--max-duration`, ms from the start: stop receiving then, and finish. */
  readonly maxDurationMs?: number | null;
  /**
   * Dry run: nothing is deleted; each message is printed once and given back
   * at once, and the run ends when a receive brings nothing new.
   */
  readonly dryRun?: boolean;
  /** Monotonic clock in ms; `performance.now` unless a test gives another. */
  readonly now?: () => number;
}

/** The components the flow moves messages through. */
export interface PipelineDeps {
  readonly queue: Queue;
  /** Prepares and writes distinct deliveries (in this thread or a worker). */
  readonly sink: Sink;
  readonly telemetry: Telemetry;
}

/**
 * Most body text held at once, in UTF-16 code units (2 bytes each): with
 * 64 KiB bodies the message-count bound alone would allow ~200 MB, more than
 * the heap limit the binary runs with (see the `etl` task in deno.json).
 */
const MAX_HELD_BODY_UNITS = 16 * 1024 * 1024;
/** After SIGTERM, how long a failing write is still retried, ms (below a 60 s pod grace period). */
const SHUTDOWN_RETRY_MS = 20_000;
/** How often the heartbeat looks for held messages that need more time. */
const HEARTBEAT_MS = 1000;
/** Longest a waiting loop sleeps before looking again, ms. */
const IDLE_LOOK_MS = 1000;

/** How a run stopped for good: the first failure, and the stage it came from. */
interface Failure {
  readonly stage: Stage;
  readonly error: EtlError;
}

/**
 * Runs the flow until the queue is drained (`drain`), `stop` aborts (`run`)
 * or a bound is reached, then finishes every transaction and delete in
 * flight and gives back what it will not process.
 *
 * @throws {EtlError} when a service keeps failing past `maxRetryMs`, or fails
 *   in a way a retry cannot mend; messages not yet committed stay in the queue
 *
 * Longer than a screen on purpose: what is left here is only the
 * coordination of the receivers, the flusher, the commits and the heartbeat,
 * which share one run's state (the first failure, whether the store is
 * failing, the writers in use, when a stop came). Closures keep that state
 * private to the run; every part with state of its own lives in its module
 * (admission.ts, buffer.ts, held.ts, retry.ts, commit.ts) and is tested there.
 */
export async function runPipeline(deps: PipelineDeps, options: PipelineOptions): Promise<void> {
  const { queue, sink, telemetry } = deps;
  const now = options.now ?? (() => performance.now());
  const pollAbort = new AbortController();
  let stopAt: number | null = null;
  const onStop = () => {
    stopAt ??= now();
    pollAbort.abort();
    wakeAll();
  };
  options.stop?.addEventListener("abort", onStop, { once: true });

  // Bound memory and redelivery exposure: one buffer-full beyond what the writers hold.
  const buffer = new MessageBuffer({
    maxRows: options.maxRows,
    maxWaitMs: options.maxWaitMs,
    maxHeld: options.maxRows * (options.writers + 1),
    maxHeldUnits: MAX_HELD_BODY_UNITS,
    now,
  });
  const held = new HeldMessages(options.visibilityTimeoutSeconds, HEARTBEAT_MS);
  const admission = new Admission({
    maxMessages: options.maxMessages ?? null,
    maxDurationMs: options.maxDurationMs ?? null,
    dryRun: options.dryRun === true,
    startedAt: now(),
  });
  /** Notified when a receive comes back: its claim on `--max-messages` is free again. */
  const claims = new Wakeup();
  /** Aborted at a bound: ends retry back-offs. Long polls are not aborted but end by the deadline. */
  const boundAbort = new AbortController();
  let boundReported = false;
  let failure: Failure | null = null;
  let receiversDone = false;
  /** Set while writes fail transiently: receiving more would only burn receive counts. */
  let storeFailing = false;
  let activeWrites = 0;
  /**
   * A dry run of drain prints once the round is done or the buffer is full:
   * what it gives back can then not come round while it still receives, on a
   * queue that hands given-back messages out first (local-aws-sqs does).
   */
  const gather = options.dryRun === true && options.mode === "drain";
  const tasks = new Set<Promise<void>>();
  /** `auto`'s bounds and state; null when `--concurrency` fixes the loops. */
  const auto = options.concurrency === "auto"
    ? autoOptions(options.cpus ?? navigator.hardwareConcurrency)
    : null;
  let control: ControllerState | null = auto === null ? null : initialState(auto);
  const startLoops = control?.loops ?? (options.concurrency as number);
  /** Receive loops to keep: one above it ends before its next receive. */
  let target = 0;
  let running = 0;
  /** drain: a receive came back empty, so no loop starts any more. */
  let drained = false;
  /** What the receives showed since `auto` last decided. */
  const seen = { receives: 0, full: 0, empty: 0, blocked: 0 };
  let loopsDone = () => {};
  const allLoopsDone = new Promise<void>((resolve) => (loopsDone = resolve));

  const wakeAll = () => {
    buffer.arrivals.notify();
    buffer.space.notify();
    claims.notify();
  };
  /** True once a bound is reached; the first time, reports it and wakes every waiting loop. */
  const boundReached = (): boolean => {
    if (!admission.closed(now())) return false;
    if (!boundReported) {
      boundReported = true;
      const bound = admission.reached ?? "max-messages";
      // Past a time bound, a failing write gets only the shutdown grace.
      if (bound === "max-duration") stopAt ??= now();
      telemetry.emit({ type: "BoundReached", bound, taken: admission.taken });
      boundAbort.abort();
      wakeAll();
    }
    return true;
  };
  const stopped = () =>
    options.stop?.aborted === true || failure !== null || admission.roundDone || boundReached();
  const fail = (stage: Stage, error: EtlError) => {
    failure ??= { stage, error };
    pollAbort.abort();
    wakeAll();
  };
  const track = (task: Promise<void>) => {
    tasks.add(task);
    task.finally(() => tasks.delete(task));
  };

  /** Starts loops up to `target`, unless receiving is over. */
  const spawn = () => {
    while (running < target && !drained && !stopped()) {
      running++;
      // A throw here is a bug: it stops the run as a failed receive would.
      receiver().catch((error) => fail("receive", asEtlError(error)));
    }
  };
  const setTarget = (
    to: number,
    reason: ChangeReason | "start" | "done",
    why?: ConcurrencyObservation,
  ) => {
    telemetry.emit({
      type: "ConcurrencyChanged",
      from: target,
      to,
      reason,
      ...(why === undefined ? {} : { seen: why }),
    });
    target = to;
    spawn();
  };
  /** `auto`: one decision on what the last interval showed. */
  const decideLoops = (probe: LoadProbe) => {
    if (auto === null || control === null || drained || stopped()) return;
    const observed: ConcurrencyObservation = { ...seen, ...probe.sample() };
    Object.assign(seen, { receives: 0, full: 0, empty: 0, blocked: 0 });
    const decision = decide(control, observed, auto);
    control = decision.state;
    if (decision.reason !== null) setTarget(decision.state.loops, decision.reason, observed);
  };

  async function receiver(): Promise<void> {
    try {
      const retrySignal = AbortSignal.any([pollAbort.signal, boundAbort.signal]);
      while (!stopped()) {
        // Fewer loops wanted: end between receives, never with messages in hand.
        if (running > target) return;
        if (buffer.full() || storeFailing) seen.blocked++;
        while (!stopped() && (buffer.full() || storeFailing)) await buffer.space.wait(IDLE_LOOK_MS);
        if (stopped() || running > target) return;
        const max = admission.claim(options.batchSize);
        if (max === 0) {
          await claims.wait(IDLE_LOOK_MS);
          continue;
        }
        let waitSeconds = options.waitSeconds;
        buffer.reserve(max);
        const received = await retrying(
          () => {
            waitSeconds = admission.waitSeconds(options.waitSeconds, now());
            return queue.receive({ max, waitSeconds, signal: pollAbort.signal });
          },
          {
            now,
            deadline: (first) => first + options.maxRetryMs,
            transient: (error) => error instanceof EtlError && error.transient,
            cancelled: stopped,
            signal: retrySignal,
            onFailure: (error, attempt, retryInMs) => {
              const etl = asEtlError(error);
              telemetry.emit({
                type: "StageFailed",
                stage: "receive",
                code: etl.code,
                message: etl.message,
                attempt,
                retryInMs,
                messages: 0,
              });
            },
          },
        ).finally(() => buffer.unreserve(max));
        if (received.ok) {
          seen.receives++;
          const n = received.value.length;
          if (n >= max) seen.full++;
          else if (n === 0 && waitSeconds >= options.waitSeconds) seen.empty++;
        }
        const sorted = admission.sort(received.ok ? received.value : [], max, now());
        claims.notify();
        if (sorted.giveBack.length > 0) track(giveBack(sorted.giveBack, { queue, telemetry }));
        boundReached();
        if (!received.ok) {
          if (received.error !== null) fail("receive", asEtlError(received.error));
          return;
        }
        if (received.value.length === 0) {
          // The deadline cut this poll short: it proves no empty queue, and
          // nothing is left to wait for but the deadline.
          if (waitSeconds < options.waitSeconds) {
            await claims.wait(admission.untilDeadline(now()) ?? IDLE_LOOK_MS);
            continue;
          }
          if (options.mode === "drain") {
            drained = true;
            return;
          }
          continue;
        }
        const batch = sorted.taken;
        if (batch.length === 0) continue;
        telemetry.emit({ type: "BatchReceived", messages: batch.length });
        held.add(batch, now());
        buffer.add(batch);
      }
    } finally {
      // At once on return, so loops leaving together never see a stale count.
      if (--running === 0) loopsDone();
    }
  }

  async function commit(batch: ReceivedMessage[]): Promise<void> {
    try {
      const result = await commitBatch(batch, {
        queue,
        sink,
        telemetry,
        now,
        // After a stop, retry only for the shutdown grace: an orchestrator
        // kills the process soon after SIGTERM, and uncommitted messages are
        // safe in the queue anyway.
        deadline: (first) =>
          Math.min(
            first + options.maxRetryMs,
            stopAt === null ? Infinity : stopAt + SHUTDOWN_RETRY_MS,
          ),
        failed: () => failure !== null,
        storeFailing: (failing) => {
          storeFailing = failing;
          if (!failing) buffer.space.notify();
        },
      });
      if (!result.ok && result.error !== null) fail("write", result.error);
    } finally {
      // Deleted, or left for SQS to redeliver: either way no longer ours to extend.
      held.remove(batch);
      activeWrites--;
      buffer.release(batch);
      buffer.arrivals.notify();
    }
  }

  async function flusher(): Promise<void> {
    for (;;) {
      // Writes cannot succeed after a write failed for good; a failed receive
      // still lets what was received be written and deleted.
      if (failure?.stage === "write") return;
      const closing = receiversDone || stopped();
      const due = gather ? buffer.pending > 0 && (closing || buffer.full()) : buffer.due(closing);
      if (due && activeWrites < options.writers) {
        activeWrites++;
        track(commit(buffer.take()));
        continue;
      }
      if (buffer.pending === 0 && receiversDone) return;
      await buffer.arrivals.wait(
        activeWrites >= options.writers || buffer.pending === 0 ? IDLE_LOOK_MS : buffer.untilDue(),
      );
    }
  }

  let extending = false;
  const heartbeat = async () => {
    if (extending || failure !== null) return;
    extending = true;
    try {
      await extendDue(held, {
        queue,
        telemetry,
        visibilityTimeoutSeconds: options.visibilityTimeoutSeconds,
        now,
      });
    } finally {
      extending = false;
    }
  };

  telemetry.markStart();
  const beat = setInterval(() => track(heartbeat()), HEARTBEAT_MS);
  // Wakes the loops at the deadline (long polls end by it on their own).
  let deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  const armDeadline = () => {
    const left = admission.untilDeadline(now());
    if (left === null) return;
    deadlineTimer = setTimeout(() => {
      if (!boundReached()) armDeadline();
    }, Math.max(1, left));
  };
  armDeadline();
  const probe = auto === null ? null : new LoadProbe(now);
  let deciding: ReturnType<typeof setInterval> | undefined;
  const firstDecision = probe === null ? undefined : setTimeout(() => {
    decideLoops(probe);
    deciding = setInterval(() => decideLoops(probe), DECIDE_MS);
  }, FIRST_DECIDE_MS);
  try {
    const flushing = flusher();
    setTarget(startLoops, "start");
    if (running === 0) loopsDone();
    await allLoopsDone;
    clearTimeout(firstDecision);
    clearInterval(deciding);
    setTarget(0, "done");
    receiversDone = true;
    buffer.arrivals.notify();
    await flushing;
    while (tasks.size > 0) await Promise.all([...tasks]);
  } finally {
    clearInterval(beat);
    clearTimeout(firstDecision);
    clearInterval(deciding);
    probe?.stop();
    clearTimeout(deadlineTimer);
    while (tasks.size > 0) await Promise.allSettled([...tasks]);
    options.stop?.removeEventListener("abort", onStop);
  }
  if (failure !== null) throw (failure as Failure).error;
}
