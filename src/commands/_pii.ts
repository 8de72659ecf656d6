/**
 * What the PII commands share: their database session, the masks a request
 * names, and the rules key sets are read under (`pii/keys.ts` loads them).
 *
 * @module
 */

import { KEY_ID_PATTERN, MIN_SECRET_BYTES } from "../config/options.ts";
import type { DatabaseSettings } from "../config/resolve.ts";
import { loadPgConnection, type PgConnection } from "../db/connection.ts";
import { Database } from "../db/pool.ts";
import { ConfigError, UsageError, whyUnreadable } from "../errors.ts";
import { isMask } from "../mask.ts";
import { actorOf } from "../pii/audit.ts";
import type { KeyRules } from "../pii/keyring.ts";
import type { CommandIo } from "./_io.ts";

/**
 * The settings table's rules for a key set's contents, handed to `pii/` as
 * a value (it reads no settings); every command that loads keys passes these.
 */
export const KEY_RULES: KeyRules = {
  minSecretBytes: MIN_SECRET_BYTES,
  keyIdPattern: KEY_ID_PATTERN,
};

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
  io: CommandIo,
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
