/**
 * `vault-merge`: moves the vault inbox's entries into the vault, each
 * verified first (it must decrypt and mask back to its mask), dropping those
 * of erased values. Run as the owner role, on a schedule: consumers only
 * append to the inbox, so values become recoverable through the vault here
 * (recover also merges the masks it is asked for).
 *
 * @module
 */

import type { VaultMergeConfig } from "../config/resolve.ts";
import { requireSchema } from "../db/schema.ts";
import { ConfigError } from "../errors.ts";
import { loadPiiKeys } from "../pii/keys.ts";
import { mergeInbox } from "../pii/merge.ts";
import { READING_KEYS } from "../pii/vault.ts";
import type { CommandIo } from "./_io.ts";
import { KEY_RULES, openSession } from "./_pii.ts";

/** Claims of more than this many entries are refused by `login_etl_inbox_claim`. */
const MAX_CLAIM = 10_000;

/** Runs `vault-merge`. */
export async function vaultMergeCommand(config: VaultMergeConfig, io: CommandIo): Promise<void> {
  await using session = await openSession(config, io);
  const { actor, warn, database, connection } = session;
  const { cipher, maskers } = await loadPiiKeys(config, { rules: KEY_RULES, warn, vault: true });
  if (cipher === null) {
    throw new ConfigError(
      "vault-merge needs the vault key set (PII_VAULT_KEY or --vault-key-file) to check each entry",
    );
  }
  if (!cipher.readable) {
    // A public key set opens nothing: every entry would be kept unproven,
    // and --drop-unverifiable must never be what decides over them.
    throw new ConfigError(`vault-merge needs ${READING_KEYS}, to check each entry`);
  }
  await requireSchema(database.sql, { connection, ...database.schemas });
  const report = await mergeInbox(database, { cipher, maskers }, {
    actor,
    reason: config.reason,
    batch: Math.min(config.maxRows, MAX_CLAIM),
    dropUnverifiable: config.dropUnverifiable,
    telemetry: io.telemetry,
    stop: io.stop,
  });
  io.writeStdout(JSON.stringify(report));
}
