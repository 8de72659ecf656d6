/**
 * The bounded-run and dry-run cases of bounded_test.ts, for one SQS endpoint
 * kind: `boundedTests(kind)` registers them. One test file per kind
 * (bounded_test.ts: fauxqs, bounded_local_aws_test.ts: local-aws-sqs), so two
 * jobs run them.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  DeleteMessageBatchCommand,
  type QueueAttributeName,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { type CliResult, runCli } from "./cli.ts";
import { DATABASE_URL, freshSchema, reportFigures, TEST_SECRET } from "./services.ts";
import { type EndpointKind, startEndpoint, type TestEndpoint } from "./sqs_endpoints.ts";

/** The summary fields these tests read. */
interface Summary {
  readonly received: number;
  readonly inserted: number;
  readonly redelivered: number;
  readonly rejected: number;
  readonly deleted: number;
  readonly "in_flight": number;
  readonly returned: number;
  readonly "return_failed": number;
  readonly "stopped_at_bound": string | null;
}

/** `n` bodies, every seventh one not JSON (a reject), so rows and rejects both count. */
export function bodies(n: number, tag: string): string[] {
  return Array.from({ length: n }, (_, i) =>
    i % 7 === 3 ? `not json ${tag} ${i}` : JSON.stringify({
      "user_id": `${tag}-${i}`,
      "app_version": "2.3.0",
      "device_type": "ios",
      ip: `198.51.100.${i % 250}`,
      locale: "RU",
      "device_id": `${tag}-dev-${i}`,
    }));
}

/** The environment of a CLI run: test key and database, explicit AWS credentials, no metadata. */
function cliEnv(schema: string): Record<string, string> {
  return {
    PII_HMAC_KEY: TEST_SECRET,
    DATABASE_URL,
    LOGIN_ETL_SCHEMA: schema,
    LOGIN_ETL_LOG_FORMAT: "json",
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    AWS_REGION: "us-east-1",
  };
}

/** Runs the CLI, failing the test (not hanging it) if it has not ended after `limitMs`. */
export async function cli(
  args: readonly string[],
  schema: string,
  limitMs = 90_000,
): Promise<CliResult & { readonly ms: number }> {
  const started = performance.now();
  const result = await runCli(args, { env: cliEnv(schema), signal: AbortSignal.timeout(limitMs) });
  return { ...result, ms: Math.round(performance.now() - started) };
}

/** The last stdout line: the --summary-json object. */
function summaryOf(result: CliResult): Summary {
  const lines = result.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1] ?? "{}") as Summary;
}

/** The event lines of stderr named `event`. */
function events(result: CliResult, event: string): Record<string, unknown>[] {
  return result.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
    .filter((l) => l.event === event);
}

async function rowCount(sql: { unsafe(q: string): Promise<unknown[]> }): Promise<number> {
  const [row] = (await sql.unsafe("SELECT count(*)::int AS n FROM user_logins")) as { n: number }[];
  return row?.n ?? -1;
}

/** Registers each case on endpoints of `kind`. */
export function boundedTests(kind: EndpointKind): void {
  Deno.test(`${kind}: drain --max-messages 137 --concurrency 8 takes exactly 137 of 500, exits 0 and leaves 363 visible, none in flight`, async () => {
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    const queueUrl = await sqs.createQueue();
    await sqs.send(queueUrl, bodies(500, "m"));

    const bounded = await cli(
      [
        "drain",
        "--queue-url",
        queueUrl,
        "--max-messages",
        "137",
        "--concurrency",
        "8",
        "--summary-json",
      ],
      db.schema,
    );
    const counts = await sqs.counts(queueUrl);
    assert.equal(bounded.code, 0, bounded.stderr.slice(-2000));
    const summary = summaryOf(bounded);
    reportFigures(`${kind} --max-messages 137 of 500`, { summary, counts, ms: bounded.ms });
    assert.equal(summary.inserted + summary.rejected, 137, "exactly 137 rows and rejects");
    assert.equal(summary.received, 137);
    assert.equal(summary.deleted, 137);
    assert.equal(summary.redelivered, 0);
    assert.equal(summary.stopped_at_bound, "max-messages");
    assert.equal(summary.return_failed, 0);
    assert.equal(await rowCount(db.sql), summary.inserted);
    assert.deepEqual(counts, { ready: 363, inFlight: 0 });
    const reached = events(bounded, "BoundReached");
    assert.equal(reached.length, 1);
    assert.equal(reached[0]?.bound, "max-messages");

    // The 363 left are whole: an unbounded drain takes them, each once.
    const rest = await cli(["drain", "--queue-url", queueUrl, "--summary-json"], db.schema);
    assert.equal(rest.code, 0, rest.stderr.slice(-2000));
    const after = summaryOf(rest);
    assert.equal(after.inserted + after.rejected, 363);
    assert.equal(after.redelivered, 0, "none of the 137 came back");
    assert.equal(after.stopped_at_bound, null);
    assert.equal(await rowCount(db.sql), summary.inserted + after.inserted);
    assert.deepEqual(await sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
  });

  Deno.test(`${kind}: drain --max-duration ends a drain that steady inflow keeps busy, exits 0 and leaves nothing in flight`, async () => {
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    const queueUrl = await sqs.createQueue();
    // A producer that never lets the queue run dry: without the bound, drain would not end.
    let sent = 0;
    let producing = true;
    const producer = (async () => {
      for (let wave = 0; producing; wave++) {
        sent += (await sqs.send(queueUrl, bodies(20, `w${wave}`))).length;
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    let result: CliResult & { readonly ms: number };
    try {
      result = await cli(
        // A long idle wait: only the bound, not a lull in the inflow, may end this drain.
        [
          "drain",
          "--queue-url",
          queueUrl,
          "--max-duration",
          "2s",
          "--idle-seconds",
          "10",
          "--summary-json",
        ],
        db.schema,
        60_000,
      );
    } finally {
      producing = false;
      await producer;
    }
    const counts = await sqs.counts(queueUrl);
    assert.equal(result.code, 0, result.stderr.slice(-2000));
    const summary = summaryOf(result);
    reportFigures(`${kind} --max-duration 2s under inflow`, {
      summary,
      counts,
      sent,
      ms: result.ms,
    });
    assert.equal(summary.stopped_at_bound, "max-duration");
    assert.equal(summary.return_failed, 0);
    assert.ok(summary.received > 0, "it drained while the producer sent");
    assert.equal(summary.inserted + summary.rejected, summary.received);
    assert.equal(summary.deleted, summary.received);
    // Every message sent is either written (once) or visible again: none is in flight.
    assert.equal(counts.inFlight, 0);
    assert.equal(counts.ready, sent - summary.received);
    assert.equal(await rowCount(db.sql), summary.inserted);
    // Start-up plus the 2 s bound plus the closing commit; a drain that ignored
    // the bound would run until the 60 s limit killed it.
    assert.ok(result.ms < 30_000, `ended after ${result.ms} ms`);
    assert.equal((await takeAll(sqs, queueUrl, counts.ready)).length, counts.ready);
  });

  Deno.test(`${kind}: run --max-messages stops at its bound like drain, with no long poll left waiting`, async () => {
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    const queueUrl = await sqs.createQueue();
    await sqs.send(queueUrl, bodies(120, "r"));
    // --wait-seconds stays at its 20 s default: a poll still waiting after the bound would show.
    const result = await cli(
      ["run", "--queue-url", queueUrl, "--max-messages", "50", "--summary-json"],
      db.schema,
    );
    const counts = await sqs.counts(queueUrl);
    assert.equal(result.code, 0, result.stderr.slice(-2000));
    const summary = summaryOf(result);
    reportFigures(`${kind} run --max-messages 50 of 120`, { summary, counts, ms: result.ms });
    assert.equal(summary.inserted + summary.rejected, 50);
    assert.equal(summary.deleted, 50);
    assert.equal(summary.stopped_at_bound, "max-messages");
    assert.deepEqual(counts, { ready: 70, inFlight: 0 });
    assert.ok(result.ms < 18_000, `ended after ${result.ms} ms`);
    assert.equal((await takeAll(sqs, queueUrl, 70)).length, 70);
  });

  Deno.test(`${kind}: run --max-duration on an empty queue ends by its bound, not after a 20 s long poll`, async () => {
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    const queueUrl = await sqs.createQueue();
    const result = await cli(
      ["run", "--queue-url", queueUrl, "--max-duration", "1s", "--summary-json"],
      db.schema,
    );
    assert.equal(result.code, 0, result.stderr.slice(-2000));
    const summary = summaryOf(result);
    reportFigures(`${kind} run --max-duration 1s, empty queue`, { ms: result.ms });
    assert.equal(summary.stopped_at_bound, "max-duration");
    assert.equal(summary.received, 0);
    assert.ok(result.ms < 18_000, `ended after ${result.ms} ms`);
  });

  Deno.test(`${kind}: drain --dry-run prints each of 300 messages once and leaves all 300 visible, none in flight`, async () => {
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    const queueUrl = await sqs.createQueue();
    const ids = await sqs.send(queueUrl, bodies(300, "d"));

    const result = await cli(["drain", "--queue-url", queueUrl, "--dry-run"], db.schema);
    const counts = await sqs.counts(queueUrl);
    assert.equal(result.code, 0, result.stderr.slice(-2000));
    const printed = result.stdout.trim().split("\n").map((l) => JSON.parse(l).message_id);
    assert.equal(printed.length, 300, "one line per message");
    assert.deepEqual(new Set(printed), new Set(ids), "each message, none twice");
    assert.deepEqual(counts, { ready: 300, inFlight: 0 });
    assert.equal(await tableCount(db.sql, db.schema), 0, "a dry run creates nothing");

    // What the dry run did to the receive counts: read each message once more.
    const receiveCounts = await takeAll(sqs, queueUrl, 300);
    assert.equal(receiveCounts.length, 300);
    const histogram: Record<string, number> = {};
    for (const n of receiveCounts) histogram[n] = (histogram[n] ?? 0) + 1;
    reportFigures(`${kind} ApproximateReceiveCount after a dry run and one read`, histogram);
    // One receive by the dry run and one by this read. local-aws-sqs also
    // counts ChangeMessageVisibility as a receive (SQS does not), hence 3 there.
    assert.deepEqual(histogram, { [kind === "local-aws-sqs" ? 3 : 2]: 300 });
  });
}

async function tableCount(
  sql: { unsafe(q: string, p: string[]): Promise<unknown[]> },
  schema: string,
): Promise<number> {
  const [row] = (await sql.unsafe(
    "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1",
    [schema],
  )) as { n: number }[];
  return row?.n ?? -1;
}

/**
 * Receives and deletes every message left, as a consumer would, and returns
 * each one's ApproximateReceiveCount at this receive. (Deleting also stops
 * local-aws-sqs's per-message timers, which the test sanitizers would report.)
 * Long polls until `expected` messages have come (two empty ones end it short
 * of that), then short polls until one comes back empty: a message more than
 * expected still shows, and no poll waits once the last has come.
 */
export async function takeAll(
  sqs: TestEndpoint,
  queueUrl: string,
  expected: number,
): Promise<number[]> {
  const client = new SQSClient({
    region: "us-east-1",
    endpoint: sqs.endpoint,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  try {
    const seen = new Map<string, number>();
    for (let empty = 0; empty < 2;) {
      const all = seen.size >= expected;
      const out = await client.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: all ? 0 : 1,
          VisibilityTimeout: 600,
          MessageSystemAttributeNames: ["ApproximateReceiveCount"],
          // local-aws-sqs knows only the older name.
          AttributeNames: ["ApproximateReceiveCount" as QueueAttributeName],
        }),
      );
      const messages = out.Messages ?? [];
      if (messages.length === 0 && all) break;
      empty = messages.length === 0 ? empty + 1 : 0;
      if (messages.length === 0) continue;
      for (const m of messages) {
        seen.set(m.MessageId ?? "", Number(m.Attributes?.ApproximateReceiveCount));
      }
      await client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
        }),
      );
    }
    return [...seen.values()];
  } finally {
    client.destroy();
  }
}
