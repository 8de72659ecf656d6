/**
 * `report`: what is in the database, as `demo` ends by showing it: a few
 * rows, the values seen in more than one login (from the duplicate views),
 * and the rejects by reason. Read-only.
 *
 * @module
 */

import type { ReportConfig } from "../config/resolve.ts";
import { loadPgConnection } from "../db/connection.ts";
import { checkConnection, Database } from "../db/pool.ts";
import { readDeployedReport } from "../db/report.ts";
import { type CommandIo, printResult } from "./_io.ts";
import { reportLines } from "./_report.ts";

/** Runs `report`. */
export async function reportCommand(config: ReportConfig, io: CommandIo): Promise<void> {
  const warn = (message: string) => io.telemetry.emit({ type: "ConfigWarned", message });
  const connection = await loadPgConnection(config.database, warn);
  await using database = new Database({
    connection,
    schema: config.schema,
    stateSchema: config.stateSchema,
    max: 1,
  });
  await checkConnection(database.sql, connection);
  const found = await readDeployedReport(database);
  printResult(io, config.summaryJson, found.report, reportLines(found));
}
