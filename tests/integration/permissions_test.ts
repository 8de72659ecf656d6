// Paths through the libraries that the other CLI tests do not take, run with
// the binary's permission flags: no HOME (the AWS SDK then asks the OS for
// the uid and home directory) and the database user and password from PG*
// variables (postgres.js reads them).

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { runCli } from "../helpers/cli.ts";
import { DATABASE_URL, enqueue, freshSchema, startSqs, TEST_SECRET } from "../helpers/services.ts";

Deno.test("drain under the binary's permissions with HOME empty and credentials in PGUSER/PGPASSWORD", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, [...generateBodies(100, { badRatio: 0.1, seed: 5 })]);
  const url = new URL(DATABASE_URL);
  const bare = new URL(DATABASE_URL);
  bare.username = "";
  bare.password = "";
  const result = await runCli(["drain", "--queue-url", queueUrl, "--summary-json"], {
    env: {
      HOME: "",
      PII_HMAC_KEY: TEST_SECRET,
      DATABASE_URL: bare.toString(),
      PGUSER: decodeURIComponent(url.username),
      PGPASSWORD: decodeURIComponent(url.password),
      ...db.env,
    },
  });
  assert.equal(result.code, 0, result.stderr.slice(-2000));
  const summary = JSON.parse(result.stdout);
  assert.equal(summary.received, 100);
  assert.equal(summary.deleted, 100);
  assert.doesNotMatch(result.stderr, /NotCapable/);
});
