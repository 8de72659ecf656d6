// --sqs-protocol: auto switches once, and only on an answer that shows a
// protocol mismatch; every other failure keeps its own meaning. Errors come
// from the real SDK talking to real endpoints (or, for answers no endpoint we
// can start gives, a loopback server returning exactly that answer).

import assert from "node:assert/strict";
import { GetQueueAttributesCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { consume } from "../../src/commands/_consume.ts";
import type { SqsProtocol } from "../../src/config/configs.ts";
import { createSqsClient } from "../../src/sqs/client.ts";
import { protocolMismatch } from "../../src/sqs/_errors.ts";
import { deleteMessages } from "../../src/sqs/ack.ts";
import { readQueueAttributes } from "../../src/sqs/admin.ts";
import { failureLine, runCli } from "../helpers/cli.ts";
import {
  capturingTelemetry,
  DATABASE_URL,
  freshSchema,
  reportFigures,
  TEST_SECRET,
  testConfig,
  utcDaysSince,
} from "../helpers/services.ts";
import { startEndpoint } from "../helpers/sqs_endpoints.ts";
import { startSqsFaultProxy } from "../helpers/sqs_fault_proxy.ts";

const neverStop = new AbortController().signal;

/** The error the real SDK client raises for one GetQueueAttributes against `queueUrl`. */
async function sdkError(queueUrl: string, protocol: SqsProtocol = "json"): Promise<unknown> {
  const { client } = await createSqsClient({
    queueUrl,
    region: "us-east-1",
    protocol,
    awsEnv: {},
    waitSeconds: 1,
  });
  try {
    await client.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["All"] }),
    );
    return null;
  } catch (error) {
    return error;
  } finally {
    client.destroy();
  }
}

/** A loopback server that answers every request with one fixed response. */
function fixedAnswer(
  status: number,
  type: string,
  body: string,
  headers: Record<string, string> = {},
) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      await request.body?.cancel();
      return new Response(body, { status, headers: { "content-type": type, ...headers } });
    },
  );
  return {
    queueUrl: `http://127.0.0.1:${server.addr.port}/000000000000/q`,
    stop: () => server.shutdown(),
  };
}

Deno.test("protocolMismatch() names answers of a Query-only endpoint and nothing else", async (t) => {
  await t.step("LocalStack < 3.0's HTTP 500 with XML is a mismatch", async () => {
    await using legacy = await startEndpoint("legacy-localstack");
    const queueUrl = await legacy.createQueue();
    const why = protocolMismatch(await sdkError(queueUrl));
    // The SDK consumes the body; the reason names the phrase when it can read it.
    assert.match(why ?? "", /Operation detection failed|HTTP 500 with an XML body/);
  });
  const fixed: [string, number, string, string, RegExp | null][] = [
    [
      "an HTML page where JSON was expected",
      502,
      "text/html",
      "<html><body>Bad gateway</body></html>",
      /HTML body/,
    ],
    ["HTTP 415", 415, "text/plain", "Unsupported Media Type", /HTTP 415/],
    [
      "bad credentials (a JSON error) are not",
      400,
      "application/x-amz-json-1.0",
      JSON.stringify({
        __type: "com.amazon.coral.service#UnrecognizedClientException",
        message: "The security token included in the request is invalid.",
      }),
      null,
    ],
    [
      "access denied (a JSON error) is not",
      403,
      "application/x-amz-json-1.0",
      JSON.stringify({
        __type: "com.amazonaws.sqs#AccessDeniedException",
        message: "not authorized",
      }),
      null,
    ],
  ];
  for (const [name, status, type, body, expected] of fixed) {
    await t.step(name, async () => {
      const server = fixedAnswer(status, type, body);
      try {
        const error = await sdkError(server.queueUrl);
        assert.ok(error instanceof Error);
        const why = protocolMismatch(error);
        if (expected === null) assert.equal(why, null, `${error.name}: ${error.message}`);
        else assert.match(why ?? "", expected);
      } finally {
        await server.stop();
      }
    });
  }
  await t.step("a missing queue is not", async () => {
    await using sqs = await startEndpoint("fauxqs");
    const error = await sdkError(`${sqs.endpoint}/000000000000/no-such-queue`);
    assert.ok(error instanceof Error);
    assert.match(error.name, /QueueDoesNotExist|NonExistentQueue/);
    assert.equal(protocolMismatch(error), null);
  });
  await t.step("throttling is not", async () => {
    await using sqs = await startEndpoint("fauxqs");
    const queueUrl = await sqs.createQueue();
    await using proxy = await startSqsFaultProxy(sqs.endpoint, () => "throttle");
    const error = await sdkError(queueUrl.replace(sqs.endpoint, proxy.endpoint));
    assert.ok(error instanceof Error);
    assert.match(error.name, /Throttl/);
    assert.equal(protocolMismatch(error), null);
  });
  await t.step("a closed port is not", async () => {
    const error = await sdkError("http://127.0.0.1:1/000000000000/q");
    assert.ok(error instanceof Error);
    assert.equal(protocolMismatch(error), null);
  });
});

Deno.test("auto never switches on other failures: each keeps its own message", async (t) => {
  await using sqs = await startEndpoint("fauxqs");
  const queueUrl = await sqs.createQueue();
  await using throttling = await startSqsFaultProxy(sqs.endpoint, () => "throttle");
  const denied = fixedAnswer(
    400,
    "application/x-amz-json-1.0",
    JSON.stringify({
      __type: "com.amazon.coral.service#UnrecognizedClientException",
      message: "The security token included in the request is invalid.",
    }),
  );
  const cases: [string, string, RegExp][] = [
    ["missing queue", `${sqs.endpoint}/000000000000/missing`, /does not exist/],
    ["closed port", "http://127.0.0.1:1/000000000000/q", /Cannot reach queue/],
    ["throttling", queueUrl.replace(sqs.endpoint, throttling.endpoint), /Throttl/],
    ["bad credentials", denied.queueUrl, /UnrecognizedClientException|security token/],
  ];
  try {
    for (const [name, url, message] of cases) {
      await t.step(name, async () => {
        const switches: string[] = [];
        const connection = await createSqsClient({
          queueUrl: url,
          region: "us-east-1",
          protocol: "auto",
          awsEnv: {},
          waitSeconds: 1,
          onProtocolSwitch: (reason) => switches.push(reason),
        });
        try {
          await assert.rejects(readQueueAttributes(connection.client, url), message);
          assert.deepEqual(switches, []);
          assert.equal(connection.protocol(), "json");
        } finally {
          connection.client.destroy();
        }
      });
    }
  } finally {
    await denied.stop();
  }
});

Deno.test("auto against a Query-only endpoint: calls racing the first answer all succeed, and it switches once", async () => {
  await using legacy = await startEndpoint("legacy-localstack");
  const queueUrl = await legacy.createQueue();
  await legacy.send(queueUrl, Array.from({ length: 30 }, (_, i) => `m${i}`));
  const switches: string[] = [];
  const { client, protocol } = await createSqsClient({
    queueUrl,
    region: null,
    protocol: "auto",
    awsEnv: {},
    waitSeconds: 1,
    onProtocolSwitch: (reason) => switches.push(reason),
  });
  try {
    const answers = await Promise.all(
      Array.from(
        { length: 8 },
        () =>
          client.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 })),
      ),
    );
    const got = answers.reduce((n, a) => n + (a.Messages?.length ?? 0), 0);
    reportFigures("racing first calls", { messages: got, json_requests: legacy.requests.json });
    assert.ok(got > 0);
    assert.equal(switches.length, 1);
    assert.equal(protocol(), "query");
    const jsonBefore = legacy.requests.json;
    await readQueueAttributes(client, queueUrl);
    // Deleting them also ends local-aws-sqs's visibility timers (the leak check).
    await deleteMessages(
      client,
      queueUrl,
      answers.flatMap((a) =>
        (a.Messages ?? []).map((m) => ({
          id: m.MessageId ?? "",
          receiptHandle: m.ReceiptHandle ?? "",
          body: "",
          sentAtMs: 0,
          dated: true,
          receiveCount: 1,
        }))
      ),
    );
    assert.equal(legacy.requests.json, jsonBefore, "no JSON request after the switch");
  } finally {
    client.destroy();
  }
});

Deno.test("--sqs-protocol json against a Query-only endpoint exits 1 with one line naming the fix; query drains it", async () => {
  await using legacy = await startEndpoint("legacy-localstack");
  await using db = await freshSchema();
  const queueUrl = await legacy.createQueue();
  await legacy.send(queueUrl, [JSON.stringify({
    "user_id": "u1",
    "app_version": "1.0.0",
    "device_type": "ios",
    ip: "192.0.2.1",
    locale: null,
    "device_id": "d1",
  })]);
  const env = { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, ...db.env };
  const json = await runCli(["drain", "--queue-url", queueUrl, "--sqs-protocol", "json"], { env });
  assert.equal(json.code, 1, json.stderr);
  assert.match(
    failureLine(json),
    /^error: Cannot reach queue .*speaks the SQS Query protocol only: use --sqs-protocol query/,
  );
  const query = await runCli(
    ["drain", "--queue-url", queueUrl, "--summary-json"],
    { env: { ...env, LOGIN_ETL_SQS_PROTOCOL: "query" } },
  );
  assert.equal(query.code, 0, query.stderr);
  assert.equal(JSON.parse(query.stdout).inserted, 1);
  assert.doesNotMatch(
    query.stderr,
    /SqsProtocolSwitched/,
    "query from the start: nothing to switch",
  );
});

Deno.test("LocalStack's three queue URL styles reach a Query-only endpoint with no extra flag", async (t) => {
  await using legacy = await startEndpoint("legacy-localstack");
  await using db = await freshSchema();
  const port = new URL(legacy.endpoint).port;
  const styles = [
    (name: string) => `http://localhost:${port}/000000000000/${name}`,
    (name: string) =>
      `http://sqs.us-east-1.localhost.localstack.cloud:${port}/000000000000/${name}`,
    (name: string) => `http://localhost:${port}/queue/us-east-1/000000000000/${name}`,
  ];
  for (const style of styles) {
    const queueUrl = await legacy.createQueue();
    const name = queueUrl.split("/").pop() ?? "";
    const url = style(name);
    await t.step(url.replace(name, "<queue>"), async () => {
      await legacy.send(
        queueUrl,
        Array.from({ length: 12 }, (_, i) =>
          JSON.stringify({
            "user_id": `${name}-${i}`,
            "app_version": "1.0.0",
            "device_type": "ios",
            ip: `192.0.2.${i}`,
            locale: null,
            "device_id": `d${i}`,
          })),
      );
      const { telemetry, lines } = capturingTelemetry();
      const summary = await consume(
        testConfig("drain", { "queue-url": url, "database-url": DATABASE_URL, ...db.flags }),
        { telemetry, stop: neverStop, writeStdout: () => {} },
      );
      assert.equal(summary.inserted, 12);
      assert.equal(summary.deleted, 12);
      assert.deepEqual(await legacy.counts(queueUrl), { ready: 0, inFlight: 0 });
      const started = lines.map((l) => JSON.parse(l)).find((l) => l.event === "RunStarted");
      assert.equal(started?.region, "us-east-1");
      assert.equal(started?.sqs_protocol, "query (auto)");
    });
  }
});

Deno.test("an endpoint that sends no SentTimestamp: one warning per run naming the date used, rows dated by receipt", async () => {
  const since = Date.now();
  await using legacy = await startEndpoint("legacy-localstack", { stripSentTimestamp: true });
  await using db = await freshSchema();
  const queueUrl = await legacy.createQueue();
  await legacy.send(
    queueUrl,
    Array.from({ length: 35 }, (_, i) =>
      JSON.stringify({
        "user_id": `u${i}`,
        "app_version": "1.0.0",
        "device_type": "ios",
        ip: `192.0.2.${i}`,
        locale: null,
        "device_id": `d${i}`,
      })),
  );
  const { telemetry, lines } = capturingTelemetry();
  const summary = await consume(
    testConfig("drain", { "queue-url": queueUrl, "database-url": DATABASE_URL, ...db.flags }),
    { telemetry, stop: neverStop, writeStdout: () => {} },
  );
  assert.equal(summary.inserted, 35);
  const warnings = lines.map((l) => JSON.parse(l)).filter((l) =>
    l.event === "SentTimestampMissing"
  );
  assert.equal(warnings.length, 1, "once per run, not per message");
  // Dated by receipt: today, or either side of midnight UTC in a run that crosses it.
  const receipt = utcDaysSince(since);
  assert.ok(receipt.includes(warnings[0]?.date_used), warnings[0]?.date_used);
  const days = await db.sql`SELECT DISTINCT create_date::text AS day FROM user_logins`;
  for (const { day } of days) assert.ok(receipt.includes(day), day);
});
