/**
 * The store of `--dry-run`: prints each masked row (or reject) as one JSON
 * line on stdout and commits nothing, so the pipeline deletes nothing.
 *
 * @module
 */

import type { RejectReason, Store, WriteItem, WriteOutcome } from "../types.ts";

/**
 * A `Store` for `--dry-run`: prints each masked row (or reject) as one JSON
 * line and commits nothing, so the pipeline deletes nothing. Vault entries
 * are neither printed nor kept.
 */
export function dryRunStore(writeLine: (line: string) => void): Store {
  return {
    write(items: readonly WriteItem[]): Promise<WriteOutcome> {
      let inserted = 0;
      const rejected: Partial<Record<RejectReason, number>> = {};
      const rejectedIds: string[] = [];
      for (const item of items) {
        if (item.kind === "row") {
          inserted++;
          writeLine(JSON.stringify({ message_id: item.id, ...item.row }));
        } else {
          rejected[item.reject.reason] = (rejected[item.reject.reason] ?? 0) + 1;
          rejectedIds.push(item.id);
          writeLine(
            JSON.stringify({
              message_id: item.id,
              rejected: item.reject.reason,
              detail: item.reject.detail,
            }),
          );
        }
      }
      return Promise.resolve({
        inserted,
        rejected,
        rejectedIds,
        redelivered: 0,
        refused: [],
        rejectNotes: items.flatMap((i) =>
          i.kind === "reject"
            ? [{ id: i.id, reason: i.reject.reason, detail: i.reject.detail }]
            : []
        ),
        committed: false,
      });
    },
  };
}
