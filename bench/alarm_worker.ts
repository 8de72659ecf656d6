/**
 * @module The thread behind `bench/alarm.ts`: it sleeps on a futex
 * (`Atomics.wait`, which takes fractional milliseconds and costs no CPU while
 * asleep) until the time the main thread asked for, then posts the arm's
 * number back (and -1 once, when it starts). Timers on the main thread have millisecond granularity and
 * wake 1–2 ms late on a busy machine; a futex wakes within a fraction of that.
 *
 * Shared memory layout (Int32 slots, then one Float64): [0] the arm's number,
 * bumped by the main thread on every change; [1] 1 to stop; [2] 1 while
 * armed; the Float64 at byte 16 is the wait in ms, counted from when this
 * thread reads it (so it can only wake late, never early).
 */

/// <reference lib="deno.worker" />

const SEQ = 0;
const STOP = 1;
const ARMED = 2;

self.onmessage = (event: MessageEvent<SharedArrayBuffer>) => {
  const slots = new Int32Array(event.data, 0, 4);
  const wait = new Float64Array(event.data, 16, 1);
  self.onmessage = null;
  self.postMessage(-1); // running
  for (;;) {
    const seq = Atomics.load(slots, SEQ);
    if (Atomics.load(slots, STOP) === 1) break;
    if (Atomics.load(slots, ARMED) === 0) {
      // Idle until the main thread arms or stops; the timeout bounds a lost wake-up.
      Atomics.wait(slots, SEQ, seq, 1000);
      continue;
    }
    const due = performance.now() + wait[0]!;
    let remaining = due - performance.now();
    let changed = false;
    while (remaining > 0) {
      if (Atomics.wait(slots, SEQ, seq, remaining) !== "timed-out") {
        changed = true;
        break;
      }
      remaining = due - performance.now();
    }
    if (changed) continue; // re-armed, disarmed or stopped meanwhile
    self.postMessage(seq);
    // One post per arm: wait for the next.
    while (Atomics.load(slots, SEQ) === seq && Atomics.load(slots, STOP) === 0) {
      Atomics.wait(slots, SEQ, seq, 1000);
    }
  }
  self.close();
};
