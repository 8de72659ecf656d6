/**
 * Secrets as configuration holds them: a wrapper that prints as
 * `[redacted]`, and where each key is to come from (a variable, a file).
 *
 * @module
 */

/** A secret that prints as `[redacted]` in logs, JSON and inspection. */
export class Secret {
  readonly #bytes: Uint8Array;
  /** Where the secret came from, e.g. `PII_HMAC_KEY` or `--hmac-key-file "k.txt"`. */
  readonly origin: string;

  constructor(bytes: Uint8Array, origin: string) {
    this.#bytes = bytes;
    this.origin = origin;
  }

  /** The secret's bytes; call only where the key is imported. */
  reveal(): Uint8Array {
    return this.#bytes;
  }

  toString(): string {
    return "[redacted]";
  }

  toJSON(): string {
    return "[redacted]";
  }

  [Symbol.for("Deno.customInspect")](): string {
    return "[redacted]";
  }
}

/** Where a key (HMAC or vault) is to come from; read by `loadKeySet` in `pii/keyring.ts`. */
export type KeySource =
  | { readonly kind: "env"; readonly secret: Secret }
  | { readonly kind: "file"; readonly path: string; readonly origin: string }
  | { readonly kind: "none" };
