/**
 * `report`: what is in the database, as `demo` ends by showing it: a few
 * rows, the values seen in more than one login (from the duplicate views),
 * and the rejects by reason. Read-only.
 *
 * @module
 */

import type { ReportConfig } from "../config/resolve.ts";
import { loadPgConnection } from "../db/connection.ts";
import { checkConnection, Database, type Deployment, describeDbError } from "../db/pool.ts";
import { nothingThere, schemaState } from "../db/schema.ts";
import { DatabaseError } from "../errors.ts";
import { escapeControl } from "../log.ts";
import type { Telemetry } from "../ops/telemetry.ts";

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

/** Version 3 added the views this reads. */
const VIEWS_VERSION = 3;

/** Reads the report from an open pool. */
export async function readReport(
  db: Deployment,
): Promise<{ report: Report; sample: Record<string, unknown>[]; rejectsTable: string }> {
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
 * The report as lines for a person; `rejectsTable` names where the rejects
 * are. Every value read from the tables is escaped (`escapeControl`): a
 * consumer writes them, so a newline or ESC there must not forge a line or
 * drive the terminal.
 */
export function reportLines(
  report: Report,
  found: { readonly sample: readonly Record<string, unknown>[]; readonly rejectsTable: string },
): string[] {
  const { sample, rejectsTable } = found;
  const lines = [
    `user_logins: ${report.rows_in_table} rows${
      report.first_date === null ? "" : `, ${report.first_date} to ${report.last_date}`
    }. A few of them:`,
    ...table(sample).map((l) => `  ${l}`),
    "",
    `Masked IPs occurring more than once: ${report.repeated_masked_ips}` +
    " (view user_logins_duplicate_ips)",
    `Masked device ids occurring more than once: ${report.repeated_masked_device_ids}` +
    " (view user_logins_duplicate_devices)",
  ];
  if (report.top_masked_ips.length > 0) {
    lines.push("Most repeated masked IPs:");
    for (const t of report.top_masked_ips) {
      lines.push(`  ${escapeControl(t.masked_ip)}  ${t.logins} logins, ${t.users} users`);
    }
  }
  const rejects = Object.entries(report.rejects_by_reason);
  lines.push(
    rejects.length === 0
      ? `Rejected: none (table ${rejectsTable})`
      : `Rejected, by reason (table ${rejectsTable}): ${
        rejects.map(([reason, n]) => `${escapeControl(reason)} ${n}`).join(", ")
      }`,
  );
  return lines;
}

/** Runs `report`. */
export async function reportCommand(
  config: ReportConfig,
  io: { readonly telemetry: Telemetry; readonly writeStdout: (line: string) => void },
): Promise<void> {
  const warn = (message: string) => io.telemetry.emit({ type: "ConfigWarned", message });
  const connection = await loadPgConnection(config.database, warn);
  await using database = new Database({
    connection,
    schema: config.schema,
    stateSchema: config.stateSchema,
    max: 1,
  });
  await checkConnection(database.sql, connection);
  const state = await schemaState(database.sql, database.schemas);
  if (state.version === 0) throw nothingThere(database.schemas);
  if (state.version < VIEWS_VERSION) {
    throw new DatabaseError(
      "db_schema",
      `The schema in ${config.schema} is at version ${state.version}; report reads the views of version ${VIEWS_VERSION}: run \`login-etl migrate\` as the owner role`,
    );
  }
  const found = await readReport(database).catch((error: unknown) => {
    throw new DatabaseError(
      "db_schema",
      `Cannot read the report from schema ${config.schema}: ${describeDbError(error)}`,
      { cause: error },
    );
  });
  if (config.summaryJson) io.writeStdout(JSON.stringify(found.report));
  else for (const line of reportLines(found.report, found)) io.writeStdout(line);
}

/** Rows as an aligned text table. */
function table(rows: readonly Record<string, unknown>[]): string[] {
  const first = rows[0];
  if (first === undefined) return ["(no rows)"];
  const columns = Object.keys(first);
  const cells = rows.map((row) =>
    columns.map((c) => (row[c] === null ? "null" : escapeControl(String(row[c]))))
  );
  const widths = columns.map((c, i) =>
    Math.max(c.length, ...cells.map((r) => (r[i] ?? "").length))
  );
  const line = (values: string[]) =>
    values.map((v, i) => v.padEnd(widths[i] ?? 0)).join(" | ").trimEnd();
  return [line(columns), widths.map((w) => "-".repeat(w)).join("-+-"), ...cells.map(line)];
}
