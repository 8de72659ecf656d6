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

/** A key file's setting: where the path came from and what messages may say of it. */
export interface KeyFile {
  readonly kind: "file";
  readonly path: string;
  /** The setting and, when it may be shown, the path: `--hmac-key-file "k.txt"`. */
  readonly origin: string;
  /** The setting alone: `PII_HMAC_KEY_FILE`, `--hmac-key-file` or a config-file key. */
  readonly setting: string;
  /** False when the path looks like a key (`looksLikeKey`): messages leave it out. */
  readonly pathShown: boolean;
  /** The variable a key itself belongs in, for the hint when the path is not a file. */
  readonly inlineEnv: string;
}

/** Where a key (HMAC or vault) is to come from; read by `loadKeySet` in `pii/keyring.ts`. */
export type KeySource =
  | { readonly kind: "env"; readonly secret: Secret }
  | KeyFile
  | { readonly kind: "none" };

/**
 * True for text that looks like a key rather than a path: no `/`, at least
 * 16 characters, all of them base64 or hex (`openssl rand -base64 32`,
 * `-hex 32`). A key pasted into a key-file setting is then never echoed.
 */
export function looksLikeKey(text: string): boolean {
  return text.length >= 16 && /^[A-Za-z0-9+=_-]+$/.test(text);
}
