/**
 * `forget`: erases the vault entries behind masks, or behind values a data
 * subject's request names (masked under every HMAC key of the set), or
 * erases again everything an audit export records as erased. Every mask
 * linked to an erased one (the same value under another key) goes with it.
 *
 * @module
 */

import type { ForgetConfig } from "../config/resolve.ts";
import { ConfigError, UsageError, whyUnreadable } from "../errors.ts";
import { requireHmacKeys } from "../db/keys.ts";
import { requireSchema } from "../db/schema.ts";
import { forget, masksOfValues, type NamedValue } from "../pii/forget.ts";
import { loadPiiKeys } from "../pii/keys.ts";
import type { CommandIo } from "./_io.ts";
import { KEY_RULES, openSession, requestedMasks } from "./_pii.ts";

/**
 * The masks an audit export (JSON lines, as `recover --audit` prints them)
 * records as erased: every forget that reached the database, the masks
 * erased through links included.
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

/**
 * Values from `--values-from-file` (`-`: stdin): one `ip VALUE` or
 * `device_id VALUE` a line; blank lines and `#` comments skipped. Errors
 * name the line, never its value.
 *
 * @throws {ConfigError} when unreadable; {UsageError} for a malformed line
 */
export async function valuesIn(path: string): Promise<NamedValue[]> {
  let text: string;
  try {
    text = path === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(`Cannot read --values-from-file "${path}": ${whyUnreadable(error)}`, {
      cause: error,
    });
  }
  const values: NamedValue[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const space = line.search(/\s/);
    const field = space < 0 ? line : line.slice(0, space);
    const value = space < 0 ? "" : line.slice(space).trim();
    if ((field !== "ip" && field !== "device_id") || value === "") {
      throw new UsageError(
        `--values-from-file "${path}" line ${
          i + 1
        }: give "ip VALUE" or "device_id VALUE" (the field, a space, the value)`,
      );
    }
    values.push({ field, value });
  }
  if (values.length === 0) throw new UsageError(`--values-from-file "${path}" holds no values`);
  return values;
}

/** The values a request names through --ip, --device-id and --values-from-file. */
async function requestedValues(config: ForgetConfig): Promise<NamedValue[]> {
  const values: NamedValue[] = [];
  if (config.ip !== null) values.push({ field: "ip", value: config.ip });
  if (config.deviceId !== null) values.push({ field: "device_id", value: config.deviceId });
  if (config.valuesFromFile !== null) values.push(...await valuesIn(config.valuesFromFile));
  return values;
}

/** Runs `forget`. */
export async function forgetCommand(config: ForgetConfig, io: CommandIo): Promise<void> {
  await using session = await openSession(config, io);
  const { actor, warn, database, connection } = session;
  const byValue = config.ip !== null || config.deviceId !== null ||
    config.valuesFromFile !== null;
  const byMask = config.masked !== null || config.fromFile !== null;
  if ([byValue, byMask, config.replayAudit !== null].filter(Boolean).length > 1) {
    throw new UsageError(
      "Give forget one kind of request: masks (--masked, --from-file), values (--ip, --device-id, --values-from-file) or --replay-audit",
    );
  }
  let masks: string[];
  if (byValue) {
    const values = await requestedValues(config);
    const { maskers } = await loadPiiKeys(config, { rules: KEY_RULES, warn, vault: false });
    await requireSchema(database.sql, { connection, ...database.schemas });
    // A value is erased by its masks under the keys given: one under a key
    // still in use but not given would stay live, so that is refused.
    if (maskers.size > 0) await requireHmacKeys(database, maskers.keys(), "erase by value");
    masks = await masksOfValues(values, maskers);
  } else {
    masks = config.replayAudit === null
      ? await requestedMasks(config)
      : await erasedIn(config.replayAudit);
    await requireSchema(database.sql, { connection, ...database.schemas });
  }
  const reason = config.replayAudit === null || config.reason === null
    ? config.reason
    : `${config.reason} (replay of ${config.replayAudit})`;
  let erased = 0;
  let linked = 0;
  // In slices: a replay after a restore may hold many thousands of masks.
  for (let i = 0; i < masks.length; i += 1000) {
    const results = await forget(database, masks.slice(i, i + 1000), { actor, reason });
    erased += results.asked.filter((r) => r.outcome === "success").length;
    linked += results.linked.length;
  }
  io.writeStdout(
    `Erased ${erased} of ${masks.length} vault entries${
      linked === 0
        ? ""
        : `, and ${linked} linked masks (the same values under another HMAC key) with them`
    } (the rest were erased already or never vaulted; every one is a tombstone now); the masks in user_logins stay as opaque tokens.`,
  );
}
