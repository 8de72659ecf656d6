// Bounded runs and dry runs through the CLI, on fauxqs (local-aws-sqs:
// bounded_local_aws_test.ts; the cases are in tests/helpers/bounded.ts) (`deno run` with the binary's
// permission flags) against SQS emulators we did not write: --max-messages
// takes exactly N and leaves the rest visible, --max-duration ends a drain
// that steady inflow would keep going, `run` stops at its bound like drain,
// and a dry run prints each message once and leaves the queue as it was.
// Every verdict is read from the emulator right after the process exits:
// ApproximateNumberOfMessages (visible) and ...NotVisible (in flight).

import assert from "node:assert/strict";
import { bodies, boundedTests, cli, takeAll } from "../helpers/bounded.ts";
import { freshSchema } from "../helpers/services.ts";
import { startEndpoint } from "../helpers/sqs_endpoints.ts";

boundedTests("fauxqs");

Deno.test("fauxqs: run --dry-run prints each message once, gives each back, and ends when only printed messages come round", async () => {
  await using sqs = await startEndpoint("fauxqs");
  await using db = await freshSchema();
  const queueUrl = await sqs.createQueue();
  const ids = await sqs.send(queueUrl, bodies(40, "rd"));
  const result = await cli(["run", "--queue-url", queueUrl, "--dry-run"], db.schema);
  const counts = await sqs.counts(queueUrl);
  assert.equal(result.code, 0, result.stderr.slice(-2000));
  const printed = result.stdout.trim().split("\n").map((l) => JSON.parse(l).message_id);
  assert.equal(printed.length, 40);
  assert.deepEqual(new Set(printed), new Set(ids));
  assert.deepEqual(counts, { ready: 40, inFlight: 0 });
  assert.equal((await takeAll(sqs, queueUrl, 40)).length, 40);
});
