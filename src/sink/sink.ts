/**
 * The sink: where distinct deliveries become committed rows and rejects
 * (prepare → write). In this thread (`localSink`), or in a worker thread
 * (`workerSink`) so that validation, masking and Postgres encoding run on
 * another core while this one drives SQS.
 *
 * @module
 */

import { type ErrorCode, EtlError } from "../errors.ts";
import type { PgConnection } from "../db/connection.ts";
import type { Masker } from "../mask.ts";
import type { VaultCipher } from "../pii/vault.ts";
import { prepareItems, refusalItems } from "../transform.ts";
import type {
  ReceivedMessage,
  RejectReason,
  Store,
  VaultRow,
  WriteItem,
  WriteOutcome,
} from "../types.ts";

/** A sink's answer for one batch: the store's. */
export type SinkOutcome = WriteOutcome;

/** What the pipeline hands distinct deliveries to. */
export interface Sink {
  /** Prepares and writes one batch atomically; throws `EtlError` on failure. */
  write(messages: readonly ReceivedMessage[]): Promise<SinkOutcome>;
  /** Releases what the sink holds (a worker, connections). */
  close(): Promise<void>;
}

/** What the prepare stage needs besides the masker. */
export interface SinkOptions {
  readonly maxBodyBytes: number;
  readonly maxReceives: number | null;
  /** Vault cipher, when a vault key is configured. */
  readonly vault?: VaultCipher;
}

/** Masks known to be in the vault: values are encrypted once, not on every login. */
const KNOWN_VAULTED_LIMIT = 200_000;

/**
 * Records the messages Postgres refused as `db_refused` rejects, in a write
 * of their own (the rest of their batch has committed), and merges the two
 * outcomes. Until that commits they are not deleted: a crash in between
 * leaves them queued, and the ledger keeps the retry exactly-once.
 */
async function recordRefusals(
  outcome: WriteOutcome,
  orphans: ReadonlyMap<string, readonly VaultRow[]>,
  messages: readonly ReceivedMessage[],
  masker: Masker,
  store: Store,
): Promise<WriteOutcome> {
  if (outcome.refused.length === 0) return outcome;
  const recorded = await store.write(
    await refusalItems(messages, outcome.refused, masker, orphans),
  );
  const rejected = { ...outcome.rejected };
  for (const [reason, n] of Object.entries(recorded.rejected)) {
    rejected[reason as RejectReason] = (rejected[reason as RejectReason] ?? 0) + (n ?? 0);
  }
  return {
    inserted: outcome.inserted + recorded.inserted,
    rejected,
    rejectedIds: [...outcome.rejectedIds, ...recorded.rejectedIds],
    redelivered: outcome.redelivered + recorded.redelivered,
    refused: outcome.refused,
    rejectNotes: [...outcome.rejectNotes, ...recorded.rejectNotes],
    committed: outcome.committed && recorded.committed,
  };
}

/**
 * Vault entries that rode on a refused row while a committed row of the same
 * batch shows the same mask: a value is vaulted once per batch, on the first
 * row holding it, so without these the committed row's mask could not be
 * recovered. They go with the refused message's reject instead.
 */
export function orphanedVaultEntries(
  items: readonly WriteItem[],
  outcome: Pick<WriteOutcome, "refused">,
): Map<string, VaultRow[]> {
  const orphans = new Map<string, VaultRow[]>();
  if (outcome.refused.length === 0) return orphans;
  const refused = new Set(outcome.refused.map((r) => r.id));
  const committedMasks = new Set<string>();
  for (const item of items) {
    if (item.kind === "row" && !refused.has(item.id)) {
      committedMasks.add(item.row.masked_ip).add(item.row.masked_device_id);
    }
  }
  for (const item of items) {
    if (item.kind !== "row" || !refused.has(item.id)) continue;
    const entries = (item.vault ?? []).filter((e) => committedMasks.has(e.masked));
    if (entries.length > 0) orphans.set(item.id, entries);
  }
  return orphans;
}

/** A sink in this thread: `prepareItems` then `store.write`. */
export function localSink(masker: Masker, store: Store, options: SinkOptions): Sink {
  // Filled only after a commit: a rolled-back batch must not mark its values vaulted.
  const known = new Set<string>();
  const vault = options.vault === undefined
    ? undefined
    : { cipher: options.vault, known: (masked: string) => known.has(masked) };
  const prepare = {
    maxBodyBytes: options.maxBodyBytes,
    maxReceives: options.maxReceives,
    ...(vault === undefined ? {} : { vault }),
  };
  return {
    async write(messages) {
      const items = await prepareItems(messages, masker, prepare);
      const written = await store.write(items);
      const orphans = orphanedVaultEntries(items, written);
      const outcome = await recordRefusals(written, orphans, messages, masker, store);
      if (vault !== undefined && outcome.committed) {
        if (known.size > KNOWN_VAULTED_LIMIT) known.clear();
        // Only what was written: a refused row's entries went in only if a
        // committed row shares the mask (then with its reject).
        const refused = new Set(outcome.refused.map((r) => r.id));
        for (const item of items) {
          if (item.kind !== "row") continue;
          const entries = refused.has(item.id) ? orphans.get(item.id) ?? [] : item.vault ?? [];
          for (const e of entries) known.add(e.masked);
        }
      }
      return outcome;
    },
    close: () => Promise.resolve(),
  };
}

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
  | { readonly type: "written"; readonly seq: number; readonly outcome: SinkOutcome }
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
    { resolve: (o: SinkOutcome) => void; reject: (e: Error) => void }
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
