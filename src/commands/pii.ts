/**
 * `recover`, `forget`, `rekey`, `rekey-vault`: wiring of the PII modules to
 * the database, the key sets and the terminal. Recovered values go to stdout
 * only, one `MASK<TAB>FIELD<TAB>VALUE` line each, after their audit rows.
 *
 * @module
 */

import type { Config } from "../config/resolve.ts";
import { Database, registerKey } from "../db/pool.ts";
import { ensureSchema } from "../db/schema.ts";
import { loadPgConnection } from "../db/connection.ts";
import { ConfigError, EtlError, UsageError, whyUnreadable } from "../errors.ts";
import type { Logger } from "../log.ts";
import { Masker } from "../mask.ts";
import { actorOf, listAudit } from "../pii/audit.ts";
import { assertSeparateKeys, loadKeySet } from "../pii/keyring.ts";
import { forget, recover } from "../pii/recover.ts";
import { rekeyRows, rekeyVault } from "../pii/rekey.ts";
import { VaultCipher } from "../pii/vault.ts";

/** What the PII commands need besides their config. */
export interface PiiIo {
  readonly logger: Logger;
  readonly writeStdout: (line: string) => void;
  readonly stop: AbortSignal;
}

/** Masks from --masked or --from-file (one a line; blank lines and # comments skipped). */
async function requestedMasks(config: Config): Promise<string[]> {
  if (config.masked !== null && config.fromFile !== null) {
    throw new UsageError(`Give either --masked or --from-file to ${config.command}, not both`);
  }
  if (config.masked !== null) return [config.masked];
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
    const masks = text.split("\n").map((l) => l.trim()).filter((l) =>
      l !== "" && !l.startsWith("#")
    );
    if (masks.length === 0) throw new UsageError(`--from-file "${config.fromFile}" holds no masks`);
    return [...new Set(masks)];
  }
  throw new UsageError(
    `${config.command} needs --masked MASK or --from-file PATH; see login-etl ${config.command} --help`,
  );
}

async function vaultCipher(
  config: Config,
  warn: (message: string) => void,
  currentOverride?: string,
): Promise<VaultCipher | null> {
  const set = await loadKeySet(config.vaultKey, config.vaultKeyId, warn);
  assertSeparateKeys(await loadKeySet(config.hmacKey, config.hmacKeyId), set);
  if (set === null) return null;
  if (currentOverride !== undefined && !set.keys.has(currentOverride)) {
    throw new ConfigError(
      `Cannot re-encrypt under vault key "${currentOverride}": the vault key set holds ${
        [...set.keys.keys()].join(", ")
      }`,
    );
  }
  return await VaultCipher.create(
    currentOverride === undefined ? set : { ...set, current: currentOverride },
  );
}

/** Every HMAC key of the configured set, as maskers by key id; empty when none is configured. */
async function hmacMaskers(
  config: Config,
  warn: (message: string) => void,
): Promise<Map<string, Masker>> {
  const set = await loadKeySet(config.hmacKey, config.hmacKeyId, warn);
  const maskers = new Map<string, Masker>();
  for (const [id, secret] of set?.keys ?? []) maskers.set(id, await Masker.create(secret, id));
  return maskers;
}

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

/** Runs one of the PII commands. */
export async function piiCommand(config: Config, io: PiiIo): Promise<void> {
  const actor = actorOf(config.actor);
  const warn = (message: string) => io.logger.log("warn", "ConfigWarned", message);
  /** What both rotations take: batch size, audit identity and the stop signal. */
  const runOptions = (reason: string) => ({
    batch: config.maxRows,
    actor,
    reason,
    logger: io.logger,
    stop: io.stop,
  });
  const connection = await loadPgConnection(
    config.database,
    (message) => io.logger.log("warn", "ConfigWarned", message),
  );
  const database = new Database({ connection, schema: config.schema, max: 2 });
  try {
    const sql = database.sql;
    switch (config.command) {
      case "recover": {
        if (config.audit) {
          for await (const row of listAudit(sql)) io.writeStdout(JSON.stringify(row));
          return;
        }
        const masks = await requestedMasks(config);
        const results = await recover(
          sql,
          {
            cipher: await vaultCipher(config, warn),
            maskers: await hmacMaskers(config, warn),
          },
          masks,
          { actor, reason: config.reason },
        );
        for (const r of results) {
          if (r.outcome === "success") io.writeStdout(`${r.masked}\t${r.field}\t${r.raw}`);
        }
        const count = (outcome: string) => results.filter((r) => r.outcome === outcome).length;
        const [failed, missing, erased] = [count("failed"), count("not_found"), count("erased")];
        io.logger.log(
          failed + missing + erased > 0 ? "warn" : "info",
          "ValuesRecovered",
          "recovery done (audited)",
          { recovered: count("success"), not_found: missing, erased, failed },
        );
        if (failed > 0) {
          throw new EtlError(
            "internal",
            `Refused ${failed} of ${results.length} vault entries: they did not decrypt or did not mask back to their masks (altered, injected or swapped); see the audit trail`,
          );
        }
        if (count("success") === 0) {
          throw new EtlError(
            "internal",
            erased > 0
              ? `Nothing recovered: ${
                erased === 1 ? "that mask was" : `${erased} masks were`
              } erased by forget${missing > 0 ? `, ${missing} never vaulted` : ""}`
              : `No vault entry for ${
                missing === 1 ? "that mask" : "any of those masks"
              }: never vaulted`,
          );
        }
        return;
      }
      case "forget": {
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
        let erased = 0;
        // In slices: a replay after a restore may hold many thousands of masks.
        for (let i = 0; i < masks.length; i += 1000) {
          const results = await forget(sql, masks.slice(i, i + 1000), { actor, reason });
          erased += results.filter((r) => r.outcome === "success").length;
        }
        io.writeStdout(
          `Erased ${erased} of ${masks.length} vault entries (the rest were erased already or never vaulted; every one is a tombstone now); the masks in user_logins stay as opaque tokens.`,
        );
        return;
      }
      case "rekey": {
        if (config.to === null) {
          throw new UsageError("rekey needs --to KEYID, the HMAC key id to move masks to");
        }
        const keys = await loadKeySet(config.hmacKey, config.hmacKeyId, warn);
        const secret = keys?.keys.get(config.to);
        if (keys === null || secret === undefined) {
          throw new ConfigError(
            `Cannot rekey to "${config.to}": the HMAC key set holds ${
              [...(keys?.keys.keys() ?? [])].join(", ") || "no keys"
            }; add it to --hmac-key-file as a key set`,
          );
        }
        const cipher = await vaultCipher(config, warn);
        if (cipher === null) {
          throw new ConfigError(
            "Cannot rekey without the vault: a mask is a one-way hash, so old and new masks of one value can only be linked through the value the vault keeps; set PII_VAULT_KEY or --vault-key-file",
          );
        }
        if (config.reason === null) {
          throw new UsageError("rekey needs --reason TEXT (it is kept in the audit trail)");
        }
        await ensureSchema(sql, { connection, schema: config.schema });
        const target = await Masker.create(secret, config.to);
        const verify = new Map<string, Masker>();
        for (const [id, key] of keys.keys) {
          if (id !== config.to) verify.set(id, await Masker.create(key, id));
        }
        await registerKey(sql, target.keyId, target.fingerprint);
        const report = await rekeyRows(sql, {
          target,
          verify,
          cipher,
          ...runOptions(config.reason),
        });
        io.writeStdout(JSON.stringify({ key_id: config.to, ...report }));
        return;
      }
      case "rekey-vault": {
        if (config.to === null) {
          throw new UsageError(
            "rekey-vault needs --to KEYID, the vault key id to re-encrypt under",
          );
        }
        const cipher = await vaultCipher(config, warn, config.to);
        if (cipher === null) {
          throw new ConfigError(
            "rekey-vault needs the vault key set (PII_VAULT_KEY or --vault-key-file)",
          );
        }
        if (config.reason === null) {
          throw new UsageError("rekey-vault needs --reason TEXT (it is kept in the audit trail)");
        }
        for (const [id, fingerprint] of cipher.fingerprints) {
          await registerKey(sql, `vault:${id}`, fingerprint);
        }
        const report = await rekeyVault(sql, { cipher, ...runOptions(config.reason) });
        io.writeStdout(JSON.stringify({ key_id: config.to, ...report }));
        return;
      }
      default:
        throw new UsageError(`${config.command} is not a PII command`);
    }
  } finally {
    await database.end();
  }
}
