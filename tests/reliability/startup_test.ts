// Start-up as a failover meets it, through the CLI with the binary's
// permissions: Postgres refusing or resetting connections at start is
// retried with backoff, each attempt logged, for --max-retry-seconds, and the
// run goes on when it comes back; what waiting cannot fix (a wrong password,
// a missing queue) fails at once.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { failureLine, runCli, spawnCli } from "../helpers/cli.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
} from "../helpers/services.ts";
import { targetOf, TcpProxy, viaProxy } from "../helpers/tcp_proxy.ts";

/** A loopback port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

const startupRetries = (stderr: string) =>
  stderr.split("\n").filter((l) => l.includes('"stage":"startup"'));

Deno.test("run retries a database that refuses connections for about --max-retry-seconds, then exits 1 with one line", async () => {
  await using sqs = await startSqs();
  const queueUrl = sqs.createQueue();
  const dead = `postgres://postgres:postgres@127.0.0.1:${closedPort()}/postgres?sslmode=disable`;
  const started = performance.now();
  const result = await runCli(["run", "--queue-url", queueUrl, "--max-retry-seconds", "4"], {
    env: { DATABASE_URL: dead, PII_HMAC_KEY: TEST_SECRET, LOGIN_ETL_LOG_FORMAT: "json" },
  });
  const seconds = (performance.now() - started) / 1000;
  const retries = startupRetries(result.stderr);
  reportFigures("run, database refused at start", {
    seconds: Math.round(seconds * 10) / 10,
    attempts_logged: retries.length,
  });
  assert.equal(result.code, 1, result.stderr);
  // About the retry time, plus process start-up (slow on a loaded machine).
  assert.ok(seconds >= 4 && seconds < 25, `${seconds} s`);
  assert.ok(retries.length >= 3, `${retries.length} retries logged`);
  for (const line of retries) {
    const event = JSON.parse(line) as {
      level: string;
      event: string;
      retry_in_ms: number;
      msg: string;
    };
    assert.equal(event.event, "StageFailed");
    assert.equal(event.level, "warn");
    assert.ok(event.retry_in_ms > 0 && event.retry_in_ms <= 5000);
    assert.match(event.msg, /^database not ready at start \(Cannot connect to Postgres at /);
  }
  assert.match(
    failureLine(result),
    /^error: Cannot connect to Postgres at .*ECONNREFUSED.* \(gave up after \d+ attempts in 4 s, --max-retry-seconds\)$/,
  );
});

Deno.test("drain waits for a database that comes back during start-up, then drains everything", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, [...generateBodies(200, { badRatio: 0, seed: 3 })]);
  await using proxy = TcpProxy.start(targetOf(DATABASE_URL));
  proxy.setMode("reset"); // every connection closed, as during a failover
  const child = spawnCli(["drain", "--queue-url", queueUrl, "--summary-json"], {
    DATABASE_URL: viaProxy(DATABASE_URL, proxy),
    ...db.env,
    PII_HMAC_KEY: TEST_SECRET,
    LOGIN_ETL_LOG_FORMAT: "json",
    LOGIN_ETL_MAX_RETRY_SECONDS: "60",
  });
  await new Promise((resolve) => setTimeout(resolve, 2500));
  proxy.setMode("pass");
  const output = await child.output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  const summary = JSON.parse(new TextDecoder().decode(output.stdout)) as { inserted: number };
  assert.equal(summary.inserted, 200);
  const retries = startupRetries(stderr);
  reportFigures("drain, database back after 2.5 s", { attempts_logged: retries.length });
  assert.ok(retries.length >= 2, `${retries.length} retries logged`);
});

Deno.test("a wrong password and a missing queue fail at once, whatever --max-retry-seconds says", async () => {
  await using sqs = await startSqs();
  const queueUrl = sqs.createQueue();
  const wrong = new URL(DATABASE_URL);
  wrong.hostname = "127.0.0.1";
  wrong.password = "not-the-password";
  for (
    const [label, args, env, message] of [
      [
        "wrong password",
        ["drain", "--queue-url", queueUrl],
        { DATABASE_URL: wrong.toString() },
        /^error: Cannot connect to Postgres at .*password authentication failed/,
      ],
      [
        "missing queue",
        ["run", "--queue-url", `${sqs.endpoint}/000000000000/no-such-queue`],
        { DATABASE_URL },
        /^error: Queue .*no-such-queue does not exist: create it, or run login-etl seed, or fix --queue-url$/,
      ],
    ] as const
  ) {
    const started = performance.now();
    const result = await runCli([...args, "--max-retry-seconds", "60"], {
      env: { ...env, PII_HMAC_KEY: TEST_SECRET, LOGIN_ETL_LOG_FORMAT: "json" },
    });
    const seconds = (performance.now() - started) / 1000;
    assert.equal(result.code, 1, `${label}: ${result.stderr}`);
    assert.match(failureLine(result), message, label);
    assert.deepEqual(startupRetries(result.stderr), [], `${label}: not retried`);
    assert.ok(seconds < 10, `${label}: ${seconds} s`);
  }
});
