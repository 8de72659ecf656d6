/**
 * `check`: a preflight for another command (`--for`, default drain), like
 * `vector validate`. One line per check: the keys, the queue (read with
 * GetQueueAttributes, which touches no message), Postgres and its TLS, the
 * schema version, who else may create in the schemas login-etl's SQL
 * searches, the privileges the command needs, and the key ids against their
 * recorded fingerprints. Nothing is written. Services are given a
 * few seconds each and checked side by side, so an unreachable one answers
 * within 10 s. What the checked command needs is `config/commands.ts`'s;
 * the probes are in `_check_keys.ts`, `_check_queue.ts` and `_check_db.ts`.
 *
 * @module
 */

import { NEEDS } from "../config/commands.ts";
import type { CheckConfig } from "../config/configs.ts";
import { loadPgConnection, type PgConnection } from "../db/connection.ts";
import { ChecksFailedError, formatError } from "../errors.ts";
import { escapeControl } from "../log.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import { type CheckResult, fail } from "./_check.ts";
import { checkDatabase } from "./_check_db.ts";
import { checkKeys } from "./_check_keys.ts";
import { checkQueue, checkRejectQueue } from "./_check_queue.ts";
import { type CommandIo, printResult } from "./_io.ts";

/** Runs every check `config.for` needs; services side by side. */
export async function runChecks(config: CheckConfig, telemetry: Telemetry): Promise<CheckResult[]> {
  const warn = (message: string) => telemetry.emit({ type: "ConfigWarned", message });
  const needs = NEEDS[config.for];
  const keys = await checkKeys(config, warn);
  const database = async (): Promise<CheckResult[]> => {
    if (!needs.database) return [];
    let connection: PgConnection;
    try {
      connection = await loadPgConnection(config.database, warn);
    } catch (error) {
      return [fail("postgres", formatError(error, false))];
    }
    return await checkDatabase(config, connection, keys);
  };
  const copiesRejects = needs.rejectQueue && config.rejectQueueUrl !== null;
  const [queue, rejectQueue, db] = await Promise.all([
    needs.queue ? checkQueue(config, telemetry) : Promise.resolve([]),
    copiesRejects ? checkRejectQueue(config, config.rejectQueueUrl as string, telemetry) : [],
    database(),
  ]);
  return [...keys.results, ...queue, ...rejectQueue, ...db];
}

/**
 * Runs `check`, printing one line per check.
 *
 * @throws {ChecksFailedError} when any failed
 */
export async function checkCommand(config: CheckConfig, io: CommandIo): Promise<void> {
  const results = await runChecks(config, io.telemetry);
  const failed = results.filter((r) => r.status === "fail").length;
  const width = Math.max(...results.map((r) => r.check.length));
  printResult(
    io,
    config.summaryJson,
    { for: config.for, passed: failed === 0, checks: results },
    // A detail may carry text read from the database: escaped, so it
    // cannot start a line of its own or drive the terminal.
    results.map((r) =>
      `${r.status.padEnd(4)}  ${escapeControl(r.check).padEnd(width)}  ${escapeControl(r.detail)}`
    ),
  );
  if (failed > 0) throw new ChecksFailedError(failed, results.length);
}
