/**
 * `keygen`: a new vault key pair, as a private and a public key set file.
 *
 * @module
 */

import type { KeygenConfig } from "../config/resolve.ts";
import { writeVaultKeyPair } from "../pii/keygen.ts";

/** Runs `keygen`: writes the two files and says where, in one line. */
export async function keygenCommand(
  config: KeygenConfig,
  io: { readonly writeStdout: (line: string) => void },
): Promise<void> {
  const written = await writeVaultKeyPair(config.out, config.vaultId);
  io.writeStdout(
    `Wrote vault key pair ${config.vaultId} (fingerprint ${written.fingerprint}): ${written.privatePath} for recover, rekey and rekey-vault; ${written.publicPath} for drain and run`,
  );
}
