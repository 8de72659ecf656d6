/**
 * Key sets: one or more secrets with ids, one of them current. A key file (or
 * variable) holds either a single secret, whose id comes from
 * `--hmac-key-id`/`--vault-key-id`, or a JSON key set:
 *
 *     {"current": "k2", "keys": {"k1": "…32+ bytes…", "k2": "…32+ bytes…"}}
 *
 * New masks and vault entries use the current key; the others stay readable
 * so that old masks can be verified and re-keyed.
 *
 * @module
 */

import { KEY_ID_PATTERN, type KeySource, MIN_SECRET_BYTES, Secret } from "../config.ts";
import { ConfigError, whyUnreadable } from "../errors.ts";

/** Secrets by id, and which one new data uses. */
export interface KeySet {
  readonly current: string;
  readonly keys: ReadonlyMap<string, Secret>;
}

const encoder = new TextEncoder();
const MAKE_ONE = "make one with: openssl rand -base64 32";

/** Strips one trailing line ending, "\n" or "\r\n", as editors and `echo` add. */
function withoutTrailingNewline(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) {
    end--;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
  }
  return bytes.subarray(0, end);
}

/**
 * Parses a key file's or variable's bytes into a key set.
 *
 * @throws {ConfigError} naming `origin`, for a short secret, bad JSON, bad ids or a missing current key
 */
export function parseKeySet(bytes: Uint8Array, origin: string, defaultId: string): KeySet {
  const content = withoutTrailingNewline(bytes);
  const text = new TextDecoder().decode(content);
  if (!text.trimStart().startsWith("{")) {
    if (content.length < MIN_SECRET_BYTES) {
      throw new ConfigError(
        `Cannot use ${origin}: it is ${content.length} bytes, need at least ${MIN_SECRET_BYTES} (${MAKE_ONE})`,
      );
    }
    return {
      current: defaultId,
      keys: new Map([[defaultId, new Secret(content.slice(), origin)]]),
    };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError(
      `Cannot use ${origin}: it starts with "{" but is not valid JSON (a key set is {"current": "k2", "keys": {"k1": "...", "k2": "..."}})`,
    );
  }
  const set = parsed as { current?: unknown; keys?: unknown };
  if (
    typeof set.current !== "string" || set.keys === null || typeof set.keys !== "object" ||
    Array.isArray(set.keys)
  ) {
    throw new ConfigError(
      `Cannot use ${origin}: a key set needs "current" (a key id) and "keys" (an object of id: secret)`,
    );
  }
  const keys = new Map<string, Secret>();
  for (const [id, secret] of Object.entries(set.keys as Record<string, unknown>)) {
    if (!KEY_ID_PATTERN.test(id)) {
      throw new ConfigError(
        `Cannot use ${origin}: key id "${id}" must be 1 to 16 letters, digits, _ or -`,
      );
    }
    if (typeof secret !== "string") {
      throw new ConfigError(`Cannot use ${origin}: the secret of key "${id}" must be a string`);
    }
    const secretBytes = encoder.encode(secret);
    if (secretBytes.length < MIN_SECRET_BYTES) {
      throw new ConfigError(
        `Cannot use ${origin}: the secret of key "${id}" is ${secretBytes.length} bytes, need at least ${MIN_SECRET_BYTES} (${MAKE_ONE})`,
      );
    }
    keys.set(id, new Secret(secretBytes, `${origin} key ${id}`));
  }
  if (!keys.has(set.current)) {
    throw new ConfigError(
      `Cannot use ${origin}: "current" is "${set.current}" but no key has that id`,
    );
  }
  return { current: set.current, keys };
}

/**
 * Loads the key set of a configured source; null when none is configured.
 *
 * @throws {ConfigError} when the file is unreadable or its contents are refused
 */
export async function loadKeySet(source: KeySource, defaultId: string): Promise<KeySet | null> {
  switch (source.kind) {
    case "none":
      return null;
    case "generate":
      return {
        current: defaultId,
        keys: new Map([[
          defaultId,
          new Secret(crypto.getRandomValues(new Uint8Array(32)), "generated for this demo"),
        ]]),
      };
    case "env":
      return parseKeySet(source.secret.reveal(), source.secret.origin, defaultId);
    case "file": {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(source.path);
      } catch (error) {
        throw new ConfigError(`Cannot read ${source.origin}: ${whyUnreadable(error)}`, {
          cause: error,
        });
      }
      return parseKeySet(bytes, source.origin, defaultId);
    }
  }
}

/** The current key's secret. */
export function currentSecret(set: KeySet): Secret {
  return set.keys.get(set.current) as Secret;
}
