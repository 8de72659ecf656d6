// The mask format computed a second way, with node:crypto's createHmac, as a
// reference the tests hold Web Crypto's masks to and as a synchronous masker
// for assertions: subkey = HMAC-SHA256(secret, "login-etl/v1/mask/<field>"),
// mask = "<key id>:" + base64url(HMAC-SHA256(subkey, UTF-8 value)).

import { createHmac } from "node:crypto";
import type { MaskField } from "../../src/mask.ts";

/** A synchronous masker that shares no code with `src/mask.ts`. */
export interface ReferenceMasker {
  readonly keyId: string;
  mask(field: MaskField, value: string): string;
}

/** The reference masker for `secret` (text is taken as its UTF-8 bytes) under `keyId`. */
export function referenceMasker(secret: string | Uint8Array, keyId: string): ReferenceMasker {
  const bytes = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
  const subkeys = new Map<string, Buffer>();
  const subkey = (field: MaskField): Buffer => {
    let key = subkeys.get(field);
    if (key === undefined) {
      key = createHmac("sha256", bytes).update(`login-etl/v1/mask/${field}`).digest();
      subkeys.set(field, key);
    }
    return key;
  };
  return {
    keyId,
    mask: (field, value) =>
      `${keyId}:${createHmac("sha256", subkey(field)).update(value, "utf8").digest("base64url")}`,
  };
}
