// Unit tests of src/pii/seal.ts: the sealed entry format. The test vectors
// are read from docs/pii.md (so the document and the code cannot drift
// apart) and recomputed twice: by SealingKey with the vectors' fixed keys and
// randomness, and by an independent node:crypto implementation of the steps
// the document describes. Then round trips, padding buckets, and refusal of
// every altered bit, moved entry and wrong key.
import assert from "node:assert/strict";
import {
  createCipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
} from "node:crypto";
import fc from "fast-check";
import {
  generateVaultPair,
  HEADER_BYTES,
  OpeningKey,
  PAD_BUCKETS,
  padValue,
  SealError,
  SealingKey,
  unpadValue,
} from "../../../src/pii/seal.ts";

const encoder = new TextEncoder();

interface VectorEntry {
  readonly field: string;
  readonly mask: string;
  readonly value: string;
  readonly random: string;
  readonly aad: string;
  readonly key: string;
  readonly nonce: string;
  readonly padded: string;
  readonly iv: string;
  readonly ciphertext: string;
}

interface Vectors {
  readonly "key_id": string;
  readonly "recipient_private": string;
  readonly "recipient_public": string;
  readonly "ephemeral_private": string;
  readonly enc: string;
  readonly dh: string;
  readonly entries: readonly VectorEntry[];
}

/** The JSON block between the seal-vectors markers of docs/pii.md. */
function vectorsOfDocs(): Vectors {
  const text = Deno.readTextFileSync(new URL("../../../docs/pii.md", import.meta.url));
  const match = /<!-- seal-vectors:start -->\s*```json\n([\s\S]*?)```\s*<!-- seal-vectors:end -->/
    .exec(text);
  assert.ok(match?.[1] !== undefined, "docs/pii.md holds the seal test vectors");
  return JSON.parse(match[1]) as Vectors;
}

const hex = (bytes: Uint8Array) => bytes.toHex();
const bytes = (text: string) => Uint8Array.fromHex(text);
const b64url = (text: string) => bytes(text).toBase64({ alphabet: "base64url", omitPadding: true });

async function recipientOf(v: Vectors): Promise<{ seal: SealingKey; open: OpeningKey }> {
  return {
    seal: await SealingKey.create(v.key_id, bytes(v.recipient_public)),
    open: await OpeningKey.create(
      v.key_id,
      bytes(v.recipient_public),
      bytes(v.recipient_private),
    ),
  };
}

Deno.test("SealingKey.seal() writes docs/pii.md's test vectors byte for byte", async () => {
  const v = vectorsOfDocs();
  assert.ok(v.entries.length >= 2, "a batch of entries sharing one ephemeral key");
  const { seal } = await recipientOf(v);
  const randoms = v.entries.map((e) => bytes(e.random));
  const sealed = await seal.seal(
    v.entries.map((e) => ({ field: e.field, masked: e.mask, raw: e.value })),
    { ephemeralPrivate: bytes(v.ephemeral_private), random: () => randoms.shift() as Uint8Array },
  );
  assert.deepEqual(
    sealed.map((s) => ({ iv: hex(s.header), ciphertext: hex(s.ciphertext) })),
    v.entries.map((e) => ({ iv: e.iv, ciphertext: e.ciphertext })),
  );
});

Deno.test("the documented format, done with node:crypto, gives docs/pii.md's vectors", async (t) => {
  const v = vectorsOfDocs();
  const ephemeral = createPrivateKey({
    key: { kty: "OKP", crv: "X25519", d: b64url(v.ephemeral_private), x: b64url(v.enc) },
    format: "jwk",
  });
  const recipient = createPublicKey({
    key: { kty: "OKP", crv: "X25519", x: b64url(v.recipient_public) },
    format: "jwk",
  });
  const dh = new Uint8Array(diffieHellman({ privateKey: ephemeral, publicKey: recipient }));
  assert.equal(hex(dh), v.dh, "dh = X25519(ephemeral private, recipient public)");
  for (const e of v.entries) {
    await t.step(`${e.field} ${e.value}`, () => {
      const aad = encoder.encode(`login-etl/v2/vault\0${e.field}\0${e.mask}\0${v.key_id}`);
      assert.equal(hex(aad), e.aad, "aad = label NUL field NUL mask NUL key id");
      const info = new Uint8Array([
        ...encoder.encode("login-etl/v2/seal\0"),
        ...bytes(v.enc),
        ...bytes(v.recipient_public),
        ...aad,
      ]);
      const okm = new Uint8Array(hkdfSync("sha256", dh, bytes(e.random), info, 44));
      assert.equal(hex(okm.subarray(0, 32)), e.key);
      assert.equal(hex(okm.subarray(32)), e.nonce);
      const value = encoder.encode(e.value);
      const padded = new Uint8Array(PAD_BUCKETS.find((b) => b > value.length) as number);
      padded.set(value);
      padded[value.length] = 0x80;
      assert.equal(hex(padded), e.padded);
      const cipher = createCipheriv("aes-256-gcm", okm.subarray(0, 32), okm.subarray(32));
      cipher.setAAD(aad);
      const sealed = new Uint8Array([...cipher.update(padded), ...cipher.final()]);
      assert.equal(hex(new Uint8Array([...sealed, ...cipher.getAuthTag()])), e.ciphertext);
      assert.equal(e.iv, `02${v.enc}${e.random}`, "iv column = 0x02 ‖ enc ‖ random");
    });
  }
});

Deno.test("OpeningKey.open() opens docs/pii.md's vectors", async () => {
  const v = vectorsOfDocs();
  const { open } = await recipientOf(v);
  for (const e of v.entries) {
    const value = await open.open(
      { field: e.field, masked: e.mask, keyId: v.key_id },
      { header: bytes(e.iv), ciphertext: bytes(e.ciphertext) },
    );
    assert.equal(value, e.value);
  }
});

async function freshRecipient(
  keyId = "p1",
): Promise<{ seal: SealingKey; open: OpeningKey; privateKey: Uint8Array }> {
  const pair = await generateVaultPair();
  return {
    seal: await SealingKey.create(keyId, pair.publicKey),
    open: await OpeningKey.create(keyId, pair.publicKey, pair.privateKey),
    privateKey: pair.privateKey,
  };
}

Deno.test("sealed entries round-trip any value up to 256 code points", async () => {
  const { seal, open } = await freshRecipient();
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.string({ unit: "binary", maxLength: 256 }), { minLength: 1, maxLength: 8 }),
      async (values) => {
        const entries = values.map((raw, i) => ({ field: "device_id", masked: `k1:m${i}`, raw }));
        const sealed = await seal.seal(entries);
        for (const [i, s] of sealed.entries()) {
          const e = entries[i] as (typeof entries)[number];
          assert.equal(await open.open({ ...e, keyId: "p1" }, s), e.raw);
        }
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("one seal() call shares one ephemeral key; every entry has its own random bytes and key", async () => {
  const { seal, open } = await freshRecipient();
  const entries = Array.from({ length: 40 }, (_, i) => ({
    field: "ip",
    masked: `k1:same-value-${i % 2}`,
    raw: "192.0.2.1",
  }));
  const first = await seal.seal(entries);
  const second = await seal.seal(entries);
  const enc = (h: Uint8Array) => hex(h.subarray(1, 33));
  assert.equal(new Set(first.map((s) => enc(s.header))).size, 1, "one ephemeral key per call");
  assert.notEqual(enc((first[0] as { header: Uint8Array }).header), enc(second[0]!.header));
  assert.equal(new Set(first.map((s) => hex(s.header.subarray(33)))).size, 40, "random per entry");
  assert.equal(new Set(first.map((s) => hex(s.ciphertext))).size, 40, "equal values differ");
  for (const [i, s] of first.entries()) {
    assert.equal(s.header.length, HEADER_BYTES);
    assert.equal(s.header[0], 2, "format byte");
    assert.equal(await open.open({ ...entries[i]!, keyId: "p1" }, s), "192.0.2.1");
  }
});

Deno.test("padValue() fills the smallest bucket that holds the value and its marker", async (t) => {
  const cases: { name: string; value: string; bucket: number }[] = [
    { name: "empty", value: "", bucket: 16 },
    { name: "shortest IPv4", value: "1.2.3.4", bucket: 16 },
    { name: "longest IPv4", value: "255.255.255.255", bucket: 16 },
    { name: "16 bytes", value: "x".repeat(16), bucket: 64 },
    { name: "IPv6 of 39 characters", value: "2001:db8:1234:5678:9abc:def0:1234:5678", bucket: 64 },
    { name: "UUID device id", value: "c2d6a7f0-8f1e-4b7e-9d5a-1f2e3d4c5b6a", bucket: 64 },
    { name: "63 bytes", value: "x".repeat(63), bucket: 64 },
    { name: "64 bytes", value: "x".repeat(64), bucket: 256 },
    { name: "255 bytes", value: "x".repeat(255), bucket: 256 },
    { name: "256 ASCII characters", value: "d".repeat(256), bucket: 1024 },
    { name: "256 four-byte characters", value: "😀".repeat(256), bucket: 4096 },
  ];
  const { seal } = await freshRecipient();
  for (const c of cases) {
    await t.step(c.name, async () => {
      const padded = padValue(c.value);
      assert.equal(padded.length, c.bucket);
      assert.equal(unpadValue(padded), c.value);
      const [sealed] = await seal.seal([{ field: "device_id", masked: "k1:m", raw: c.value }]);
      assert.equal(sealed?.ciphertext.length, c.bucket + 16, "bucket + tag, whatever the length");
    });
  }
  await t.step("a value past the largest bucket is refused", () => {
    assert.throws(() => padValue("x".repeat(4096)), RangeError);
  });
});

Deno.test("unpadValue() refuses what padValue() cannot have written", async (t) => {
  const good = padValue("10.0.0.1");
  const cases: { name: string; input: Uint8Array; expected: RegExp }[] = [
    { name: "not a bucket size", input: good.slice(0, 15), expected: /not one of the bucket/ },
    { name: "all zero", input: new Uint8Array(16), expected: /no end marker/ },
    {
      name: "a byte after the marker",
      input: (() => {
        const b = good.slice();
        b[15] = 1;
        return b;
      })(),
      expected: /no end marker/,
    },
    {
      name: "not UTF-8",
      input: (() => {
        const b = new Uint8Array(16);
        b.set([0xc3, 0x28, 0x80]);
        return b;
      })(),
      expected: /not UTF-8/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.throws(() => unpadValue(c.input), (e: unknown) => {
        assert.ok(e instanceof SealError);
        assert.match(e.message, c.expected);
        return true;
      });
    });
  }
});

async function assertRefused(
  promise: Promise<unknown>,
  pattern: RegExp,
  raw?: string,
): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof SealError, String(e));
    assert.match(e.message, pattern);
    if (raw !== undefined) assert.ok(!e.message.includes(raw));
    return true;
  });
}

Deno.test("OpeningKey.open() refuses an entry with any single bit of its header or ciphertext flipped", async () => {
  const { seal, open } = await freshRecipient();
  const raw = "198.51.100.23";
  const binding = { field: "ip", masked: "k1:mask", keyId: "p1" };
  const [sealed] = await seal.seal([{ ...binding, raw }]);
  assert.ok(sealed !== undefined);
  let checked = 0;
  for (const part of ["header", "ciphertext"] as const) {
    for (let i = 0; i < sealed[part].length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const changed = sealed[part].slice();
        changed[i] = (changed[i] as number) ^ (1 << bit);
        // The format byte is checked first; every other bit fails authentication
        // (an altered ephemeral key may also be refused as unusable).
        await assertRefused(
          open.open(binding, { ...sealed, [part]: changed }),
          part === "header" && i === 0
            ? /header is malformed/
            : /failed authentication|no usable ephemeral public key|refused the public key|gave zero/,
          raw,
        );
        checked++;
      }
    }
  }
  assert.equal(checked, (HEADER_BYTES + 16 + 16) * 8);
});

Deno.test("OpeningKey.open() refuses an entry moved to another mask, field or key id, or swapped", async () => {
  const { seal, open, privateKey } = await freshRecipient();
  const a = { field: "ip", masked: "k1:mask-a", keyId: "p1" };
  const b = { field: "ip", masked: "k1:mask-b", keyId: "p1" };
  const [sa, sb] = await seal.seal([{ ...a, raw: "203.0.113.9" }, { ...b, raw: "203.0.113.10" }]);
  assert.ok(sa !== undefined && sb !== undefined);
  const refused = /failed authentication/;
  await assertRefused(open.open({ ...a, masked: "k1:mask-b" }, sa), refused);
  await assertRefused(open.open({ ...a, masked: "k2:mask-a" }, sa), refused);
  await assertRefused(open.open({ ...a, field: "device_id" }, sa), refused);
  // Rows of one batch swapped: same ephemeral key, but each has its own key, nonce and AAD.
  await assertRefused(open.open(a, sb), refused);
  await assertRefused(open.open(a, { header: sb.header, ciphertext: sa.ciphertext }), refused);
  await assertRefused(open.open(a, { header: sa.header, ciphertext: sb.ciphertext }), refused);
  // Relabelled to another key id of the same pair: the id is in the AAD.
  const relabelled = await OpeningKey.create("p2", open.publicKey, privateKey);
  await assertRefused(relabelled.open({ ...a, keyId: "p2" }, sa), refused);
  await assertRefused(open.open({ ...a, keyId: "p2" }, sa), /under key p2, not p1/);
});

Deno.test("OpeningKey.open() refuses an entry sealed to another key pair", async () => {
  const mine = await freshRecipient();
  const theirs = await freshRecipient();
  const binding = { field: "device_id", masked: "k1:m", keyId: "p1" };
  const [sealed] = await theirs.seal.seal([{ ...binding, raw: "593-47-5928" }]);
  await assertRefused(mine.open.open(binding, sealed!), /failed authentication/, "593-47-5928");
});

Deno.test("OpeningKey.open() refuses malformed entries", async (t) => {
  const { seal, open } = await freshRecipient();
  const binding = { field: "ip", masked: "k1:m", keyId: "p1" };
  const [s] = await seal.seal([{ ...binding, raw: "192.0.2.1" }]);
  assert.ok(s !== undefined);
  const cases: { name: string; header: Uint8Array; ciphertext: Uint8Array; expected: RegExp }[] = [
    {
      name: "a format 1 IV (12 bytes)",
      header: new Uint8Array(12),
      ciphertext: s.ciphertext,
      expected: /header is malformed/,
    },
    {
      name: "format byte 3",
      header: Uint8Array.of(3, ...s.header.subarray(1)),
      ciphertext: s.ciphertext,
      expected: /header is malformed/,
    },
    {
      name: "header one byte short",
      header: s.header.slice(0, -1),
      ciphertext: s.ciphertext,
      expected: /header is malformed/,
    },
    {
      name: "ciphertext without its tag",
      header: s.header,
      ciphertext: s.ciphertext.slice(0, 16),
      expected: /wrong length/,
    },
    {
      name: "ciphertext one byte short",
      header: s.header,
      ciphertext: s.ciphertext.slice(0, -1),
      expected: /wrong length/,
    },
    {
      name: "an all-zero ephemeral key",
      header: Uint8Array.of(2, ...new Uint8Array(32), ...s.header.subarray(33)),
      ciphertext: s.ciphertext,
      expected: /refused the public key/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await assertRefused(
        open.open(binding, { header: c.header, ciphertext: c.ciphertext }),
        c.expected,
      );
    });
  }
});

Deno.test("SealingKey.create() and OpeningKey.create() refuse keys that are not a pair", async (t) => {
  const pair = await generateVaultPair();
  const other = await generateVaultPair();
  await t.step("a public key of 31 bytes", async () => {
    await assertRefused(SealingKey.create("p1", pair.publicKey.slice(1)), /32 bytes, not 31/);
  });
  await t.step("an all-zero public key", async () => {
    await assertRefused(SealingKey.create("p1", new Uint8Array(32)), /Not a usable X25519/);
  });
  await t.step("a private key of another pair", async () => {
    await assertRefused(
      OpeningKey.create("p1", pair.publicKey, other.privateKey),
      /does not belong to the public key/,
    );
  });
  await t.step("a private key of 16 bytes", async () => {
    await assertRefused(
      OpeningKey.create("p1", pair.publicKey, pair.privateKey.slice(16)),
      /32 bytes, not 16/,
    );
  });
});
