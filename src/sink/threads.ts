/**
 * The sink in worker threads: the protocol between this thread and a
 * worker (`worker.ts`) running a `localSink`, so that validation, masking
 * and Postgres encoding run on another core while this one drives SQS; and
 * how many workers to start.
 *
 * @module
 */

import { type ErrorCode, EtlError } from "../errors.ts";
import type { PgConnection } from "../db/connection.ts";
import type { ReceivedMessage, Sink, WriteOutcome } from "../types.ts";

/**
 * How many sink worker threads to start: the configured number, or when
 * unset, one if this process may use two CPUs or more and none otherwise.
 * `cpus` is `navigator.hardwareConcurrency`, which counts the CPUs of the
 * process's affinity mask and cgroup quota, so a pod limited to one CPU gets
 * none. A worker thread is a second V8 isolate, so it costs memory; on two
 * cores shared with SQS and Postgres it moves clearly more, on one CPU it
 * gave no clear gain (figures in docs/performance.md).
 */
export function workerThreadsFor(configured: number | null, cpus: number): number {
  return configured ?? (cpus >= 2 ? 1 : 0);
}

/** What the worker needs to build its own sink. Holds the raw secret: never log it. */
export interface WorkerInit {
  readonly connection: PgConnection;
  readonly schema: string;
  readonly stateSchema: string;
  readonly poolMax: number;
  readonly writeTimeoutMs: number;
  /** Retry a table that refuses every row (run), rather than fail at once (drain). */
  readonly systemicIsTransient: boolean;
  /** Report rejects an earlier delivery recorded (for --reject-queue-url). */
  readonly reportEarlierRejects: boolean;
  readonly secret: Uint8Array;
  readonly keyId: string;
  readonly prepare: { readonly maxBodyBytes: number; readonly maxReceives: number | null };
  /**
   * The vault key the worker writes with, as plain data, when the vault is
   * on: a pair's public key, or a secret (which then crosses to the worker).
   */
  readonly vault: {
    readonly current: string;
    readonly keys: readonly (readonly [string, PlainVaultKey])[];
  } | null;
}

/** A vault key as structured clone carries it to a worker. */
export type PlainVaultKey =
  | { readonly kind: "secret"; readonly secret: Uint8Array }
  | { readonly kind: "pair"; readonly publicKey: Uint8Array; readonly privateKey: null };

/** Messages from the worker. */
export type WorkerReply =
  | { readonly type: "ready" }
  | { readonly type: "written"; readonly seq: number; readonly outcome: WriteOutcome }
  | {
    readonly type: "failed";
    readonly seq: number;
    readonly error: {
      readonly code: string;
      readonly message: string;
      readonly transient: boolean;
      readonly messageIds: readonly string[];
    };
  }
  | { readonly type: "closed" };

/** Messages to the worker. */
export type WorkerRequest =
  | { readonly type: "init"; readonly init: WorkerInit }
  | { readonly type: "write"; readonly seq: number; readonly messages: readonly ReceivedMessage[] }
  | { readonly type: "close" };

/**
 * Starts a worker thread running a `localSink` over its own Postgres pool and
 * masker, and returns a sink that forwards batches to it.
 *
 * @throws {EtlError} when the worker cannot start
 */
export async function workerSink(init: WorkerInit): Promise<Sink> {
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  const waiting = new Map<
    number,
    { resolve: (o: WriteOutcome) => void; reject: (e: Error) => void }
  >();
  let seq = 0;
  let onReady: ((error: Error | null) => void) | null = null;
  let onClosed: (() => void) | null = null;
  worker.onmessage = (event: MessageEvent<WorkerReply>) => {
    const reply = event.data;
    switch (reply.type) {
      case "ready":
        onReady?.(null);
        return;
      case "written":
        waiting.get(reply.seq)?.resolve(reply.outcome);
        waiting.delete(reply.seq);
        return;
      case "failed": {
        const { code, message, transient, messageIds } = reply.error;
        // The worker's error, code and all: the pipeline routes on `transient`.
        const error = new EtlError(code as ErrorCode, message, { transient, messageIds });
        waiting.get(reply.seq)?.reject(error);
        waiting.delete(reply.seq);
        return;
      }
      case "closed":
        onClosed?.();
        return;
    }
  };
  worker.onerror = (event) => {
    event.preventDefault();
    const error = new EtlError("internal", `Sink worker failed: ${event.message}`);
    onReady?.(error);
    for (const pending of waiting.values()) pending.reject(error);
    waiting.clear();
  };
  const ready = new Promise<Error | null>((resolve) => (onReady = resolve));
  worker.postMessage({ type: "init", init } satisfies WorkerRequest);
  const failed = await ready;
  if (failed !== null) {
    worker.terminate();
    throw failed;
  }
  return {
    write(messages) {
      return new Promise((resolve, reject) => {
        const id = ++seq;
        waiting.set(id, { resolve, reject });
        worker.postMessage({ type: "write", seq: id, messages } satisfies WorkerRequest);
      });
    },
    async close() {
      const closed = new Promise<void>((resolve) => (onClosed = resolve));
      worker.postMessage({ type: "close" } satisfies WorkerRequest);
      // A worker that does not answer in time is terminated anyway.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([closed, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
      clearTimeout(timer);
      worker.terminate();
    },
  };
}

/**
 * `threads` worker sinks behind one: batches go to the worker with the fewest
 * in flight, so a slow transaction on one does not hold up the others.
 */
export async function workerSinks(threads: number, init: WorkerInit): Promise<Sink> {
  const sinks = await Promise.all(Array.from({ length: threads }, () => workerSink(init)));
  if (sinks.length === 1) return sinks[0] as Sink;
  const load = sinks.map(() => 0);
  return {
    async write(messages) {
      const index = load.indexOf(Math.min(...load));
      load[index] = (load[index] ?? 0) + 1;
      try {
        return await (sinks[index] as Sink).write(messages);
      } finally {
        load[index] = (load[index] ?? 1) - 1;
      }
    },
    async close() {
      await Promise.all(sinks.map((s) => s.close()));
    },
  };
}
