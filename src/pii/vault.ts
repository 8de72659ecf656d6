/**
 * The recovery vault's cryptography: AES-256-GCM with a random 96-bit IV per
 * entry, the field and the mask bound in as associated data, so a ciphertext
 * moved to another row, or altered, fails to decrypt. Vault keys come from a
 * key set separate from the HMAC key; each id's AES key is derived with
 * HKDF-SHA256.
 *
 * @module
 */

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { EtlError } from "../errors.ts";
import type { Masked, VaultRow } from "../types.ts";
import type { KeySet } from "./keyring.ts";

/** Fields whose raw values the vault keeps. */
export type VaultField = "ip" | "device_id";

/** A vault row as postgres.js returns it (bytea as bytes). */
export interface StoredVaultRow {
  readonly "masked_value": string;
  readonly field: VaultField;
  readonly ciphertext: Uint8Array;
  readonly iv: Uint8Array;
  readonly "key_id": string;
}

/** The entry a stored row holds. */
export function fromStored(row: StoredVaultRow): VaultRow {
  return {
    masked: row.masked_value as Masked,
    field: row.field,
    ciphertext: new Uint8Array(row.ciphertext),
    iv: new Uint8Array(row.iv),
    keyId: row.key_id,
  };
}

/** A vault entry that does not decrypt: tampered, moved to another mask, or under an unknown key. */
export class VaultIntegrityError extends EtlError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("internal", message, options);
    this.name = "VaultIntegrityError";
  }
}

const TAG_BYTES = 16;
const encoder = new TextEncoder();

function associatedData(field: VaultField, masked: string): Uint8Array {
  return encoder.encode(`login-etl/v1/vault\0${field}\0${masked}`);
}

async function deriveKey(secret: Uint8Array, keyId: string): Promise<Uint8Array> {
  const base = await crypto.subtle.importKey("raw", new Uint8Array(secret), "HKDF", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: encoder.encode("login-etl/v1/vault"),
      info: encoder.encode(keyId),
    },
    base,
    256,
  );
  return new Uint8Array(bits);
}

/** Encrypts and decrypts vault entries under a key set. */
export class VaultCipher {
  /** Key id new entries are written under. */
  readonly currentKeyId: string;
  readonly #keys: ReadonlyMap<string, Uint8Array>;
  /** Per-id fingerprints (an HMAC-free digest of the derived key), safe to store. */
  readonly fingerprints: ReadonlyMap<string, string>;

  private constructor(
    current: string,
    keys: Map<string, Uint8Array>,
    fingerprints: Map<string, string>,
  ) {
    this.currentKeyId = current;
    this.#keys = keys;
    this.fingerprints = fingerprints;
  }

  /** Derives every key of the set. */
  static async create(set: KeySet): Promise<VaultCipher> {
    const keys = new Map<string, Uint8Array>();
    const fingerprints = new Map<string, string>();
    for (const [id, secret] of set.keys) {
      const key = await deriveKey(secret.reveal(), id);
      keys.set(id, key);
      const digest = await crypto.subtle.digest(
        "SHA-256",
        new Uint8Array([...encoder.encode("login-etl/v1/vault-fingerprint\0"), ...key]),
      );
      fingerprints.set(
        id,
        new Uint8Array(digest).toBase64({ alphabet: "base64url", omitPadding: true }).slice(0, 22),
      );
    }
    return new VaultCipher(set.current, keys, fingerprints);
  }

  /** True when the set holds `keyId`. */
  has(keyId: string): boolean {
    return this.#keys.has(keyId);
  }

  /** Encrypts a raw value for `masked` under the current key (or `keyId`). */
  encrypt(field: VaultField, masked: Masked, raw: string, keyId = this.currentKeyId): VaultRow {
    const key = this.#keys.get(keyId);
    if (key === undefined) {
      throw new EtlError("config", `No vault key with id "${keyId}" in the key set`);
    }
    const iv = new Uint8Array(randomBytes(12));
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(associatedData(field, masked));
    const body = cipher.update(raw, "utf8");
    const final = cipher.final();
    const tag = cipher.getAuthTag();
    const ciphertext = new Uint8Array(body.length + final.length + TAG_BYTES);
    ciphertext.set(body, 0);
    ciphertext.set(final, body.length);
    ciphertext.set(tag, body.length + final.length);
    return { masked, field, ciphertext, iv, keyId };
  }

  /**
   * Decrypts an entry, checking it belongs to its mask and field.
   *
   * @throws {VaultIntegrityError} when it was altered, moved, or its key is not in the set
   */
  decrypt(entry: VaultRow): string {
    const key = this.#keys.get(entry.keyId);
    if (key === undefined) {
      throw new VaultIntegrityError(
        `Vault entry is under key "${entry.keyId}", which the vault key set does not hold`,
      );
    }
    if (entry.ciphertext.length < TAG_BYTES || entry.iv.length !== 12) {
      throw new VaultIntegrityError(
        "Vault entry is malformed: ciphertext or IV has the wrong length",
      );
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", key, entry.iv);
      decipher.setAAD(associatedData(entry.field, entry.masked));
      decipher.setAuthTag(entry.ciphertext.subarray(entry.ciphertext.length - TAG_BYTES));
      const text = decipher.update(
        entry.ciphertext.subarray(0, entry.ciphertext.length - TAG_BYTES),
        undefined,
        "utf8",
      ) +
        decipher.final("utf8");
      return text;
    } catch (error) {
      throw new VaultIntegrityError(
        "Vault entry failed authentication: altered, or moved from another mask",
        {
          cause: error,
        },
      );
    }
  }
}
