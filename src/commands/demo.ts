/**
 * `demo`: everything in one process with nothing installed: an embedded SQS
 * endpoint and Postgres, a seeded queue, the real drain, and a report.
 *
 * @module
 */

import { type DemoConfig, resolveConfig } from "../config/resolve.ts";
import { connect } from "../db/pool.ts";
import { loadPgConnection, type PgTarget } from "../db/connection.ts";
import { loadSampleBodies } from "../seed/sample.ts";
import type { Summary, Telemetry } from "../ops/telemetry.ts";
import { consume } from "./consume.ts";
import { seed, type SeedSummary } from "./seed.ts";

/** What the demo prints as JSON with `--summary-json`. */
export interface DemoReport {
  readonly seeded: SeedSummary;
  readonly drained: Summary;
  readonly "rows_in_table": number;
  readonly "repeated_masked_ips": number;
  readonly "repeated_masked_device_ids": number;
  readonly "rejects_by_reason": Readonly<Record<string, number>>;
}

/**
 * fauxqs refuses characters above U+FFFF in bodies; JSON allows any character
 * to be written as escapes, so write those as surrogate-pair escapes.
 */
export function escapeAstral(body: string): string {
  return body.replace(/[\u{10000}-\u{10FFFF}]/gu, (c) => {
    const hi = c.charCodeAt(0).toString(16).padStart(4, "0");
    const lo = c.charCodeAt(1).toString(16).padStart(4, "0");
    return `\\u${hi}\\u${lo}`;
  });
}

/** Runs the demo and returns its report; `print` receives the human-readable lines. */
export async function demo(
  config: DemoConfig,
  io: {
    readonly telemetry: Telemetry;
    readonly stop: AbortSignal;
    readonly print: (line: string) => void;
  },
): Promise<DemoReport> {
  const { print, telemetry } = io;
  print("Starting an embedded SQS endpoint (fauxqs) and Postgres (PGlite, about 5 s)...");
  // Loaded only here: PGlite and fauxqs are large, and drain/run never need them.
  const { startEmbeddedPostgres, startEmbeddedSqs } = await import("../demo/embedded.ts");
  const [sqs, pg] = await Promise.all([startEmbeddedSqs(), startEmbeddedPostgres()]);
  try {
    const queueUrl = `${sqs.url}/000000000000/login-queue`;
    // A random HMAC key of this demo only, as a real drain would read it.
    const key = crypto.getRandomValues(new Uint8Array(32)).toBase64();
    // The embedded services, as a user would give them to drain and seed,
    // resolved and checked like theirs. PGlite serves one session, so one
    // writer in this thread (its pool then never needs a second connection
    // at a time).
    const env = { PII_HMAC_KEY: key };
    const services = { "queue-url": queueUrl, "sqs-protocol": "json" };
    const drainConfig = resolveConfig("drain", {
      ...config.drainFlags,
      ...services,
      "database-url": `${pg.url}?sslmode=disable`,
      writers: "1",
      "worker-threads": "0",
      "log-format": config.logFormat,
      "log-level": config.logLevel,
    }, env);
    const seedConfig = resolveConfig("seed", {
      ...services,
      count: String(config.count),
      "bad-ratio": String(config.badRatio),
      ...(config.seed === null ? {} : { seed: String(config.seed) }),
    }, env);
    const sample = config.samplePath === null
      ? undefined
      : (await loadSampleBodies(config.samplePath)).map(escapeAstral);
    const seeded = await seed(seedConfig, telemetry, sample);
    print(
      sample === undefined
        ? `Seeded ${seeded.sent} synthetic messages (seed ${seeded.seed}, ${
          Math.round(config.badRatio * 100)
        }% malformed).`
        : `Seeded ${seeded.sent} messages from ${config.samplePath}.`,
    );
    print(
      "Generated a random HMAC key for this demo: masks differ from run to run. Real runs take PII_HMAC_KEY.",
    );
    const drained = await consume(drainConfig, {
      telemetry,
      stop: io.stop,
      writeStdout: print,
    });
    print(
      `Drained in ${
        (drained.duration_ms / 1000).toFixed(1)
      } s: received ${drained.received}, inserted ${drained.inserted}, ` +
        `redelivered ${drained.redelivered}, rejected ${drained.rejected}, deleted ${drained.deleted}.`,
    );
    return { seeded, drained, ...(await report(drainConfig.database, print)) };
  } finally {
    await Promise.all([sqs.stop(), pg.stop()]);
  }
}

async function report(database: PgTarget, print: (line: string) => void) {
  const sql = connect({ connection: await loadPgConnection(database), schema: "public", max: 1 });
  try {
    const rows = await sql<Record<string, unknown>[]>`
      SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date::text
      FROM user_logins LIMIT 5`;
    const [counts] = await sql<{ rows: number; ips: number; devices: number }[]>`
      SELECT (SELECT count(*)::int FROM user_logins) AS rows,
             (SELECT count(*)::int FROM (SELECT masked_ip FROM user_logins GROUP BY 1 HAVING count(*) > 1) a) AS ips,
             (SELECT count(*)::int FROM (SELECT masked_device_id FROM user_logins GROUP BY 1 HAVING count(*) > 1) d) AS devices`;
    const rejects = await sql<{ reason: string; n: number }[]>`
      SELECT reason, count(*)::int AS n FROM login_etl_rejects GROUP BY reason ORDER BY n DESC, reason`;
    print("");
    print("A few rows of user_logins:");
    for (const line of table(rows)) print(`  ${line}`);
    print("");
    print(`Masked IPs occurring more than once: ${counts?.ips ?? 0}`);
    print(`Masked device ids occurring more than once: ${counts?.devices ?? 0}`);
    if (rejects.length > 0) {
      print(
        `Rejected, by reason (table login_etl_rejects): ${
          rejects.map((r) => `${r.reason} ${r.n}`).join(", ")
        }`,
      );
    }
    return {
      rows_in_table: counts?.rows ?? 0,
      repeated_masked_ips: counts?.ips ?? 0,
      repeated_masked_device_ids: counts?.devices ?? 0,
      rejects_by_reason: Object.fromEntries(rejects.map((r) => [r.reason, r.n])),
    };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Rows as an aligned text table. */
function table(rows: readonly Record<string, unknown>[]): string[] {
  const first = rows[0];
  if (first === undefined) return ["(no rows)"];
  const columns = Object.keys(first);
  const cells = rows.map((row) => columns.map((c) => (row[c] === null ? "null" : String(row[c]))));
  const widths = columns.map((c, i) =>
    Math.max(c.length, ...cells.map((r) => (r[i] ?? "").length))
  );
  const line = (values: string[]) =>
    values.map((v, i) => v.padEnd(widths[i] ?? 0)).join(" | ").trimEnd();
  return [line(columns), widths.map((w) => "-".repeat(w)).join("-+-"), ...cells.map(line)];
}
