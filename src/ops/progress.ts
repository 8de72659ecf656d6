/**
 * drain's live progress on a terminal: one stderr line rewritten in place,
 * e.g. `12,340 done · 6,120 msg/s · ~37,600 left in queue`. The text comes
 * from `renderProgress` (pure); `startProgress` samples the counters a few
 * times a second and polls the queue depth every few seconds.
 *
 * @module
 */

import type { StatusLine } from "../log.ts";

/** What one progress line shows. */
export interface ProgressView {
  /** Messages finished (inserted, redelivered or rejected). */
  readonly done: number;
  /** Messages finished per second, recently. */
  readonly perSecond: number;
  /** The queue's `ApproximateNumberOfMessages`, or null before the first answer. */
  readonly queueDepth: number | null;
}

/** `12345` → `12,345`: fixed separators, so the line reads the same under any locale. */
function grouped(n: number): string {
  const digits = String(Math.max(0, Math.round(n)));
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/**
 * Renders the progress line, cut to `columns - 1` characters: `\r` cannot
 * return to the start of a line the terminal has wrapped.
 */
export function renderProgress(view: ProgressView, columns = 80): string {
  const parts = [`${grouped(view.done)} done`, `${grouped(view.perSecond)} msg/s`];
  if (view.queueDepth !== null) parts.push(`~${grouped(view.queueDepth)} left in queue`);
  const text = parts.join(" · ");
  const width = Math.max(1, columns - 1);
  return text.length > width ? `${text.slice(0, Math.max(0, width - 1))}…` : text;
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
  /** Messages finished so far. */
  readonly done: () => number;
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

  const poll = () => {
    lastPollMs = performance.now();
    polling = options.queueDepth().then(
      (n) => void (depth = n),
      () => {}, // the next poll tries again; the line keeps the last depth
    ).finally(() => (polling = null));
  };
  const tick = () => {
    const now = performance.now();
    if (polling === null && now - lastPollMs >= DEPTH_POLL_MS) poll();
    samples.push({ atMs: now, done: options.done() });
    while (samples.length > 2 && (samples[0] as Sample).atMs < now - RATE_WINDOW_MS) {
      samples.shift();
    }
    const last = samples[samples.length - 1] as Sample;
    options.status.show(
      renderProgress({ done: last.done, perSecond: rateOf(samples), queueDepth: depth }, columns()),
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
