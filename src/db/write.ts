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
import type { RejectReason, Store, VaultRow, WriteItem, WriteOutcome } from "../types.ts";

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
 * A `Store` over Postgres. Items must have distinct ids (see `foldDeliveries`).
 * A write not answered within `writeTimeoutMs` is abandoned with its
 * connections and reported as transient: if it did commit, the retry finds
 * its ids in the ledger and writes nothing twice.
 */
export function postgresStore(db: Database, options: { readonly writeTimeoutMs: number }): Store {
  return {
    async write(items: readonly WriteItem[]): Promise<WriteOutcome> {
      if (items.length === 0) {
        return { inserted: 0, rejected: {}, rejectedIds: [], redelivered: 0, committed: true };
      }
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
      let rows: Awaited<ReturnType<typeof writeStatement>>;
      try {
        // A single statement is a single transaction: ledger entries, rows and
        // rejects commit together or not at all, in one round trip.
        rows = await Promise.race([writeStatement(db.sql, c), timeout]);
      } catch (error) {
        throw new DatabaseError(
          "db_write",
          `Cannot write a batch of ${items.length} messages: ${describeDbError(error)}`,
          {
            cause: error,
            transient: isTransientDbError(error),
            messageIds: c.ids,
          },
        );
      } finally {
        clearTimeout(timer);
      }
      const result = rows[0];
      const inserted = result?.inserted ?? 0;
      const rejected = (result?.rejected ?? {}) as Partial<Record<RejectReason, number>>;
      let rejectedTotal = 0;
      for (const n of Object.values(rejected)) rejectedTotal += n ?? 0;
      return {
        inserted,
        rejected,
        rejectedIds: result?.rejected_ids ?? [],
        redelivered: items.length - inserted - rejectedTotal,
        committed: true,
      };
    },
  };
}

function writeStatement(sql: Sql, c: Columns) {
  const r = c.rows;
  const j = c.rejects;
  const v = c.vault;
  // Only with entries to vault, so a consumer without the vault needs no
  // EXECUTE on the function. The function is our only way into the vault
  // (no privilege on the table itself); the outer SELECT reads the CTE so it
  // runs. Entries of redelivered messages are dropped by the join on fresh.
  const vaulted = v.ids.length === 0 ? sql`` : sql`, vaulted AS (
          SELECT login_etl_vault_put(
            array_agg(e.masked_value ORDER BY e.masked_value), array_agg(e.field ORDER BY e.masked_value),
            array_agg(e.ciphertext ORDER BY e.masked_value), array_agg(e.iv ORDER BY e.masked_value),
            array_agg(e.key_id ORDER BY e.masked_value))
          FROM unnest(${pgArray(v.ids)}::text[], ${pgArray(v.masked)}::text[], ${
    pgArray(v.fields)
  }::text[],
                      ${pgArray(v.ciphertexts)}::bytea[], ${pgArray(v.ivs)}::bytea[], ${
    pgArray(v.keyIds)
  }::text[])
            AS e(message_id, masked_value, field, ciphertext, iv, key_id)
          JOIN fresh USING (message_id)
        )`;
  return sql<{ inserted: number; rejected: Record<string, number>; rejected_ids: string[] }[]>`
        WITH fresh AS (
          INSERT INTO login_etl_ledger (message_id, sent_date)
          SELECT i.id, i.day FROM unnest(${pgArray(c.ids)}::text[], ${
    pgArray(c.sentDates)
  }::date[]) WITH ORDINALITY AS i(id, day, n)
          -- Ids recorded before the ledger was partitioned carry no day of
          -- their own (migration 5); they are found by id alone.
          WHERE NOT EXISTS (SELECT FROM login_etl_ledger u
                            WHERE u.sent_date < '2000-01-01' AND u.message_id = i.id)
          ORDER BY i.n
          ON CONFLICT (message_id, sent_date) DO NOTHING
          RETURNING message_id
        ), rows AS (
          INSERT INTO user_logins
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
          INSERT INTO login_etl_rejects
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
        SELECT (SELECT count(*) FROM rows)::int AS inserted,${
    v.ids.length === 0 ? sql`` : sql` (SELECT count(*) FROM vaulted)::int AS vaulted_calls,`
  }
               (SELECT coalesce(json_object_agg(reason, n), '{}'::json)
                  FROM (SELECT reason, count(*)::int AS n FROM rejects GROUP BY reason) AS g) AS rejected,
               (SELECT coalesce(array_agg(message_id ORDER BY message_id), '{}') FROM rejects) AS rejected_ids`;
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
      return Promise.resolve({ inserted, rejected, rejectedIds, redelivered: 0, committed: false });
    },
  };
}
