/**
 * A new vault key pair, written as two key sets: `vault.json` (the private
 * set, for recover, rekey and rekey-vault) and `vault.public.json` (the
 * public set, all drain and run need). Owner-read-only, and never over an
 * existing file.
 *
 * @module
 */

import { join } from "node:path";
import { Secret } from "../secret.ts";
import { ConfigError } from "../errors.ts";
import { type VaultKeySet, vaultKeySetJson, writerKeys } from "./keyring.ts";
import { generateVaultPair } from "./seal.ts";
import { vaultFingerprints } from "./vault.ts";

/** Where `writeVaultKeyPair` put the two sets, and the pair's fingerprint. */
export interface WrittenKeyPair {
  readonly privatePath: string;
  readonly publicPath: string;
  /** As `login_etl_keys` records it for `vault:<id>`. */
  readonly fingerprint: string;
}

/**
 * Mode of both files, owner-read-only: the private set opens the whole
 * vault; the public one is not secret, but whoever may change it chooses
 * whom new entries are sealed to.
 */
const KEY_FILE_MODE = 0o400;

function whyNotWritten(error: unknown): string {
  if (error instanceof Deno.errors.AlreadyExists) return "it exists (keygen never overwrites)";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotADirectory) return "a part of the path is not a directory";
  return error instanceof Error ? error.message.split("\n")[0] ?? error.name : String(error);
}

async function writeNew(path: string, text: string): Promise<void> {
  // createNew is O_EXCL: an existing file, or one made meanwhile, is refused, never replaced.
  await Deno.writeTextFile(path, text, { createNew: true, mode: KEY_FILE_MODE });
  // The umask may have taken bits off; it cannot have added any, but be exact.
  await Deno.chmod(path, KEY_FILE_MODE);
}

/**
 * Generates an X25519 key pair with id `keyId` and writes its private and
 * public key sets into `dir` (made, mode 0700, when missing).
 *
 * @throws {ConfigError} when a file exists or cannot be written; nothing is left half-written
 */
export async function writeVaultKeyPair(dir: string, keyId: string): Promise<WrittenKeyPair> {
  const privatePath = join(dir, "vault.json");
  const publicPath = join(dir, "vault.public.json");
  for (const path of [privatePath, publicPath]) {
    const exists = await Deno.lstat(path).then(() => true, () => false);
    if (exists) {
      throw new ConfigError(
        `Refused: ${path} exists and keygen never overwrites a key set; give another --out or move it away`,
      );
    }
  }
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new ConfigError(`Cannot make --out "${dir}": ${whyNotWritten(error)}`, { cause: error });
  }
  const pair = await generateVaultPair();
  const set: VaultKeySet = {
    current: keyId,
    keys: new Map([[keyId, {
      kind: "pair",
      publicKey: pair.publicKey,
      privateKey: new Secret(pair.privateKey, `key ${keyId}`),
    }]]),
  };
  try {
    await writeNew(privatePath, vaultKeySetJson(set));
  } catch (error) {
    throw new ConfigError(`Cannot write ${privatePath}: ${whyNotWritten(error)}`, {
      cause: error,
    });
  }
  try {
    await writeNew(publicPath, vaultKeySetJson(writerKeys(set)));
  } catch (error) {
    // Ours, just made: a private set without its public one would only confuse.
    await Deno.remove(privatePath).catch(() => {});
    throw new ConfigError(`Cannot write ${publicPath}: ${whyNotWritten(error)}`, {
      cause: error,
    });
  }
  const fingerprint = (await vaultFingerprints(set)).get(keyId) as string;
  return { privatePath, publicPath, fingerprint };
}
