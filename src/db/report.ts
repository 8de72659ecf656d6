/**
 * What `report` (and the end of `demo`) reads: a few rows, the values seen in
 * more than one login (from the duplicate views) and the rejects by reason.
 * Read-only SQL.
 *
 * @module
 */

import { DatabaseError } from "../errors.ts";
import { type Deployment, describeDbError } from "./pool.ts";
import { nothingThere, schemaState } from "./schema.ts";

/** What `report` finds; `--summary-json` prints it. */
export interface Report {
  readonly "rows_in_table": number;
  readonly "first_date": string | null;
  readonly "last_date": string | null;
  readonly "repeated_masked_ips": number;
  readonly "repeated_masked_device_ids": number;
  /** The most repeated masked IPs, most logins first. */
  readonly "top_masked_ips": readonly { masked_ip: string; logins: number; users: number }[];
  readonly "rejects_by_reason": Readonly<Record<string, number>>;
}

/** The report with what a person sees besides it: sample rows, and where the rejects are. */
export interface FoundReport {
  readonly report: Report;
  readonly sample: Record<string, unknown>[];
  readonly rejectsTable: string;
}

/** Version 3 added the views this reads. */
const VIEWS_VERSION = 3;

/**
 * Reads the report from a schema this build has just migrated (`demo`),
 * checking nothing first.
 */
export async function readReport(db: Deployment): Promise<FoundReport> {
  const sql = db.sql;
  const data = sql(db.schemas.schema);
  const state = sql(db.schemas.stateSchema);
  const sample = await sql<Record<string, unknown>[]>`
    SELECT user_id, device_type, masked_ip, masked_device_id, locale,
           ${data}.app_version_text(app_version) AS app_version, create_date::text
    FROM ${data}.user_logins LIMIT 5`;
  const [counts] = await sql<
    { rows: number; first: string | null; last: string | null; ips: number; devices: number }[]
  >`
    SELECT (SELECT pg_catalog.count(*)::int FROM ${data}.user_logins) AS rows,
           (SELECT pg_catalog.min(create_date)::text FROM ${data}.user_logins) AS first,
           (SELECT pg_catalog.max(create_date)::text FROM ${data}.user_logins) AS last,
           (SELECT pg_catalog.count(*)::int FROM ${data}.user_logins_duplicate_ips) AS ips,
           (SELECT pg_catalog.count(*)::int FROM ${data}.user_logins_duplicate_devices) AS devices`;
  const top = await sql<{ masked_ip: string; logins: number; users: number }[]>`
    SELECT masked_ip, logins::int, users::int FROM ${data}.user_logins_duplicate_ips
    ORDER BY logins DESC, masked_ip LIMIT 5`;
  const rejects = await sql<{ reason: string; n: number }[]>`
    SELECT reason, pg_catalog.count(*)::int AS n FROM ${state}.login_etl_rejects
    GROUP BY reason ORDER BY n DESC, reason`;
  return {
    sample: sample.map((r) => ({ ...r })),
    report: {
      rows_in_table: counts?.rows ?? 0,
      first_date: counts?.first ?? null,
      last_date: counts?.last ?? null,
      repeated_masked_ips: counts?.ips ?? 0,
      repeated_masked_device_ids: counts?.devices ?? 0,
      top_masked_ips: top.map((t) => ({ ...t })),
      rejects_by_reason: Object.fromEntries(rejects.map((r) => [r.reason, r.n])),
    },
    rejectsTable: `${db.schemas.stateSchema}.login_etl_rejects`,
  };
}

/**
 * Reads the report from any deployment (`report`): refused, with the fix,
 * where there are no tables or the schema predates the views.
 *
 * @throws {DatabaseError} code `db_schema`
 */
export async function readDeployedReport(db: Deployment): Promise<FoundReport> {
  const { schema } = db.schemas;
  const state = await schemaState(db.sql, db.schemas);
  if (state.version === 0) throw nothingThere(db.schemas);
  if (state.version < VIEWS_VERSION) {
    throw new DatabaseError(
      "db_schema",
      `The schema in ${schema} is at version ${state.version}; report reads the views of version ${VIEWS_VERSION}: run \`login-etl migrate\` as the owner role`,
    );
  }
  return await readReport(db).catch((error: unknown) => {
    throw new DatabaseError(
      "db_schema",
      `Cannot read the report from schema ${schema}: ${describeDbError(error)}`,
      { cause: error },
    );
  });
}
