/**
 * Key sets: one or more keys with ids, one of them current. A key file (or
 * variable) holds either a single secret, whose id comes from
 * `--hmac-key-id`/`--vault-key-id`, or a JSON key set:
 *
 *     {"current": "k2", "keys": {"k1": "…32+ bytes…", "k2": "…32+ bytes…"}}
 *
 * A vault key set may also hold X25519 key pairs, as JWKs (`keygen` writes
 * them): with the private half `d` in the set recovery uses, without it in
 * the set consumers get, which can seal entries but open none.
 *
 * New masks and vault entries use the current key; the others stay readable
 * so that old masks can be verified and re-keyed.
 *
 * What a secret and a key id must look like comes in as a value
 * (`KeyRules`): the settings table states it, and this module reads no
 * settings.
 *
 * @module
 */

import { type KeySource, Secret } from "../secret.ts";
import { ConfigError, whyUnreadable } from "../errors.ts";
import { X25519_BYTES } from "./seal.ts";

/** What a key set's contents must meet; the settings table states both (`config/options.ts`). */
export interface KeyRules {
  /** Fewest bytes a secret may have. */
  readonly minSecretBytes: number;
  /** What a key id inside a key set must match. */
  readonly keyIdPattern: RegExp;
}

/** How a key source is read: the rules its contents meet, and the id a lone secret takes. */
export interface KeyFormat extends KeyRules {
  readonly defaultId: string;
}

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

/** How a set's values are read: HMAC sets hold secrets only, vault sets key pairs too. */
type ValueParser<K> = (value: unknown, id: string, origin: string) => K;

function parseSet<K>(
  bytes: Uint8Array,
  origin: string,
  how: {
    readonly format: KeyFormat;
    readonly parseValue: ValueParser<K>;
    readonly single: (secret: Secret) => K;
  },
): { readonly current: string; readonly keys: ReadonlyMap<string, K> } {
  const { format, parseValue, single } = how;
  const content = withoutTrailingNewline(bytes);
  const text = new TextDecoder().decode(content);
  if (!text.trimStart().startsWith("{")) {
    if (content.length < format.minSecretBytes) {
      throw new ConfigError(
        `Cannot use ${origin}: it is ${content.length} bytes, need at least ${format.minSecretBytes} (${MAKE_ONE})`,
      );
    }
    return {
      current: format.defaultId,
      keys: new Map([[format.defaultId, single(new Secret(content.slice(), origin))]]),
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
  const keys = new Map<string, K>();
  for (const [id, value] of Object.entries(set.keys as Record<string, unknown>)) {
    if (!format.keyIdPattern.test(id)) {
      // Not echoed: a secret pasted where an id belongs must not reach a log.
      throw new ConfigError(
        `Cannot use ${origin}: a key id (${id.length} characters) is not 1 to 16 letters, digits, _ or -; is a secret in the id's place?`,
      );
    }
    keys.set(id, parseValue(value, id, origin));
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

function parseSecret(value: unknown, id: string, origin: string, rules: KeyRules): Secret {
  if (typeof value !== "string") {
    throw new ConfigError(`Cannot use ${origin}: the secret of key "${id}" must be a string`);
  }
  const secretBytes = encoder.encode(value);
  if (secretBytes.length < rules.minSecretBytes) {
    throw new ConfigError(
      `Cannot use ${origin}: the secret of key "${id}" is ${secretBytes.length} bytes, need at least ${rules.minSecretBytes} (${MAKE_ONE})`,
    );
  }
  return new Secret(secretBytes, `${origin} key ${id}`);
}

/**
 * Parses a key file's or variable's bytes into a key set of secrets (the
 * HMAC key set).
 *
 * @throws {ConfigError} naming `origin`, for a short secret, bad JSON, bad ids, a key pair or a missing current key
 */
export function parseKeySet(bytes: Uint8Array, origin: string, format: KeyFormat): KeySet {
  return parseSet(bytes, origin, {
    format,
    parseValue: (value, id, from) => {
      if (value !== null && typeof value === "object") {
        throw new ConfigError(
          `Cannot use ${from}: key "${id}" is a key pair; HMAC keys are secrets (strings of ${format.minSecretBytes}+ bytes)`,
        );
      }
      return parseSecret(value, id, from, format);
    },
    single: (secret) => secret,
  });
}

/**
 * One vault key: a secret (symmetric entries, format 1: whoever holds it
 * reads and writes), or an X25519 key pair (sealed entries, format 2: the
 * public half seals, only the private half opens). A public key set holds
 * pairs without their private halves.
 */
export type VaultKey =
  | { readonly kind: "secret"; readonly secret: Secret }
  | {
    readonly kind: "pair";
    /** The raw 32-byte X25519 public key. */
    readonly publicKey: Uint8Array;
    /** The raw 32-byte private key, or null in a public key set. */
    readonly privateKey: Secret | null;
  };

/** Vault keys by id, and which one new entries are sealed or encrypted to. */
export interface VaultKeySet {
  readonly current: string;
  readonly keys: ReadonlyMap<string, VaultKey>;
}

/** How a key pair is written in a key set: an X25519 JWK (RFC 8037), `d` only in a private set. */
const PAIR_SHAPE = '{"kty": "OKP", "crv": "X25519", "x": "...", "d": "..."}';

function base64urlBytes(value: unknown): Uint8Array | null {
  if (typeof value !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(value)) return null;
  const bytes = Uint8Array.fromBase64(value, { alphabet: "base64url" });
  return bytes.length === X25519_BYTES ? bytes : null;
}

function parseVaultKey(value: unknown, id: string, origin: string, rules: KeyRules): VaultKey {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { kind: "secret", secret: parseSecret(value, id, origin, rules) };
  }
  const jwk = value as { kty?: unknown; crv?: unknown; x?: unknown; d?: unknown };
  if (jwk.kty !== "OKP" || jwk.crv !== "X25519") {
    throw new ConfigError(
      `Cannot use ${origin}: key "${id}" is an object but not an X25519 key pair (${PAIR_SHAPE}, as login-etl keygen writes)`,
    );
  }
  const publicKey = base64urlBytes(jwk.x);
  if (publicKey === null) {
    throw new ConfigError(
      `Cannot use ${origin}: the public key "x" of key "${id}" is not 32 bytes in unpadded base64url (43 characters)`,
    );
  }
  if (jwk.d === undefined) return { kind: "pair", publicKey, privateKey: null };
  const privateKey = base64urlBytes(jwk.d);
  if (privateKey === null) {
    throw new ConfigError(
      `Cannot use ${origin}: the private key "d" of key "${id}" is not 32 bytes in unpadded base64url (43 characters)`,
    );
  }
  return {
    kind: "pair",
    publicKey,
    privateKey: new Secret(privateKey, `${origin} key ${id}`),
  };
}

/**
 * Parses a vault key file's or variable's bytes: a single secret, or a key
 * set whose values are secrets or X25519 key pairs.
 *
 * @throws {ConfigError} naming `origin`
 */
export function parseVaultKeySet(
  bytes: Uint8Array,
  origin: string,
  format: KeyFormat,
): VaultKeySet {
  return parseSet(bytes, origin, {
    format,
    parseValue: (value, id, from) => parseVaultKey(value, id, from, format),
    single: (secret): VaultKey => ({ kind: "secret", secret }),
  });
}

/** Ids of the keys that can read entries: secrets, and pairs with their private half. */
export function readableKeyIds(set: VaultKeySet): string[] {
  return [...set.keys].filter(([, key]) => key.kind === "secret" || key.privateKey !== null)
    .map(([id]) => id);
}

/**
 * What a writer needs of a set: the current key only, and of a pair its
 * public half only. A symmetric current key stays whole (it cannot write
 * without being able to read).
 */
export function writerKeys(set: VaultKeySet): VaultKeySet {
  const key = set.keys.get(set.current) as VaultKey;
  return {
    current: set.current,
    keys: new Map([[set.current, key.kind === "pair" ? { ...key, privateKey: null } : key]]),
  };
}

/**
 * A vault key set as key-file JSON, one key a line. Secrets that are not
 * UTF-8 text cannot be written as JSON strings, and are refused.
 *
 * @throws {ConfigError}
 */
export function vaultKeySetJson(set: VaultKeySet): string {
  const b64 = (bytes: Uint8Array) => bytes.toBase64({ alphabet: "base64url", omitPadding: true });
  const strict = new TextDecoder("utf-8", { fatal: true });
  const keys = [...set.keys].map(([id, key]) => {
    let value: unknown;
    if (key.kind === "secret") {
      try {
        value = strict.decode(key.secret.reveal());
      } catch {
        throw new ConfigError(
          `Cannot write vault key ${id} (${key.secret.origin}) into a key set: it is not UTF-8 text, and key sets hold secrets as JSON strings`,
        );
      }
    } else {
      value = {
        kty: "OKP",
        crv: "X25519",
        x: b64(key.publicKey),
        ...(key.privateKey === null ? {} : { d: b64(key.privateKey.reveal()) }),
      };
    }
    return `    ${JSON.stringify(id)}: ${JSON.stringify(value)}`;
  });
  return `{\n  "current": ${JSON.stringify(set.current)},\n  "keys": {\n${
    keys.join(",\n")
  }\n  }\n}\n`;
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

/** Warnings about loaded secrets that look typed rather than generated. */
function weakKeyWarnings(secrets: Iterable<readonly [string, Secret]>): string[] {
  const warnings: string[] = [];
  for (const [id, secret] of secrets) {
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
  format: KeyFormat,
  warn: (message: string) => void = () => {},
): Promise<KeySet | null> {
  const read = await readKeyBytes(source);
  if (read === null) return null;
  const set = parseKeySet(read.bytes, read.origin, format);
  if (read.exposure !== null) warn(read.exposure);
  weakKeyWarnings(set.keys).forEach(warn);
  return set;
}

/**
 * Loads the vault key set of a configured source; null when none is
 * configured. Warns as `loadKeySet` does, except about who may read a file
 * of public keys only: those are not secret.
 *
 * @throws {ConfigError} when the file is unreadable or its contents are refused
 */
export async function loadVaultKeySet(
  source: KeySource,
  format: KeyFormat,
  warn: (message: string) => void = () => {},
): Promise<VaultKeySet | null> {
  const read = await readKeyBytes(source);
  if (read === null) return null;
  const set = parseVaultKeySet(read.bytes, read.origin, format);
  if (read.exposure !== null && readableKeyIds(set).length > 0) warn(read.exposure);
  weakKeyWarnings(
    [...set.keys].flatMap(([id, key]) => key.kind === "secret" ? [[id, key.secret] as const] : []),
  ).forEach(warn);
  return set;
}

/** A source's bytes, its name for messages, and a warning when others may read its file. */
async function readKeyBytes(
  source: KeySource,
): Promise<{ bytes: Uint8Array; origin: string; exposure: string | null } | null> {
  switch (source.kind) {
    case "none":
      return null;
    case "env":
      return { bytes: source.secret.reveal(), origin: source.secret.origin, exposure: null };
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
      return {
        bytes,
        origin: source.origin,
        exposure: exposure === null
          ? null
          : `${source.origin} is ${exposure}; ${
            source.pathShown ? `run: chmod 0400 ${source.path}` : "chmod it 0400"
          }`,
      };
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
export function assertSeparateKeys(hmac: KeySet | null, vault: VaultKeySet | null): void {
  if (hmac === null || vault === null) return;
  for (const [hmacId, h] of hmac.keys) {
    for (const [vaultId, key] of vault.keys) {
      // A key pair is generated, never a pasted secret.
      if (key.kind !== "secret") continue;
      const v = key.secret;
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
