/**
 * Bookkeeping of held messages: received, not yet deleted. Knows when each
 * one's visibility runs out, and which are due for an extension. Pure; the
 * pipeline does the calls.
 *
 * @module
 */

import type { ReceivedMessage } from "../types.ts";

/** Tracks the visibility deadline of each held delivery. */
export class HeldMessages {
  readonly #deadlines = new Map<ReceivedMessage, number>();
  readonly #visibilityMs: number;

  /** @param visibilityTimeoutSeconds the queue's visibility timeout */
  constructor(visibilityTimeoutSeconds: number) {
    this.#visibilityMs = visibilityTimeoutSeconds * 1000;
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
   * Deliveries whose visibility ends within half a timeout of `nowMs`: extend
   * them now, while there is time for a retry before they reappear.
   */
  due(nowMs: number): ReceivedMessage[] {
    const threshold = nowMs + this.#visibilityMs / 2;
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
