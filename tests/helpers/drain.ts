// Draining a queue in tests: in process (`consume` with the test config and
// a telemetry that keeps its log lines) or through the real CLI (`deno run`
// with the binary's permission flags), both against the test database; and
// the masker of the test key, to compute the masks a run must have written.

import assert from "node:assert/strict";
import { consume } from "../../src/commands/_consume.ts";
import type { FlagValues } from "../../src/config/resolve.ts";
import { Secret } from "../../src/secret.ts";
import { Masker } from "../../src/mask.ts";
import type { Summary, Telemetry } from "../../src/ops/telemetry.ts";
import { type CliResult, runCli } from "./cli.ts";
import {
  capturingTelemetry,
  DATABASE_URL,
  stateSchemaOf,
  TEST_SECRET,
  testConfig,
} from "./services.ts";

/** The masker of `secret` (the test key by default) under key id `k1`, as a run would build it. */
export async function testMasker(secret: string = TEST_SECRET): Promise<Masker> {
  return await Masker.create(new Secret(new TextEncoder().encode(secret), "test"), "k1");
}

/** How to start an in-process run. */
export interface ConsumeOptions {
  /** `drain` (default) ends when the queue is empty; `run` when `stop` aborts. */
  readonly command?: "drain" | "run";
  /** Flags besides --queue-url, --database-url, --schema and --state-schema, e.g. `{ "dry-run": true }`. */
  readonly flags?: FlagValues;
  /** Environment besides the test key, e.g. another `PII_HMAC_KEY`. */
  readonly env?: Record<string, string>;
  /** Aborts a `run`; never aborted by default. */
  readonly stop?: AbortSignal;
}

/** A finished in-process run and what it wrote. */
export interface ConsumeRun {
  readonly summary: Summary;
  readonly telemetry: Telemetry;
  /** Its log lines (JSON, level debug). */
  readonly logLines: readonly string[];
  /** Lines written to stdout: dry-run rows. */
  readonly stdoutLines: readonly string[];
}

/** An in-process run under way: its telemetry can be read before it ends. */
export interface StartedRun {
  readonly telemetry: Telemetry;
  readonly logLines: readonly string[];
  readonly stdoutLines: readonly string[];
  /** Settles when the run ends: its summary, or the error `consume` threw. */
  readonly done: Promise<ConsumeRun>;
}

/**
 * Starts `drain` (or `run`) in this process on `queueUrl` into `schema` of the
 * test database (and its state schema, `stateSchemaOf`), with the test key
 * and a telemetry that keeps its log lines.
 */
export function startConsume(
  queueUrl: string,
  schema: string,
  options: ConsumeOptions = {},
): StartedRun {
  const { telemetry, lines } = capturingTelemetry();
  const stdout: string[] = [];
  const config = testConfig(
    options.command ?? "drain",
    {
      "queue-url": queueUrl,
      "database-url": DATABASE_URL,
      schema,
      "state-schema": stateSchemaOf(schema),
      ...options.flags,
    },
    options.env,
  );
  const done = consume(config, {
    telemetry,
    stop: options.stop ?? new AbortController().signal,
    writeStdout: (line) => stdout.push(line),
  }).then((summary) => ({ summary, telemetry, logLines: lines, stdoutLines: stdout }));
  return { telemetry, logLines: lines, stdoutLines: stdout, done };
}

/** Drains `queueUrl` in this process into `schema`; see `startConsume`. */
export async function drainInProcess(
  queueUrl: string,
  schema: string,
  options: Omit<ConsumeOptions, "command" | "stop"> = {},
): Promise<ConsumeRun> {
  return await startConsume(queueUrl, schema, options).done;
}

/**
 * Runs `login-etl drain --queue-url <queueUrl> <args>` through the CLI into
 * `schema` of the test database with the test key, and asserts it exits 0.
 */
export async function drainCli(
  queueUrl: string,
  schema: string,
  options: { readonly args?: readonly string[]; readonly env?: Record<string, string> } = {},
): Promise<CliResult> {
  const result = await runCli(["drain", "--queue-url", queueUrl, ...options.args ?? []], {
    env: {
      PII_HMAC_KEY: TEST_SECRET,
      DATABASE_URL,
      LOGIN_ETL_SCHEMA: schema,
      LOGIN_ETL_STATE_SCHEMA: stateSchemaOf(schema),
      ...options.env,
    },
  });
  assert.equal(result.code, 0, result.stderr.slice(-2000));
  return result;
}
