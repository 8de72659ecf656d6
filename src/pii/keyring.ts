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

import { KEY_ID_PATTERN, MIN_SECRET_BYTES } from "../config/options.ts";
import { type KeySource, Secret } from "../config/secret.ts";
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
      // Not echoed: a secret pasted where an id belongs must not reach a log.
      throw new ConfigError(
        `Cannot use ${origin}: a key id (${id.length} characters) is not 1 to 16 letters, digits, _ or -; is a secret in the id's place?`,
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
      `Cannot use ${origin}: "current" names no key of the set (it holds ${
        [...keys.keys()].join(", ")
      })`,
    );
  }
  return { current: set.current, keys };
}

/**
 * Shannon entropy of a secret's bytes, in bits per byte: about 6 for
 * `openssl rand -base64`, 4 for hex, 0 for one byte repeated.
 */
export function bitsPerByte(bytes: Uint8Array): number {
  const counts = new Map<number, number>();
  for (const b of bytes) counts.set(b, (counts.get(b) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / bytes.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

/** Below this a secret is more likely typed than generated (`aaaa…`, `password123…`). */
const LOW_ENTROPY_BITS = 3;

/** Warnings about a loaded set: secrets that look typed rather than generated. */
function weakKeyWarnings(set: KeySet): string[] {
  const warnings: string[] = [];
  for (const [id, secret] of set.keys) {
    if (bitsPerByte(secret.reveal()) < LOW_ENTROPY_BITS) {
      warnings.push(
        `${secret.origin}: key ${id} looks low-entropy (few distinct characters); ${MAKE_ONE}`,
      );
    }
  }
  return warnings;
}

/**
 * Loads the key set of a configured source; null when none is configured.
 * Warns (through `warn`) when the key file is readable by group or others,
 * and when a secret looks low-entropy.
 *
 * @throws {ConfigError} when the file is unreadable or its contents are refused
 */
export async function loadKeySet(
  source: KeySource,
  defaultId: string,
  warn: (message: string) => void = () => {},
): Promise<KeySet | null> {
  const set = await readKeySet(source, defaultId, warn);
  if (set !== null) weakKeyWarnings(set).forEach(warn);
  return set;
}

async function readKeySet(
  source: KeySource,
  defaultId: string,
  warn: (message: string) => void,
): Promise<KeySet | null> {
  switch (source.kind) {
    case "none":
      return null;
    case "env":
      return parseKeySet(source.secret.reveal(), source.secret.origin, defaultId);
    case "file": {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(source.path);
      } catch (error) {
        // A path that is no file is often the key itself, pasted into the file
        // setting: never echoed, whatever it looks like. Nor is the cause kept
        // then, since Deno's message names the path (--verbose prints it).
        if (error instanceof Deno.errors.NotFound) {
          throw new ConfigError(
            `Cannot read ${source.setting}: no such file (is a key in the file setting's place? put keys in ${source.inlineEnv})`,
          );
        }
        throw new ConfigError(
          `Cannot read ${source.origin}: ${whyUnreadable(error)}`,
          source.pathShown ? { cause: error } : {},
        );
      }
      const exposure = await keyFileExposure(source.path);
      if (exposure !== null) {
        const fix = source.pathShown ? `run: chmod 0400 ${source.path}` : "chmod it 0400";
        warn(`${source.origin} is ${exposure}; ${fix}`);
      }
      return parseKeySet(bytes, source.origin, defaultId);
    }
  }
}

/**
 * Who else may read a key file, or null when only its owner may. Others
 * always count; the group only when it is not our own group, since a
 * Kubernetes secret mounted with `defaultMode: 0400` and an fsGroup arrives
 * as 0440 owned by the pod's own group.
 */
async function keyFileExposure(path: string): Promise<string | null> {
  if (Deno.build.os === "windows") return null;
  const info = await Deno.stat(path).catch(() => null);
  if (info === null || info.mode === null) return null;
  const mode = (info.mode & 0o777).toString(8).padStart(3, "0");
  if ((info.mode & 0o007) !== 0) return `readable by others (mode ${mode})`;
  if ((info.mode & 0o070) !== 0 && info.gid !== Deno.gid()) {
    return `readable by group ${info.gid} (mode ${mode})`;
  }
  return null;
}

/**
 * Refuses a vault key set that shares a secret with the HMAC key set: the
 * vault is a second lock only when its key is a second secret.
 *
 * @throws {ConfigError}
 */
export function assertSeparateKeys(hmac: KeySet | null, vault: KeySet | null): void {
  if (hmac === null || vault === null) return;
  for (const [hmacId, h] of hmac.keys) {
    for (const [vaultId, v] of vault.keys) {
      const a = h.reveal();
      const b = v.reveal();
      if (a.length === b.length && a.every((byte, i) => byte === b[i])) {
        throw new ConfigError(
          `The vault key ${vaultId} (${v.origin}) is the same secret as the HMAC key ${hmacId} (${h.origin}): the vault needs a secret of its own (${MAKE_ONE})`,
        );
      }
    }
  }
}

/** The current key's secret. */
export function currentSecret(set: KeySet): Secret {
  return set.keys.get(set.current) as Secret;
}
