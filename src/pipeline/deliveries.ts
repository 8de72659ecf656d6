/**
 * Folding repeated deliveries of one MessageId in a batch. Pure.
 *
 * @module
 */

import type { ReceivedMessage } from "../types.ts";

/** Deliveries of one batch folded by MessageId. */
export interface FoldedBatch {
  /** One delivery per MessageId, the first seen: what gets validated and written. */
  readonly unique: readonly ReceivedMessage[];
  /** Deliveries beyond the first of an id: counted as redelivered, deleted too. */
  readonly repeats: readonly ReceivedMessage[];
}

/**
 * Folds repeated deliveries of one MessageId in a batch. SQS may hand a
 * message to a second receive while the first copy still waits in our buffer
 * (its visibility ran out); writing both would insert two rows in one
 * statement, which the ledger cannot catch.
 */
export function foldDeliveries(messages: readonly ReceivedMessage[]): FoldedBatch {
  const seen = new Set<string>();
  const unique: ReceivedMessage[] = [];
  const repeats: ReceivedMessage[] = [];
  for (const message of messages) {
    if (seen.has(message.id)) repeats.push(message);
    else {
      seen.add(message.id);
      unique.push(message);
    }
  }
  return { unique, repeats };
}
