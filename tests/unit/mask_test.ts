// Unit tests of src/mask.ts: Masker determinism, separation and format, and secrets read from key files.
import assert from "node:assert/strict";
import fc from "fast-check";
import { CACHE_LIMIT, Masker, type MaskField } from "../../src/mask.ts";
import { currentSecret, type KeyFormat, loadKeySet } from "../../src/pii/keyring.ts";
import type { KeySource } from "../../src/secret.ts";
import { referenceMasker } from "../helpers/reference_mask.ts";
import { Secret } from "../../src/secret.ts";
import { resolveConfig } from "../../src/config/resolve.ts";
import { KEY_ID_PATTERN, MIN_SECRET_BYTES } from "../../src/config/options.ts";
import { ConfigError } from "../../src/errors.ts";

const FIELDS: readonly MaskField[] = ["ip", "device_id", "body"];
const encoder = new TextEncoder();

function secretOf(text: string): Secret {
  return new Secret(encoder.encode(text), "test");
}

const secretArb = fc.uint8Array({ minLength: 32, maxLength: 64 });
const valueArb = fc.string({ unit: "binary", maxLength: 80 });
const keyIdArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,16}$/);

Deno.test("Masker.mask() matches a known answer computed outside this codebase", async () => {
  // Computed with Python's hmac module: subkey = HMAC-SHA256(secret, "login-etl/v1/mask/ip"),
  // mask = base64url(HMAC-SHA256(subkey, "1.2.3.4")). Stored masks depend on this staying put.
  const masker = await Masker.create(new Secret(new Uint8Array(32).fill(1), "test"), "k1");
  assert.equal(
    await masker.mask("ip", "1.2.3.4"),
    "k1:6RhvBvAk9mS-tbJmUC3KXS7zv6JKU-LXPAfxGY1dHk4",
  );
  assert.equal(masker.fingerprint, "nANY3MWowzIzzMHCUGGj4G");
});

Deno.test("Masker.mask() is deterministic across two Masker instances of one key", async () => {
  await fc.assert(
    fc.asyncProperty(
      secretArb,
      fc.constantFrom(...FIELDS),
      valueArb,
      async (bytes, field, value) => {
        const a = await Masker.create(new Secret(bytes.slice(), "a"), "k1");
        const b = await Masker.create(new Secret(bytes.slice(), "b"), "k1");
        assert.equal(await a.mask(field, value), await b.mask(field, value));
        assert.equal(await a.mask(field, value), await a.mask(field, value));
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("Masker.mask() differs per field for the same text", async () => {
  await fc.assert(
    fc.asyncProperty(secretArb, valueArb, async (bytes, value) => {
      const masker = await Masker.create(new Secret(bytes, "test"), "k1");
      const masks = await Promise.all(FIELDS.map((f) => masker.mask(f, value)));
      assert.equal(new Set(masks).size, FIELDS.length, masks.join(" "));
    }),
    { numRuns: 100 },
  );
});

Deno.test("Masker.mask() differs per key for the same field and text", async () => {
  await fc.assert(
    fc.asyncProperty(
      secretArb,
      secretArb,
      fc.constantFrom(...FIELDS),
      valueArb,
      async (x, y, field, value) => {
        fc.pre(x.length !== y.length || x.some((b, i) => b !== y[i]));
        const a = await Masker.create(new Secret(x, "x"), "k1");
        const b = await Masker.create(new Secret(y, "y"), "k1");
        assert.notEqual(await a.mask(field, value), await b.mask(field, value));
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("Masker.mask() differs for different values", async () => {
  const masker = await Masker.create(secretOf("s".repeat(32)), "k1");
  await fc.assert(
    fc.asyncProperty(valueArb, valueArb, async (v, w) => {
      fc.pre(v !== w);
      assert.notEqual(await masker.mask("ip", v), await masker.mask("ip", w));
    }),
    { numRuns: 100 },
  );
});

Deno.test("Masker.mask() prefixes the key id and stays within 256 characters", async () => {
  await fc.assert(
    fc.asyncProperty(
      keyIdArb,
      fc.constantFrom(...FIELDS),
      valueArb,
      async (keyId, field, value) => {
        const masker = await Masker.create(secretOf("k".repeat(32)), keyId);
        const mask = await masker.mask(field, value);
        assert.ok(mask.startsWith(`${keyId}:`), mask);
        assert.match(mask.slice(keyId.length + 1), /^[A-Za-z0-9_-]{43}$/);
        assert.ok(mask.length <= 256, `${mask.length}`);
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("Masker.mask() is 46 characters for key id k1", async () => {
  const masker = await Masker.create(secretOf("k".repeat(32)), "k1");
  for (const value of ["", "1.2.3.4", "x".repeat(10_000), "\u{1f600}"]) {
    const mask = await masker.mask("device_id", value);
    assert.equal(mask.length, 46, mask);
    assert.match(mask, /^k1:[A-Za-z0-9_-]{43}$/);
  }
});

Deno.test("Masker.mask() keeps the masks version 0.1 stored (computed then by its own SHA-256)", async (t) => {
  // Existing rows keep their duplicates only if masks stay byte-identical.
  const masker = await Masker.create(
    new Secret(new TextEncoder().encode("login-etl pinned test secret, 32 bytes+"), "t"),
    "k1",
  );
  const pinned: [MaskField, string, string][] = [
    ["ip", "199.172.111.135", "k1:BHiKhXuQi4M-hvEL398bjENX9ixIsWY49sE5A4R0dNs"],
    ["ip", "2001:db8::1", "k1:NkBGRnn6xV0Cu09vSPvHpmM5NcNU_ZYCUAuqT9UWUJc"],
    ["device_id", "593-47-5928", "k1:s8ZhW-xqflG8HZzsJ38RJzzmfu9dAIyInFGTxehBuHg"],
    ["device_id", "", "k1:uXKPrTWYqM7P9Qrwog2cUh6b4uM9KnlknHzT3OzNfG0"],
    ["body", '{"a":1}', "k1:fGUOPpIsAIhUbWedW09EQHrzYj6FW90IkVW7aHZU7x0"],
    ["device_id", "ünïcødé 🎉", "k1:u3A5rGkPOlTZPkOG8IbMwVd8-e4TB3uQF6OpynDE6w0"],
  ];
  for (const [field, value, mask] of pinned) {
    await t.step(`${field} ${JSON.stringify(value)}`, async () => {
      assert.equal(await masker.mask(field, value), mask);
      // Twice: the second answer comes from the cache of recent values.
      assert.equal(await masker.mask(field, value), mask);
    });
  }
  assert.equal(masker.fingerprint, "rSFN20i1bdyPMATyvBFdDH");
});

Deno.test("Masker.mask() equals the node:crypto reference, and maskAll() keeps order", async () => {
  const secret = new TextEncoder().encode("login-etl reference check secret, 32+ b");
  const masker = await Masker.create(new Secret(secret, "s"), "k7");
  const reference = referenceMasker(secret, "k7");
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.tuple(
          fc.constantFrom("ip", "device_id", "body", "value") as fc.Arbitrary<MaskField>,
          fc.string({ unit: "binary", maxLength: 40 }),
        ),
        { maxLength: 30 },
      ),
      async (values) => {
        const masks = await masker.maskAll(values.map(([field, text]) => ({ field, text })));
        assert.deepEqual(masks, values.map(([field, text]) => reference.mask(field, text)));
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("Masker keeps at most 16 Web Crypto signs in flight, across concurrent maskAll() and mask() calls", async () => {
  const secret = new TextEncoder().encode("login-etl in-flight bound test secret, 32+");
  const masker = await Masker.create(new Secret(secret, "s"), "k3");
  const reference = referenceMasker(secret, "k3");
  const subtle = crypto.subtle;
  const sign = subtle.sign;
  let inFlight = 0;
  let most = 0;
  let calls = 0;
  // A counting wrapper around the real sign: the masks still come from Web Crypto.
  subtle.sign = async function (...args: Parameters<SubtleCrypto["sign"]>) {
    calls++;
    most = Math.max(most, ++inFlight);
    try {
      return await sign.apply(subtle, args);
    } finally {
      inFlight--;
    }
  };
  try {
    const values = (prefix: string) =>
      Array.from({ length: 600 }, (_, i) => ({
        field: (i % 2 === 0 ? "ip" : "device_id") as MaskField,
        text: `${prefix}-${i}`,
      }));
    const [a, b, single] = await Promise.all([
      masker.maskAll(values("a")),
      masker.maskAll(values("b")),
      Promise.all(Array.from({ length: 100 }, (_, i) => masker.mask("body", `body-${i}`))),
    ]);
    assert.deepEqual(a, values("a").map((v) => reference.mask(v.field, v.text)));
    assert.deepEqual(b, values("b").map((v) => reference.mask(v.field, v.text)));
    assert.deepEqual(
      single,
      Array.from({ length: 100 }, (_, i) => reference.mask("body", `body-${i}`)),
    );
    assert.equal(calls, 1300, "every distinct value signed once");
    assert.ok(most <= 16, `signs in flight at once: ${most}`);
    assert.ok(most >= 8, `signs still run concurrently: ${most}`);
  } finally {
    subtle.sign = sign;
  }
});

Deno.test("Masker.mask() equals HMAC-SHA256 by Web Crypto under the derived subkey", async () => {
  // The definition, computed independently: subkey = HMAC(secret,
  // "login-etl/v1/mask/<field>"), mask = HMAC(subkey, value).
  const webHmac = async (key: Uint8Array, data: Uint8Array) => {
    const imported = await crypto.subtle.importKey(
      "raw",
      new Uint8Array(key),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    return new Uint8Array(await crypto.subtle.sign("HMAC", imported, new Uint8Array(data)));
  };
  const encode = (s: string) => new TextEncoder().encode(s);
  await fc.assert(
    fc.asyncProperty(
      secretArb,
      fc.constantFrom("ip", "device_id", "body") as fc.Arbitrary<"ip" | "device_id" | "body">,
      fc.string({ unit: "grapheme" }),
      async (secret, field, value) => {
        const masker = await Masker.create(new Secret(secret.slice(), "s"), "k1");
        const subkey = await webHmac(secret, encode(`login-etl/v1/mask/${field}`));
        const expected = (await webHmac(subkey, encode(value))).toBase64({
          alphabet: "base64url",
          omitPadding: true,
        });
        assert.equal(await masker.mask(field, value), `k1:${expected}`);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("Masker.fingerprint is stable per secret and differs across secrets", async () => {
  await fc.assert(
    fc.asyncProperty(secretArb, secretArb, keyIdArb, async (x, y, keyId) => {
      fc.pre(x.length !== y.length || x.some((b, i) => b !== y[i]));
      const a1 = await Masker.create(new Secret(x.slice(), "x"), "k1");
      const a2 = await Masker.create(new Secret(x.slice(), "x"), keyId);
      const b = await Masker.create(new Secret(y, "y"), "k1");
      assert.equal(a1.fingerprint, a2.fingerprint);
      assert.notEqual(a1.fingerprint, b.fingerprint);
      assert.match(a1.fingerprint, /^[A-Za-z0-9_-]{22}$/);
    }),
    { numRuns: 100 },
  );
});

Deno.test("Masker never shows its secret in masks, fingerprint, JSON or inspection", async () => {
  const text = "TopSecretValue-0123456789-abcdefghij";
  const secret = secretOf(text);
  const masker = await Masker.create(secret, "k1");
  const base64 = encoder.encode(text).toBase64();
  const base64url = encoder.encode(text).toBase64({ alphabet: "base64url", omitPadding: true });
  const shown = [
    await masker.mask("ip", text),
    await masker.mask("device_id", text),
    await masker.mask("body", text),
    masker.fingerprint,
    JSON.stringify(masker),
    Deno.inspect(masker, { depth: Infinity, showHidden: true }),
    String(secret),
    JSON.stringify(secret),
    Deno.inspect(secret, { depth: Infinity, showHidden: true }),
  ];
  for (const out of shown) {
    assert.ok(!out.includes(text), out);
    assert.ok(!out.includes(base64.slice(0, 20)), out);
    assert.ok(!out.includes(base64url.slice(0, 20)), out);
  }
});

// ---- key files, as the masker gets its secret ------------------------------

/** How the commands read a key set: the settings table's rules, and the id a lone secret takes. */
function format(defaultId: string): KeyFormat {
  return { minSecretBytes: MIN_SECRET_BYTES, keyIdPattern: KEY_ID_PATTERN, defaultId };
}

/** The current secret of a key source, as drain loads it. */
async function loadHmacSecret(source: KeySource) {
  const set = await loadKeySet(source, format("k1"));
  assert.ok(set !== null, "a key is configured");
  return currentSecret(set);
}

/** Runs `fn` with a temporary file holding `content`, removing it afterwards. */
async function withKeyFile<T>(
  content: Uint8Array<ArrayBuffer> | string,
  fn: (path: string) => Promise<T>,
): Promise<T> {
  const path = await Deno.makeTempFile({ prefix: "login-etl-key-" });
  try {
    await Deno.writeFile(path, typeof content === "string" ? encoder.encode(content) : content);
    return await fn(path);
  } finally {
    await Deno.remove(path);
  }
}

/** The key source resolveConfig makes of `--hmac-key-file path`. */
function fileSource(path: string) {
  return resolveConfig("drain", { "hmac-key-file": path }, {}).hmacKey;
}

const KEY32 = "0123456789abcdefghijklmnopqrstuv"; // 32 bytes

Deno.test("loadHmacSecret() reads a key file", async (t) => {
  const cases = [
    { name: "strips a trailing \\n", content: `${KEY32}\n`, expected: KEY32 },
    { name: "strips a trailing \\r\\n", content: `${KEY32}\r\n`, expected: KEY32 },
    { name: "keeps a file without a newline", content: KEY32, expected: KEY32 },
    { name: "strips only one trailing newline", content: `${KEY32}\n\n`, expected: `${KEY32}\n` },
    { name: "keeps inner newlines", content: `${KEY32}\nmore\n`, expected: `${KEY32}\nmore` },
    {
      name: "reads a base64 key as its text",
      content: "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=\n",
      expected: "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
    },
  ];
  for (const c of cases) {
    await t.step(`loadHmacSecret() ${c.name}`, async () => {
      await withKeyFile(c.content, async (path) => {
        const secret = await loadHmacSecret(fileSource(path));
        assert.deepEqual(secret.reveal(), encoder.encode(c.expected));
        assert.ok(secret.origin.includes(path), secret.origin);
      });
    });
  }
});

Deno.test("loadHmacSecret() reads binary key files byte for byte", async () => {
  const raw = new Uint8Array(48).map((_, i) => (i * 37 + 200) % 256);
  await withKeyFile(raw, async (path) => {
    const secret = await loadHmacSecret(fileSource(path));
    assert.deepEqual(secret.reveal(), raw);
  });
});

Deno.test("loadHmacSecret() refuses a key file under 32 bytes, naming the file", async (t) => {
  for (
    const [name, content] of [
      ["31 bytes", KEY32.slice(1)],
      ["31 bytes and \\n", `${KEY32.slice(1)}\n`],
      ["31 bytes and \\r\\n", `${KEY32.slice(1)}\r\n`],
      ["an empty file", ""],
    ] as const
  ) {
    await t.step(`loadHmacSecret() refuses ${name}`, async () => {
      await withKeyFile(content, async (path) => {
        const error = await loadHmacSecret(fileSource(path)).then(() => null, (e: unknown) => e);
        assert.ok(error instanceof ConfigError, String(error));
        assert.ok(error.message.includes(path), error.message);
        assert.match(error.message, /\b32\b/);
        assert.ok(!error.message.includes("\n"));
        assert.equal(error.exitCode, 2);
      });
    });
  }
});

Deno.test("loadHmacSecret() says no such file for a missing key file, without its path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "login-etl-key-" });
  try {
    const path = `${dir}/missing.key`;
    const error = await loadHmacSecret(fileSource(path)).then(() => null, (e: unknown) => e);
    assert.ok(error instanceof ConfigError, String(error));
    // A path that is no file may be a key pasted in the wrong setting.
    assert.ok(!error.message.includes(path), error.message);
    assert.equal(
      error.message,
      "Cannot read --hmac-key-file: no such file (is a key in the file setting's place? put keys in PII_HMAC_KEY)",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadHmacSecret() gives a key file and PII_HMAC_KEY of one secret the same masks", async () => {
  await withKeyFile(`${KEY32}\n`, async (path) => {
    const fromFile = await Masker.create(await loadHmacSecret(fileSource(path)), "k1");
    const envSource = resolveConfig("drain", {}, { PII_HMAC_KEY: KEY32 }).hmacKey;
    const fromEnv = await Masker.create(await loadHmacSecret(envSource), "k1");
    assert.equal(fromFile.fingerprint, fromEnv.fingerprint);
    assert.equal(await fromFile.mask("ip", "1.2.3.4"), await fromEnv.mask("ip", "1.2.3.4"));
  });
});

Deno.test("the mask cache past its limit: the newest CACHE_LIMIT values answer without a sign, older ones are signed again to the same mask", async () => {
  const secret = encoder.encode("login-etl cache limit test secret, 32+ b");
  const masker = await Masker.create(new Secret(secret, "s"), "k1");
  const reference = referenceMasker(secret, "k1");
  const extra = 5;
  // Two fields share the cache: ips and device ids alternate, as in a batch.
  const values = Array.from({ length: CACHE_LIMIT + extra }, (_, i) => ({
    field: (i % 2 === 0 ? "ip" : "device_id") as MaskField,
    text: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
  }));
  const sign = crypto.subtle.sign;
  let signs = 0;
  crypto.subtle.sign = function (...args: Parameters<typeof sign>) {
    signs++;
    return sign.apply(this, args);
  };
  try {
    // One at a time, so the cache takes them in this order.
    const first: string[] = [];
    for (const v of values) first.push(await masker.mask(v.field, v.text));
    assert.equal(signs, values.length, "every distinct value signed once");
    signs = 0;
    const newest = values.slice(extra);
    assert.deepEqual(await masker.maskAll(newest), first.slice(extra));
    assert.equal(signs, 0, "the newest CACHE_LIMIT values come from the cache");
    const oldest = values.slice(0, extra);
    assert.deepEqual(await masker.maskAll(oldest), first.slice(0, extra));
    assert.equal(signs, extra, "the oldest were dropped and are signed again");
    assert.deepEqual(first, values.map((v) => reference.mask(v.field, v.text)));
  } finally {
    crypto.subtle.sign = sign;
  }
});
