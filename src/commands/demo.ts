/**
 * `demo`: everything in one process with nothing installed: an embedded SQS
 * endpoint and Postgres, a seeded queue, the real drain, and a report.
 *
 * @module
 */

import { type DemoConfig, resolveConfig } from "../config/resolve.ts";
import { Database } from "../db/pool.ts";
import { loadPgConnection } from "../db/connection.ts";
import { readReport, type Report } from "../db/report.ts";
import { writeStderr } from "../log.ts";
import { duration, grouped } from "../ops/human.ts";
import { loadSampleBodies } from "../seed/sample.ts";
import type { Summary } from "../ops/telemetry.ts";
import { consume } from "./_consume.ts";
import { type CommandIo, printResult } from "./_io.ts";
import { reportLines } from "./_report.ts";
import { seed, type SeedSummary } from "./_seed.ts";

/** What the demo prints as JSON with `--summary-json`. */
export interface DemoReport {
  readonly seeded: SeedSummary;
  readonly drained: Summary;
  readonly report: Report;
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

/**
 * Runs `demo`, telling a person what it does as it goes: on stdout, or on
 * stderr with `--summary-json`, where stdout holds only the final report.
 */
export async function demoCommand(config: DemoConfig, io: CommandIo): Promise<void> {
  const { telemetry } = io;
  const print = config.summaryJson ? writeStderr : io.writeStdout;
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
        ? `Seeded ${grouped(seeded.sent)} synthetic messages (seed ${seeded.seed}, ${
          Math.round(config.badRatio * 100)
        }% malformed).`
        : `Seeded ${grouped(seeded.sent)} messages from ${config.samplePath}.`,
    );
    print(
      "Made a random HMAC key for this demo, so masks differ per run; real runs take PII_HMAC_KEY.",
    );
    const drained = await consume(drainConfig, {
      telemetry,
      stop: io.stop,
      writeStdout: print,
    });
    print(
      `Drained in ${duration(drained.duration_ms)}: received ${grouped(drained.received)}, ` +
        `inserted ${grouped(drained.inserted)}, redelivered ${grouped(drained.redelivered)}, ` +
        `rejected ${grouped(drained.rejected)}, deleted ${grouped(drained.deleted)}.`,
    );
    const connection = await loadPgConnection(drainConfig.database);
    await using database = new Database({
      connection,
      schema: drainConfig.schema,
      stateSchema: drainConfig.stateSchema,
      max: 1,
    });
    const found = await readReport(database);
    print("");
    for (const line of reportLines(found)) print(line);
    print("");
    // Where to look next: the command for a real database, and the views
    // holding every repeat in full (the report shortens masks).
    print(
      "Next: `login-etl report` shows this for any database; the two views above list every repeat.",
    );
    const result: DemoReport = { seeded, drained, report: found.report };
    printResult(io, config.summaryJson, result);
  } finally {
    await Promise.all([sqs.stop(), pg.stop()]);
  }
}
