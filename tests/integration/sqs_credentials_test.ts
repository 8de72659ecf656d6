// Refused credentials as the real SDK client meets them, in process: every
// AWS refusal (a 403 in either protocol, as AWS words it) becomes one
// CredentialsError (code sqs_credentials, never transient) after a single
// request, whichever call met it, while a refused connection, throttling, a
// server fault and a missing queue keep their own kinds. The endpoints are
// fauxqs (JSON) and local-aws-sqs (Query) behind a refusing proxy; the client
// signs with the emulators' pair, so no credential chain runs.

import assert from "node:assert/strict";
import { CreateQueueCommand, SQSClient } from "@aws-sdk/client-sqs";
import { AwsQueryProtocol } from "@aws-sdk/core/protocols";
import { CredentialsError, SqsError } from "../../src/errors.ts";
import { readQueueAttributes } from "../../src/sqs/admin.ts";
import type { SqsProtocol } from "../../src/config/configs.ts";
import { createSqsClient } from "../../src/sqs/client.ts";
import { deleteMessages } from "../../src/sqs/ack.ts";
import { receiveMessages } from "../../src/sqs/receive.ts";
import { startSqs } from "../helpers/services.ts";
import { startLocalAwsSqs } from "../helpers/sqs_endpoints.ts";
import {
  type Fault,
  type RefusalCode,
  REFUSALS,
  startSqsFaultProxy,
} from "../helpers/sqs_fault_proxy.ts";

/** The error `readQueueAttributes` throws through `proxy`, and how many requests it took. */
async function attributesError(
  endpoint: string,
  fault: Fault,
  protocol: SqsProtocol,
): Promise<{ error: unknown; requests: number }> {
  await using proxy = await startSqsFaultProxy(endpoint, () => fault);
  const queueUrl = `${proxy.endpoint}/000000000000/login-queue`;
  const { client } = await createSqsClient({
    queueUrl,
    region: null,
    protocol,
    awsEnv: {},
    waitSeconds: 1,
  });
  try {
    await readQueueAttributes(client, queueUrl);
    return { error: null, requests: proxy.signed.length };
  } catch (error) {
    return { error, requests: proxy.signed.length };
  } finally {
    client.destroy();
  }
}

Deno.test("every AWS refusal, in JSON and in Query, is one CredentialsError after one request", async (t) => {
  await using sqs = await startSqs();
  sqs.server.createQueue("login-queue");
  const query = await startLocalAwsSqs();
  try {
    const admin = new SQSClient({
      region: "us-east-1",
      endpoint: query.endpoint,
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
      protocol: new AwsQueryProtocol({
        defaultNamespace: "com.amazonaws.sqs",
        xmlNamespace: "http://queue.amazonaws.com/doc/2012-11-05/",
        version: "2012-11-05",
      }),
    });
    await admin.send(new CreateQueueCommand({ QueueName: "login-queue" }));
    admin.destroy();
    const cases: [string, string, Fault, SqsProtocol, string][] = [];
    for (const code of Object.keys(REFUSALS) as RefusalCode[]) {
      cases.push([`${code} (JSON)`, sqs.endpoint, { refuse: code }, "json", code]);
      cases.push([`${code} (Query)`, query.endpoint, { refuse: code }, "query", code]);
      const type = REFUSALS[code].type.split("#")[1] as string;
      cases.push([
        `${type} (JSON, no x-amzn-query-error)`,
        sqs.endpoint,
        { refuse: code, headerless: true },
        "json",
        type,
      ]);
    }
    for (const [name, endpoint, fault, protocol, awsCode] of cases) {
      await t.step(name, async () => {
        const { error, requests } = await attributesError(endpoint, fault, protocol);
        assert.ok(error instanceof CredentialsError, String(error));
        assert.equal(error.code, "sqs_credentials");
        assert.equal(error.awsCode, awsCode);
        assert.equal(error.transient, false);
        assert.equal(error.exitCode, 1);
        assert.equal(requests, 1, "the SDK did not retry it");
        assert.match(error.message, /emulator pair test\/test/);
      });
    }
  } finally {
    await query.stop();
  }
});

Deno.test("a refused connection, throttling, a server fault and a missing queue are not credential failures", async (t) => {
  await using sqs = await startSqs();
  sqs.server.createQueue("login-queue");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closed = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  listener.close();
  const cases: [string, () => Promise<unknown>, boolean][] = [
    ["a closed port (ECONNREFUSED)", async () => {
      const { client } = await createSqsClient({
        queueUrl: `${closed}/000000000000/login-queue`,
        region: null,
        protocol: "json",
        awsEnv: {},
        waitSeconds: 1,
      });
      try {
        return await readQueueAttributes(client, `${closed}/000000000000/login-queue`)
          .catch((e) => e);
      } finally {
        client.destroy();
      }
    }, true],
    [
      "throttling",
      async () => (await attributesError(sqs.endpoint, "throttle", "json")).error,
      true,
    ],
    ["HTTP 500", async () => (await attributesError(sqs.endpoint, "error500", "json")).error, true],
    ["a missing queue", async () => {
      const url = `${sqs.endpoint}/000000000000/missing`;
      const { client } = await createSqsClient({
        queueUrl: url,
        region: null,
        protocol: "json",
        awsEnv: {},
        waitSeconds: 1,
      });
      try {
        return await readQueueAttributes(client, url).catch((e) => e);
      } finally {
        client.destroy();
      }
    }, false],
  ];
  for (const [name, run, transient] of cases) {
    await t.step(name, async () => {
      const error = await run();
      assert.ok(error instanceof SqsError, String(error));
      assert.ok(!(error instanceof CredentialsError));
      assert.equal(error.code, "sqs_queue");
      assert.equal(error.transient, transient);
    });
  }
});

Deno.test("receives throw the CredentialsError; deletes report the refusal's code per message", async () => {
  await using sqs = await startSqs();
  sqs.server.createQueue("login-queue");
  const ids = ["a", "b", "c"].map((body) => sqs.server.sendMessage("login-queue", body).messageId);
  await using proxy = await startSqsFaultProxy(sqs.endpoint);
  const queueUrl = `${proxy.endpoint}/000000000000/login-queue`;
  const { client } = await createSqsClient({
    queueUrl,
    region: null,
    protocol: "json",
    awsEnv: {},
    waitSeconds: 0,
  });
  try {
    const { messages } = await receiveMessages(client, queueUrl, { max: 10, waitSeconds: 0 });
    assert.deepEqual(messages.map((m) => m.id).sort(), [...ids].sort());
    proxy.policy = () => ({ refuse: "ExpiredToken" });
    await assert.rejects(
      receiveMessages(client, queueUrl, { max: 10, waitSeconds: 0 }),
      (e) => e instanceof CredentialsError && e.awsCode === "ExpiredToken",
    );
    const result = await deleteMessages(client, queueUrl, messages);
    assert.deepEqual(result.succeeded, []);
    assert.deepEqual(result.failed.map((f) => f.code), [
      "ExpiredToken",
      "ExpiredToken",
      "ExpiredToken",
    ]);
    proxy.policy = () => "pass";
    const retry = await deleteMessages(client, queueUrl, messages);
    assert.equal(retry.succeeded.length, 3);
  } finally {
    client.destroy();
  }
});
