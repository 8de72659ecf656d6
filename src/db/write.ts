/**
 * The write stage: one statement, hence one transaction, records a batch's
 * MessageIds in the ledger and inserts the rows and rejects of the ids that
 * were new. Ids already recorded (redeliveries) are counted, not written.
 *
 * @module
 */

import {
  byteaHex,
  type Database,
  describeDbError,
  isTransientDbError,
  pgArray,
  type Sql,
} from "./pool.ts";
import { DatabaseError } from "../errors.ts";
import type { Schemas } from "./schemas.ts";
import type {
  Masked,
  Refusal,
  RejectNote,
  RejectReason,
  Store,
  VaultRow,
  WriteItem,
  WriteOutcome,
} from "../types.ts";

/** Column arrays for one batch, as `unnest` takes them. */
interface Columns {
  readonly ids: string[];
  /** Ledger days, as `WriteItem.sentDate`; '-infinity' for messages the queue did not date. */
  readonly sentDates: string[];
  readonly rows: {
    ids: string[];
    userIds: string[];
    deviceTypes: string[];
    maskedIps: string[];
    maskedDeviceIds: string[];
    locales: (string | null)[];
    appVersions: number[];
    createDates: string[];
  };
  readonly vault: {
    ids: string[];
    masked: string[];
    fields: string[];
    ciphertexts: string[];
    ivs: string[];
    keyIds: string[];
  };
  readonly rejects: {
    ids: string[];
    reasons: string[];
    details: string[];
    bodies: (string | null)[];
    bodyBytes: number[];
    bodyHmacs: string[];
    sentAts: string[];
  };
}

/**
 * The ledger day of a message without a SentTimestamp: the same on every
 * delivery, as the key needs, and inside `login_etl_ledger_undated`.
 */
const UNDATED = "-infinity";

/**
 * Splits items into column arrays. Ids are sorted so that concurrent
 * consumers lock ledger keys in one order and cannot deadlock each other.
 */
export function toColumns(items: readonly WriteItem[]): Columns {
  const sorted = [...items].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const columns: Columns = {
    ids: [],
    sentDates: [],
    rows: {
      ids: [],
      userIds: [],
      deviceTypes: [],
      maskedIps: [],
      maskedDeviceIds: [],
      locales: [],
      appVersions: [],
      createDates: [],
    },
    vault: { ids: [], masked: [], fields: [], ciphertexts: [], ivs: [], keyIds: [] },
    rejects: {
      ids: [],
      reasons: [],
      details: [],
      bodies: [],
      bodyBytes: [],
      bodyHmacs: [],
      sentAts: [],
    },
  };
  const vaultEntries: { id: string; entry: VaultRow }[] = [];
  for (const item of sorted) {
    columns.ids.push(item.id);
    columns.sentDates.push(item.sentDate ?? UNDATED);
    if (item.kind === "row") {
      const r = columns.rows;
      r.ids.push(item.id);
      r.userIds.push(item.row.user_id);
      r.deviceTypes.push(item.row.device_type);
      r.maskedIps.push(item.row.masked_ip);
      r.maskedDeviceIds.push(item.row.masked_device_id);
      r.locales.push(item.row.locale);
      r.appVersions.push(item.row.app_version);
      r.createDates.push(item.row.create_date);
      for (const entry of item.vault ?? []) vaultEntries.push({ id: item.id, entry });
    } else {
      const j = columns.rejects;
      j.ids.push(item.id);
      j.reasons.push(item.reject.reason);
      j.details.push(item.reject.detail);
      j.bodies.push(item.reject.masked_body);
      j.bodyBytes.push(item.reject.body_bytes);
      j.bodyHmacs.push(item.reject.body_hmac);
      j.sentAts.push(new Date(item.reject.sent_at_ms).toISOString());
      for (const entry of item.vault ?? []) vaultEntries.push({ id: item.id, entry });
    }
  }
  // Vault keys are locked in mask order for the same reason: two consumers
  // vaulting the same two values in opposite orders would deadlock.
  vaultEntries.sort((
    a,
    b,
  ) => (a.entry.masked < b.entry.masked ? -1 : a.entry.masked > b.entry.masked ? 1 : 0));
  for (const { id, entry } of vaultEntries) {
    const v = columns.vault;
    v.ids.push(id);
    v.masked.push(entry.masked);
    v.fields.push(entry.field);
    v.ciphertexts.push(byteaHex(entry.ciphertext));
    v.ivs.push(byteaHex(entry.iv));
    v.keyIds.push(entry.keyId);
  }
  return columns;
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

/** A batch written whole: what one statement reported. */
interface Written {
  inserted: number;
  rejected: Partial<Record<RejectReason, number>>;
  rejectedIds: string[];
  /** Items the statement found already in the ledger. */
  redelivered: number;
  rejectNotes: RejectNote[];
}

/**
 * A row that stands for "a normal login": if the table refuses even this, the
 * table's state is at fault (a NOT NULL column added without a default, a
 * dropped column, a missing privilege), not the messages. Written only in a
 * transaction that is rolled back.
 */
function probeItem(): WriteItem {
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

/** Thrown inside the probe's transaction so that it rolls back. */
class ProbeRollback extends Error {}

/**
 * A `Store` over Postgres. Items must have distinct ids (see `foldDeliveries`).
 * A write not answered within `writeTimeoutMs` is abandoned with its
 * connections and reported as transient: if it did commit, the retry finds
 * its ids in the ledger and writes nothing twice.
 *
 * When Postgres refuses a batch for a data error (`isDataError`), the batch
 * is split in halves, each written on its own, down to the single messages
 * it refuses; everything else commits. Those are returned as `refused` when
 * the table still takes a row: another message of the batch committed, or a
 * probe row does in a rolled-back transaction. Otherwise the table is at
 * fault for every message, and the write fails with one line naming the
 * constraint or column; it is transient (retried with backoff) when
 * `systemicIsTransient` says so, as `run` wants, and final for `drain`.
 */
export function postgresStore(
  db: Database,
  options: {
    readonly writeTimeoutMs: number;
    readonly systemicIsTransient?: boolean;
    /** Also report rejects an earlier delivery recorded (for `--reject-queue-url`). */
    readonly reportEarlierRejects?: boolean;
  },
): Store {
  /** One statement for `items`, bounded by the write timeout. */
  async function statement(items: readonly WriteItem[]): Promise<Written> {
    const c = toColumns(items);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        db.reset();
        reject(
          Object.assign(new Error(`no answer within ${options.writeTimeoutMs} ms`), {
            code: "WRITE_TIMEOUT",
          }),
        );
      }, options.writeTimeoutMs);
    });
    try {
      // A single statement is a single transaction: ledger entries, rows and
      // rejects commit together or not at all, in one round trip.
      const [result] = await Promise.race([
        writeStatement(db.sql, c, {
          schemas: db.schemas,
          earlierRejects: options.reportEarlierRejects === true,
        }),
        timeout,
      ]);
      const inserted = result?.inserted ?? 0;
      const rejected = (result?.rejected ?? {}) as Partial<Record<RejectReason, number>>;
      const rejectedIds = result?.rejected_ids ?? [];
      const fresh = new Set(rejectedIds);
      const rejectNotes: RejectNote[] = [];
      for (const item of items) {
        if (item.kind === "reject" && fresh.has(item.id)) {
          rejectNotes.push({ id: item.id, reason: item.reject.reason, detail: item.reject.detail });
        }
      }
      for (const e of result?.earlier_rejects ?? []) {
        rejectNotes.push({ id: e.id, reason: e.reason as RejectReason, detail: e.detail });
      }
      return {
        inserted,
        rejected,
        rejectedIds,
        redelivered: items.length - inserted - rejectedIds.length,
        rejectNotes,
      };
    } finally {
      clearTimeout(timer);
    }
  }

  const failure = (items: readonly WriteItem[], error: unknown, what?: string) =>
    new DatabaseError(
      "db_write",
      what ?? `Cannot write a batch of ${items.length} messages: ${describeDbError(error)}`,
      {
        cause: error,
        transient: isTransientDbError(error),
        messageIds: items.map((i) => i.id).sort(),
      },
    );

  /** Splits a refused batch down to the messages Postgres refuses; commits the rest. */
  async function isolate(items: readonly WriteItem[]): Promise<Written & { refused: Refusal[] }> {
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
        const w = await statement(part);
        total.inserted += w.inserted;
        total.redelivered += w.redelivered;
        total.rejectedIds.push(...w.rejectedIds);
        total.rejectNotes.push(...w.rejectNotes);
        for (const [reason, n] of Object.entries(w.rejected)) {
          total.rejected[reason as RejectReason] = (total.rejected[reason as RejectReason] ?? 0) +
            (n ?? 0);
        }
      } catch (error) {
        if (!isDataError(error)) throw failure(part, error);
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
          transient: options.systemicIsTransient === true || isTransientDbError(error),
          messageIds: items.map((i) => i.id),
        },
      );
    // Only a row in user_logins shows the table takes rows: a batch whose
    // only committed part was a reject (an invalid message) proves nothing.
    if (total.inserted === 0) {
      const probe = await db.sql.begin(async (tx) => {
        await writeStatement(tx as unknown as Sql, toColumns([probeItem()]), {
          schemas: db.schemas,
          earlierRejects: false,
        });
        throw new ProbeRollback();
      }).catch((error: unknown) => error);
      if (!(probe instanceof ProbeRollback)) {
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

  return {
    async write(items: readonly WriteItem[]): Promise<WriteOutcome> {
      if (items.length === 0) {
        return {
          inserted: 0,
          rejected: {},
          rejectedIds: [],
          redelivered: 0,
          refused: [],
          rejectNotes: [],
          committed: true,
        };
      }
      let written: Written & { refused: Refusal[] };
      try {
        written = { ...await statement(items), refused: [] };
      } catch (error) {
        if (!isDataError(error)) throw failure(items, error);
        written = await isolate(items);
      }
      return { ...written, committed: true };
    },
  };
}

function writeStatement(
  sql: Sql,
  c: Columns,
  options: { readonly schemas: Schemas; readonly earlierRejects: boolean },
) {
  const r = c.rows;
  const j = c.rejects;
  const v = c.vault;
  const data = sql(options.schemas.schema);
  const state = sql(options.schemas.stateSchema);
  // Functions are named with their schema, as in the SECURITY DEFINER
  // functions (migrations.ts), though the session searches pg_catalog alone.
  // unnest with several arrays needs no prefix: the parser turns it into
  // pg_catalog.unnest of each array itself.
  // Only with entries to vault, so a consumer without the vault needs no
  // EXECUTE on the function. The function is our only way into the vault
  // (no privilege on the table itself); the outer SELECT reads the CTE so it
  // runs. Entries of redelivered messages are dropped by the join on fresh.
  const vaulted = v.ids.length === 0 ? sql`` : sql`, vaulted AS (
          SELECT ${state}.login_etl_vault_put(
            pg_catalog.array_agg(e.masked_value ORDER BY e.masked_value),
            pg_catalog.array_agg(e.field ORDER BY e.masked_value),
            pg_catalog.array_agg(e.ciphertext ORDER BY e.masked_value),
            pg_catalog.array_agg(e.iv ORDER BY e.masked_value),
            pg_catalog.array_agg(e.key_id ORDER BY e.masked_value))
          FROM unnest(${pgArray(v.ids)}::text[], ${pgArray(v.masked)}::text[], ${
    pgArray(v.fields)
  }::text[],
                      ${pgArray(v.ciphertexts)}::bytea[], ${pgArray(v.ivs)}::bytea[], ${
    pgArray(v.keyIds)
  }::text[])
            AS e(message_id, masked_value, field, ciphertext, iv, key_id)
          JOIN fresh USING (message_id)
        )`;
  // Rejects of this batch's ids that an earlier delivery recorded: their raw
  // copy for --reject-queue-url may not have been sent then.
  const earlier = options.earlierRejects
    ? sql`,
               (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object('id', r.message_id, 'reason', r.reason, 'detail', r.detail)), '[]'::json)
                  FROM ${state}.login_etl_rejects r
                  WHERE r.message_id = ANY(${pgArray(c.ids)}::text[])
                    AND NOT EXISTS (SELECT FROM fresh f WHERE f.message_id = r.message_id)) AS earlier_rejects`
    : sql``;
  return sql<
    {
      inserted: number;
      rejected: Record<string, number>;
      rejected_ids: string[];
      earlier_rejects?: { id: string; reason: string; detail: string }[];
    }[]
  >`
        WITH fresh AS (
          INSERT INTO ${state}.login_etl_ledger (message_id, sent_date)
          SELECT i.id, i.day FROM unnest(${pgArray(c.ids)}::text[], ${
    pgArray(c.sentDates)
  }::date[]) WITH ORDINALITY AS i(id, day, n)
          -- Ids recorded before the ledger was partitioned carry no day of
          -- their own (migration 5); they are found by id alone.
          WHERE NOT EXISTS (SELECT FROM ${state}.login_etl_ledger u
                            WHERE u.sent_date < '2000-01-01' AND u.message_id = i.id)
          ORDER BY i.n
          ON CONFLICT (message_id, sent_date) DO NOTHING
          RETURNING message_id
        ), rows AS (
          INSERT INTO ${data}.user_logins
            (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)
          SELECT b.user_id, b.device_type, b.masked_ip, b.masked_device_id, b.locale, b.app_version, b.create_date
          FROM unnest(${pgArray(r.ids)}::text[], ${pgArray(r.userIds)}::text[], ${
    pgArray(r.deviceTypes)
  }::text[],
                      ${pgArray(r.maskedIps)}::text[], ${pgArray(r.maskedDeviceIds)}::text[], ${
    pgArray(r.locales)
  }::text[],
                      ${pgArray(r.appVersions)}::int[], ${pgArray(r.createDates)}::date[])
            AS b(message_id, user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)
          JOIN fresh USING (message_id)
          RETURNING 1
        )${vaulted}, rejects AS (
          INSERT INTO ${state}.login_etl_rejects
            (message_id, reason, detail, masked_body, body_bytes, body_hmac, sent_at)
          SELECT x.message_id, x.reason, x.detail, x.masked_body, x.body_bytes, x.body_hmac, x.sent_at
          FROM unnest(${pgArray(j.ids)}::text[], ${pgArray(j.reasons)}::text[], ${
    pgArray(j.details)
  }::text[], ${pgArray(j.bodies)}::text[],
                      ${pgArray(j.bodyBytes)}::int[], ${pgArray(j.bodyHmacs)}::text[], ${
    pgArray(j.sentAts)
  }::timestamptz[])
            AS x(message_id, reason, detail, masked_body, body_bytes, body_hmac, sent_at)
          JOIN fresh USING (message_id)
          RETURNING message_id, reason
        )
        SELECT (SELECT pg_catalog.count(*) FROM rows)::int AS inserted,${
    v.ids.length === 0
      ? sql``
      : sql` (SELECT pg_catalog.count(*) FROM vaulted)::int AS vaulted_calls,`
  }
               (SELECT coalesce(pg_catalog.json_object_agg(reason, n), '{}'::json)
                  FROM (SELECT reason, pg_catalog.count(*)::int AS n FROM rejects GROUP BY reason) AS g) AS rejected,
               -- json, not text[]: a fresh pool may not know the array types yet
               (SELECT coalesce(pg_catalog.json_agg(message_id ORDER BY message_id), '[]'::json) FROM rejects) AS rejected_ids${earlier}`;
}

/**
 * A `Store` for `--dry-run`: prints each masked row (or reject) as one JSON
 * line and commits nothing, so the pipeline deletes nothing.
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
