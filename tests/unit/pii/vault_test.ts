// Unit tests of src/pii/vault.ts: VaultCipher round trips, detects every
// altered byte, binds field and mask, separates key ids, and writes the
// format docs/pii.md documents (checked by decrypting with Web Crypto alone);
// with key pairs, seals what a public key set cannot open, one ephemeral key
// per batch, and reads symmetric and sealed entries of one set.
import assert from "node:assert/strict";
import fc from "fast-check";
import { Secret } from "../../../src/secret.ts";
import { ConfigError, EtlError } from "../../../src/errors.ts";
import type { VaultKey, VaultKeySet } from "../../../src/pii/keyring.ts";
import { generateVaultPair } from "../../../src/pii/seal.ts";
import { VaultCipher, VaultIntegrityError } from "../../../src/pii/vault.ts";
import type { Masked, PiiField, VaultEntry } from "../../../src/types.ts";

const encoder = new TextEncoder();
const SECRET_1 = "vault unit test secret one, 32+ bytes";
const SECRET_2 = "vault unit test secret two, 32+ bytes";

function keySet(current: string, keys: Record<string, string>): VaultKeySet {
  return {
    current,
    keys: new Map(
      Object.entries(keys).map((
        [id, s],
      ) => [id, { kind: "secret", secret: new Secret(encoder.encode(s), id) }]),
    ),
  };
}

const MASK = "k1:mask-of-the-value-under-test-aaaaaaaaaaaaa" as Masked;
const OTHER = "k1:mask-of-another-value-bbbbbbbbbbbbbbbbbbbb" as Masked;

async function assertIntegrityError(
  fn: () => Promise<unknown>,
  pattern: RegExp,
  raw?: string,
): Promise<void> {
  await assert.rejects(fn, (error: unknown) => {
    assert.ok(error instanceof VaultIntegrityError, String(error));
    assert.match(error.message, pattern);
    if (raw !== undefined && raw !== "") assert.ok(!error.message.includes(raw));
    return true;
  });
}

Deno.test("VaultCipher.decrypt() returns what encrypt() was given", async (t) => {
  const cipher = await VaultCipher.create(keySet("v1", { v1: SECRET_1 }));
  const cases: { name: string; field: PiiField; raw: string }[] = [
    { name: "IPv4", field: "ip", raw: "203.0.113.7" },
    { name: "IPv6", field: "ip", raw: "2001:db8::1" },
    { name: "device id", field: "device_id", raw: "593-47-5928" },
    { name: "empty", field: "device_id", raw: "" },
    { name: "non-ASCII and astral", field: "device_id", raw: "Ωmega-😀-\u00e9" },
    { name: "256 characters", field: "device_id", raw: "d".repeat(256) },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const entry = await cipher.encrypt(c.field, MASK, c.raw);
      assert.equal(entry.keyId, "v1");
      assert.equal(entry.masked, MASK);
      assert.equal(entry.field, c.field);
      assert.equal(entry.iv.length, 12, "96-bit IV");
      assert.equal(
        entry.ciphertext.length,
        encoder.encode(c.raw).length + 16,
        "text + 16-byte tag",
      );
      assert.equal(await cipher.decrypt(entry), c.raw);
    });
  }
});

Deno.test("VaultCipher round-trips any text and never repeats an IV", async () => {
  const cipher = await VaultCipher.create(keySet("v1", { v1: SECRET_1 }));
  const ivs = new Set<string>();
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: "binary", maxLength: 64 }), async (raw) => {
      const a = await cipher.encrypt("device_id", MASK, raw);
      const b = await cipher.encrypt("device_id", MASK, raw);
      assert.equal(await cipher.decrypt(a), raw);
      assert.notDeepEqual(a.iv, b.iv, "a fresh IV per encryption");
      ivs.add(a.iv.toHex()).add(b.iv.toHex());
    }),
    { numRuns: 200 },
  );
  assert.equal(ivs.size, 400);
});

Deno.test("VaultCipher.decrypt() refuses an entry with any single bit of ciphertext, tag or IV flipped", async () => {
  const cipher = await VaultCipher.create(keySet("v1", { v1: SECRET_1 }));
  const raw = "198.51.100.23";
  const entry = await cipher.encrypt("ip", MASK, raw);
  let checked = 0;
  for (const part of ["ciphertext", "iv"] as const) {
    for (let i = 0; i < entry[part].length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bytes = entry[part].slice();
        bytes[i] = (bytes[i] as number) ^ (1 << bit);
        await assertIntegrityError(
          async () => await cipher.decrypt({ ...entry, [part]: bytes }),
          /failed authentication: altered, or moved from another mask/,
          raw,
        );
        checked++;
      }
    }
  }
  assert.equal(checked, (raw.length + 16 + 12) * 8);
});

Deno.test("VaultCipher.decrypt() refuses truncated or malformed entries", async (t) => {
  const cipher = await VaultCipher.create(keySet("v1", { v1: SECRET_1 }));
  const entry = await cipher.encrypt("ip", MASK, "192.0.2.1");
  const cases: { name: string; entry: VaultEntry; expected: RegExp }[] = [
    {
      name: "last byte cut",
      entry: { ...entry, ciphertext: entry.ciphertext.slice(0, -1) },
      expected: /failed authentication/,
    },
    {
      name: "text without its tag",
      entry: { ...entry, ciphertext: entry.ciphertext.slice(0, -16) },
      expected: /malformed/,
    },
    {
      name: "shorter than a tag",
      entry: { ...entry, ciphertext: entry.ciphertext.slice(0, 15) },
      expected: /malformed: ciphertext or IV has the wrong length/,
    },
    {
      name: "empty ciphertext",
      entry: { ...entry, ciphertext: new Uint8Array() },
      expected: /malformed/,
    },
    {
      name: "IV of 16 bytes",
      entry: { ...entry, iv: new Uint8Array([...entry.iv, 0, 0, 0, 0]) },
      expected: /malformed/,
    },
    { name: "IV of 0 bytes", entry: { ...entry, iv: new Uint8Array() }, expected: /malformed/ },
  ];
  for (const c of cases) {
    await t.step(
      c.name,
      () => assertIntegrityError(async () => await cipher.decrypt(c.entry), c.expected),
    );
  }
});

Deno.test("VaultCipher binds each entry to its field and mask", async () => {
  const cipher = await VaultCipher.create(keySet("v1", { v1: SECRET_1 }));
  const ip = await cipher.encrypt("ip", MASK, "203.0.113.9");
  const other = await cipher.encrypt("ip", OTHER, "203.0.113.10");
  await assertIntegrityError(
    async () => await cipher.decrypt({ ...ip, masked: OTHER }),
    /moved from another mask/,
  );
  await assertIntegrityError(
    async () => await cipher.decrypt({ ...ip, field: "device_id" }),
    /failed authentication/,
  );
  // Rows swapped in the table: each mask now carries the other's ciphertext and IV.
  await assertIntegrityError(
    async () => await cipher.decrypt({ ...ip, ciphertext: other.ciphertext, iv: other.iv }),
    /failed authentication/,
  );
  await assertIntegrityError(
    async () => await cipher.decrypt({ ...other, ciphertext: ip.ciphertext, iv: ip.iv }),
    /failed authentication/,
  );
  // A mask that only differs in its key id prefix is another mask.
  await assertIntegrityError(
    async () => await cipher.decrypt({ ...ip, masked: MASK.replace(/^k1:/, "k2:") as Masked }),
    /failed authentication/,
  );
});

Deno.test("VaultCipher keeps key ids apart and reads every key of its set", async () => {
  const both = await VaultCipher.create(keySet("v2", { v1: SECRET_1, v2: SECRET_2 }));
  const oldOnly = await VaultCipher.create(keySet("v1", { v1: SECRET_1 }));
  const old = await oldOnly.encrypt("device_id", MASK, "111-22-3333");
  assert.equal(both.currentKeyId, "v2");
  assert.equal(
    (await both.encrypt("device_id", MASK, "x")).keyId,
    "v2",
    "new entries use the current key",
  );
  assert.equal(await both.decrypt(old), "111-22-3333", "entries under an older key stay readable");
  assert.equal((await both.encrypt("device_id", MASK, "x", "v1")).keyId, "v1");

  // HKDF info is the key id: one secret under two ids gives two keys.
  const sameSecret = await VaultCipher.create(keySet("a", { a: SECRET_1, b: SECRET_1 }));
  const underA = await sameSecret.encrypt("ip", MASK, "192.0.2.77");
  await assertIntegrityError(
    async () => await sameSecret.decrypt({ ...underA, keyId: "b" }),
    /failed authentication/,
  );

  await assertIntegrityError(
    async () => await oldOnly.decrypt({ ...old, keyId: "v9" }),
    /^Vault entry is under key "v9", which the vault key set does not hold$/,
  );
  await assert.rejects(
    async () => await oldOnly.encrypt("ip", MASK, "192.0.2.1", "v9"),
    (e: unknown) => e instanceof EtlError && e.code === "config" && /"v9"/.test(e.message),
  );
  assert.ok(both.has("v1") && both.has("v2") && !both.has("v3"));
});

Deno.test("VaultCipher.fingerprints are stable per id and secret and reveal neither", async () => {
  const a = await VaultCipher.create(keySet("v1", { v1: SECRET_1, v2: SECRET_2 }));
  const b = await VaultCipher.create(keySet("v1", { v1: SECRET_1, v2: SECRET_2 }));
  const renamed = await VaultCipher.create(keySet("x", { x: SECRET_1 }));
  assert.deepEqual([...a.fingerprints], [...b.fingerprints]);
  assert.notEqual(a.fingerprints.get("v1"), a.fingerprints.get("v2"));
  assert.notEqual(a.fingerprints.get("v1"), renamed.fingerprints.get("x"), "the id is in the key");
  for (const fp of a.fingerprints.values()) {
    assert.match(fp, /^[A-Za-z0-9_-]{22}$/);
    assert.ok(!SECRET_1.includes(fp) && !SECRET_2.includes(fp));
  }
});

Deno.test("VaultCipher writes the documented format: HKDF-SHA256 key, AES-256-GCM, AAD of field and mask", async () => {
  // Decrypted here with Web Crypto only, from docs/pii.md's description:
  // key = HKDF-SHA256(secret, salt "login-etl/v1/vault", info key id, 32 bytes);
  // AAD = "login-etl/v1/vault" NUL field NUL mask; stored ciphertext = text || 16-byte tag.
  const cipher = await VaultCipher.create(keySet("v3", { v3: SECRET_2 }));
  const entry = await cipher.encrypt("ip", MASK, "2001:db8::42");
  const base = await crypto.subtle.importKey("raw", encoder.encode(SECRET_2), "HKDF", false, [
    "deriveKey",
  ]);
  const key = await crypto.subtle.deriveKey(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: encoder.encode("login-etl/v1/vault"),
      info: encoder.encode("v3"),
    },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["decrypt"],
  );
  const plain = await crypto.subtle.decrypt(
    {
      name: "AES-GCM",
      iv: new Uint8Array(entry.iv),
      additionalData: encoder.encode(`login-etl/v1/vault\0ip\0${MASK}`),
      tagLength: 128,
    },
    key,
    new Uint8Array(entry.ciphertext),
  );
  assert.equal(new TextDecoder().decode(plain), "2001:db8::42");
});

/** A key pair as a key set holds it, with or without its private half. */
async function pairKeys(): Promise<{
  readonly full: VaultKey;
  readonly publicOnly: VaultKey;
}> {
  const pair = await generateVaultPair();
  return {
    full: { kind: "pair", publicKey: pair.publicKey, privateKey: new Secret(pair.privateKey, "t") },
    publicOnly: { kind: "pair", publicKey: pair.publicKey, privateKey: null },
  };
}

Deno.test("VaultCipher seals to a pair's public key: the public set writes what only the private set reads", async () => {
  const p1 = await pairKeys();
  const writer = await VaultCipher.create({
    current: "p1",
    keys: new Map([["p1", p1.publicOnly]]),
  });
  const reader = await VaultCipher.create({ current: "p1", keys: new Map([["p1", p1.full]]) });
  assert.ok(writer.seals && !writer.readable && !writer.canRead("p1"));
  assert.ok(reader.readable && reader.canRead("p1"));
  const entry = await writer.encrypt("ip", MASK, "203.0.113.7");
  assert.equal(entry.keyId, "p1");
  assert.equal(entry.iv.length, 49, "format byte, ephemeral public key, 16 random bytes");
  assert.equal(entry.iv[0], 2);
  assert.equal(entry.ciphertext.length, 16 + 16, "an IPv4 address fills the 16-byte bucket");
  await assertIntegrityError(
    () => writer.decrypt(entry),
    /sealed to key "p1", whose private key this vault key set does not hold/,
    "203.0.113.7",
  );
  assert.equal(await reader.decrypt(entry), "203.0.113.7");
  assert.equal(
    writer.fingerprints.get("p1"),
    reader.fingerprints.get("p1"),
    "a pair's fingerprint is its public key's",
  );
});

Deno.test("VaultCipher.encryptAll() seals a batch under one ephemeral key, each entry on its own", async () => {
  const p1 = await pairKeys();
  const cipher = await VaultCipher.create({ current: "p1", keys: new Map([["p1", p1.full]]) });
  const inputs = Array.from({ length: 12 }, (_, i) => ({
    field: "device_id" as const,
    masked: `k1:mask-${i}` as Masked,
    raw: `device-${i}`,
  }));
  const entries = await cipher.encryptAll(inputs);
  assert.equal(new Set(entries.map((e) => e.iv.subarray(1, 33).toHex())).size, 1);
  // Each entry opens alone, in any order: it carries what it needs.
  for (const entry of entries.toReversed()) {
    assert.equal(await cipher.decrypt(entry), `device-${entry.masked.slice("k1:mask-".length)}`);
  }
});

Deno.test("VaultCipher reads symmetric and sealed entries of one set, and writes with its current key", async () => {
  const p1 = await pairKeys();
  const old = await VaultCipher.create(keySet("v1", { v1: SECRET_1 }));
  const symmetric = await old.encrypt("device_id", MASK, "111-22-3333");
  const mixed = await VaultCipher.create({
    current: "p1",
    keys: new Map<string, VaultKey>([
      ["v1", { kind: "secret", secret: new Secret(encoder.encode(SECRET_1), "t") }],
      ["p1", p1.full],
    ]),
  });
  const sealed = await mixed.encrypt("device_id", OTHER, "444-55-6666");
  assert.equal(sealed.keyId, "p1", "new entries are sealed to the current pair");
  assert.equal(await mixed.decrypt(symmetric), "111-22-3333");
  assert.equal(await mixed.decrypt(sealed), "444-55-6666");
  // A sealed entry relabelled as under the secret, or the reverse, does not open.
  await assertIntegrityError(() => mixed.decrypt({ ...sealed, keyId: "v1" }), /malformed/);
  await assertIntegrityError(
    () => mixed.decrypt({ ...symmetric, keyId: "p1" }),
    /header is malformed/,
  );
});

Deno.test("VaultCipher.create() refuses a pair whose private key is another's, naming no key", async () => {
  const p1 = await pairKeys();
  const p2 = await pairKeys();
  const crossed: VaultKey = {
    kind: "pair",
    publicKey: (p1.full as { publicKey: Uint8Array }).publicKey,
    privateKey: (p2.full as { privateKey: Secret }).privateKey,
  };
  await assert.rejects(
    VaultCipher.create({ current: "p1", keys: new Map([["p1", crossed]]) }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /^Cannot use vault key p1: The private key does not belong to the public key beside it/
        .test(e.message),
  );
});
