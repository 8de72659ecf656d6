/**
 * What the PII commands share: their database session, the masks a request
 * names, and the key sets as maskers and a vault cipher.
 *
 * @module
 */

import type { DatabaseSettings, KeySettings } from "../config/resolve.ts";
import { loadPgConnection, type PgConnection } from "../db/connection.ts";
import { Database } from "../db/pool.ts";
import { ConfigError, UsageError, whyUnreadable } from "../errors.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import { isMask, Masker } from "../mask.ts";
import { actorOf } from "../pii/audit.ts";
import { assertSeparateKeys, loadKeySet, loadVaultKeySet } from "../pii/keyring.ts";
import { VaultCipher } from "../pii/vault.ts";

/** What the PII commands need besides their config. */
export interface PiiIo {
  readonly telemetry: Telemetry;
  readonly writeStdout: (line: string) => void;
  readonly stop: AbortSignal;
}

/** An open session of a PII command, and who acts in it. */
export interface PiiSession extends AsyncDisposable {
  readonly database: Database;
  readonly connection: PgConnection;
  readonly actor: string;
  /** Logs a warning that does not stop the command (key hygiene, password file). */
  readonly warn: (message: string) => void;
}

/** Opens the command's database session (two connections) and names the actor. */
export async function openSession(
  config: DatabaseSettings & { readonly actor: string | null },
  io: PiiIo,
): Promise<PiiSession> {
  const warn = (message: string) => io.telemetry.emit({ type: "ConfigWarned", message });
  const connection = await loadPgConnection(config.database, warn);
  const database = new Database({
    connection,
    schema: config.schema,
    stateSchema: config.stateSchema,
    max: 2,
  });
  return {
    database,
    connection,
    actor: actorOf(config.actor),
    warn,
    [Symbol.asyncDispose]: () => database.end(),
  };
}

/** What a mask looks like, for refusals that must not echo what was given (it may be a raw value). */
const MASK_HELP =
  "a mask is a key id, a colon and 43 base64url characters, as in user_logins (e.g. k1:6RhvBvAk9mS-tbJmUC3KXS7zv6JKU-LXPAfxGY1dHk4)";

/**
 * Masks from --masked or --from-file (one a line; blank lines and #
 * comments skipped), each of a mask's shape: the database functions refuse
 * anything else, and a raw value pasted in a mask's place is refused here
 * without being echoed.
 */
export async function requestedMasks(
  config: {
    readonly command: string;
    readonly masked: string | null;
    readonly fromFile: string | null;
  },
): Promise<string[]> {
  if (config.masked !== null && config.fromFile !== null) {
    throw new UsageError(`Give either --masked or --from-file to ${config.command}, not both`);
  }
  if (config.masked !== null) {
    if (!isMask(config.masked)) throw new UsageError(`--masked is not a mask: ${MASK_HELP}`);
    return [config.masked];
  }
  if (config.fromFile !== null) {
    let text: string;
    try {
      text = await Deno.readTextFile(config.fromFile);
    } catch (error) {
      throw new ConfigError(
        `Cannot read --from-file "${config.fromFile}": ${whyUnreadable(error)}`,
        {
          cause: error,
        },
      );
    }
    const lines = text.split("\n").map((l) => l.trim());
    const bad = lines.findIndex((l) => l !== "" && !l.startsWith("#") && !isMask(l));
    if (bad >= 0) {
      throw new UsageError(
        `Line ${bad + 1} of --from-file "${config.fromFile}" is not a mask: ${MASK_HELP}`,
      );
    }
    const masks = lines.filter((l) => l !== "" && !l.startsWith("#"));
    if (masks.length === 0) throw new UsageError(`--from-file "${config.fromFile}" holds no masks`);
    return [...new Set(masks)];
  }
  throw new UsageError(
    `${config.command} needs --masked MASK or --from-file PATH; see login-etl ${config.command} --help`,
  );
}

/**
 * The vault cipher of the configured key set (refusing one that shares a
 * secret with the HMAC key), or null when none is configured. `current`
 * overrides the set's current key (rekey-vault's target).
 */
export async function vaultCipher(
  config: KeySettings,
  warn: (message: string) => void,
  current?: string,
): Promise<VaultCipher | null> {
  const set = await loadVaultKeySet(config.vaultKey, config.vaultKeyId, warn);
  assertSeparateKeys(await loadKeySet(config.hmacKey, config.hmacKeyId), set);
  if (set === null) return null;
  if (current !== undefined && !set.keys.has(current)) {
    throw new ConfigError(
      `Cannot re-encrypt under vault key "${current}": the vault key set holds ${
        [...set.keys.keys()].join(", ")
      }`,
    );
  }
  return await VaultCipher.create(current === undefined ? set : { ...set, current });
}

/** Every HMAC key of the configured set, as maskers by key id; empty when none is configured. */
export async function hmacMaskers(
  config: KeySettings,
  warn: (message: string) => void,
): Promise<Map<string, Masker>> {
  const set = await loadKeySet(config.hmacKey, config.hmacKeyId, warn);
  const maskers = new Map<string, Masker>();
  for (const [id, secret] of set?.keys ?? []) maskers.set(id, await Masker.create(secret, id));
  return maskers;
}
