/**
 * Sealed vault entries (format 2): each raw value is encrypted to an X25519
 * public key, so whoever writes the vault (a consumer) cannot read it. In the
 * spirit of HPKE base mode (RFC 9180: DHKEM(X25519) + HKDF-SHA256 +
 * AES-256-GCM), with Web Crypto only:
 *
 * - one ephemeral key pair per call of `SealingKey.seal` (a batch): its public
 *   half `enc` is stored with every entry, so each entry opens on its own;
 * - `dh = X25519(ephemeral private, recipient public)`, refused when all zero;
 * - per entry, 16 random bytes `n`, and `key ‖ nonce = HKDF-SHA256(ikm dh,
 *   salt n, info "login-etl/v2/seal" 0 ‖ enc ‖ recipient public ‖ aad)`, 44
 *   bytes: every entry has its own AES key and nonce although the batch
 *   shares one key agreement;
 * - `aad = "login-etl/v2/vault" 0 field 0 mask 0 key id`;
 * - the value is padded (`padValue`) and sealed with AES-256-GCM.
 *
 * Stored in the vault's existing columns: `iv` holds the header `0x02 ‖ enc
 * ‖ n` (49 bytes), `ciphertext` the padded value's ciphertext and tag.
 * docs/pii.md has the format and its test vectors.
 *
 * HPKE itself is not in Web Crypto, and its one-message-per-context nonce
 * sequence would need the sequence number stored too; an HKDF salt per entry
 * keeps each stored entry self-contained at the cost of one HKDF per entry.
 *
 * @module
 */

/** First byte of a sealed entry's header (format 1 is the symmetric AES-GCM entry). */
export const SEALED_FORMAT = 2;
/** X25519 public key and shared secret size (RFC 7748). */
export const X25519_BYTES = 32;
/** Random bytes per entry: the HKDF salt that gives each entry its own key and nonce. */
export const ENTRY_RANDOM_BYTES = 16;
/** Bytes of a sealed entry's header: format, ephemeral public key, entry random. */
export const HEADER_BYTES = 1 + X25519_BYTES + ENTRY_RANDOM_BYTES;
/** AES-GCM tag. */
const TAG_BYTES = 16;
/**
 * Padded sizes of a value, in bytes: the smallest that holds the value and
 * its end marker is used, so a ciphertext tells only which bucket. IPv4
 * addresses and short device ids fill 16, IPv6 and UUIDs 64; a device id
 * (at most 256 code points, 1,024 bytes) at most 4,096.
 */
export const PAD_BUCKETS: readonly number[] = [16, 64, 256, 1024, 4096];

/**
 * The longest ciphertext a sealed entry has: the largest bucket and the
 * AES-GCM tag. `login_etl_vault_put` refuses longer ones (a symmetric
 * entry, the value and the tag, is never longer, since no value longer
 * than the largest bucket is vaulted), and merges drop any already stored.
 */
export const MAX_CIPHERTEXT_BYTES = PAD_BUCKETS[PAD_BUCKETS.length - 1]! + TAG_BYTES;

const LABEL = "login-etl/v2/vault";
const SEAL_INFO = "login-etl/v2/seal";
const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** A vault entry that fails to open: altered, moved, malformed, or under another key. */
export class SealError extends Error {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "SealError";
  }
}

/** What one entry is bound to: its field, its mask and the id of the key it is sealed to. */
export interface EntryBinding {
  readonly field: string;
  readonly masked: string;
  readonly keyId: string;
}

/** A sealed entry as stored: the `iv` column's header and the `ciphertext` column. */
export interface SealedEntry {
  readonly header: Uint8Array;
  readonly ciphertext: Uint8Array;
}

/** The associated data of an entry: label, field, mask and key id, NUL-separated. */
export function associatedData(binding: EntryBinding): Uint8Array<ArrayBuffer> {
  return encoder.encode(`${LABEL}\0${binding.field}\0${binding.masked}\0${binding.keyId}`);
}

/**
 * The value's UTF-8, an end marker 0x80 and zeros up to the smallest bucket
 * that holds them (ISO/IEC 7816-4 padding).
 *
 * @throws {RangeError} for a value longer than the largest bucket allows
 */
export function padValue(raw: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(raw);
  const size = PAD_BUCKETS.find((b) => b >= bytes.length + 1);
  if (size === undefined) {
    throw new RangeError(
      `Cannot seal a value of ${bytes.length} bytes: at most ${
        (PAD_BUCKETS.at(-1) ?? 0) - 1
      } fit the vault's largest bucket`,
    );
  }
  const padded = new Uint8Array(size);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  return padded;
}

/**
 * The value inside `padValue`'s output.
 *
 * @throws {SealError} when the size is not a bucket, the marker is missing or the text is not UTF-8
 */
export function unpadValue(padded: Uint8Array): string {
  if (!PAD_BUCKETS.includes(padded.length)) {
    throw new SealError(`Padded value is ${padded.length} bytes, not one of the bucket sizes`);
  }
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (end < 0 || padded[end] !== 0x80) throw new SealError("Padded value has no end marker");
  try {
    return strictDecoder.decode(padded.subarray(0, end));
  } catch (error) {
    throw new SealError("Padded value is not UTF-8", { cause: error });
  }
}

/** RFC 8410's PKCS#8 prefix of a raw X25519 private key: Web Crypto imports no raw private key. */
const PKCS8_X25519_PREFIX = Uint8Array.fromHex("302e020100300506032b656e04220420");
/** The X25519 base point u = 9: X25519(private, base) is the public key. */
const BASE_POINT = (() => {
  const point = new Uint8Array(X25519_BYTES);
  point[0] = 9;
  return point;
})();

function importPublic(raw: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", new Uint8Array(raw), { name: "X25519" }, true, []);
}

/** Imports a raw 32-byte X25519 private key (for deriving only). */
export function importPrivate(raw: Uint8Array): Promise<CryptoKey> {
  const pkcs8 = new Uint8Array(PKCS8_X25519_PREFIX.length + raw.length);
  pkcs8.set(PKCS8_X25519_PREFIX);
  pkcs8.set(raw, PKCS8_X25519_PREFIX.length);
  return crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, false, ["deriveBits"]);
}

async function agree(privateKey: CryptoKey, publicKey: CryptoKey): Promise<Uint8Array> {
  let dh: Uint8Array;
  try {
    dh = new Uint8Array(
      await crypto.subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256),
    );
  } catch (error) {
    throw new SealError("Key agreement refused the public key (a low-order point)", {
      cause: error,
    });
  }
  // RFC 9180 7.1.4: a low-order public key gives zero; refuse it rather than seal under it.
  if (dh.every((b) => b === 0)) throw new SealError("Key agreement gave zero: refused public key");
  return dh;
}

function concat(...parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** An entry's AES key and nonce from the batch's key agreement and the entry's random bytes. */
async function entryKey(
  ikm: CryptoKey,
  context: { enc: Uint8Array; recipient: Uint8Array; random: Uint8Array; aad: Uint8Array },
  usage: "encrypt" | "decrypt",
): Promise<{ key: CryptoKey; nonce: Uint8Array<ArrayBuffer> }> {
  const info = concat(
    encoder.encode(`${SEAL_INFO}\0`),
    context.enc,
    context.recipient,
    context.aad,
  );
  const okm = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(context.random), info },
      ikm,
      (32 + 12) * 8,
    ),
  );
  const key = await crypto.subtle.importKey("raw", okm.subarray(0, 32), "AES-GCM", false, [usage]);
  return { key, nonce: okm.slice(32) };
}

function importIkm(dh: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", new Uint8Array(dh), "HKDF", false, ["deriveBits"]);
}

/** The public key a vault key pair seals to. */
export class SealingKey {
  readonly keyId: string;
  /** The raw 32-byte X25519 public key. */
  readonly publicKey: Uint8Array;
  readonly #key: CryptoKey;

  private constructor(keyId: string, publicKey: Uint8Array, key: CryptoKey) {
    this.keyId = keyId;
    this.publicKey = publicKey;
    this.#key = key;
  }

  /**
   * Imports a raw public key.
   *
   * @throws {SealError} when it is not a usable X25519 public key
   */
  static async create(keyId: string, publicKey: Uint8Array): Promise<SealingKey> {
    if (publicKey.length !== X25519_BYTES) {
      throw new SealError(`An X25519 public key is ${X25519_BYTES} bytes, not ${publicKey.length}`);
    }
    let key: CryptoKey;
    try {
      key = await importPublic(publicKey);
      // One agreement now, so that a low-order key is refused at start, not at the first batch.
      const probe = await crypto.subtle.generateKey({ name: "X25519" }, false, [
        "deriveBits",
      ]) as CryptoKeyPair;
      await agree(probe.privateKey, key);
    } catch (error) {
      throw new SealError("Not a usable X25519 public key", { cause: error });
    }
    return new SealingKey(keyId, publicKey.slice(), key);
  }

  /**
   * Seals each value to this key under one fresh ephemeral key pair (the
   * batch's), each entry with its own random bytes. `options` fixes the
   * ephemeral key and the randomness, for test vectors only.
   */
  async seal(
    entries: readonly { readonly field: string; readonly masked: string; readonly raw: string }[],
    options: {
      readonly ephemeralPrivate?: Uint8Array;
      readonly random?: (bytes: number) => Uint8Array;
    } = {},
  ): Promise<SealedEntry[]> {
    if (entries.length === 0) return [];
    const random = options.random ??
      ((n: number) => crypto.getRandomValues(new Uint8Array(n)));
    const ephemeral = options.ephemeralPrivate === undefined
      // Not extractable: the private half lives in this call only (the public one always exports).
      ? await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]) as CryptoKeyPair
      : await keyPairOf(options.ephemeralPrivate);
    const enc = new Uint8Array(await crypto.subtle.exportKey("raw", ephemeral.publicKey));
    const ikm = await importIkm(await agree(ephemeral.privateKey, this.#key));
    return await mapBounded(entries, CRYPTO_IN_FLIGHT, async (entry) => {
      const n = random(ENTRY_RANDOM_BYTES);
      const aad = associatedData({ ...entry, keyId: this.keyId });
      const { key, nonce } = await entryKey(
        ikm,
        { enc, recipient: this.publicKey, random: n, aad },
        "encrypt",
      );
      const ciphertext = new Uint8Array(
        await crypto.subtle.encrypt(
          { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: TAG_BYTES * 8 },
          key,
          padValue(entry.raw),
        ),
      );
      return { header: concat(Uint8Array.of(SEALED_FORMAT), enc, n), ciphertext };
    });
  }
}

/**
 * Web Crypto calls in flight per `seal`: each holds native memory until it
 * settles, and a 1,000-row batch seals up to 2,000 values (the same bound as
 * the masker's signs, `mask.ts`).
 */
const CRYPTO_IN_FLIGHT = 16;

/** `items.map(fn)` with at most `limit` calls of `fn` pending at once, in order. */
async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const at = next++;
      results[at] = await fn(items[at] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

async function keyPairOf(privateRaw: Uint8Array): Promise<CryptoKeyPair> {
  const privateKey = await importPrivate(privateRaw);
  const publicKey = await importPublic(await publicKeyOf(privateKey));
  return { privateKey, publicKey };
}

/** The public key of a private key: X25519 with the base point. */
async function publicKeyOf(privateKey: CryptoKey): Promise<Uint8Array> {
  const base = await importPublic(BASE_POINT);
  return new Uint8Array(
    await crypto.subtle.deriveBits({ name: "X25519", public: base }, privateKey, 256),
  );
}

/** Key agreements remembered per opening key: the entries of one batch share their `enc`. */
const AGREEMENTS_KEPT = 256;

/** A vault key pair's private half: opens what was sealed to its public key. */
export class OpeningKey {
  readonly keyId: string;
  readonly publicKey: Uint8Array;
  readonly #key: CryptoKey;
  readonly #agreements = new Map<string, Promise<CryptoKey>>();

  private constructor(keyId: string, publicKey: Uint8Array, key: CryptoKey) {
    this.keyId = keyId;
    this.publicKey = publicKey;
    this.#key = key;
  }

  /**
   * Imports a raw private key (32 bytes; `Secret.reveal()` of a key set's
   * `d`), checking it belongs to `publicKey`.
   *
   * @throws {SealError} when it is not an X25519 private key or not `publicKey`'s
   */
  static async create(
    keyId: string,
    publicKey: Uint8Array,
    privateKey: Uint8Array,
  ): Promise<OpeningKey> {
    const raw = privateKey;
    if (raw.length !== X25519_BYTES) {
      throw new SealError(`An X25519 private key is ${X25519_BYTES} bytes, not ${raw.length}`);
    }
    let key: CryptoKey;
    try {
      key = await importPrivate(raw);
    } catch (error) {
      throw new SealError("Not a usable X25519 private key", { cause: error });
    }
    const derived = await publicKeyOf(key);
    if (derived.length !== publicKey.length || derived.some((b, i) => b !== publicKey[i])) {
      throw new SealError("The private key does not belong to the public key beside it");
    }
    return new OpeningKey(keyId, publicKey.slice(), key);
  }

  /**
   * Opens a sealed entry.
   *
   * @throws {SealError} when it is malformed, altered, moved to another
   *   mask, field or key id, or sealed to another key
   */
  async open(binding: EntryBinding, sealed: SealedEntry): Promise<string> {
    const { header, ciphertext } = sealed;
    if (header.length !== HEADER_BYTES || header[0] !== SEALED_FORMAT) {
      throw new SealError(
        `Sealed entry header is malformed: need ${HEADER_BYTES} bytes starting ${SEALED_FORMAT}`,
      );
    }
    if (binding.keyId !== this.keyId) {
      throw new SealError(`Entry is under key ${binding.keyId}, not ${this.keyId}`);
    }
    if (!PAD_BUCKETS.some((b) => ciphertext.length === b + TAG_BYTES)) {
      throw new SealError("Sealed entry ciphertext has the wrong length");
    }
    const enc = header.subarray(1, 1 + X25519_BYTES);
    const n = header.subarray(1 + X25519_BYTES);
    const aad = associatedData(binding);
    let padded: Uint8Array;
    try {
      const ikm = await this.#agreement(enc);
      const { key, nonce } = await entryKey(
        ikm,
        { enc, recipient: this.publicKey, random: n, aad },
        "decrypt",
      );
      padded = new Uint8Array(
        await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: TAG_BYTES * 8 },
          key,
          new Uint8Array(ciphertext),
        ),
      );
    } catch (error) {
      if (error instanceof SealError) throw error;
      throw new SealError(
        "Sealed entry failed authentication: altered, moved from another mask, or sealed to another key",
        { cause: error },
      );
    }
    return unpadValue(padded);
  }

  #agreement(enc: Uint8Array): Promise<CryptoKey> {
    const id = enc.toHex();
    let agreement = this.#agreements.get(id);
    if (agreement === undefined) {
      if (this.#agreements.size >= AGREEMENTS_KEPT) {
        this.#agreements.delete(this.#agreements.keys().next().value as string);
      }
      agreement = importPublic(enc)
        .catch((error) => {
          throw new SealError("Sealed entry holds no usable ephemeral public key", {
            cause: error,
          });
        })
        .then((ephemeral) => agree(this.#key, ephemeral))
        .then(importIkm);
      // A failed agreement is not kept: the next entry gets its own error.
      agreement.catch(() => this.#agreements.delete(id));
      this.#agreements.set(id, agreement);
    }
    return agreement;
  }
}

/** A new vault key pair, raw: the private key (32 bytes) and its public key. */
export async function generateVaultPair(): Promise<
  { readonly publicKey: Uint8Array; readonly privateKey: Uint8Array }
> {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, true, [
    "deriveBits",
  ]) as CryptoKeyPair;
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  return {
    publicKey: new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)),
    privateKey: Uint8Array.fromBase64(jwk.d ?? "", { alphabet: "base64url" }),
  };
}
