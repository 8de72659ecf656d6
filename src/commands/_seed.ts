/**
 * Sending a seed's messages, for `seed` and `demo`: synthetic login events,
 * or those of a sample file, sent to the queue, which is created when
 * missing.
 *
 * @module
 */

import type { SeedConfig } from "../config/resolve.ts";
import type { Telemetry } from "../ops/telemetry.ts";
import { generateBodies } from "../seed/generate.ts";
import { loadSampleBodies } from "../seed/sample.ts";
import { openQueue } from "../sqs/client.ts";
import { ensureQueue } from "../sqs/admin.ts";
import { sendBodies } from "../sqs/send.ts";

/** What a seed run did. */
export interface SeedSummary {
  readonly sent: number;
  readonly seed: number;
  readonly "bad_ratio": number;
  readonly "duration_ms": number;
}

/** A seed for reproducibility: the configured one, else a random one to print. */
export function pickSeed(configured: number | null): number {
  return configured ?? crypto.getRandomValues(new Uint32Array(1))[0]! % 2 ** 31;
}

/** Sends `bodies` (default: `config.count` synthetic ones) to the configured queue. */
export async function seed(
  config: SeedConfig,
  telemetry: Telemetry,
  bodies?: Iterable<string>,
): Promise<SeedSummary> {
  const started = performance.now();
  const seedValue = pickSeed(config.seed);
  const { client } = await openQueue({
    queueUrl: config.queueUrl,
    region: config.region,
    protocol: config.sqsProtocol,
    awsEnv: config.awsEnv,
    waitSeconds: 0,
  }, telemetry);
  try {
    await ensureQueue(client, config.queueUrl);
    const sample = bodies === undefined && config.samplePath !== null
      ? await loadSampleBodies(config.samplePath)
      : undefined;
    const given = bodies ?? sample;
    const source = given ??
      generateBodies(config.count, { badRatio: config.badRatio, seed: seedValue });
    const sent = await sendBodies(client, config.queueUrl, source, {
      concurrency: config.concurrency,
    });
    const summary = {
      sent,
      seed: seedValue,
      "bad_ratio": given === undefined ? config.badRatio : 0,
      "duration_ms": Math.round(performance.now() - started),
    };
    telemetry.emit({
      type: "QueueSeeded",
      sent,
      seed: seedValue,
      badRatio: summary.bad_ratio,
      durationMs: summary.duration_ms,
      queueUrl: config.queueUrl,
    });
    return summary;
  } finally {
    client.destroy();
  }
}
