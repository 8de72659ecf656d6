/**
 * A command's keys, loaded once: the HMAC and vault key sets its settings
 * name, each read from its source a single time, warned about, and refused
 * when the two share a secret; then what the command makes of them (a run's
 * masker and vault writer, the PII commands' maskers and vault cipher). Every
 * command loads its keys here and nowhere else.
 *
 * Where each set comes from and what its contents must meet arrive as
 * values (`KeySources`, `KeyRules`): this module reads no settings.
 *
 * @module
 */

import type { KeySource, Secret } from "../secret.ts";
import { ConfigError } from "../errors.ts";
import { Masker } from "../mask.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import {
  assertSeparateKeys,
  currentSecret,
  type KeyRules,
  type KeySet,
  loadKeySet,
  loadVaultKeySet,
  readableKeyIds,
  type VaultKeySet,
  writerKeys,
} from "./keyring.ts";
import { VaultCipher, vaultFingerprints } from "./vault.ts";

/** Where a command's two key sets come from, and the id each takes when it is a lone secret. */
export interface KeySources {
  readonly hmacKey: KeySource;
  readonly hmacKeyId: string;
  readonly vaultKey: KeySource;
  readonly vaultKeyId: string;
}

/** How the sets are read: the rules their contents meet, and where warnings go. */
export interface LoadOptions {
  readonly rules: KeyRules;
  /** Key hygiene that does not stop the command: a key file others may read, a low-entropy secret. */
  readonly warn: (message: string) => void;
}

/**
 * The HMAC key set of `sources`, or null when none is configured.
 *
 * @throws {ConfigError} when it is unreadable or refused
 */
export function loadHmacKeys(sources: KeySources, options: LoadOptions): Promise<KeySet | null> {
  return loadKeySet(
    sources.hmacKey,
    { ...options.rules, defaultId: sources.hmacKeyId },
    options.warn,
  );
}

/**
 * The vault key set of `sources`, or null when none is configured.
 *
 * @throws {ConfigError} when it is unreadable or refused
 */
export function loadVaultKeys(
  sources: KeySources,
  options: LoadOptions,
): Promise<VaultKeySet | null> {
  return loadVaultKeySet(
    sources.vaultKey,
    { ...options.rules, defaultId: sources.vaultKeyId },
    options.warn,
  );
}

/**
 * The key sets a command uses, each loaded once (the HMAC set first), and
 * refused when they share a secret. A set the command does not use is not
 * read at all, so a broken source it ignores cannot stop it.
 *
 * @throws {ConfigError}
 */
export async function loadKeySets(
  sources: KeySources,
  options: LoadOptions & { readonly hmac: boolean; readonly vault: boolean },
): Promise<{ readonly hmac: KeySet | null; readonly vault: VaultKeySet | null }> {
  const hmac = options.hmac ? await loadHmacKeys(sources, options) : null;
  const vault = options.vault ? await loadVaultKeys(sources, options) : null;
  assertSeparateKeys(hmac, vault);
  return { hmac, vault };
}

/** A masker for every key of an HMAC key set, by key id; empty for none. */
export async function maskersOf(set: KeySet | null): Promise<Map<string, Masker>> {
  const maskers = new Map<string, Masker>();
  for (const [id, secret] of set?.keys ?? []) maskers.set(id, await Masker.create(secret, id));
  return maskers;
}

/** The keys of a `drain` or `run`, loaded and checked. */
export interface RunKeys {
  /** Every HMAC key of the set, so each id is registered; new masks use `masker`. */
  readonly maskers: readonly Masker[];
  readonly masker: Masker;
  readonly secret: Secret;
  /**
   * What the run writes the vault with (`writerKeys`: the current key, a
   * pair's public half only), when a vault key is configured (never in a dry run).
   */
  readonly vaultKeys: VaultKeySet | null;
  readonly vault: VaultCipher | undefined;
  /** Fingerprints of every vault key of the configured set, to register. */
  readonly vaultFingerprints: ReadonlyMap<string, string>;
}

/**
 * Loads the HMAC key set (required) and the vault key set (optional, not in
 * a dry run), refusing one secret for both. A vault key set that could read
 * the vault (a secret, or a private key) is used, with a warning
 * (`VaultKeyReadable`): a consumer needs only the public key.
 *
 * @throws {ConfigError}
 */
export async function loadRunKeys(
  sources: KeySources,
  options: {
    readonly dryRun: boolean;
    readonly rules: KeyRules;
    readonly telemetry: Telemetry;
  },
): Promise<RunKeys> {
  const { telemetry } = options;
  const warn = (message: string) => telemetry.emit({ type: "ConfigWarned", message });
  const sets = await loadKeySets(sources, {
    rules: options.rules,
    warn,
    hmac: true,
    vault: !options.dryRun,
  });
  const hmacKeys = sets.hmac;
  if (hmacKeys === null) throw new ConfigError("No HMAC key: set PII_HMAC_KEY or --hmac-key-file");
  const maskers = [...(await maskersOf(hmacKeys)).values()];
  const vaultSet = sets.vault;
  const readable = vaultSet === null ? [] : readableKeyIds(vaultSet);
  if (vaultSet !== null && readable.length > 0) {
    telemetry.emit({
      type: "VaultKeyReadable",
      keyIds: readable,
      sealing: vaultSet.keys.get(vaultSet.current)?.kind === "pair",
    });
  }
  const vaultKeys = vaultSet === null ? null : writerKeys(vaultSet);
  return {
    maskers,
    masker: maskers.find((m) => m.keyId === hmacKeys.current) as Masker,
    secret: currentSecret(hmacKeys),
    vaultKeys,
    vault: vaultKeys === null ? undefined : await VaultCipher.create(vaultKeys),
    vaultFingerprints: vaultSet === null ? new Map() : await vaultFingerprints(vaultSet),
  };
}

/** The keys of a PII command (recover, forget, rekey, rekey-vault, vault-merge). */
export interface PiiKeys {
  /** A masker for every HMAC key of the set, by key id; empty when none is configured. */
  readonly maskers: ReadonlyMap<string, Masker>;
  /** The vault cipher of the set; null when none is configured or the command uses no vault. */
  readonly cipher: VaultCipher | null;
}

/**
 * Loads a PII command's keys: the HMAC key set, and the vault key set when
 * `vault` (forget uses none). `vaultCurrent` overrides the vault set's
 * current key (rekey-vault's target), refused when the set lacks it.
 *
 * @throws {ConfigError}
 */
export async function loadPiiKeys(
  sources: KeySources,
  options: LoadOptions & { readonly vault: boolean; readonly vaultCurrent?: string },
): Promise<PiiKeys> {
  const sets = await loadKeySets(sources, { ...options, hmac: true });
  const current = options.vaultCurrent;
  const vault = sets.vault;
  if (vault !== null && current !== undefined && !vault.keys.has(current)) {
    throw new ConfigError(
      `Cannot re-encrypt under vault key "${current}": the vault key set holds ${
        [...vault.keys.keys()].join(", ")
      }`,
    );
  }
  return {
    maskers: await maskersOf(sets.hmac),
    cipher: vault === null
      ? null
      : await VaultCipher.create(current === undefined ? vault : { ...vault, current }),
  };
}
