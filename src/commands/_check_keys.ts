/**
 * `check`'s keys: the HMAC and vault key sets the checked command needs
 * (`commands.ts`), loaded; a vault key that can read the vault where the
 * public half would do is pointed out. The fingerprints go on to the key
 * registry check (`_check_db.ts`).
 *
 * @module
 */

import { NEEDS } from "../config/commands.ts";
import type { CheckConfig } from "../config/configs.ts";
import { registryId } from "../db/keys.ts";
import { formatError } from "../errors.ts";
import {
  assertSeparateKeys,
  type KeySet,
  readableKeyIds,
  type VaultKeySet,
} from "../pii/keyring.ts";
import { loadHmacKeys, loadVaultKeys, maskersOf } from "../pii/keys.ts";
import { READING_KEYS, VaultCipher } from "../pii/vault.ts";
import { type CheckResult, fail, ok } from "./_check.ts";
import { KEY_RULES } from "./_pii.ts";

/** The keys of the checked command, loaded; their problems as results. */
export interface LoadedKeys {
  readonly results: CheckResult[];
  /** Registry ids (`registryId`) with their fingerprints, to compare with the registry. */
  readonly fingerprints: [string, string][];
  /** The HMAC key set's ids, or null when none was loaded. */
  readonly hmacIds: readonly string[] | null;
  readonly vault: boolean;
}

export async function checkKeys(
  config: CheckConfig,
  warn: (m: string) => void,
): Promise<LoadedKeys> {
  const needs = NEEDS[config.for];
  const results: CheckResult[] = [];
  const fingerprints: [string, string][] = [];
  let hmac: KeySet | null = null;
  let vault: VaultKeySet | null = null;
  const load = { rules: KEY_RULES, warn };
  if (needs.hmacKey !== "none") {
    try {
      hmac = await loadHmacKeys(config, load);
      if (hmac === null) {
        results.push(fail("hmac key", "none: set PII_HMAC_KEY or --hmac-key-file"));
      } else {
        for (const [id, masker] of await maskersOf(hmac)) {
          fingerprints.push([registryId("hmac", id), masker.fingerprint]);
        }
        results.push(
          ok("hmac key", `key ids ${[...hmac.keys.keys()].join(", ")}; current ${hmac.current}`),
        );
      }
    } catch (error) {
      results.push(fail("hmac key", formatError(error, false)));
    }
  }
  if (needs.vaultKey !== "none") {
    try {
      vault = await loadVaultKeys(config, load);
      if (vault === null) {
        results.push(
          needs.vaultKey === "private"
            ? fail("vault key", "none: set PII_VAULT_KEY or --vault-key-file")
            : ok("vault key", "none: the vault is off"),
        );
      } else {
        const cipher = await VaultCipher.create(vault);
        for (const [id, fp] of cipher.fingerprints) {
          fingerprints.push([registryId("vault", id), fp]);
        }
        const held = `key ids ${[...vault.keys.keys()].join(", ")}; current ${vault.current} (${
          cipher.seals ? "sealed" : "symmetric"
        })`;
        // Recovery and rotations read the vault; consumers only write it.
        const readable = readableKeyIds(vault);
        results.push(
          needs.vaultKey === "private" && !cipher.readable
            ? fail("vault key", `${held}: ${config.for} needs ${READING_KEYS}`)
            : needs.vaultKey === "public" && readable.length > 0
            ? ok(
              "vault key",
              `${held}; ${
                readable.join(", ")
              } can read the vault, which ${config.for} does not need: give it only the public key set`,
            )
            : ok("vault key", held),
        );
      }
    } catch (error) {
      results.push(fail("vault key", formatError(error, false)));
    }
  }
  try {
    assertSeparateKeys(hmac, vault);
  } catch (error) {
    results.push(fail("keys apart", formatError(error, false)));
  }
  return {
    results,
    fingerprints,
    vault: vault !== null,
    hmacIds: hmac === null ? null : [...hmac.keys.keys()],
  };
}
