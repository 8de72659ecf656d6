/**
 * The recovery vault's cryptography. Two entry formats, chosen by the kind
 * of key an entry's key id names in the vault key set:
 *
 * - **sealed** (format 2, key pairs): the value is sealed to an X25519 public
 *   key (`seal.ts`), so a consumer holding only the public key set writes
 *   entries it cannot read;
 * - **symmetric** (format 1, secrets): AES-256-GCM under a key derived with
 *   HKDF-SHA256 from the secret and the key id, a random 96-bit IV per entry.
 *   Whoever writes such entries can read all of them; still read, and
 *   written when the current key is a secret, for vaults from before pairs.
 *
 * Both bind the field and the mask in as associated data (sealed entries the
 * key id too), so an entry moved to another row, or altered, fails to open.
 *
 * @module
 */

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { ConfigError, EtlError } from "../errors.ts";
import type { Masked, PiiField, VaultEncrypter, VaultEntry, VaultInput } from "../types.ts";
import type { VaultKeySet } from "./keyring.ts";
import { OpeningKey, SealError, SealingKey } from "./seal.ts";

/** A vault row as postgres.js returns it (bytea as bytes). */
export interface StoredVaultRow {
  readonly "masked_value": string;
  readonly field: PiiField;
  readonly ciphertext: Uint8Array;
  readonly iv: Uint8Array;
  readonly "key_id": string;
}

/** The entry a stored row holds. */
export function fromStored(row: StoredVaultRow): VaultEntry {
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
    super("vault_integrity", message, options);
    this.name = "VaultIntegrityError";
  }
}

const TAG_BYTES = 16;
/** A symmetric (format 1) entry's IV: GCM's 96-bit nonce. */
export const SYMMETRIC_IV_BYTES = 12;
const encoder = new TextEncoder();

function associatedData(field: PiiField, masked: string): Uint8Array {
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

/**
 * What recover, rekey and rekey-vault need and a public key set lacks, for
 * their refusals.
 */
export const READING_KEYS =
  "the private vault key set (vault.json from login-etl keygen) or the vault secret; a public key set (vault.public.json) seals entries but opens none";

async function fingerprintOf(label: string, bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new Uint8Array([...encoder.encode(label), ...bytes]),
  );
  return new Uint8Array(digest).toBase64({ alphabet: "base64url", omitPadding: true }).slice(0, 22);
}

/**
 * Per-id fingerprints of a vault key set, safe to store: a digest of the
 * derived key of a secret, of the public key of a pair (the same whether the
 * private half is held or not).
 */
export async function vaultFingerprints(set: VaultKeySet): Promise<Map<string, string>> {
  const fingerprints = new Map<string, string>();
  for (const [id, key] of set.keys) {
    fingerprints.set(
      id,
      key.kind === "secret"
        ? await fingerprintOf(
          "login-etl/v1/vault-fingerprint\0",
          await deriveKey(key.secret.reveal(), id),
        )
        : await fingerprintOf("login-etl/v2/vault-fingerprint\0", key.publicKey),
    );
  }
  return fingerprints;
}

/**
 * Encrypts and decrypts vault entries under a key set: seals to the public
 * key of a pair, opens with its private key, and reads and writes symmetric
 * entries under a secret.
 */
export class VaultCipher implements VaultEncrypter {
  /** Key id new entries are written under. */
  readonly currentKeyId: string;
  /** Per-id fingerprints (`vaultFingerprints`), safe to store. */
  readonly fingerprints: ReadonlyMap<string, string>;
  readonly #secrets: ReadonlyMap<string, Uint8Array>;
  readonly #sealing: ReadonlyMap<string, SealingKey>;
  readonly #opening: ReadonlyMap<string, OpeningKey>;

  private constructor(
    current: string,
    keys: {
      secrets: Map<string, Uint8Array>;
      sealing: Map<string, SealingKey>;
      opening: Map<string, OpeningKey>;
    },
    fingerprints: Map<string, string>,
  ) {
    this.currentKeyId = current;
    this.#secrets = keys.secrets;
    this.#sealing = keys.sealing;
    this.#opening = keys.opening;
    this.fingerprints = fingerprints;
  }

  /**
   * Derives or imports every key of the set.
   *
   * @throws {ConfigError} when a pair's private key is not its public key's
   */
  static async create(set: VaultKeySet): Promise<VaultCipher> {
    const secrets = new Map<string, Uint8Array>();
    const sealing = new Map<string, SealingKey>();
    const opening = new Map<string, OpeningKey>();
    for (const [id, key] of set.keys) {
      if (key.kind === "secret") {
        secrets.set(id, await deriveKey(key.secret.reveal(), id));
        continue;
      }
      try {
        sealing.set(id, await SealingKey.create(id, key.publicKey));
        if (key.privateKey !== null) {
          opening.set(id, await OpeningKey.create(id, key.publicKey, key.privateKey.reveal()));
        }
      } catch (error) {
        const why = error instanceof SealError ? error.message : String(error);
        throw new ConfigError(
          `Cannot use vault key ${id}: ${why}; use the key set login-etl keygen wrote`,
          { cause: error },
        );
      }
    }
    return new VaultCipher(
      set.current,
      { secrets, sealing, opening },
      await vaultFingerprints(set),
    );
  }

  /** True when the set holds `keyId`. */
  has(keyId: string): boolean {
    return this.#secrets.has(keyId) || this.#sealing.has(keyId);
  }

  /** Every key id of the set, readable or not. */
  get keyIds(): string[] {
    return [...new Set([...this.#secrets.keys(), ...this.#sealing.keys()])];
  }

  /** True when entries under `keyId` can be read: a secret, or a pair with its private key. */
  canRead(keyId: string): boolean {
    return this.#secrets.has(keyId) || this.#opening.has(keyId);
  }

  /** True when the set can read some entries: it holds a secret or a private key. */
  get readable(): boolean {
    return this.#secrets.size + this.#opening.size > 0;
  }

  /** True when new entries are sealed (the current key is a pair). */
  get seals(): boolean {
    return this.#sealing.has(this.currentKeyId);
  }

  /**
   * Encrypts raw values for their masks under the current key (or `keyId`):
   * sealed under one ephemeral key for the whole call, or symmetric.
   *
   * @throws {EtlError} (config) when the set does not hold `keyId`
   */
  async encryptAll(
    entries: readonly VaultInput[],
    keyId = this.currentKeyId,
  ): Promise<VaultEntry[]> {
    const sealing = this.#sealing.get(keyId);
    if (sealing !== undefined) {
      const sealed = await sealing.seal(entries);
      return sealed.map(({ header, ciphertext }, i) => {
        const { masked, field } = entries[i] as VaultInput;
        return { masked, field, ciphertext, iv: header, keyId };
      });
    }
    const key = this.#secrets.get(keyId);
    if (key === undefined) {
      throw new EtlError("config", `No vault key with id "${keyId}" in the key set`);
    }
    return entries.map((e) => encryptSymmetric(key, e, keyId));
  }

  /** Encrypts one raw value (`encryptAll` of one). */
  async encrypt(
    field: PiiField,
    masked: Masked,
    raw: string,
    keyId = this.currentKeyId,
  ): Promise<VaultEntry> {
    return (await this.encryptAll([{ field, masked, raw }], keyId))[0] as VaultEntry;
  }

  /**
   * Decrypts an entry, checking it belongs to its mask and field (and, when
   * sealed, key id).
   *
   * @throws {VaultIntegrityError} when it was altered or moved, or the set
   *   cannot read its key (not held, or only the public half)
   */
  async decrypt(entry: VaultEntry): Promise<string> {
    const opening = this.#opening.get(entry.keyId);
    if (opening !== undefined) {
      try {
        return await opening.open(entry, { header: entry.iv, ciphertext: entry.ciphertext });
      } catch (error) {
        throw new VaultIntegrityError(
          error instanceof SealError ? error.message : "Sealed vault entry failed to open",
          { cause: error },
        );
      }
    }
    if (this.#sealing.has(entry.keyId)) {
      throw new VaultIntegrityError(
        `Vault entry is sealed to key "${entry.keyId}", whose private key this vault key set does not hold (a public key set seals, it cannot open)`,
      );
    }
    const key = this.#secrets.get(entry.keyId);
    if (key === undefined) {
      throw new VaultIntegrityError(
        `Vault entry is under key "${entry.keyId}", which the vault key set does not hold`,
      );
    }
    return decryptSymmetric(key, entry);
  }
}

function encryptSymmetric(key: Uint8Array, entry: VaultInput, keyId: string): VaultEntry {
  const iv = new Uint8Array(randomBytes(SYMMETRIC_IV_BYTES));
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(associatedData(entry.field, entry.masked));
  const body = cipher.update(entry.raw, "utf8");
  const final = cipher.final();
  const tag = cipher.getAuthTag();
  const ciphertext = new Uint8Array(body.length + final.length + TAG_BYTES);
  ciphertext.set(body, 0);
  ciphertext.set(final, body.length);
  ciphertext.set(tag, body.length + final.length);
  return { masked: entry.masked, field: entry.field, ciphertext, iv, keyId };
}

function decryptSymmetric(key: Uint8Array, entry: VaultEntry): string {
  if (entry.ciphertext.length < TAG_BYTES || entry.iv.length !== SYMMETRIC_IV_BYTES) {
    throw new VaultIntegrityError(
      "Vault entry is malformed: ciphertext or IV has the wrong length",
    );
  }
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, entry.iv);
    decipher.setAAD(associatedData(entry.field, entry.masked));
    decipher.setAuthTag(entry.ciphertext.subarray(entry.ciphertext.length - TAG_BYTES));
    return decipher.update(
      entry.ciphertext.subarray(0, entry.ciphertext.length - TAG_BYTES),
      undefined,
      "utf8",
    ) + decipher.final("utf8");
  } catch (error) {
    throw new VaultIntegrityError(
      "Vault entry failed authentication: altered, or moved from another mask",
      { cause: error },
    );
  }
}
