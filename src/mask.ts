/**
 * Keyed masks for PII: HMAC-SHA256 by Web Crypto under a per-field subkey,
 * prefixed with the key id, e.g. `k1:Vb0…` (46 characters). Deterministic
 * across runs and processes, different per field, irreversible without the
 * key. Also computes the secret's fingerprint.
 *
 * @module
 */

import { Secret } from "./secret.ts";
import type { Masked, PiiField } from "./types.ts";

/**
 * What a mask is of; each field has its own subkey, so equal text in two
 * fields masks differently: the two PII fields, a whole body (a reject's
 * keyed hash), and any other value of a reject body (`redact.ts`).
 */
export type MaskField = PiiField | "body" | "value";

const FIELDS: readonly MaskField[] = ["ip", "device_id", "body", "value"];
const encoder = new TextEncoder();

function base64url(bytes: ArrayBuffer): string {
  return new Uint8Array(bytes).toBase64({ alphabet: "base64url", omitPadding: true });
}

async function importHmacKey(raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
}

/**
 * The shape of every mask `Masker.mask` makes: a key id (KEY_ID_PATTERN of
 * config/options.ts), a colon, and 43 base64url characters (a 32-byte HMAC,
 * unpadded). The database functions that take masks check the same shape
 * (MASK_SQL_PATTERN of db/migrations.ts).
 */
const MASK_SHAPE = /^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9_-]{43}$/;

/** True when `text` has the shape of a mask (not that any key made it). */
export function isMask(text: string): text is Masked {
  return MASK_SHAPE.test(text);
}

/** Distinct values a `Masker` remembers the masks of; about 3 MB at IPv4/serial sizes. */
export const CACHE_LIMIT = 20_000;

/**
 * Most Web Crypto signs a `Masker` has in flight at once. Each sign in
 * flight holds native memory until it settles, so a whole batch's signs
 * started together raise the peak RSS well above a few at a time, at the same
 * CPU per sign; one at a time costs several times the CPU. Sixteen keeps both
 * low (figures in docs/performance.md#memory).
 */
const SIGNS_IN_FLIGHT = 16;

/** Masks values under one key. Create with `Masker.create`. */
export class Masker {
  /** The key id in front of every mask, e.g. `k1`. */
  readonly keyId: string;
  /** Fingerprint of the secret (an HMAC of a constant label), safe to store and compare. */
  readonly fingerprint: string;
  readonly #subkeys: ReadonlyMap<MaskField, CryptoKey>;
  /**
   * Masks of recent ip and device_id values. Real logins repeat addresses and
   * devices far more than they vary, and each Web Crypto sign is a round trip
   * to the crypto thread pool; oldest entries go first when it is full.
   */
  readonly #recent = new Map<string, Masked>();
  /**
   * The keys of `#recent` in the order they came, as a ring: when it is full
   * the oldest slot is dropped from `#recent` and reused. Asking the Map for
   * its oldest key (`keys().next()`) walks past every entry deleted since
   * the table last compacted, so at the limit each new mask cost more the
   * longer a run went (docs/performance.md#the-mask-cache).
   */
  readonly #order: string[] = [];
  #oldest = 0;
  #signing = 0;
  readonly #waiting: (() => void)[] = [];

  private constructor(keyId: string, fingerprint: string, subkeys: Map<MaskField, CryptoKey>) {
    this.keyId = keyId;
    this.fingerprint = fingerprint;
    this.#subkeys = subkeys;
  }

  /** Derives the per-field subkeys and the fingerprint from the secret (Web Crypto). */
  static async create(secret: Secret, keyId: string): Promise<Masker> {
    const master = await importHmacKey(new Uint8Array(secret.reveal()));
    const label = (text: string) => crypto.subtle.sign("HMAC", master, encoder.encode(text));
    const subkeys = new Map<MaskField, CryptoKey>();
    for (const field of FIELDS) {
      // Subkey = HMAC(secret, label): a standard PRF-based derivation that
      // separates the fields' domains without concatenating strings per call.
      subkeys.set(
        field,
        await importHmacKey(new Uint8Array(await label(`login-etl/v1/mask/${field}`))),
      );
    }
    const fingerprint = base64url(await label("login-etl/v1/fingerprint")).slice(0, 22);
    return new Masker(keyId, fingerprint, subkeys);
  }

  /**
   * The mask of one value: `<key id>:` + base64url(HMAC-SHA256(subkey, UTF-8
   * value)), by Web Crypto's `crypto.subtle.sign`. Start many at once (see
   * `maskAll`): each sign is asynchronous, and calls in flight together cost
   * about half as much CPU each as calls awaited one by one.
   */
  async mask(field: MaskField, value: string): Promise<Masked> {
    const cacheable = field === "ip" || field === "device_id";
    const key = cacheable ? `${field}\u0000${value}` : "";
    if (cacheable) {
      const hit = this.#recent.get(key);
      if (hit !== undefined) return hit;
    }
    const mac = await this.#sign(this.#subkeys.get(field) as CryptoKey, encoder.encode(value));
    const masked = `${this.keyId}:${base64url(mac)}` as Masked;
    if (cacheable && !this.#recent.has(key)) this.#remember(key, masked);
    return masked;
  }

  /** Caches `masked` under `key`, dropping the oldest entry once `CACHE_LIMIT` are held. */
  #remember(key: string, masked: Masked): void {
    if (this.#order.length < CACHE_LIMIT) {
      this.#order.push(key);
    } else {
      this.#recent.delete(this.#order[this.#oldest] as string);
      this.#order[this.#oldest] = key;
      this.#oldest = (this.#oldest + 1) % CACHE_LIMIT;
    }
    this.#recent.set(key, masked);
  }

  /** One Web Crypto sign, waiting while `SIGNS_IN_FLIGHT` are already in flight. */
  async #sign(subkey: CryptoKey, data: Uint8Array<ArrayBuffer>): Promise<ArrayBuffer> {
    while (this.#signing >= SIGNS_IN_FLIGHT) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    this.#signing++;
    try {
      return await crypto.subtle.sign("HMAC", subkey, data);
    } finally {
      this.#signing--;
      this.#waiting.shift()?.();
    }
  }

  /**
   * The masks of many values, in the order given: `SIGNS_IN_FLIGHT` runners
   * take the next value each, so a 1,000-row batch never has thousands of
   * signs (or promises waiting for one) at once.
   */
  async maskAll(
    values: readonly { readonly field: MaskField; readonly text: string }[],
  ): Promise<Masked[]> {
    const masks = new Array<Masked>(values.length);
    let next = 0;
    let failed = false;
    const runner = async () => {
      while (next < values.length && !failed) {
        const i = next++;
        const v = values[i] as { field: MaskField; text: string };
        try {
          masks[i] = await this.mask(v.field, v.text);
        } catch (error) {
          failed = true; // the batch fails: the other runners stop taking values
          throw error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(SIGNS_IN_FLIGHT, values.length) }, runner));
    return masks;
  }
}
