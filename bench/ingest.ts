// The write path alone, once: N rows (default 50,000; BENCH_N), prepared
// beforehand, written through src/db/write.ts's store in --max-rows
// transactions by --writers writers, into a fresh schema that is dropped
// after. Prints one JSON line: rows/s and the process's CPU-ms per 10,000
// rows. Used by bench/pg_versions.ts to compare two checkouts in
// interleaved rounds; it needs nothing newer than the store itself, so it
// can be copied into an older checkout.
//
//   deno run -A bench/ingest.ts [database-url]

import postgres from "postgres";
import { Secret } from "../src/secret.ts";
import { resolveConfig } from "../src/config/resolve.ts";
import { Database } from "../src/db/pool.ts";
import { ensureSchema } from "../src/db/schema.ts";
import { prune } from "../src/db/ledger.ts";
import { loadPgConnection } from "../src/db/connection.ts";
import { resolvePgTarget } from "../src/config/pg_target.ts";
import { postgresStore } from "../src/db/write.ts";
import { Masker } from "../src/mask.ts";
import { prepare } from "../src/transform.ts";
import { generateBodies } from "../src/seed/generate.ts";
import type { ReceivedMessage } from "../src/types.ts";

const BENCH_SECRET = "benchmark secret, not for production use!";
const url = Deno.args[0] ?? Deno.env.get("DATABASE_URL");
if (url === undefined) throw new Error("usage: deno run -A bench/ingest.ts DATABASE_URL");
const n = Number(Deno.env.get("BENCH_N") ?? 50_000);
const config = resolveConfig("drain", {}, { PII_HMAC_KEY: BENCH_SECRET });
const encoder = new TextEncoder();

/** CPU time of this process so far, from /proc (user + system). */
function cpuMs(): number {
  const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]?.split(" ") ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks * 10; // USER_HZ is 100 on Linux
}

const schema = `bench_ingest_${Date.now()}_${Deno.pid}`;
const stateSchema = `${schema}_state`;
const connection = await loadPgConnection(resolvePgTarget({ value: url, origin: "url" }, {}));
const database = new Database({ connection, schema, stateSchema, max: config.writers + 1 });
const admin = postgres(url, { max: 1, onnotice: () => {} });
try {
  await ensureSchema(database.sql, { connection, schema, stateSchema });
  await prune(database, { target: "ledger", days: 14 }); // today's ledger partition, as a consumer makes at start
  const masker = await Masker.create(new Secret(encoder.encode(BENCH_SECRET), "bench"), "k1");
  const now = Date.now();
  const messages: ReceivedMessage[] = [...generateBodies(n, { badRatio: 0, seed: 7 })].map((
    body,
    i,
  ) => ({
    id: `ingest-${i}`,
    receiptHandle: "",
    body,
    sentAtMs: now,
    dated: true,
    receiveCount: 1,
  }));
  const chunks: Awaited<ReturnType<typeof prepare>>[] = [];
  for (let i = 0; i < messages.length; i += config.maxRows) {
    chunks.push(
      await prepare(messages.slice(i, i + config.maxRows), masker, {
        maxBodyBytes: config.maxBodyBytes,
        maxReceives: null,
      }),
    );
  }
  const store = postgresStore(database, { writeTimeoutMs: 60_000 });
  let next = 0;
  const cpuBefore = cpuMs();
  const started = performance.now();
  await Promise.all(Array.from({ length: config.writers }, async () => {
    while (next < chunks.length) {
      const chunk = chunks[next++]!;
      await store.write(chunk.items, chunk.vault);
    }
  }));
  const ms = performance.now() - started;
  const cpu = cpuMs() - cpuBefore;
  const [counted] = await database.sql<{ rows: number }[]>`
    SELECT count(*)::int AS rows FROM ${database.sql(schema)}.user_logins`;
  const rows = counted?.rows;
  if (rows !== n) throw new Error(`wrote ${rows} rows, expected ${n}`);
  Deno.stdout.writeSync(encoder.encode(`${
    JSON.stringify({
      rows_per_s: Math.round((n * 1000) / ms),
      cpu_ms_per_10k: Math.round((cpu * 10_000) / n),
    })
  }\n`));
} finally {
  await database.end();
  await admin.unsafe(`DROP SCHEMA IF EXISTS "${schema}", "${stateSchema}" CASCADE`);
  await admin.end();
}
