/**
 * The report as a person reads it, for `report` and the end of `demo`: at
 * most 100 columns (`REPORT_COLUMNS`), masks and ids shortened in the
 * middle; `--summary-json` has every value whole.
 *
 * @module
 */

import type { FoundReport } from "../db/report.ts";
import { escapeControl } from "../log.ts";
import { grouped, middle, wrapList } from "../ops/human.ts";

/** The width the report fits: a common terminal's, and the issue's bar (#22). */
export const REPORT_COLUMNS = 100;

/**
 * A mask as `k1:qDHq…jh34`: the key id, then the ends of the hash. Two
 * masks that differ almost surely differ there, and the whole mask (46
 * characters) would push the table past the terminal's width.
 */
export function shortMask(mask: string): string {
  const colon = mask.indexOf(":");
  return colon < 0
    ? middle(mask, 4, 4)
    : `${mask.slice(0, colon + 1)}${middle(mask.slice(colon + 1), 4, 4)}`;
}

/** The sample table's columns: the query's name, the title shown, and how a cell is shortened. */
const COLUMNS: readonly {
  readonly key: string;
  readonly title: string;
  readonly shorten?: (value: string) => string;
}[] = [
  { key: "user_id", title: "user_id", shorten: (v) => middle(v, 8, 4) },
  { key: "device_type", title: "device" },
  { key: "masked_ip", title: "masked_ip", shorten: shortMask },
  { key: "masked_device_id", title: "masked_device", shorten: shortMask },
  { key: "locale", title: "locale" },
  // app_version_text(): the stored integer as the version people write.
  { key: "app_version", title: "version" },
  { key: "create_date", title: "date" },
];

/**
 * The report as lines for a person, the rejects' table named. Every value
 * read from the tables is shortened, then escaped (`escapeControl`): a
 * consumer writes them, so a newline or ESC there must not forge a line
 * or drive the terminal, and a cut must not split an escape.
 */
export function reportLines(found: FoundReport): string[] {
  const { report, sample, rejectsTable } = found;
  const lines = [
    `user_logins: ${grouped(report.rows_in_table)} rows${
      report.first_date === null ? "" : `, ${report.first_date} to ${report.last_date}`
    }. A few of them:`,
    ...table(sample).map((l) => `  ${l}`),
    "",
    `Masked IPs occurring more than once: ${grouped(report.repeated_masked_ips)}` +
    " (view user_logins_duplicate_ips)",
    `Masked device ids occurring more than once: ${grouped(report.repeated_masked_device_ids)}` +
    " (view user_logins_duplicate_devices)",
  ];
  if (report.top_masked_ips.length > 0) {
    lines.push("Most repeated masked IPs:");
    for (const t of report.top_masked_ips) {
      lines.push(
        `  ${escapeControl(shortMask(t.masked_ip))}  ${t.logins} logins, ${t.users} users`,
      );
    }
  }
  const rejects = Object.entries(report.rejects_by_reason)
    .map(([reason, n]) => `${escapeControl(reason)} ${grouped(n)}`);
  if (rejects.length === 0) {
    lines.push(`Rejected: none (table ${rejectsTable})`);
  } else {
    const head = `Rejected, by reason (table ${rejectsTable}):`;
    const one = `${head} ${rejects.join(", ")}`;
    lines.push(
      ...(one.length <= REPORT_COLUMNS
        ? [one]
        : [head, ...wrapList(rejects, REPORT_COLUMNS, "  ")]),
    );
  }
  return lines;
}

/** Rows as an aligned text table, the columns of `COLUMNS` that the rows have. */
function table(rows: readonly Record<string, unknown>[]): string[] {
  const first = rows[0];
  if (first === undefined) return ["(no rows)"];
  const columns = COLUMNS.filter((c) => c.key in first);
  const cells = rows.map((row) =>
    columns.map((c) => {
      const value = row[c.key];
      if (value === null || value === undefined) return "null";
      return escapeControl((c.shorten ?? String)(String(value)));
    })
  );
  const widths = columns.map((c, i) =>
    Math.max(c.title.length, ...cells.map((r) => (r[i] ?? "").length))
  );
  const line = (values: string[]) =>
    values.map((v, i) => v.padEnd(widths[i] ?? 0)).join(" | ").trimEnd();
  return [
    line(columns.map((c) => c.title)),
    widths.map((w) => "-".repeat(w)).join("-+-"),
    ...cells.map(line),
  ];
}
