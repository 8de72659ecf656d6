/**
 * HMAC-SHA256 (RFC 2104 over FIPS 180-4) for the masking hot path, with the
 * key's inner and outer pad blocks hashed once: each mask of a short value
 * then costs two or three SHA-256 compressions and no allocation.
 *
 * Why not the platform: Web Crypto hops to a worker thread per call and
 * node:crypto allocates several buffers per call; both profiled as most of
 * a drain's per-message CPU (README, Performance). The output is checked
 * against Web Crypto's HMAC on random keys and values in
 * tests/unit/hmac_sha256_test.ts. SHA-256 uses only additions, rotations and
 * bitwise operations, so its time does not depend on the key.
 *
 * @module
 */

const K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

const IV = new Int32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

const BLOCK = 64;

/** One SHA-256 compression of `block[offset..offset+64)` into `state`. */
function compress(state: Int32Array, block: Uint8Array, offset: number, w: Int32Array): void {
  for (let i = 0; i < 16; i++) {
    const j = offset + i * 4;
    w[i] = (block[j]! << 24) | (block[j + 1]! << 16) | (block[j + 2]! << 8) | block[j + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15]!;
    const y = w[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  let a = state[0]!, b = state[1]!, c = state[2]!, d = state[3]!;
  let e = state[4]!, f = state[5]!, g = state[6]!, h = state[7]!;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i]! + w[i]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
  state[4] = (state[4]! + e) | 0;
  state[5] = (state[5]! + f) | 0;
  state[6] = (state[6]! + g) | 0;
  state[7] = (state[7]! + h) | 0;
}

/** HMAC-SHA256 under one key, reusable for many messages. Not thread-safe (it reuses buffers). */
export class HmacSha256 {
  readonly #inner = new Int32Array(8);
  readonly #outer = new Int32Array(8);
  readonly #state = new Int32Array(8);
  readonly #w = new Int32Array(64);
  #buffer = new Uint8Array(4 * BLOCK);
  readonly #digest = new Uint8Array(32);
  readonly #outerBlock = new Uint8Array(BLOCK);
  readonly #encoder = new TextEncoder();

  /** @param key the HMAC key; keys longer than a block are hashed first, as RFC 2104 says */
  constructor(key: Uint8Array) {
    let k = key;
    if (k.length > BLOCK) k = new HmacSha256(new Uint8Array(0)).#hash(k);
    const pad = new Uint8Array(BLOCK);
    for (const [target, byte] of [[this.#inner, 0x36], [this.#outer, 0x5c]] as const) {
      pad.fill(byte);
      for (let i = 0; i < k.length; i++) pad[i] = k[i]! ^ byte;
      target.set(IV);
      compress(target, pad, 0, this.#w);
    }
  }

  /** Plain SHA-256, for keys longer than a block. */
  #hash(data: Uint8Array): Uint8Array {
    this.#state.set(IV);
    this.#finish(data, data.length, 0);
    return this.#digest.slice();
  }

  /**
   * Hashes `length` bytes of `data` into #state, which already covers
   * `prefixBytes` bytes, adds the padding, and writes #digest.
   */
  #finish(data: Uint8Array, length: number, prefixBytes: number): void {
    let offset = 0;
    while (length - offset >= BLOCK) {
      compress(this.#state, data, offset, this.#w);
      offset += BLOCK;
    }
    const rest = length - offset;
    const tail = this.#outerBlock;
    const blocks = rest + 9 > BLOCK ? 2 : 1;
    const padded = blocks === 1 ? tail : new Uint8Array(2 * BLOCK);
    padded.fill(0);
    padded.set(data.subarray(offset, length));
    padded[rest] = 0x80;
    const bits = (prefixBytes + length) * 8;
    const end = blocks * BLOCK;
    // The message length in bits, big-endian in the last eight bytes.
    padded[end - 5] = Math.floor(bits / 2 ** 32) & 0xff;
    padded[end - 4] = (bits >>> 24) & 0xff;
    padded[end - 3] = (bits >>> 16) & 0xff;
    padded[end - 2] = (bits >>> 8) & 0xff;
    padded[end - 1] = bits & 0xff;
    for (let b = 0; b < blocks; b++) compress(this.#state, padded, b * BLOCK, this.#w);
    for (let i = 0; i < 8; i++) {
      const v = this.#state[i]!;
      this.#digest[i * 4] = v >>> 24;
      this.#digest[i * 4 + 1] = (v >>> 16) & 0xff;
      this.#digest[i * 4 + 2] = (v >>> 8) & 0xff;
      this.#digest[i * 4 + 3] = v & 0xff;
    }
  }

  /** HMAC of bytes. The returned array is reused by the next call: copy it to keep it. */
  macBytes(message: Uint8Array): Uint8Array {
    this.#state.set(this.#inner);
    this.#finish(message, message.length, BLOCK);
    const inner = this.#digest.slice();
    this.#state.set(this.#outer);
    this.#finish(inner, 32, BLOCK);
    return this.#digest;
  }

  /** HMAC of a string's UTF-8 bytes (lone surrogates become U+FFFD, as TextEncoder does). */
  mac(text: string): Uint8Array {
    // A UTF-16 unit is at most 3 UTF-8 bytes.
    if (this.#buffer.length < text.length * 3) {
      this.#buffer = new Uint8Array(text.length * 3 + BLOCK);
    }
    const { written } = this.#encoder.encodeInto(text, this.#buffer);
    return this.macBytes(this.#buffer.subarray(0, written));
  }
}
