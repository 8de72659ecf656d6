// Unit tests of src/pii/keyring.ts: parseKeySet() over a list of inputs,
// loadKeySet() from each kind of source, and that secrets never show in
// errors or when a key set is printed; vault key sets with X25519 key pairs,
// what a writer keeps of them, and their JSON.
import assert from "node:assert/strict";
import { KEY_ID_PATTERN, MIN_SECRET_BYTES } from "../../../src/config/options.ts";
import { type KeyFile, Secret } from "../../../src/secret.ts";
import { ConfigError } from "../../../src/errors.ts";
import {
  assertSeparateKeys,
  bitsPerByte,
  currentSecret,
  type KeyFormat,
  loadKeySet,
  loadVaultKeySet,
  parseKeySet,
  parseVaultKeySet,
  readableKeyIds,
  vaultKeySetJson,
  writerKeys,
} from "../../../src/pii/keyring.ts";

const encoder = new TextEncoder();
const A = "a".repeat(32);
const B = "secret-b ".repeat(4);

/** How the commands read a key set: the settings table's rules, and the id a lone secret takes. */
function format(defaultId: string): KeyFormat {
  return { minSecretBytes: MIN_SECRET_BYTES, keyIdPattern: KEY_ID_PATTERN, defaultId };
}

/** A key file source as resolution builds it for a path that may be shown. */
function fileSource(path: string, setting: string, inlineEnv: string): KeyFile {
  return {
    kind: "file",
    path,
    origin: `${setting} "${path}"`,
    setting,
    pathShown: true,
    inlineEnv,
  };
}

function ids(set: { keys: ReadonlyMap<string, Secret> }): Record<string, string> {
  return Object.fromEntries(
    [...set.keys].map(([id, s]) => [id, new TextDecoder().decode(s.reveal())]),
  );
}

Deno.test("parseKeySet() reads a single secret or a JSON key set", async (t) => {
  const cases: {
    name: string;
    input: string;
    expected: { current: string; keys: Record<string, string> };
  }[] = [
    { name: "a 32-byte secret", input: A, expected: { current: "k1", keys: { k1: A } } },
    {
      name: "one trailing newline is not part of the secret",
      input: `${A}\n`,
      expected: { current: "k1", keys: { k1: A } },
    },
    {
      name: "nor one trailing CRLF",
      input: `${A}\r\n`,
      expected: { current: "k1", keys: { k1: A } },
    },
    {
      name: "only one line ending is stripped",
      input: `${A}\n\n`,
      expected: { current: "k1", keys: { k1: `${A}\n` } },
    },
    {
      name: "a key set with two keys, the second current",
      input: JSON.stringify({ current: "k2", keys: { k1: A, k2: B } }),
      expected: { current: "k2", keys: { k1: A, k2: B } },
    },
    {
      name: "a key set after leading whitespace, with a trailing newline",
      input: `  ${JSON.stringify({ current: "v-1_x", keys: { "v-1_x": A } })}\n`,
      expected: { current: "v-1_x", keys: { "v-1_x": A } },
    },
    {
      name: "a secret of 32 bytes in UTF-8 though fewer characters",
      input: JSON.stringify({ current: "k1", keys: { k1: "é".repeat(16) } }),
      expected: { current: "k1", keys: { k1: "é".repeat(16) } },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const set = parseKeySet(encoder.encode(c.input), "PII_HMAC_KEY", format("k1"));
      assert.equal(set.current, c.expected.current);
      assert.deepEqual(ids(set), c.expected.keys);
      assert.equal(
        new TextDecoder().decode(currentSecret(set).reveal()),
        c.expected.keys[c.expected.current],
      );
    });
  }
});

Deno.test("parseKeySet() refuses short secrets, bad JSON, bad ids and a missing current key without echoing a secret", async (t) => {
  const cases: { name: string; input: string; expected: RegExp }[] = [
    {
      name: "31 bytes",
      input: "x".repeat(31),
      expected: /^Cannot use PII_VAULT_KEY: it is 31 bytes, need at least 32 \(make one with/,
    },
    {
      name: "31 bytes and a newline",
      input: `${"x".repeat(31)}\n`,
      expected: /it is 31 bytes/,
    },
    { name: "empty", input: "", expected: /it is 0 bytes/ },
    {
      name: "not JSON after {",
      input: `{"current": "k1", "keys": {"k1": "${A}"`,
      expected: /starts with "\{" but is not valid JSON/,
    },
    {
      name: "no current",
      input: JSON.stringify({ keys: { k1: A } }),
      expected: /a key set needs "current" \(a key id\) and "keys"/,
    },
    {
      name: "keys an array",
      input: JSON.stringify({ current: "k1", keys: [A] }),
      expected: /a key set needs "current"/,
    },
    {
      name: "keys null",
      input: JSON.stringify({ current: "k1", keys: null }),
      expected: /a key set needs "current"/,
    },
    {
      name: "an id with a space",
      input: JSON.stringify({ current: "k 1", keys: { "k 1": A } }),
      expected: /a key id \(3 characters\) is not 1 to 16 letters, digits, _ or -/,
    },
    {
      name: "an id of 17 characters",
      input: JSON.stringify({ current: "k", keys: { k: A, ["k".repeat(17)]: A } }),
      expected: /a key id \(17 characters\) is not/,
    },
    {
      name: "an id with a colon, which would break the mask prefix",
      input: JSON.stringify({ current: "k:1", keys: { "k:1": A } }),
      expected: /a key id \(3 characters\) is not/,
    },
    {
      name: "a secret that is not a string",
      input: JSON.stringify({ current: "k1", keys: { k1: 12345 } }),
      expected: /the secret of key "k1" must be a string/,
    },
    {
      name: "a short secret in a set",
      input: JSON.stringify({ current: "k1", keys: { k1: A, k2: "short-secret" } }),
      expected: /the secret of key "k2" is 12 bytes, need at least 32/,
    },
    {
      name: "a secret where a key id belongs",
      input: JSON.stringify({ current: "k1", keys: { k1: A, [`${B}!`]: A } }),
      expected: /is a secret in the id's place\?/,
    },
    {
      name: "current names no key",
      input: JSON.stringify({ current: "k3", keys: { k1: A, k2: B } }),
      expected: /"current" names no key of the set \(it holds k1, k2\)/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(
        () => parseKeySet(encoder.encode(c.input), "PII_VAULT_KEY", format("v1")),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.exitCode, 2);
          assert.match(error.message, c.expected);
          for (const secret of [A, B, "short-secret", "x".repeat(31)]) {
            assert.ok(!error.message.includes(secret), "the secret is not in the message");
          }
          return true;
        },
      );
    });
  }
});

Deno.test("a parsed key set prints its secrets as [redacted]", () => {
  const set = parseKeySet(
    encoder.encode(JSON.stringify({ current: "k2", keys: { k1: A, k2: B } })),
    "PII_HMAC_KEY",
    format("k1"),
  );
  const printed = [
    JSON.stringify([...set.keys]),
    String(currentSecret(set)),
    Deno.inspect(set, { depth: 5 }),
  ].join("\n");
  assert.ok(!printed.includes(A) && !printed.includes(B), printed);
  assert.match(printed, /\[redacted\]/);
});

Deno.test("loadKeySet() reads each kind of source", async (t) => {
  await t.step("none gives null", async () => {
    assert.equal(await loadKeySet({ kind: "none" }, format("v1")), null);
  });
  await t.step("env parses the variable's bytes", async () => {
    const set = await loadKeySet(
      { kind: "env", secret: new Secret(encoder.encode(A), "PII_VAULT_KEY") },
      format("v7"),
    );
    assert.deepEqual(ids(set ?? { keys: new Map() }), { v7: A });
  });
  await t.step("file parses the file, a key set included", async () => {
    const path = await Deno.makeTempFile();
    try {
      await Deno.writeTextFile(path, JSON.stringify({ current: "v2", keys: { v1: A, v2: B } }));
      const set = await loadKeySet(
        fileSource(path, "--vault-key-file", "PII_VAULT_KEY"),
        format("v1"),
      );
      assert.equal(set?.current, "v2");
      assert.deepEqual(ids(set ?? { keys: new Map() }), { v1: A, v2: B });
    } finally {
      await Deno.remove(path);
    }
  });
  await t.step("a missing file is a ConfigError naming the flag, not the path", async () => {
    await assert.rejects(
      loadKeySet(fileSource("/nonexistent/k", "--vault-key-file", "PII_VAULT_KEY"), format("v1")),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message ===
          "Cannot read --vault-key-file: no such file (is a key in the file setting's place? put keys in PII_VAULT_KEY)",
    );
  });
});

Deno.test("loadKeySet() warns when others or a foreign group may read the key file, not when only its owner may", async (t) => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/hmac.key`;
  await Deno.writeTextFile(path, "r4Nd0m-looking/s3cret+w1th_many=chars9");
  const source = fileSource(path, "--hmac-key-file", "PII_HMAC_KEY");
  const warningsAt = async (mode: number, gid?: number) => {
    await Deno.chmod(path, mode);
    if (gid !== undefined) await Deno.chown(path, null, gid);
    const warnings: string[] = [];
    await loadKeySet(source, format("k1"), (w) => warnings.push(w));
    return warnings;
  };
  try {
    await t.step("0600 and 0400: silent", async () => {
      assert.deepEqual(await warningsAt(0o600), []);
      assert.deepEqual(await warningsAt(0o400), []);
    });
    await t.step("0644: readable by others", async () => {
      const [warning] = await warningsAt(0o644);
      assert.match(warning ?? "", /is readable by others \(mode 644\); run: chmod 0400/);
    });
    await t.step("0440 in our own group (a Kubernetes secret with fsGroup): silent", async () => {
      assert.deepEqual(await warningsAt(0o440, Deno.gid() ?? 0), []);
    });
    if (Deno.uid() === 0) {
      await t.step("0440 in another group: readable by that group", async () => {
        const other = (Deno.gid() ?? 0) + 4242;
        const [warning] = await warningsAt(0o440, other);
        assert.match(warning ?? "", new RegExp(`readable by group ${other} \\(mode 440\\)`));
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadKeySet() never names a key file whose name looks like a key", async (t) => {
  const dir = await Deno.makeTempDir();
  const name = "q8Jv3kZ0aTq1YbW5pL7sN2xR4mC6dE9fH0gI1jK2lM3=";
  const source: KeyFile = {
    kind: "file",
    path: `${dir}/${name}`,
    origin: "PII_HMAC_KEY_FILE",
    setting: "PII_HMAC_KEY_FILE",
    pathShown: false,
    inlineEnv: "PII_HMAC_KEY",
  };
  try {
    await t.step("missing", async () => {
      const error = await loadKeySet(source, format("k1")).then(() => null, (e: unknown) => e);
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(
        error.message,
        "Cannot read PII_HMAC_KEY_FILE: no such file (is a key in the file setting's place? put keys in PII_HMAC_KEY)",
      );
    });
    await t.step("readable by others", async () => {
      await Deno.writeTextFile(source.path, "r4Nd0m-looking/s3cret+w1th_many=chars9");
      await Deno.chmod(source.path, 0o644);
      const warnings: string[] = [];
      await loadKeySet(source, format("k1"), (w) => warnings.push(w));
      assert.deepEqual(warnings, [
        "PII_HMAC_KEY_FILE is readable by others (mode 644); chmod it 0400",
      ]);
    });
    await t.step("too short", async () => {
      await Deno.writeTextFile(source.path, "short");
      const error = await loadKeySet(source, format("k1")).then(() => null, (e: unknown) => e);
      assert.ok(error instanceof ConfigError && !error.message.includes(name), String(error));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadKeySet() warns on a low-entropy secret, not on generated ones", async () => {
  const warned = async (secret: string) => {
    const warnings: string[] = [];
    await loadKeySet(
      { kind: "env", secret: new Secret(encoder.encode(secret), "PII_HMAC_KEY") },
      format("k1"),
      (w) => warnings.push(w),
    );
    return warnings;
  };
  assert.match((await warned("a".repeat(32)))[0] ?? "", /PII_HMAC_KEY: key k1 looks low-entropy/);
  assert.equal((await warned("abababababababababababababababab")).length, 1);
  const generated = crypto.getRandomValues(new Uint8Array(32)).toBase64();
  assert.deepEqual(await warned(generated), []);
  assert.deepEqual(await warned(crypto.getRandomValues(new Uint8Array(32)).toHex()), []);
  assert.ok(bitsPerByte(encoder.encode("a".repeat(32))) === 0);
});

Deno.test("assertSeparateKeys() refuses one secret as both the HMAC and the vault key, naming no secret", () => {
  const hmac = parseKeySet(encoder.encode(A), "PII_HMAC_KEY", format("k1"));
  const vault = parseVaultKeySet(
    encoder.encode(JSON.stringify({ current: "v2", keys: { v1: B, v2: A } })),
    "PII_VAULT_KEY",
    format("v1"),
  );
  assert.throws(
    () => assertSeparateKeys(hmac, vault),
    (error: unknown) =>
      error instanceof ConfigError &&
      /vault key v2 \(PII_VAULT_KEY key v2\) is the same secret as the HMAC key k1/
        .test(error.message) &&
      !error.message.includes(A),
  );
  assertSeparateKeys(hmac, parseVaultKeySet(encoder.encode(B), "PII_VAULT_KEY", format("v1")));
  assertSeparateKeys(hmac, null);
});

/** The RFC 7748 §6.1 key pair docs/pii.md's vectors use, in base64url. */
const X = Uint8Array.fromHex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
  .toBase64({ alphabet: "base64url", omitPadding: true });
const D = Uint8Array.fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
  .toBase64({ alphabet: "base64url", omitPadding: true });

Deno.test("parseVaultKeySet() reads secrets and X25519 key pairs, with or without the private half", () => {
  const set = parseVaultKeySet(
    encoder.encode(JSON.stringify({
      current: "p1",
      keys: {
        v1: A,
        p1: { kty: "OKP", crv: "X25519", x: X, d: D },
        p0: { kty: "OKP", crv: "X25519", x: X, kid: "ignored", use: "enc" },
      },
    })),
    "PII_VAULT_KEY_FILE",
    format("v1"),
  );
  assert.equal(set.current, "p1");
  const p1 = set.keys.get("p1");
  assert.ok(p1?.kind === "pair" && p1.privateKey !== null);
  assert.equal(p1.publicKey.toBase64({ alphabet: "base64url", omitPadding: true }), X);
  assert.equal(p1.privateKey.reveal().toBase64({ alphabet: "base64url", omitPadding: true }), D);
  assert.ok(set.keys.get("p0")?.kind === "pair");
  assert.equal((set.keys.get("p0") as { privateKey: unknown }).privateKey, null);
  assert.equal(set.keys.get("v1")?.kind, "secret");
  assert.deepEqual(readableKeyIds(set), ["v1", "p1"]);
  assert.ok(!Deno.inspect(set, { depth: 6 }).includes(D), "the private key prints redacted");
  const single = parseVaultKeySet(encoder.encode(A), "PII_VAULT_KEY", format("v1"));
  assert.deepEqual([...single.keys.keys()], ["v1"]);
  assert.equal(single.keys.get("v1")?.kind, "secret");
});

Deno.test("parseVaultKeySet() refuses malformed key pairs without echoing a key; parseKeySet() refuses pairs", async (t) => {
  const pair = (value: unknown) =>
    encoder.encode(JSON.stringify({ current: "p1", keys: { p1: value } }));
  const cases: { name: string; input: Uint8Array; hmac?: true; expected: RegExp }[] = [
    {
      name: "a P-256 key",
      input: pair({ kty: "EC", crv: "P-256", x: X, y: X }),
      expected: /key "p1" is an object but not an X25519 key pair \(\{"kty": "OKP"/,
    },
    {
      name: "an Ed25519 key",
      input: pair({ kty: "OKP", crv: "Ed25519", x: X }),
      expected: /not an X25519 key pair/,
    },
    { name: "an array", input: pair([X]), expected: /the secret of key "p1" must be a string/ },
    {
      name: "x of 31 bytes",
      input: pair({ kty: "OKP", crv: "X25519", x: X.slice(0, 42) }),
      expected: /the public key "x" of key "p1" is not 32 bytes in unpadded base64url/,
    },
    {
      name: "x in standard base64 with padding",
      input: pair({ kty: "OKP", crv: "X25519", x: `${X.slice(0, 42)}+=` }),
      expected: /the public key "x" of key "p1"/,
    },
    {
      name: "d too long",
      input: pair({ kty: "OKP", crv: "X25519", x: X, d: `${D}AAAA` }),
      expected: /the private key "d" of key "p1" is not 32 bytes/,
    },
    {
      name: "a pair in the HMAC key set",
      input: pair({ kty: "OKP", crv: "X25519", x: X, d: D }),
      hmac: true,
      expected: /key "p1" is a key pair; HMAC keys are secrets/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(
        () =>
          c.hmac === true
            ? parseKeySet(c.input, "PII_HMAC_KEY", format("k1"))
            : parseVaultKeySet(c.input, "PII_VAULT_KEY", format("v1")),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, c.expected);
          assert.ok(!error.message.includes(D) && !error.message.includes(D.slice(0, 20)));
          return true;
        },
      );
    });
  }
});

Deno.test("writerKeys() keeps the current key only, a pair without its private half", () => {
  const set = parseVaultKeySet(
    encoder.encode(JSON.stringify({
      current: "p1",
      keys: { v1: A, p1: { kty: "OKP", crv: "X25519", x: X, d: D } },
    })),
    "f",
    format("v1"),
  );
  const writer = writerKeys(set);
  assert.deepEqual([...writer.keys.keys()], ["p1"]);
  assert.equal((writer.keys.get("p1") as { privateKey: unknown }).privateKey, null);
  assert.deepEqual(readableKeyIds(writer), []);
  // A secret cannot be split: a symmetric current key goes whole.
  const symmetric = writerKeys({ ...set, current: "v1" });
  assert.deepEqual(readableKeyIds(symmetric), ["v1"]);
});

Deno.test("vaultKeySetJson() writes a set parseVaultKeySet() reads back as it was", () => {
  const text = JSON.stringify({
    current: "p1",
    keys: { v1: A, p1: { kty: "OKP", crv: "X25519", x: X, d: D } },
  });
  const set = parseVaultKeySet(encoder.encode(text), "f", format("v1"));
  const written = vaultKeySetJson(set);
  assert.deepEqual(JSON.parse(written), JSON.parse(text));
  const publicOnly = JSON.parse(vaultKeySetJson(writerKeys(set)));
  assert.deepEqual(publicOnly, {
    current: "p1",
    keys: { p1: { kty: "OKP", crv: "X25519", x: X } },
  });
  assert.throws(
    () =>
      vaultKeySetJson({
        current: "v1",
        keys: new Map([["v1", {
          kind: "secret",
          secret: new Secret(Uint8Array.of(0xff, ...encoder.encode(A)), "f"),
        }]]),
      }),
    /not UTF-8 text/,
  );
});

Deno.test("loadVaultKeySet() warns about a readable private key file, not about a public one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = async (name: string, keys: unknown) => {
      const path = `${dir}/${name}`;
      await Deno.writeTextFile(path, JSON.stringify({ current: "p1", keys }));
      await Deno.chmod(path, 0o644);
      return path;
    };
    const privatePath = await write("vault.json", {
      p1: { kty: "OKP", crv: "X25519", x: X, d: D },
    });
    const publicPath = await write("vault.public.json", {
      p1: { kty: "OKP", crv: "X25519", x: X },
    });
    const warningsOf = async (path: string) => {
      const warnings: string[] = [];
      await loadVaultKeySet(
        { ...fileSource(path, "--vault-key-file", "PII_VAULT_KEY") },
        format("v1"),
        (w) => warnings.push(w),
      );
      return warnings;
    };
    assert.deepEqual(await warningsOf(publicPath), []);
    const warned = await warningsOf(privatePath);
    assert.equal(warned.length, 1);
    assert.match(warned[0] ?? "", /readable by others \(mode 644\); run: chmod 0400/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
