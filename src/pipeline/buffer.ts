/**
 * Received messages waiting for their transaction, and the bounds on what a
 * run holds: receivers wait while the buffer is full, the flusher waits
 * until a transaction's worth is due. Owns its state; the clock is injected.
 *
 * @module
 */

import type { ReceivedMessage } from "../types.ts";

/** A promise-based wake-up: `wait` resolves on `notify` or after a timeout. */
export class Wakeup {
  #waiters: (() => void)[] = [];

  /** Resolves at the next `notify`, or after `timeoutMs`. */
  wait(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve();
      }, Math.max(0, timeoutMs));
      this.#waiters.push(done);
    });
  }

  /** Wakes every waiter. */
  notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}

/** The bounds of a buffer. */
export interface BufferOptions {
  /** Most messages per transaction. */
  readonly maxRows: number;
  /** Longest a message waits for its transaction to fill, ms. */
  readonly maxWaitMs: number;
  /** Most messages held at once: buffered, writing or deleting. */
  readonly maxHeld: number;
  /** Most body text held at once, in UTF-16 code units. */
  readonly maxHeldUnits: number;
  readonly now: () => number;
}

/** Messages between receive and delete, with backpressure. */
export class MessageBuffer {
  readonly #options: BufferOptions;
  #pending: ReceivedMessage[] = [];
  #pendingSince = 0;
  /** Taken for a transaction, not yet released. */
  #busy = 0;
  /** Body text held, buffered or busy, in UTF-16 code units. */
  #heldUnits = 0;
  /** Messages asked for by receives under way: counted as held until they come back. */
  #reserved = 0;
  /** Notified when space frees up (receivers wait on it). */
  readonly space: Wakeup = new Wakeup();
  /** Notified when messages arrive (the flusher waits on it). */
  readonly arrivals: Wakeup = new Wakeup();

  constructor(options: BufferOptions) {
    this.#options = options;
  }

  /** Messages waiting for a transaction. */
  get pending(): number {
    return this.#pending.length;
  }

  /**
   * True when no more should be received until some are released. Receives
   * under way count (`reserve`), so however many loops receive at once, what
   * is held stays under `maxHeld` plus one receive's worth.
   */
  full(): boolean {
    return this.#pending.length + this.#busy + this.#reserved >= this.#options.maxHeld ||
      this.#heldUnits >= this.#options.maxHeldUnits;
  }

  /** Counts `n` messages a receive asks for as held until `unreserve`. */
  reserve(n: number): void {
    this.#reserved += n;
  }

  /** Ends a receive's reservation (before `add` of what it brought). */
  unreserve(n: number): void {
    const wasFull = this.full();
    this.#reserved -= n;
    if (wasFull && !this.full()) this.space.notify();
  }

  /** Adds received messages. */
  add(messages: readonly ReceivedMessage[]): void {
    if (messages.length === 0) return;
    if (this.#pending.length === 0) this.#pendingSince = this.#options.now();
    this.#pending.push(...messages);
    for (const m of messages) this.#heldUnits += m.body.length;
    this.arrivals.notify();
  }

  /** True when a transaction should start now: full, waited long enough, or `closing`. */
  due(closing: boolean): boolean {
    const n = this.#pending.length;
    return n >= this.#options.maxRows ||
      (n > 0 && (closing || this.#options.now() - this.#pendingSince >= this.#options.maxWaitMs));
  }

  /** Milliseconds until the oldest pending message is due (the full wait when none is). */
  untilDue(): number {
    return this.#pending.length === 0
      ? this.#options.maxWaitMs
      : Math.max(1, this.#options.maxWaitMs - (this.#options.now() - this.#pendingSince));
  }

  /** Takes up to `maxRows` pending messages for one transaction. */
  take(): ReceivedMessage[] {
    const batch = this.#pending.slice(0, this.#options.maxRows);
    this.#pending = this.#pending.slice(batch.length);
    this.#pendingSince = this.#options.now();
    this.#busy += batch.length;
    return batch;
  }

  /** Releases a taken batch (deleted, or left to SQS): its space is free again. */
  release(batch: readonly ReceivedMessage[]): void {
    this.#busy -= batch.length;
    for (const m of batch) this.#heldUnits -= m.body.length;
    this.space.notify();
  }
}
