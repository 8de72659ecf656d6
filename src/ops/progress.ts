/**
 * drain's live progress on a terminal: one stderr line rewritten in place,
 * e.g. `12,340 done · 6,120 msg/s · ~37,600 left in queue`. The text comes
 * from `renderProgress` (pure); `startProgress` samples the counters a few
 * times a second and polls the queue depth every few seconds.
 *
 * @module
 */

import type { StatusLine } from "../log.ts";
import { fit, grouped } from "./human.ts";

/** What one progress line shows. */
export interface ProgressView {
  /** Messages finished (inserted, redelivered or rejected). */
  readonly done: number;
  /** Of those, rejected: counted here, never listed one by one on a terminal. */
  readonly rejected: number;
  /** Messages finished per second, recently. */
  readonly perSecond: number;
  /** The queue's `ApproximateNumberOfMessages`, or null before the first answer. */
  readonly queueDepth: number | null;
}

/**
 * Renders the progress line, cut to `columns - 1` characters: `\r` cannot
 * return to the start of a line the terminal has wrapped.
 */
export function renderProgress(view: ProgressView, columns = 80): string {
  const parts = [`${grouped(view.done)} done`];
  if (view.rejected > 0) parts.push(`${grouped(view.rejected)} rejected`);
  parts.push(`${grouped(view.perSecond)} msg/s`);
  if (view.queueDepth !== null) parts.push(`~${grouped(view.queueDepth)} left in queue`);
  return fit(parts.join(" · "), Math.max(1, columns - 1));
}

/** One observation of the done counter. */
export interface Sample {
  /** Monotonic time, ms. */
  readonly atMs: number;
  readonly done: number;
}

/** Messages per second between the oldest and newest sample (0 with fewer than two). */
export function rateOf(samples: readonly Sample[]): number {
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (first === undefined || last === undefined || last.atMs <= first.atMs) return 0;
  return ((last.done - first.done) * 1000) / (last.atMs - first.atMs);
}

/** How often the line is redrawn: four times a second reads as live without flicker. */
const RENDER_MS = 250;
/** The rate is averaged over this window, so it does not jump with each commit. */
const RATE_WINDOW_MS = 5000;
/** How often the queue depth is asked for: a GetQueueAttributes call, not per redraw. */
const DEPTH_POLL_MS = 3000;

/** What `startProgress` reads and where it draws. */
export interface ProgressOptions {
  /** Messages finished so far, and how many of them were rejected. */
  readonly done: () => { readonly done: number; readonly rejected: number };
  /** Asks the queue for `ApproximateNumberOfMessages`; a failure keeps the last value. */
  readonly queueDepth: () => Promise<number>;
  /** Where the line goes; log lines written through it go above the line. */
  readonly status: StatusLine;
  /** Terminal width; 80 when unknown. */
  readonly columns?: () => number;
}

/** A running progress line. */
export interface Progress {
  /** Stops updating, waits for a depth poll in flight, and erases the line. */
  stop(): Promise<void>;
}

/** Starts drawing the progress line until `stop`. */
export function startProgress(options: ProgressOptions): Progress {
  const samples: Sample[] = [];
  let depth: number | null = null;
  let polling: Promise<void> | null = null;
  let lastPollMs = -Infinity;
  const columns = options.columns ?? (() => 80);

  // The depth is asked for every few seconds; in between, what was done
  // since the answer is taken off it, so the line's end does not show a
  // queue already drained.
  let doneAtAnswer = 0;
  const poll = () => {
    lastPollMs = performance.now();
    polling = options.queueDepth().then(
      (n) => {
        depth = n;
        doneAtAnswer = options.done().done;
      },
      () => {}, // the next poll tries again; the line keeps the last depth
    ).finally(() => (polling = null));
  };
  const tick = () => {
    const now = performance.now();
    if (polling === null && now - lastPollMs >= DEPTH_POLL_MS) poll();
    const { done, rejected } = options.done();
    samples.push({ atMs: now, done });
    while (samples.length > 2 && (samples[0] as Sample).atMs < now - RATE_WINDOW_MS) {
      samples.shift();
    }
    const last = samples[samples.length - 1] as Sample;
    options.status.show(
      renderProgress({
        done: last.done,
        rejected,
        perSecond: rateOf(samples),
        queueDepth: depth === null ? null : Math.max(0, depth - (done - doneAtAnswer)),
      }, columns()),
    );
  };
  tick();
  const timer = setInterval(tick, RENDER_MS);
  return {
    async stop() {
      clearInterval(timer);
      await polling;
      options.status.clear();
    },
  };
}
