/**
 * `forget`: erases the vault entries behind masks (tombstones, audited), or
 * erases again everything an audit export records as erased.
 *
 * @module
 */

import type { ForgetConfig } from "../config/resolve.ts";
import { ConfigError, UsageError, whyUnreadable } from "../errors.ts";
import { requireSchema } from "../db/schema.ts";
import { forget } from "../pii/forget.ts";
import { openSession, type PiiIo, requestedMasks } from "./_pii.ts";

/**
 * The masks an audit export (JSON lines, as `recover --audit` prints them)
 * records as erased: every forget that reached the database.
 *
 * @throws {ConfigError} when the file is unreadable or a line is not JSON
 */
async function erasedIn(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot read --replay-audit "${path}": ${whyUnreadable(error)}`, {
      cause: error,
    });
  }
  const masks = new Set<string>();
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    let row: { action?: unknown; outcome?: unknown; masked_value?: unknown };
    try {
      row = JSON.parse(line);
    } catch (error) {
      throw new ConfigError(
        `Cannot use --replay-audit "${path}": line ${
          i + 1
        } is not JSON; give the output of recover --audit`,
        { cause: error },
      );
    }
    if (
      row.action === "forget" && (row.outcome === "success" || row.outcome === "not_found") &&
      typeof row.masked_value === "string"
    ) masks.add(row.masked_value);
  }
  if (masks.size === 0) throw new UsageError(`--replay-audit "${path}" records no erasure`);
  return [...masks];
}

/** Runs `forget`. */
export async function forgetCommand(config: ForgetConfig, io: PiiIo): Promise<void> {
  await using session = await openSession(config, io);
  const { actor, database, connection } = session;
  if (config.replayAudit !== null && (config.masked !== null || config.fromFile !== null)) {
    throw new UsageError(
      "Give forget --replay-audit or masks (--masked, --from-file), not both",
    );
  }
  const masks = config.replayAudit === null
    ? await requestedMasks(config)
    : await erasedIn(config.replayAudit);
  const reason = config.replayAudit === null || config.reason === null
    ? config.reason
    : `${config.reason} (replay of ${config.replayAudit})`;
  await requireSchema(database.sql, { connection, ...database.schemas });
  let erased = 0;
  // In slices: a replay after a restore may hold many thousands of masks.
  for (let i = 0; i < masks.length; i += 1000) {
    const results = await forget(database, masks.slice(i, i + 1000), { actor, reason });
    erased += results.filter((r) => r.outcome === "success").length;
  }
  io.writeStdout(
    `Erased ${erased} of ${masks.length} vault entries (the rest were erased already or never vaulted; every one is a tombstone now); the masks in user_logins stay as opaque tokens.`,
  );
}
