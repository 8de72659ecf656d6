/**
 * `rekey` (masks to another HMAC key, through the vault) and `rekey-vault`
 * (vault entries to another vault key, or sealed to a key pair): batched,
 * resumable, audited. Both need a vault key set that can read.
 * `rekey --retire` forgets old HMAC keys' recorded moves once they are done.
 *
 * @module
 */

import type { RekeyConfig } from "../config/resolve.ts";
import { registerKey, registryId } from "../db/keys.ts";
import { ensureSchema } from "../db/schema.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { loadPiiKeys } from "../pii/keys.ts";
import { mergeInbox } from "../pii/merge.ts";
import { rekeyRows } from "../pii/rekey.ts";
import { rekeyVault } from "../pii/rekey_vault.ts";
import { retireKey } from "../pii/retire.ts";
import { READING_KEYS } from "../pii/vault.ts";
import type { CommandIo } from "./_io.ts";
import { KEY_RULES, openSession } from "./_pii.ts";

/** Runs `rekey` or `rekey-vault`. */
export async function rekeyCommand(config: RekeyConfig, io: CommandIo): Promise<void> {
  await using session = await openSession(config, io);
  const { actor, warn, connection } = session;
  const sql = session.database.sql;
  /** What both rotations take: batch size, audit identity and the stop signal. */
  const runOptions = (reason: string) => ({
    batch: config.maxRows,
    actor,
    reason,
    telemetry: io.telemetry,
    stop: io.stop,
  });
  if (config.command === "rekey" && config.retire !== null) {
    if (config.reason === null) {
      throw new UsageError("rekey --retire needs --reason TEXT (it is kept in the audit trail)");
    }
    await ensureSchema(sql, {
      connection,
      schema: config.schema,
      stateSchema: config.stateSchema,
      ownerRole: config.ownerRole,
    });
    // One transaction per id, in the order given, a line each as it commits:
    // a refusal stops the run there, and the lines say what was retired.
    for (const keyId of config.retire) {
      const retired = await retireKey(session.database, keyId, {
        actor,
        reason: config.reason,
      });
      io.writeStdout(JSON.stringify({ retired: keyId, ...retired }));
    }
  } else if (config.command === "rekey") {
    if (config.to === null) {
      throw new UsageError("rekey needs --to KEYID, the HMAC key id to move masks to");
    }
    const { maskers, cipher } = await loadPiiKeys(config, { rules: KEY_RULES, warn, vault: true });
    const target = maskers.get(config.to);
    if (target === undefined) {
      throw new ConfigError(
        `Cannot rekey to "${config.to}": the HMAC key set holds ${
          [...maskers.keys()].join(", ") || "no keys"
        }; add it to --hmac-key-file as a key set`,
      );
    }
    if (cipher === null) {
      throw new ConfigError(
        "Cannot rekey without the vault: a mask is a one-way hash, so old and new masks of one value can only be linked through the value the vault keeps; set PII_VAULT_KEY or --vault-key-file",
      );
    }
    if (!cipher.readable) throw new ConfigError(`Cannot rekey: it needs ${READING_KEYS}`);
    if (config.reason === null) {
      throw new UsageError("rekey needs --reason TEXT (it is kept in the audit trail)");
    }
    await ensureSchema(sql, {
      connection,
      schema: config.schema,
      stateSchema: config.stateSchema,
      ownerRole: config.ownerRole,
    });
    const verify = new Map([...maskers].filter(([id]) => id !== config.to));
    await registerKey(session.database, {
      keyId: registryId("hmac", target.keyId),
      fingerprint: target.fingerprint,
    });
    // The inbox first: entries consumers wrote since the last merge are
    // proven into the vault (or dropped), so that their rows move too.
    await mergeInbox(session.database, { cipher, maskers }, {
      actor,
      reason: config.reason,
      batch: Math.min(config.maxRows, 10_000),
      telemetry: io.telemetry,
      stop: io.stop,
    });
    const report = await rekeyRows(session.database, {
      target,
      verify,
      cipher,
      ...runOptions(config.reason),
    });
    io.writeStdout(JSON.stringify({ key_id: config.to, ...report }));
  } else {
    if (config.to === null) {
      throw new UsageError(
        "rekey-vault needs --to KEYID, the vault key id to re-encrypt under",
      );
    }
    const { cipher } = await loadPiiKeys(config, {
      rules: KEY_RULES,
      warn,
      vault: true,
      vaultCurrent: config.to,
    });
    if (cipher === null) {
      throw new ConfigError(
        "rekey-vault needs the vault key set (PII_VAULT_KEY or --vault-key-file)",
      );
    }
    if (!cipher.canRead(config.to)) {
      // A rotation to a key whose private half is not at hand could leave
      // every entry sealed to a key nobody holds: refused, and each new
      // entry is opened again before it replaces the old one.
      throw new ConfigError(
        `Cannot re-encrypt under vault key "${config.to}": the vault key set holds only its public key; rekey-vault needs ${READING_KEYS}`,
      );
    }
    if (config.reason === null) {
      throw new UsageError("rekey-vault needs --reason TEXT (it is kept in the audit trail)");
    }
    for (const [id, fingerprint] of cipher.fingerprints) {
      await registerKey(session.database, { keyId: registryId("vault", id), fingerprint });
    }
    const report = await rekeyVault(session.database, { cipher, ...runOptions(config.reason) });
    io.writeStdout(JSON.stringify({ key_id: config.to, ...report }));
  }
}
