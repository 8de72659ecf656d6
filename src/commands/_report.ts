/**
 * The report as a person reads it, for `report` and the end of `demo`.
 *
 * @module
 */

import type { FoundReport } from "../db/report.ts";
import { escapeControl } from "../log.ts";

/**
 * The report as lines for a person, the rejects' table named. Every value
 * read from the tables is escaped (`escapeControl`): a consumer writes them,
 * so a newline or ESC there must not forge a line or drive the terminal.
 */
export function reportLines(found: FoundReport): string[] {
  const { report, sample, rejectsTable } = found;
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
