/**
 * The write stage: one statement, hence one transaction, records a batch's
 * MessageIds in the ledger and inserts the rows and rejects of the ids that
 * were new, and vaults the entries whose masks those new rows hold. Ids
 * already recorded (redeliveries) are counted, not written. A batch Postgres
 * refuses is isolated by `refusal.ts`.
 *
 * @module
 */

import { DatabaseError } from "../errors.ts";
import type {
  Masked,
  Refusal,
  RejectNote,
  RejectReason,
  Store,
  VaultEntries,
  VaultEntry,
  WriteItem,
  WriteOutcome,
} from "../types.ts";
import {
  byteaHex,
  type Database,
  describeDbError,
  isTransientDbError,
  pgArray,
  type Sql,
} from "./pool.ts";
import { isDataError, isolate, probeItem, type Written } from "./refusal.ts";
import type { Schemas } from "./schemas.ts";

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
 * Splits items into column arrays, with the entries of `vault` whose mask a
 * row among them holds. Ids are sorted so that concurrent consumers lock
 * ledger keys in one order and cannot deadlock each other.
 */
export function toColumns(items: readonly WriteItem[], vault: VaultEntries = new Map()): Columns {
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
    vault: { masked: [], fields: [], ciphertexts: [], ivs: [], keyIds: [] },
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
  const entries = new Map<string, VaultEntry>();
  const held = (masked: Masked) => {
    const entry = vault.get(masked);
    if (entry !== undefined) entries.set(masked, entry);
  };
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
      held(item.row.masked_ip);
      held(item.row.masked_device_id);
    } else {
      const j = columns.rejects;
      j.ids.push(item.id);
      j.reasons.push(item.reject.reason);
      j.details.push(item.reject.detail);
      j.bodies.push(item.reject.masked_body);
      j.bodyBytes.push(item.reject.body_bytes);
      j.bodyHmacs.push(item.reject.body_hmac);
      j.sentAts.push(new Date(item.reject.sent_at_ms).toISOString());
    }
  }
  // Vault keys are locked in mask order for the same reason: two consumers
  // vaulting the same two values in opposite orders would deadlock.
  const sortedEntries = [...entries.values()].sort((a, b) =>
    a.masked < b.masked ? -1 : a.masked > b.masked ? 1 : 0
  );
  for (const entry of sortedEntries) {
    const v = columns.vault;
    v.masked.push(entry.masked);
    v.fields.push(entry.field);
    v.ciphertexts.push(byteaHex(entry.ciphertext));
    v.ivs.push(byteaHex(entry.iv));
    v.keyIds.push(entry.keyId);
  }
  return columns;
}

/** Thrown inside the probe's transaction so that it rolls back. */
class ProbeRollback extends Error {}

/**
 * A `Store` over Postgres. Items must have distinct ids (see `foldDeliveries`).
 * A write not answered within `writeTimeoutMs` is abandoned with its
 * connections and reported as transient: if it did commit, the retry finds
 * its ids in the ledger and writes nothing twice.
 *
 * When Postgres refuses a batch for a data error (`isDataError`), `isolate`
 * finds the messages it refuses, returned as `refused`, and commits the
 * rest; a table that refuses every row fails the write, transient (retried
 * with backoff) when `systemicIsTransient` says so, as `run` wants, and
 * final for `drain`.
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
  async function statement(items: readonly WriteItem[], vault?: VaultEntries): Promise<Written> {
    const c = toColumns(items, vault);
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
      // A single statement is a single transaction: ledger entries, rows,
      // rejects and vault entries commit together or not at all, in one
      // round trip.
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

  const failure = (items: readonly WriteItem[], error: unknown) =>
    new DatabaseError(
      "db_write",
      `Cannot write a batch of ${items.length} messages: ${describeDbError(error)}`,
      {
        cause: error,
        transient: isTransientDbError(error),
        messageIds: items.map((i) => i.id).sort(),
      },
    );

  /** Null when the table takes a normal row, in a transaction rolled back; else what Postgres threw. */
  async function probe(): Promise<unknown> {
    const ended = await db.sql.begin(async (tx) => {
      await writeStatement(tx as unknown as Sql, toColumns([probeItem()]), {
        schemas: db.schemas,
        earlierRejects: false,
      });
      throw new ProbeRollback();
    }).catch((error: unknown) => error);
    return ended instanceof ProbeRollback ? null : ended;
  }

  return {
    async write(items: readonly WriteItem[], vault?: VaultEntries): Promise<WriteOutcome> {
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
        written = { ...await statement(items, vault), refused: [] };
      } catch (error) {
        if (!isDataError(error)) throw failure(items, error);
        written = await isolate(items, {
          // Each part with the entries its own rows hold (`toColumns`).
          statement: (part) => statement(part, vault),
          probe,
          failure,
          systemicIsTransient: options.systemicIsTransient === true,
        });
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
  // runs. An entry goes in only when a row this statement inserts holds its
  // mask: new_rows, from the arrays, not RETURNING from user_logins, which
  // would need SELECT on the table.
  const vaulted = v.masked.length === 0 ? sql`` : sql`, vaulted AS (
          SELECT ${state}.login_etl_vault_put(
            pg_catalog.array_agg(e.masked_value ORDER BY e.masked_value),
            pg_catalog.array_agg(e.field ORDER BY e.masked_value),
            pg_catalog.array_agg(e.ciphertext ORDER BY e.masked_value),
            pg_catalog.array_agg(e.iv ORDER BY e.masked_value),
            pg_catalog.array_agg(e.key_id ORDER BY e.masked_value))
          FROM unnest(${pgArray(v.masked)}::text[], ${pgArray(v.fields)}::text[],
                      ${pgArray(v.ciphertexts)}::bytea[], ${pgArray(v.ivs)}::bytea[], ${
    pgArray(v.keyIds)
  }::text[])
            AS e(masked_value, field, ciphertext, iv, key_id)
          WHERE e.masked_value IN (SELECT n.masked_ip FROM new_rows n
                                   UNION ALL SELECT n.masked_device_id FROM new_rows n)
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
        ), new_rows AS (
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
        ), rows AS (
          INSERT INTO ${data}.user_logins
            (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)
          SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date
          FROM new_rows
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
    v.masked.length === 0
      ? sql``
      : sql` (SELECT pg_catalog.count(*) FROM vaulted)::int AS vaulted_calls,`
  }
               (SELECT coalesce(pg_catalog.json_object_agg(reason, n), '{}'::json)
                  FROM (SELECT reason, pg_catalog.count(*)::int AS n FROM rejects GROUP BY reason) AS g) AS rejected,
               -- json, not text[]: a fresh pool may not know the array types yet
               (SELECT coalesce(pg_catalog.json_agg(message_id ORDER BY message_id), '[]'::json) FROM rejects) AS rejected_ids${earlier}`;
}
