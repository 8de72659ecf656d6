/**
 * @module A wake-up at a precise time on the main thread, for
 * `bench/delay_proxy.ts`. `setTimeout` has millisecond granularity and, on a
 * busy machine, fires 1–2 ms after the time asked (docs/performance.md,
 * "The delay proxy"); a 0.5 ms delay cannot be kept that way. So a worker
 * thread (`bench/alarm_worker.ts`) sleeps on a futex until the time and
 * posts back, and this side corrects what is left:
 *
 * - the post takes a little while to arrive, so the worker is asked to wake
 *   `lead` ms early, and `lead` follows the arrivals' measured lateness;
 * - an arrival before the time spins out the remainder (at most
 *   `MAX_SPIN_MS`), but only while spinning has cost less than
 *   `SPIN_BUDGET_MS` in the current second; past that the lead drops
 *   to 0 and an early arrival re-arms instead, so a busy proxy does not eat
 *   the CPU it is measuring around.
 *
 * It never fires before the time asked for.
 */

const SEQ = 0;
const STOP = 1;
const ARMED = 2;
/** The longest remainder spun out on the main thread, ms. */
const MAX_SPIN_MS = 0.3;
/** Spinning allowed per second of wall time, ms (1% of a core). */
const SPIN_BUDGET_MS = 10;
/** How early the arrivals aim to be, ms: a little, so most need a short spin, none a re-arm. */
const AIM_EARLY_MS = 0.02;
const MAX_LEAD_MS = 0.5;

/** One alarm: at most one time armed; `onFire` runs on the main thread at or after it. */
export class Alarm {
  readonly #worker: Worker;
  readonly #slots: Int32Array;
  readonly #wait: Float64Array;
  readonly #onFire: () => void;
  #due: number | null = null;
  #seq = 0;
  #lead = 0;
  #budgetWindow = 0;
  #spunInWindow = 0;
  /** Main-thread spinning so far, ms. */
  spunMs = 0;
  /** Times fired. */
  fired = 0;

  private constructor(onFire: () => void, worker: Worker, shared: SharedArrayBuffer) {
    this.#onFire = onFire;
    this.#worker = worker;
    this.#slots = new Int32Array(shared, 0, 4);
    this.#wait = new Float64Array(shared, 16, 1);
    worker.onmessage = (event: MessageEvent<number>) => this.#arrived(event.data);
  }

  /**
   * Starts the alarm's thread and waits until it runs: loading its module
   * can take a while, and an alarm set before would ring late.
   */
  static async start(onFire: () => void): Promise<Alarm> {
    const shared = new SharedArrayBuffer(24);
    const worker = new Worker(new URL("./alarm_worker.ts", import.meta.url), { type: "module" });
    const ready = Promise.withResolvers<void>();
    worker.onmessage = () => ready.resolve();
    worker.onerror = (event) => {
      event.preventDefault();
      ready.reject(new Error(`the alarm thread failed: ${event.message}`));
    };
    worker.postMessage(shared);
    try {
      await ready.promise;
    } catch (error) {
      worker.terminate();
      throw error;
    }
    return new Alarm(onFire, worker, shared);
  }

  /** Arms for `due` (a `performance.now()` time), replacing what was armed. */
  set(due: number): void {
    if (this.#due === due) return;
    this.#due = due;
    this.#wait[0] = Math.max(0, due - performance.now() - this.#effectiveLead());
    Atomics.store(this.#slots, ARMED, 1);
    this.#bump();
  }

  /** Disarms. */
  clear(): void {
    if (this.#due === null) return;
    this.#due = null;
    Atomics.store(this.#slots, ARMED, 0);
    this.#bump();
  }

  /** Stops the worker thread. */
  close(): void {
    this.#due = null;
    Atomics.store(this.#slots, STOP, 1);
    this.#bump();
    this.#worker.terminate();
  }

  #bump(): void {
    this.#seq = Atomics.add(this.#slots, SEQ, 1) + 1;
    Atomics.notify(this.#slots, SEQ);
  }

  #effectiveLead(): number {
    return this.#spunInWindow < SPIN_BUDGET_MS ? this.#lead : 0;
  }

  #arrived(seq: number): void {
    const due = this.#due;
    if (seq !== this.#seq || due === null) return; // a post for an arm since replaced
    let now = performance.now();
    if (now - this.#budgetWindow >= 1000) {
      this.#budgetWindow = now;
      this.#spunInWindow = 0;
    }
    // Steer the lead by how late (or early) this arrival was.
    const early = due - now;
    const late = -early;
    this.#lead = Math.min(MAX_LEAD_MS, Math.max(0, this.#lead + 0.25 * (late + AIM_EARLY_MS)));
    if (early > 0) {
      if (early > MAX_SPIN_MS || this.#spunInWindow >= SPIN_BUDGET_MS) {
        // Too early to spin: sleep the rest, without a lead this time.
        this.#wait[0] = early;
        this.#bump();
        return;
      }
      const spinStart = now;
      while (now < due) now = performance.now();
      this.spunMs += now - spinStart;
      this.#spunInWindow += now - spinStart;
    }
    this.#due = null;
    this.fired++;
    this.#onFire();
  }
}
