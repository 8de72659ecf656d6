// HmacSha256 against Web Crypto's HMAC-SHA256 and RFC 4231's test vectors.

import assert from "node:assert/strict";
import fc from "fast-check";
import { HmacSha256 } from "../../src/hmac_sha256.ts";

async function webHmac(key: Uint8Array, data: Uint8Array): Promise<string> {
  const imported = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    [
      "sign",
    ],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", imported, new Uint8Array(data))).toHex();
}

const hex = (s: string) => Uint8Array.fromHex(s);

Deno.test("HmacSha256 matches the RFC 4231 test vectors", async (t) => {
  const vectors = [
    {
      name: "case 1",
      key: "0b".repeat(20),
      data: new TextEncoder().encode("Hi There"),
      mac: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    },
    {
      name: "case 2",
      key: new TextEncoder().encode("Jefe").toHex(),
      data: new TextEncoder().encode("what do ya want for nothing?"),
      mac: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    },
    {
      name: "case 6 (key longer than a block)",
      key: "aa".repeat(131),
      data: new TextEncoder().encode("Test Using Larger Than Block-Size Key - Hash Key First"),
      mac: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    },
  ];
  for (const v of vectors) {
    await t.step(
      v.name,
      () => assert.equal(new HmacSha256(hex(v.key)).macBytes(v.data).toHex(), v.mac),
    );
  }
});

Deno.test("HmacSha256 equals Web Crypto for random keys and messages of every length class", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 1, maxLength: 150 }), // Web Crypto refuses an empty key
      fc.uint8Array({ minLength: 0, maxLength: 300 }),
      async (key, data) => {
        assert.equal(new HmacSha256(key).macBytes(data).toHex(), await webHmac(key, data));
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("HmacSha256 reused across messages gives each message's own MAC", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const hmac = new HmacSha256(key);
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.string({ unit: "binary", maxLength: 120 }), { maxLength: 20 }),
      async (texts) => {
        for (const text of texts) {
          assert.equal(hmac.mac(text).toHex(), await webHmac(key, new TextEncoder().encode(text)));
        }
      },
    ),
    { numRuns: 100 },
  );
});
