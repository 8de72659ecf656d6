/**
 * Keyed masks for PII: HMAC-SHA256 under a per-field subkey, prefixed with the
 * key id, e.g. `k1:Vb0…` (46 characters). Deterministic across runs and
 * processes, different per field, irreversible without the key. Also loads
 * the secret and computes its fingerprint.
 *
 * @module
 */

import { HmacSha256 } from "./hmac_sha256.ts";
import { type KeySource, Secret } from "./config.ts";
import { currentSecret, loadKeySet } from "./pii/keyring.ts";
import { ConfigError } from "./errors.ts";
import type { Masked } from "./types.ts";

/** What a mask is of; each field has its own subkey, so equal text in two fields masks differently. */
export type MaskField = "ip" | "device_id" | "body";

const FIELDS: readonly MaskField[] = ["ip", "device_id", "body"];
const encoder = new TextEncoder();

function base64url(bytes: ArrayBuffer): string {
  return new Uint8Array(bytes).toBase64({ alphabet: "base64url", omitPadding: true });
}

async function importHmacKey(raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
}

/** Masks values under one key. Create with `Masker.create`. */
export class Masker {
  /** The key id in front of every mask, e.g. `k1`. */
  readonly keyId: string;
  /** Fingerprint of the secret (an HMAC of a constant label), safe to store and compare. */
  readonly fingerprint: string;
  readonly #subkeys: ReadonlyMap<MaskField, HmacSha256>;

  private constructor(keyId: string, fingerprint: string, subkeys: Map<MaskField, HmacSha256>) {
    this.keyId = keyId;
    this.fingerprint = fingerprint;
    this.#subkeys = subkeys;
  }

  /** Derives the per-field subkeys and the fingerprint from the secret (Web Crypto). */
  static async create(secret: Secret, keyId: string): Promise<Masker> {
    const master = await importHmacKey(new Uint8Array(secret.reveal()));
    const label = (text: string) => crypto.subtle.sign("HMAC", master, encoder.encode(text));
    const subkeys = new Map<MaskField, HmacSha256>();
    for (const field of FIELDS) {
      // Subkey = HMAC(secret, label): a standard PRF-based derivation that
      // separates the fields' domains without concatenating strings per call.
      subkeys.set(field, new HmacSha256(new Uint8Array(await label(`login-etl/v1/mask/${field}`))));
    }
    const fingerprint = base64url(await label("login-etl/v1/fingerprint")).slice(0, 22);
    return new Masker(keyId, fingerprint, subkeys);
  }

  /**
   * The mask of one value: `<key id>:` + base64url(HMAC-SHA256(subkey, UTF-8 value)).
   *
   * Computed with `HmacSha256` rather than `crypto.subtle.sign`: the output
   * is the same HMAC (tests check it against Web Crypto), but each Web Crypto
   * call is an async hop to a worker thread and node:crypto allocates per
   * call; masking was the largest share of a drain's CPU (README, Performance).
   */
  mask(field: MaskField, value: string): Masked {
    const mac = (this.#subkeys.get(field) as HmacSha256).mac(value);
    return `${this.keyId}:${mac.toBase64({ alphabet: "base64url", omitPadding: true })}` as Masked;
  }
}

/** A fresh random 256-bit secret, for `demo`. */
export function generateSecret(): Secret {
  return new Secret(crypto.getRandomValues(new Uint8Array(32)), "generated for this demo");
}

/**
 * Reads the configured HMAC secret (the current one of a key set).
 *
 * @throws {ConfigError} when none is configured, or the file is unreadable or too short
 */
export async function loadHmacSecret(source: KeySource, defaultId = "k1"): Promise<Secret> {
  const set = await loadKeySet(source, defaultId);
  if (set === null) {
    throw new ConfigError(
      "No HMAC key: set PII_HMAC_KEY or --hmac-key-file to a secret of at least 32 bytes (make one with: openssl rand -base64 32)",
    );
  }
  return currentSecret(set);
}
