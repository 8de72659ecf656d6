// deno-lint-ignore-file camelcase -- the result's field names are its JSON format
// What sealing the vault to a key pair costs against today's symmetric
// entries, in one run, in interleaved rounds (machine noise falls on all
// alike):
//   1. per entry, in this process: VaultCipher.encryptAll over a batch of
//      2,000 values (a 1,000-row batch's ip and device id), symmetric; sealed
//      with one ephemeral key per batch; and sealed one entry per call (an
//      ephemeral key each, the design not taken); and the per-entry steps
//      with node:crypto's synchronous HKDF and AES-GCM (not taken either:
//      sealing uses Web Crypto only);
//   2. the drain's prepare stage (validate, mask, vault) per 1,000-message
//      batch: no vault, symmetric, sealed;
//   3. login-etl drain end to end, as its own process, from fauxqs into
//      Postgres: no vault, symmetric, sealed (public key set only): its rate
//      and CPU-seconds per 10,000 messages.
// Usage: deno run -A bench/vault_seal.ts   (BENCH_N messages per drain, default 20,000;
// BENCH_ROUNDS rounds, default 5 for 1 and 2, 2 for 3). Prints one JSON line.

import { createCipheriv, hkdfSync } from "node:crypto";
import postgres from "postgres";
import { Secret } from "../src/secret.ts";
import type { VaultKeySet } from "../src/pii/keyring.ts";
import { writeVaultKeyPair } from "../src/pii/keygen.ts";
import { generateVaultPair, padValue } from "../src/pii/seal.ts";
import { VaultCipher } from "../src/pii/vault.ts";
import { Masker } from "../src/mask.ts";
import { prepare } from "../src/transform.ts";
import { generateBodies } from "../src/seed/generate.ts";
import type { Masked, ReceivedMessage, VaultInput } from "../src/types.ts";
import { call, load } from "./sqs_json.ts";
import {
  BENCH_SECRET,
  DATABASE_URL,
  dropSchemas,
  loginEtl,
  processCpuMs,
  startFauxqs,
} from "./_harness.ts";

const N = Number(Deno.env.get("BENCH_N") ?? 20_000);
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 5);
const encoder = new TextEncoder();
const VAULT_SECRET = "benchmark vault secret, not the HMAC one!";

function say(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[mid] as number
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const round1 = (n: number) => Math.round(n * 10) / 10;

const symmetricSet: VaultKeySet = {
  current: "v1",
  keys: new Map([["v1", {
    kind: "secret",
    secret: new Secret(encoder.encode(VAULT_SECRET), "bench"),
  }]]),
};
const pair = await generateVaultPair();
const sealedSet: VaultKeySet = {
  current: "p1",
  keys: new Map([["p1", { kind: "pair", publicKey: pair.publicKey, privateKey: null }]]),
};
const symmetric = await VaultCipher.create(symmetricSet);
const sealed = await VaultCipher.create(sealedSet);
const masker = await Masker.create(new Secret(encoder.encode(BENCH_SECRET), "bench"), "k1");

// 1. Per entry.
const bodies = [...generateBodies(1000, { badRatio: 0, seed: 7 })];
const inputs: VaultInput[] = bodies.flatMap((b, i) => {
  const e = JSON.parse(b) as { ip: string; device_id: string };
  return [
    { field: "ip" as const, masked: `k1:ip-${i}` as Masked, raw: e.ip },
    { field: "device_id" as const, masked: `k1:device-${i}` as Masked, raw: e.device_id },
  ];
});
const perEntry: Record<
  "symmetric" | "sealed_per_batch" | "sealed_per_entry" | "sealed_node_crypto",
  number[]
> = {
  symmetric: [],
  sealed_per_batch: [],
  sealed_per_entry: [],
  sealed_node_crypto: [],
};
/**
 * The per-entry steps of a sealed entry (HKDF, padding, AES-256-GCM) with
 * node:crypto's synchronous calls instead of Web Crypto's, after one key
 * agreement: the alternative not taken (login-etl seals with Web Crypto only).
 */
const SEAL_LABEL = encoder.encode("login-etl/v2/seal\0");
async function sealWithNodeCrypto(entries: readonly VaultInput[]): Promise<number> {
  const ephemeral = await crypto.subtle.generateKey({ name: "X25519" }, true, [
    "deriveBits",
  ]) as CryptoKeyPair;
  const enc = new Uint8Array(await crypto.subtle.exportKey("raw", ephemeral.publicKey));
  const recipient = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(pair.publicKey),
    { name: "X25519" },
    true,
    [],
  );
  const dh = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "X25519", public: recipient },
      ephemeral.privateKey,
      256,
    ),
  );
  let bytes = 0;
  for (const e of entries) {
    const n = crypto.getRandomValues(new Uint8Array(16));
    const aad = encoder.encode(`login-etl/v2/vault\0${e.field}\0${e.masked}\0p1`);
    const info = new Uint8Array(SEAL_LABEL.length + 64 + aad.length);
    info.set(SEAL_LABEL);
    info.set(enc, SEAL_LABEL.length);
    info.set(pair.publicKey, SEAL_LABEL.length + 32);
    info.set(aad, SEAL_LABEL.length + 64);
    const okm = new Uint8Array(hkdfSync("sha256", dh, n, info, 44));
    const cipher = createCipheriv("aes-256-gcm", okm.subarray(0, 32), okm.subarray(32));
    cipher.setAAD(aad);
    bytes += cipher.update(padValue(e.raw)).length + cipher.final().length +
      cipher.getAuthTag().length;
  }
  return bytes;
}
const timeUs = async (fn: () => Promise<unknown>, count: number) => {
  const t0 = performance.now();
  await fn();
  return ((performance.now() - t0) * 1000) / count;
};
// One warm-up round of each, not counted.
await symmetric.encryptAll(inputs);
await sealed.encryptAll(inputs);
for (let r = 0; r < ROUNDS; r++) {
  perEntry.symmetric.push(await timeUs(() => symmetric.encryptAll(inputs), inputs.length));
  perEntry.sealed_per_batch.push(await timeUs(() => sealed.encryptAll(inputs), inputs.length));
  const few = inputs.slice(0, 200);
  perEntry.sealed_node_crypto.push(await timeUs(() => sealWithNodeCrypto(inputs), inputs.length));
  perEntry.sealed_per_entry.push(
    await timeUs(async () => {
      for (const input of few) await sealed.encryptAll([input]);
    }, few.length),
  );
}
const entryUs = Object.fromEntries(
  Object.entries(perEntry).map(([k, v]) => [k, round1(median(v))]),
);
say(`per entry (µs, median of ${ROUNDS}): ${JSON.stringify(entryUs)}`);

// 2. The prepare stage of a drain, per 1,000-message batch.
const now = Date.now();
const messages: ReceivedMessage[] = bodies.map((body, i) => ({
  id: `m-${i}`,
  receiptHandle: "",
  body,
  sentAtMs: now,
  dated: true,
  receiveCount: 1,
}));
const options = { maxBodyBytes: 65536, maxReceives: null };
const never = () => false;
const perBatch: Record<"none" | "symmetric" | "sealed", number[]> = {
  none: [],
  symmetric: [],
  sealed: [],
};
const variants = {
  none: options,
  symmetric: { ...options, vault: { cipher: symmetric, known: never } },
  sealed: { ...options, vault: { cipher: sealed, known: never } },
};
for (const v of Object.values(variants)) await prepare(messages, masker, v);
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, options] of Object.entries(variants)) {
    // A fresh masker each time: its cache of recent masks would hide the signing cost.
    const fresh = await Masker.create(new Secret(encoder.encode(BENCH_SECRET), "bench"), "k1");
    const t0 = performance.now();
    await prepare(messages, fresh, options);
    perBatch[name as keyof typeof perBatch].push(performance.now() - t0);
  }
}
const batchMs = Object.fromEntries(
  Object.entries(perBatch).map(([k, v]) => [k, round1(median(v))]),
);
say(`prepare of a 1,000-message batch (ms, median of ${ROUNDS}): ${JSON.stringify(batchMs)}`);

// 3. drain end to end.
const drainRounds = Number(Deno.env.get("BENCH_DRAIN_ROUNDS") ?? 2);
const keysDir = await Deno.makeTempDir();
const written = await writeVaultKeyPair(`${keysDir}/keys`, "p1");
const { endpoint, stop } = await startFauxqs();
const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
const drains: Record<"none" | "symmetric" | "sealed", { rate: number[]; cpu: number[] }> = {
  none: { rate: [], cpu: [] },
  symmetric: { rate: [], cpu: [] },
  sealed: { rate: [], cpu: [] },
};
const drainEnv = {
  none: { PII_VAULT_KEY: "" },
  symmetric: { PII_VAULT_KEY: VAULT_SECRET },
  sealed: { PII_VAULT_KEY: "", PII_VAULT_KEY_FILE: written.publicPath },
};
const drainBodies = [...generateBodies(N, { badRatio: 0, seed: 11 })];
try {
  for (let r = 0; r < drainRounds; r++) {
    for (const [name, env] of Object.entries(drainEnv)) {
      const queue = `vault-seal-${name}-${r}-${Date.now()}`;
      await call(endpoint, "CreateQueue", { QueueName: queue });
      const queueUrl = `${endpoint}/000000000000/${queue}`;
      await load(endpoint, queueUrl, drainBodies);
      const schema = `bench_seal_${name}_${r}`;
      await dropSchemas(sql, schema);
      const child = loginEtl(["drain", "--queue-url", queueUrl, "--summary-json"], {
        schema,
        env: {
          ...env,
          AWS_ACCESS_KEY_ID: "test",
          AWS_SECRET_ACCESS_KEY: "test",
          AWS_REGION: "us-east-1",
          AWS_EC2_METADATA_DISABLED: "true",
        },
      }).spawn();
      let cpu = 0;
      const watch = setInterval(() => (cpu = processCpuMs(child.pid) ?? cpu), 20);
      const [status, stdout, stderr] = await Promise.all([
        child.status,
        new Response(child.stdout).text(),
        new Response(child.stderr).text(),
      ]);
      clearInterval(watch);
      if (!status.success) throw new Error(`drain failed: ${stderr.slice(-2000)}`);
      const summary = JSON.parse(stdout) as { inserted: number; msgs_per_s: number };
      if (summary.inserted !== N) throw new Error(`${name}: ${summary.inserted} of ${N} rows`);
      const [vaulted] = await sql.unsafe<{ n: number; sealed: number }[]>(
        `SELECT count(*)::int AS n, count(*) FILTER (WHERE get_byte(iv, 0) = 2 AND length(iv) = 49)::int AS sealed
         FROM "${schema}_state".login_etl_vault`,
      );
      if (name === "sealed" && vaulted?.sealed !== vaulted?.n) throw new Error("not sealed");
      drains[name as keyof typeof drains].rate.push(summary.msgs_per_s);
      // CPU-ms per message × 10,000 / 1,000: CPU-seconds per 10,000 messages.
      drains[name as keyof typeof drains].cpu.push((cpu / N) * 10);
      say(
        `drain ${name} round ${r + 1}: ${summary.msgs_per_s} msgs/s, ${
          round1((cpu / N) * 10)
        } CPU-s per 10k, ${vaulted?.n ?? 0} vault entries`,
      );
      await dropSchemas(sql, schema);
    }
  }
} finally {
  await sql.end();
  await stop();
  await Deno.remove(keysDir, { recursive: true });
}
const drainFigures = Object.fromEntries(
  Object.entries(drains).map(([k, v]) => [k, {
    msgs_per_s: round1(median(v.rate)),
    cpu_s_per_10k: round1(median(v.cpu)),
  }]),
);
// deno-lint-ignore no-console -- the one JSON line of the result
console.log(JSON.stringify({
  at: new Date().toISOString(),
  per_entry_us: entryUs,
  prepare_batch_ms: batchMs,
  drain: drainFigures,
  n: N,
  rounds: ROUNDS,
  drain_rounds: drainRounds,
}));
