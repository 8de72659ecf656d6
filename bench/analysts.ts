// `make bench-analysts`: what the masked-value indexes (migration 4) cost and
// save at scale, in one run on one machine. Fills user_logins with
// BENCH_ROWS rows (default 10,000,000) shaped like real ones (43-character
// masks; each address on ~5 logins, each device on ~3), then measures, first
// without the indexes and then with them:
//   - the duplicate views counted whole (count(*) over each view);
//   - a look-up of every login of one masked address;
//   - an insert of 100,000 more rows in 1,000-row statements (the ingest cost);
// plus each index's build time and size. Prints a table and one JSON line,
// and writes bench/results/analysts.json. Runs in its own schema, dropped after.

import postgres from "postgres";
import { migrate } from "../src/db/schema.ts";
import { MIGRATIONS } from "../src/db/migrations.ts";
import { DATABASE_URL } from "./_postgres.ts";

const ROWS = Number(Deno.env.get("BENCH_ROWS") ?? 10_000_000);
const schema = `bench_analysts_${Date.now().toString(36)}`;
const stateSchema = `${schema}_state`;

const admin = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
await admin.unsafe(`CREATE SCHEMA ${schema}`);
const sql = postgres(DATABASE_URL, {
  max: 1,
  onnotice: () => {},
  connection: { search_path: schema },
});

/** Milliseconds `fn` takes, median of `runs`. */
async function timed(fn: () => Promise<unknown>, runs = 1): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await fn();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return Math.round((times[times.length >> 1] ?? 0) * 10) / 10;
}

/** Rows numbered from `from`, shaped as the pipeline writes them. */
const fill = (from: number, count: number) =>
  sql.unsafe(`INSERT INTO user_logins
    SELECT 'u-' || (i % ${Math.max(1, Math.floor(ROWS / 4))}), 'android',
           'k1:' || left(encode(sha256(('ip' || (i % ${
    Math.max(1, Math.floor(ROWS / 5))
  }))::bytea), 'base64'), 43),
           'k1:' || left(encode(sha256(('dev' || (i % ${
    Math.max(1, Math.floor(ROWS / 3))
  }))::bytea), 'base64'), 43),
           'RU', 2003000, DATE '2026-01-01' + (i % 365)
    FROM generate_series(${from}, ${from + count - 1}) AS i`);

const results: Record<string, number | string> = { rows: ROWS };
try {
  // The schema without migration 4's indexes: versions 1-3, then 5.
  for (const m of MIGRATIONS.filter((m) => m.version <= 3)) {
    for (const statement of m.statements) await sql.unsafe(statement);
  }
  results.fill_s = Math.round(
    (await timed(async () => {
      for (let i = 0; i < ROWS; i += 1_000_000) await fill(i, Math.min(1_000_000, ROWS - i));
    })) / 1000,
  );
  await sql`VACUUM ANALYZE user_logins`;
  const lookupKey = (await sql`SELECT masked_ip FROM user_logins LIMIT 1`)[0]?.masked_ip as string;
  const measure = async (label: string) => {
    results[`${label}_view_ips_ms`] = await timed(
      () => sql`SELECT count(*) FROM user_logins_duplicate_ips`,
    );
    results[`${label}_view_devices_ms`] = await timed(
      () => sql`SELECT count(*) FROM user_logins_duplicate_devices`,
    );
    results[`${label}_lookup_ms`] = await timed(
      () => sql`SELECT * FROM user_logins WHERE masked_ip = ${lookupKey}`,
      5,
    );
    let next = ROWS + (label === "with" ? 200_000 : 0);
    results[`${label}_insert_100k_ms`] = await timed(async () => {
      for (let i = 0; i < 100; i++, next += 1000) await fill(next, 1000);
    });
  };
  await measure("without");
  const built = await timed(async () => {
    const applied = await migrate(sql, { schema, stateSchema });
    if (!applied.some((m) => m.version === 4)) throw new Error("migration 4 not applied");
  });
  results.build_indexes_s = Math.round(built / 1000);
  const [sizes] = await sql<{ table_mb: number; ip_mb: number; device_mb: number }[]>`
    SELECT (pg_relation_size('user_logins') / 1048576)::int AS table_mb,
           (pg_relation_size('user_logins_masked_ip') / 1048576)::int AS ip_mb,
           (pg_relation_size('user_logins_masked_device_id') / 1048576)::int AS device_mb`;
  Object.assign(results, sizes);
  await sql`VACUUM ANALYZE user_logins`;
  await measure("with");
  results.postgres = (await sql`SHOW server_version`)[0]?.server_version as string;
  results.date = new Date().toISOString().slice(0, 10);
} finally {
  await sql.end();
  await admin.unsafe(`DROP SCHEMA IF EXISTS ${stateSchema} CASCADE`);
  await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
  await admin.end();
}

const report = [
  ...Object.entries(results).map(([k, v]) => `${k.padEnd(28)} ${v}`),
  JSON.stringify(results),
];
// deno-lint-ignore no-console
console.log(report.join("\n"));
await Deno.writeTextFile(
  new URL("results/analysts.json", import.meta.url),
  JSON.stringify(results, null, 2) + "\n",
);
