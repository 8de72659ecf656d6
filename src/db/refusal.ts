/**
 * Refusal isolation: when Postgres refuses a batch for a data error, which
 * messages it refuses, or whether the table refuses every row. The batch is
 * split in halves, each written on its own, down to the single messages it
 * refuses; everything else commits. A refused message is the message's fault
 * only while the table still takes a row: another message of the batch
 * committed, or a probe row does in a rolled-back transaction. Otherwise the
 * table is at fault for every message, and the write fails with one line
 * naming the constraint or column. The statement itself is `write.ts`'s.
 *
 * @module
 */

import { DatabaseError } from "../errors.ts";
import type { Masked, Refusal, RejectNote, RejectReason, WriteItem } from "../types.ts";
import { describeDbError, isTransientDbError } from "./pool.ts";

/** What one write statement reported. */
export interface Written {
  inserted: number;
  rejected: Partial<Record<RejectReason, number>>;
  rejectedIds: string[];
  /** Items the statement found already in the ledger. */
  redelivered: number;
  rejectNotes: RejectNote[];
}

/**
 * True for errors a message's own data can cause: SQLSTATE class 22 (data
 * exception: a value too long for a narrowed column, out of range), class
 * 23 (integrity constraint violation: a CHECK, a unique index, NOT NULL, a
 * foreign key) and P0001 (RAISE EXCEPTION in a trigger). Whether it is the
 * message or the table is decided by `isolate`, not by the code alone.
 */
export function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && (/^(22|23)/.test(code) || code === "P0001");
}

/**
 * What refused a row, from the error's fields: the SQLSTATE, the constraint,
 * column and table. Never the error's message or detail, which quote values
 * ("Key (user_id)=(…) already exists").
 */
export function refusalDetail(error: unknown): { sqlstate: string; detail: string } {
  const e = error as {
    code?: string;
    constraint_name?: string;
    column_name?: string;
    table_name?: string;
    routine?: string;
  };
  const sqlstate = e.code ?? "XX000";
  const parts = [`SQLSTATE ${sqlstate}`];
  if (e.constraint_name) parts.push(`constraint ${e.constraint_name}`);
  if (e.column_name) parts.push(`column ${e.column_name}`);
  if (e.table_name) parts.push(`table ${e.table_name}`);
  if (sqlstate === "P0001") parts.push("raised by a trigger or function");
  return { sqlstate, detail: `Postgres refused the row: ${parts.join(", ")}` };
}

/**
 * A row that stands for "a normal login": if the table refuses even this, the
 * table's state is at fault (a NOT NULL column added without a default, a
 * dropped column, a missing privilege), not the messages. Written only in a
 * transaction that is rolled back.
 */
export function probeItem(): WriteItem {
  const day = new Date().toISOString().slice(0, 10);
  return {
    kind: "row",
    id: `login-etl-probe-${crypto.randomUUID()}`,
    sentDate: day,
    row: {
      user_id: "login-etl-probe",
      device_type: "android",
      // Shaped as real masks: a key id, a colon, 43 base64url characters.
      masked_ip: `k1:${"login-etl-probe-ip".padEnd(43, "A")}` as Masked,
      masked_device_id: `k1:${"login-etl-probe-device".padEnd(43, "A")}` as Masked,
      locale: "en",
      app_version: 1_000_000,
      create_date: day,
    },
  };
}

/** What isolating a refused batch needs of the store. */
export interface Isolating {
  /** Writes `part` in one statement (its vault entries with it), or throws what Postgres threw. */
  readonly statement: (part: readonly WriteItem[]) => Promise<Written>;
  /** Writes `probeItem()` in a rolled-back transaction: null when the table takes it, else what Postgres threw. */
  readonly probe: () => Promise<unknown>;
  /** The error of a write that failed for something other than its data. */
  readonly failure: (part: readonly WriteItem[], error: unknown) => Error;
  /** A table refusing every row is retried with backoff (run) rather than final (drain). */
  readonly systemicIsTransient: boolean;
}

/**
 * Splits a refused batch down to the messages Postgres refuses and commits
 * the rest; returns what was written and the messages refused (not yet
 * recorded: the sink records each as a `db_refused` reject).
 *
 * @throws {DatabaseError} when the table refuses every row, or refuses the
 *   reject of a message; transient as `systemicIsTransient` says
 */
export async function isolate(
  items: readonly WriteItem[],
  store: Isolating,
): Promise<Written & { refused: Refusal[] }> {
  const total: Written = {
    inserted: 0,
    rejected: {},
    rejectedIds: [],
    redelivered: 0,
    rejectNotes: [],
  };
  const refused: Refusal[] = [];
  const attempt = async (part: readonly WriteItem[]): Promise<void> => {
    try {
      const w = await store.statement(part);
      total.inserted += w.inserted;
      total.redelivered += w.redelivered;
      total.rejectedIds.push(...w.rejectedIds);
      total.rejectNotes.push(...w.rejectNotes);
      for (const [reason, n] of Object.entries(w.rejected)) {
        total.rejected[reason as RejectReason] = (total.rejected[reason as RejectReason] ?? 0) +
          (n ?? 0);
      }
    } catch (error) {
      if (!isDataError(error)) throw store.failure(part, error);
      const only = part.length === 1 ? part[0] : undefined;
      if (only !== undefined) {
        refused.push({ id: only.id, ...refusalDetail(error) });
        return;
      }
      const half = part.length >> 1;
      await attempt(part.slice(0, half));
      await attempt(part.slice(half));
    }
  };
  await attempt(items);
  if (refused.length === 0) return { ...total, refused };
  const systemic = (error: unknown, what: string) =>
    new DatabaseError(
      "db_write",
      `${what}; not the messages' fault, so none is rejected and all stay queued: fix the table (or the role's privileges) and run again`,
      {
        cause: error,
        transient: store.systemicIsTransient || isTransientDbError(error),
        messageIds: items.map((i) => i.id),
      },
    );
  // Only a row in user_logins shows the table takes rows: a batch whose
  // only committed part was a reject (an invalid message) proves nothing.
  if (total.inserted === 0) {
    const probe = await store.probe();
    if (probe !== null) {
      const what = isDataError(probe)
        ? `${refusalDetail(probe).detail.replace("refused the row", "refuses every row")}`
        : `Postgres refuses every row: ${describeDbError(probe)}`;
      throw systemic(probe, what);
    }
  }
  // The table takes rows now. Each refused message is tried once more, so
  // that one refused while the table was being fixed (a column dropped
  // mid-isolation) is written rather than rejected.
  const byId = new Map(items.map((i) => [i.id, i]));
  for (const candidate of refused.splice(0)) {
    await attempt([byId.get(candidate.id) as WriteItem]);
  }
  // A reject carries nothing of the message but a redacted body: when one
  // is refused, the rejects table (or the ledger) is at fault, and a
  // message must never be deleted without its row or its reject.
  const refusedReject = refused.find((r) => byId.get(r.id)?.kind === "reject");
  if (refusedReject !== undefined) {
    throw systemic(
      undefined,
      refusedReject.detail.replace("refused the row", "refuses the reject of a message"),
    );
  }
  return { ...total, refused };
}
