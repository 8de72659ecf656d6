/**
 * `seed`: sends synthetic login events, or those of a sample file such as
 * the exercise's sample_data.json.gz, to the queue, creating the queue when
 * it is missing; then says what it sent.
 *
 * @module
 */

import type { SeedConfig } from "../config/resolve.ts";
import { redactSecrets } from "../errors.ts";
import { type CommandIo, printResult } from "./_io.ts";
import { seed } from "./_seed.ts";

/** Runs `seed`. */
export async function seedCommand(config: SeedConfig, io: CommandIo): Promise<void> {
  const summary = await seed(config, io.telemetry);
  printResult(io, config.summaryJson, summary, [
    redactSecrets(
      config.samplePath === null
        ? `Sent ${summary.sent} messages to ${config.queueUrl} (seed ${summary.seed}).`
        : `Sent ${summary.sent} messages from ${config.samplePath} to ${config.queueUrl}.`,
    ),
  ]);
}
