/**
 * The sink in this thread: where distinct deliveries become committed rows
 * and rejects (prepare → write), with the messages Postgres refuses recorded
 * as `db_refused` rejects, and the values known to be vaulted remembered.
 * `threads.ts` runs the same sink in worker threads.
 *
 * @module
 */

import type { Masker } from "../mask.ts";
import { prepare, type Prepared } from "../transform.ts";
import type { Masked, RejectReason, Sink, Store, VaultEncrypter, WriteOutcome } from "../types.ts";

/** What the prepare stage needs besides the masker. */
export interface SinkOptions {
  readonly maxBodyBytes: number;
  readonly maxReceives: number | null;
  /** The vault's cipher (`VaultCipher`), when a vault key is configured. */
  readonly vault?: VaultEncrypter;
}

/** Masks known to be in the vault: values are encrypted once, not on every login. */
const KNOWN_VAULTED_LIMIT = 200_000;

/**
 * Records the messages Postgres refused as `db_refused` rejects, in a write
 * of their own (the rest of their batch has committed, its vault entries
 * with it), and merges the two outcomes. Until that commits they are not
 * deleted: a crash in between leaves them queued, and the ledger keeps the
 * retry exactly-once.
 */
async function recordRefusals(
  outcome: WriteOutcome,
  prepared: Prepared,
  store: Store,
): Promise<WriteOutcome> {
  if (outcome.refused.length === 0) return outcome;
  const recorded = await store.write(await prepared.refusedRejects(outcome.refused));
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
 * The masks a committed batch vaulted: its entries whose mask a row not
 * refused holds. The write vaults no other; of those, a redelivered row's
 * went in with its first delivery's row, so they are counted as vaulted too.
 */
function vaultedBy(prepared: Prepared, outcome: WriteOutcome): Masked[] {
  const refused = new Set(outcome.refused.map((r) => r.id));
  const vaulted: Masked[] = [];
  for (const item of prepared.items) {
    if (item.kind !== "row" || refused.has(item.id)) continue;
    for (const masked of [item.row.masked_ip, item.row.masked_device_id]) {
      if (prepared.vault.has(masked)) vaulted.push(masked);
    }
  }
  return vaulted;
}

/** A sink in this thread: `prepare` then `store.write`. */
export function localSink(masker: Masker, store: Store, options: SinkOptions): Sink {
  // Filled only after a commit: a rolled-back batch must not mark its values vaulted.
  const known = new Set<string>();
  const vault = options.vault === undefined
    ? undefined
    : { cipher: options.vault, known: (masked: string) => known.has(masked) };
  const prepareOptions = {
    maxBodyBytes: options.maxBodyBytes,
    maxReceives: options.maxReceives,
    ...(vault === undefined ? {} : { vault }),
  };
  return {
    async write(messages) {
      const prepared = await prepare(messages, masker, prepareOptions);
      const written = await store.write(prepared.items, prepared.vault);
      const outcome = await recordRefusals(written, prepared, store);
      if (vault !== undefined && outcome.committed) {
        if (known.size > KNOWN_VAULTED_LIMIT) known.clear();
        for (const masked of vaultedBy(prepared, outcome)) known.add(masked);
      }
      return outcome;
    },
    close: () => Promise.resolve(),
  };
}
