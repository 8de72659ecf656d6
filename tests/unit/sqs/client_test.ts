// Unit tests of src/sqs/client.ts: resolveSqsEndpoint() precedence, isAwsHost(),
// loopbackForLocalhost(), and the endpoint and region an AWS queue URL sets.
import assert from "node:assert/strict";
import {
  ACK_SOCKETS,
  createSqsClient,
  isAwsHost,
  loopbackForLocalhost,
  resolveSqsEndpoint,
  type SqsEndpoint,
} from "../../../src/sqs/client.ts";
import { chunkBySize } from "../../../src/sqs/_batch.ts";
import { isTransientAwsError } from "../../../src/sqs/_errors.ts";

const LOCAL_QUEUE = "http://localhost:4566/000000000000/login-queue";
const AWS_QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/login-queue";

Deno.test("resolveSqsEndpoint() picks the endpoint by precedence", async (t) => {
  const cases: {
    name: string;
    queueUrl: string;
    env: Record<string, string>;
    expected: SqsEndpoint;
  }[] = [
    {
      name: "takes AWS_ENDPOINT_URL_SQS over AWS_ENDPOINT_URL and the queue URL",
      queueUrl: "http://queue-host:1111/0/q",
      env: { AWS_ENDPOINT_URL_SQS: "http://sqs-host:2222", AWS_ENDPOINT_URL: "http://global:3333" },
      expected: { endpoint: "http://sqs-host:2222", source: "AWS_ENDPOINT_URL_SQS" },
    },
    {
      name: "takes AWS_ENDPOINT_URL over the queue URL",
      queueUrl: "http://queue-host:1111/0/q",
      env: { AWS_ENDPOINT_URL: "http://global:3333" },
      expected: { endpoint: "http://global:3333", source: "AWS_ENDPOINT_URL" },
    },
    {
      name: "takes AWS_ENDPOINT_URL_SQS even for an AWS queue URL",
      queueUrl: AWS_QUEUE,
      env: { AWS_ENDPOINT_URL_SQS: "http://emulator:4566" },
      expected: { endpoint: "http://emulator:4566", source: "AWS_ENDPOINT_URL_SQS" },
    },
    {
      name: "skips an empty AWS_ENDPOINT_URL_SQS",
      queueUrl: "http://queue-host:1111/0/q",
      env: { AWS_ENDPOINT_URL_SQS: "", AWS_ENDPOINT_URL: "http://global:3333" },
      expected: { endpoint: "http://global:3333", source: "AWS_ENDPOINT_URL" },
    },
    {
      name: "uses the queue URL's origin for a non-AWS host",
      queueUrl: "http://queue-host:1111/000000000000/q",
      env: {},
      expected: { endpoint: "http://queue-host:1111", source: "queue-url" },
    },
    {
      name: "leaves an AWS queue URL to the SDK",
      queueUrl: AWS_QUEUE,
      env: {},
      expected: { endpoint: undefined, source: "aws" },
    },
    {
      name: "leaves an AWS China queue URL to the SDK",
      queueUrl: "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
      env: {},
      expected: { endpoint: undefined, source: "aws" },
    },
    {
      name: "ignores endpoint variables when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true",
      queueUrl: "http://queue-host:1111/0/q",
      env: {
        AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "true",
        AWS_ENDPOINT_URL_SQS: "http://sqs-host:2222",
        AWS_ENDPOINT_URL: "http://global:3333",
      },
      expected: { endpoint: "http://queue-host:1111", source: "queue-url" },
    },
    {
      name: "reads AWS_IGNORE_CONFIGURED_ENDPOINT_URLS case-insensitively",
      queueUrl: AWS_QUEUE,
      env: { AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "TRUE", AWS_ENDPOINT_URL: "http://global:3333" },
      expected: { endpoint: undefined, source: "aws" },
    },
    {
      name: "honours endpoint variables when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is false",
      queueUrl: AWS_QUEUE,
      env: { AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: "false", AWS_ENDPOINT_URL: "http://global:3333" },
      expected: { endpoint: "http://global:3333", source: "AWS_ENDPOINT_URL" },
    },
    {
      name: "maps a localhost queue URL to 127.0.0.1 keeping the port",
      queueUrl: LOCAL_QUEUE,
      env: {},
      expected: { endpoint: "http://127.0.0.1:4566", source: "queue-url" },
    },
    {
      name: "maps an emulator's sqs.us-east-1.localhost queue URL to 127.0.0.1",
      queueUrl: "http://sqs.us-east-1.localhost:4566/000000000000/login-queue",
      env: {},
      expected: { endpoint: "http://127.0.0.1:4566", source: "queue-url" },
    },
    {
      name: "maps a localhost AWS_ENDPOINT_URL_SQS to 127.0.0.1",
      queueUrl: AWS_QUEUE,
      env: { AWS_ENDPOINT_URL_SQS: "http://localhost:9324/" },
      expected: { endpoint: "http://127.0.0.1:9324", source: "AWS_ENDPOINT_URL_SQS" },
    },
  ];
  for (const c of cases) {
    await t.step(`resolveSqsEndpoint() ${c.name}`, () => {
      assert.deepEqual(resolveSqsEndpoint(c.queueUrl, c.env), c.expected);
    });
  }
});

Deno.test("isAwsHost() recognises AWS hosts and only them", async (t) => {
  const cases = [
    { host: "sqs.us-east-1.amazonaws.com", expected: true },
    { host: "amazonaws.com", expected: true },
    { host: "sqs.cn-north-1.amazonaws.com.cn", expected: true },
    { host: "sqs.us-east-1.api.aws", expected: true },
    { host: "sqs.us-east-1.amazonaws.com.", expected: true },
    { host: "sqs.eu-west-1.api.aws.", expected: true },
    { host: "localhost", expected: false },
    { host: "127.0.0.1", expected: false },
    { host: "amazonaws.com.evil.example.", expected: false },
    { host: "sqs.us-east-1.amazonaws.com..", expected: false },
    { host: "sqs.us-east-1.localhost", expected: false },
    { host: "amazonaws.com.evil.example", expected: false },
    { host: "evilamazonaws.com", expected: false },
    { host: "notapi.aws", expected: false },
    { host: "api.aws.example", expected: false },
  ];
  for (const c of cases) {
    await t.step(`isAwsHost() is ${c.expected} for ${c.host}`, () => {
      assert.equal(isAwsHost(c.host), c.expected);
    });
  }
});

Deno.test("loopbackForLocalhost() dials 127.0.0.1 for localhost names, keeping scheme and port", async (t) => {
  const cases = [
    { url: "http://localhost:4566/000000000000/q", expected: "http://127.0.0.1:4566" },
    { url: "http://sqs.us-east-1.localhost:4566/0/q", expected: "http://127.0.0.1:4566" },
    { url: "https://localhost/q", expected: "https://127.0.0.1" },
    { url: "http://LOCALHOST:9324", expected: "http://127.0.0.1:9324" },
    { url: "http://emulator:4566/0/q", expected: "http://emulator:4566" },
    { url: "http://notlocalhost:4566/0/q", expected: "http://notlocalhost:4566" },
    { url: "http://localhost.example:4566/0/q", expected: "http://localhost.example:4566" },
    { url: "http://[::1]:4566/0/q", expected: "http://[::1]:4566" },
    { url: "http://sqs.us-east-1.localhost.:4566/0/q", expected: "http://127.0.0.1:4566" },
  ];
  for (const c of cases) {
    await t.step(`loopbackForLocalhost() maps ${c.url} to ${c.expected}`, () => {
      assert.equal(loopbackForLocalhost(c.url), c.expected);
    });
  }
});

Deno.test("chunkBySize() cuts at 10 items or the byte cap, whichever comes first, and sends an oversized item alone", () => {
  const sizes = (chunks: number[][]) => chunks.map((c) => c.join("+"));
  assert.deepEqual(sizes(chunkBySize([1, 2, 3], 10, 100, (n) => n)), ["1+2+3"]);
  assert.deepEqual(
    sizes(chunkBySize([60, 30, 20, 50, 200, 10], 10, 100, (n) => n)),
    ["60+30", "20+50", "200", "10"],
  );
  const many = Array.from({ length: 25 }, () => 1);
  assert.deepEqual(chunkBySize(many, 10, 1000, (n) => n).map((c) => c.length), [10, 10, 5]);
  assert.deepEqual(chunkBySize([], 10, 100, (n: number) => n), []);
  // Order and contents are kept.
  const items = [5, 90, 7, 3, 100, 1];
  assert.deepEqual(chunkBySize(items, 10, 100, (n) => n).flat(), items);
});

Deno.test("createSqsClient() resolves an AWS queue URL's own endpoint and region, whatever region is configured", async (t) => {
  const cases = [
    [
      "https://sqs.eu-west-1.amazonaws.com/1/q",
      "eu-west-1",
      "https://sqs.eu-west-1.amazonaws.com/",
    ],
    [
      "https://sqs-fips.us-east-2.amazonaws.com/1/q",
      "us-east-2",
      "https://sqs-fips.us-east-2.amazonaws.com/",
    ],
    ["https://sqs.ap-south-1.api.aws/1/q", "ap-south-1", "https://sqs.ap-south-1.api.aws/"],
    [
      "https://sqs.cn-north-1.amazonaws.com.cn/1/q",
      "cn-north-1",
      "https://sqs.cn-north-1.amazonaws.com.cn/",
    ],
    [
      "https://eu-west-3.queue.amazonaws.com/1/q",
      "eu-west-3",
      "https://sqs.eu-west-3.amazonaws.com/",
    ],
    ["https://queue.amazonaws.com/1/q", "us-east-1", "https://sqs.us-east-1.amazonaws.com/"],
  ] as const;
  for (const [queueUrl, region, endpoint] of cases) {
    await t.step(
      `createSqsClient() signs ${queueUrl} for ${region} and sends it to ${endpoint}`,
      async () => {
        const overrides: string[] = [];
        const { client, region: chosen } = await createSqsClient({
          queueUrl,
          region: "sa-east-1",
          protocol: "json",
          awsEnv: {},
          waitSeconds: 1,
          onRegionOverridden: (o) => overrides.push(`${o.configured}->${o.region}`),
        });
        try {
          assert.equal(chosen.region, region);
          assert.equal(await client.config.region(), region);
          // The client's own endpoint rules, fed its own settings.
          const resolved = client.config.endpointProvider({
            Region: await client.config.region(),
            UseFIPS: await client.config.useFipsEndpoint(),
            UseDualStack: await client.config.useDualstackEndpoint(),
          });
          assert.equal(resolved.url.href, endpoint);
          assert.deepEqual(overrides, [`sa-east-1->${region}`]);
        } finally {
          client.destroy();
        }
      },
    );
  }
});

Deno.test("createSqsClient() treats a trailing-dot AWS host as AWS: its region, the SDK's endpoint, no dummy pair", async () => {
  const overrides: string[] = [];
  const connection = await createSqsClient({
    queueUrl: "https://sqs.eu-west-1.amazonaws.com./123456789012/q",
    region: "us-east-1",
    protocol: "json",
    awsEnv: {},
    waitSeconds: 1,
    onRegionOverridden: (o) => overrides.push(`${o.configured}->${o.region}`),
  });
  try {
    assert.equal(connection.region.region, "eu-west-1");
    assert.equal(connection.region.source, "queue URL");
    assert.equal(await connection.client.config.region(), "eu-west-1");
    assert.deepEqual(overrides, ["us-east-1->eu-west-1"]);
    // The SDK's own endpoint: and with it the SDK's credential chain, never
    // the emulators' test/test (given only for a non-AWS endpoint).
    assert.deepEqual(connection.endpoint, { endpoint: undefined, source: "aws" });
    assert.equal(connection.client.config.endpoint, undefined);
  } finally {
    connection.client.destroy();
  }
});

Deno.test("isTransientAwsError() never waits out a permission the runtime refused", async (t) => {
  const fault = (name: string, $fault: "client" | "server") =>
    Object.assign(new Error(name), { name, $fault });
  const cases: { name: string; error: unknown; expected: boolean }[] = [
    {
      name: "NotCapable (a sys permission the flags lack)",
      error: new Deno.errors.NotCapable('Requires sys access to "ca"'),
      expected: false,
    },
    {
      name: "PermissionDenied",
      error: new Deno.errors.PermissionDenied("denied"),
      expected: false,
    },
    { name: "a refused connection", error: new Error("connect ECONNREFUSED"), expected: true },
    { name: "a server fault", error: fault("InternalError", "server"), expected: true },
    { name: "a missing queue", error: fault("QueueDoesNotExist", "client"), expected: false },
  ];
  for (const c of cases) {
    await t.step(`isTransientAwsError() is ${c.expected} for ${c.name}`, () => {
      assert.equal(isTransientAwsError(c.error), c.expected);
    });
  }
});

Deno.test("createSqsClient() sizes the connection pool to the receive loops plus ACK_SOCKETS, else keeps the SDK's 50", async () => {
  /** The node:http and node:https agents the SDK's handler will use. */
  const agentsOf = async (receivers?: number) => {
    const { client } = await createSqsClient({
      queueUrl: LOCAL_QUEUE,
      region: "us-east-1",
      protocol: "json",
      awsEnv: {},
      waitSeconds: 1,
      ...(receivers === undefined ? {} : { receivers }),
    });
    try {
      // The handler's resolved config (SDK internals: what it hands node:http).
      const handler = client.config.requestHandler as unknown as {
        configProvider: Promise<{
          httpAgentProvider: () => Promise<{ maxSockets: number }>;
          httpsAgent: { maxSockets: number };
        }>;
      };
      const config = await handler.configProvider;
      return {
        http: (await config.httpAgentProvider()).maxSockets,
        https: config.httpsAgent.maxSockets,
      };
    } finally {
      client.destroy();
    }
  };
  assert.deepEqual(await agentsOf(128), { http: 128 + ACK_SOCKETS, https: 128 + ACK_SOCKETS });
  assert.deepEqual(await agentsOf(8), { http: 8 + ACK_SOCKETS, https: 8 + ACK_SOCKETS });
  assert.deepEqual(await agentsOf(), { http: 50, https: 50 });
});
