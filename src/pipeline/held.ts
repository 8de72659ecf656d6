/**
 * Bookkeeping of held messages: received, not yet deleted. Knows when each
 * one's visibility runs out, and which are due for an extension; the
 * heartbeat's call that extends them, and the call that gives messages back.
 *
 * @module
 */

import type { Telemetry } from "../ops/telemetry.ts";
import type { Queue, ReceivedMessage } from "../types.ts";

/** Tracks the visibility deadline of each held delivery. */
export class HeldMessages {
  readonly #deadlines = new Map<ReceivedMessage, number>();
  readonly #visibilityMs: number;
  readonly #leadMs: number;

  /**
   * @param visibilityTimeoutSeconds the queue's visibility timeout
   * @param heartbeatMs how often `due` is asked: a delivery is due while at
   *   least two beats remain, so that the next beat (up to one period late)
   *   and the extension's round trip still land before it reappears
   */
  constructor(visibilityTimeoutSeconds: number, heartbeatMs: number) {
    this.#visibilityMs = visibilityTimeoutSeconds * 1000;
    this.#leadMs = Math.max(this.#visibilityMs / 2, 2 * heartbeatMs);
  }

  /** Starts holding deliveries received at `nowMs`. */
  add(messages: readonly ReceivedMessage[], nowMs: number): void {
    for (const m of messages) this.#deadlines.set(m, nowMs + this.#visibilityMs);
  }

  /** Stops holding deliveries (deleted, or given back). */
  remove(messages: readonly ReceivedMessage[]): void {
    for (const m of messages) this.#deadlines.delete(m);
  }

  /**
   * Deliveries whose visibility ends within half a timeout of `nowMs` (two
   * heartbeats, when the timeout is shorter than four): extend them now, while
   * there is time for a retry before they reappear. With half alone, a 2 s
   * timeout left one beat of margin, and a beat that came late was too late.
   */
  due(nowMs: number): ReceivedMessage[] {
    const threshold = nowMs + this.#leadMs;
    const due: ReceivedMessage[] = [];
    for (const [m, deadline] of this.#deadlines) if (deadline <= threshold) due.push(m);
    return due;
  }

  /** Records that the given deliveries are invisible for another timeout from `nowMs`. */
  extended(messages: readonly ReceivedMessage[], nowMs: number): void {
    for (const m of messages) {
      if (this.#deadlines.has(m)) this.#deadlines.set(m, nowMs + this.#visibilityMs);
    }
  }
}

/**
 * Extends the held messages that are due, so none reappears in the queue
 * while its transaction is slow or Postgres is down. Failures only risk a
 * redelivery, which the ledger absorbs, so they are reported, not thrown.
 */
export async function extendDue(
  held: HeldMessages,
  deps: {
    readonly queue: Pick<Queue, "extend">;
    readonly telemetry: Telemetry;
    readonly visibilityTimeoutSeconds: number;
    readonly now: () => number;
  },
): Promise<void> {
  const due = held.due(deps.now());
  if (due.length === 0) return;
  const result = await deps.queue.extend(due, deps.visibilityTimeoutSeconds);
  const extendedIds = new Set(result.succeeded);
  held.extended(due.filter((m) => extendedIds.has(m.id)), deps.now());
  deps.telemetry.emit({ type: "VisibilityExtended", count: result.succeeded.length });
  if (result.failed.length > 0) {
    deps.telemetry.emit({
      type: "ExtendFailed",
      code: result.failed[0]?.code ?? "Unknown",
      count: result.failed.length,
    });
  }
}

/**
 * Makes deliveries visible again at once (visibility 0), so none is left in
 * flight: those received past a bound, and in a dry run each one once
 * printed and each repeat. A failure only means they reappear when their
 * visibility timeout ends, so it is reported, not thrown.
 */
export async function giveBack(
  messages: readonly ReceivedMessage[],
  deps: { readonly queue: Pick<Queue, "extend">; readonly telemetry: Telemetry },
): Promise<void> {
  if (messages.length === 0) return;
  const result = await deps.queue.extend(messages, 0);
  if (result.succeeded.length > 0) {
    deps.telemetry.emit({ type: "MessagesReturned", count: result.succeeded.length });
  }
  if (result.failed.length > 0) {
    deps.telemetry.emit({
      type: "ReturnFailed",
      count: result.failed.length,
      code: result.failed[0]?.code ?? "Unknown",
    });
  }
}
