// The vault entry sizes the schema accepts (src/db/migrations.ts, written
// there as numbers, since a migration is history) against what the vault's
// formats make (src/pii/seal.ts, src/pii/vault.ts): a change to a format that
// the inbox would refuse fails here, not in a drain.
import assert from "node:assert/strict";
import { VAULT_ENTRY_SIZES } from "../../../src/db/migrations.ts";
import { HEADER_BYTES, MAX_CIPHERTEXT_BYTES } from "../../../src/pii/seal.ts";
import { SYMMETRIC_IV_BYTES } from "../../../src/pii/vault.ts";

Deno.test("the schema's vault entry sizes are the ones the sealed and symmetric formats make", () => {
  assert.deepEqual(VAULT_ENTRY_SIZES, {
    maxCiphertextBytes: MAX_CIPHERTEXT_BYTES,
    sealedIvBytes: HEADER_BYTES,
    symmetricIvBytes: SYMMETRIC_IV_BYTES,
  });
});
