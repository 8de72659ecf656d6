// SQS endpoints we did not write, behind one interface, so the same drain test
// runs against each: fauxqs (JSON only), local-aws-sqs (JSON and Query, with
// LocalStack-style URLs), and local-aws-sqs behind a proxy that answers every
// JSON-protocol request as LocalStack < 3.0 does (HTTP 500, an XML error).

import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  SendMessageBatchCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { AwsQueryProtocol } from "@aws-sdk/core/protocols";
import { startFauxqs } from "fauxqs";
import { createSqsServer } from "local-aws-sqs";
import { uniqueName } from "./services.ts";

/** Which implementation answers, and what it speaks. */
export type EndpointKind = "fauxqs" | "local-aws-sqs" | "legacy-localstack";

/** The kinds, in the order tests run them. */
export const ENDPOINT_KINDS: readonly EndpointKind[] = [
  "fauxqs",
  "local-aws-sqs",
  "legacy-localstack",
];

/** A running SQS endpoint and stock-SDK helpers to fill and inspect its queues. */
export interface TestEndpoint extends AsyncDisposable {
  readonly kind: EndpointKind;
  /** `http://127.0.0.1:PORT`, what a queue URL starts with. */
  readonly endpoint: string;
  /** Requests by protocol as the legacy proxy saw them (others report 0); helpers send Query. */
  readonly requests: { json: number; query: number };
  /** Creates a fresh queue and returns its URL, `<endpoint>/000000000000/<name>`. */
  createQueue(attributes?: Record<string, string>): Promise<string>;
  /** Sends bodies with SendMessageBatch, as a producer would. */
  send(queueUrl: string, bodies: readonly string[]): Promise<string[]>;
  /** Messages by state, from GetQueueAttributes. */
  counts(queueUrl: string): Promise<{ ready: number; inFlight: number }>;
}

/** The SDK's Query protocol for SQS, for the helpers' own client. */
function queryProtocol(): AwsQueryProtocol {
  return new AwsQueryProtocol({
    defaultNamespace: "com.amazonaws.sqs",
    xmlNamespace: "http://queue.amazonaws.com/doc/2012-11-05/",
    version: "2012-11-05",
  });
}

/** LocalStack < 3.0's answer to any JSON-protocol request, as users report it. */
export const LEGACY_JSON_ANSWER =
  `<?xml version='1.0' encoding='utf-8'?>\n<ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><Error><Code>InternalError</Code><Message>exception while calling sqs with unknown operation: Operation detection failed. Missing Action in request for query-protocol service ServiceModel(sqs).</Message></Error><RequestId>0f4c4f8e-legacy</RequestId></ErrorResponse>`;

/** Options of the legacy proxy. */
export interface LegacyProxyOptions {
  /** Port to listen on (0: any free one). */
  readonly port?: number;
  /** Drop SentTimestamp from ReceiveMessage answers, as some old endpoints do. */
  readonly stripSentTimestamp?: boolean;
}

/**
 * A proxy in front of a Query-speaking endpoint that refuses JSON the way
 * LocalStack < 3.0 does and passes Query requests through unchanged.
 */
export function startLegacyProxy(
  upstream: string,
  options: LegacyProxyOptions = {},
): { endpoint: string; requests: { json: number; query: number }; stop(): Promise<void> } {
  const requests = { json: 0, query: 0 };
  // A client of the proxy's own, closed on stop: a connection it kept alive
  // to the upstream would hold local-aws-sqs's close() open (3 minutes, seen
  // when test files run in parallel).
  const upstreamClient = Deno.createHttpClient({});
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: options.port ?? 0, onListen: () => {} },
    async (request) => {
      const type = request.headers.get("content-type") ?? "";
      if (type.includes("x-amz-json") || request.headers.has("x-amz-target")) {
        requests.json++;
        await request.body?.cancel();
        return new Response(LEGACY_JSON_ANSWER, {
          status: 500,
          headers: { "content-type": "text/xml" },
        });
      }
      requests.query++;
      const url = new URL(request.url);
      const target = new URL(url.pathname + url.search, upstream);
      const headers = new Headers(request.headers);
      headers.delete("host");
      const answer = await fetch(target, {
        client: upstreamClient,
        method: request.method,
        headers,
        body: request.method === "GET" ? null : await request.arrayBuffer(),
      });
      let body = await answer.text();
      if (options.stripSentTimestamp === true) {
        body = body.replace(
          /<Attribute>\s*<Name>SentTimestamp<\/Name>\s*<Value>\d+<\/Value>\s*<\/Attribute>/g,
          "",
        );
      }
      const out = new Headers(answer.headers);
      out.delete("content-length");
      out.delete("content-encoding");
      return new Response(body, { status: answer.status, headers: out });
    },
  );
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    requests,
    async stop() {
      await server.shutdown();
      upstreamClient.close();
    },
  };
}

/** Stock-SDK helpers over `client` for an endpoint whose queues live at `endpoint`. */
function sdkHelpers(
  client: SQSClient,
  endpoint: string,
  options: { readonly countIncludesInFlight: boolean },
) {
  return {
    async createQueue(attributes: Record<string, string> = {}): Promise<string> {
      const name = uniqueName("q").replaceAll("_", "-");
      await client.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
      return `${endpoint}/000000000000/${name}`;
    },
    async send(queueUrl: string, bodies: readonly string[]): Promise<string[]> {
      const ids: string[] = [];
      for (let i = 0; i < bodies.length; i += 10) {
        const part = bodies.slice(i, i + 10);
        const out = await client.send(
          new SendMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: part.map((body, j) => ({ Id: String(j), MessageBody: body })),
          }),
        );
        if ((out.Failed ?? []).length > 0) {
          throw new Error(`send refused: ${out.Failed?.[0]?.Code}`);
        }
        const byId = new Map((out.Successful ?? []).map((s) => [s.Id, s.MessageId ?? ""]));
        part.forEach((_, j) => ids.push(byId.get(String(j)) ?? ""));
      }
      return ids;
    },
    async counts(queueUrl: string): Promise<{ ready: number; inFlight: number }> {
      const out = await client.send(
        new GetQueueAttributesCommand({
          QueueUrl: queueUrl,
          AttributeNames: [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
          ],
        }),
      );
      const a = out.Attributes ?? {};
      const inFlight = Number(a.ApproximateNumberOfMessagesNotVisible ?? 0);
      const listed = Number(a.ApproximateNumberOfMessages ?? 0);
      return {
        ready: (options.countIncludesInFlight ? listed - inFlight : listed) +
          Number(a.ApproximateNumberOfMessagesDelayed ?? 0),
        inFlight,
      };
    },
  };
}

function sdkClient(endpoint: string, protocol: "json" | "query"): SQSClient {
  return new SQSClient({
    region: "us-east-1",
    endpoint,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
    ...(protocol === "query" ? { protocol: queryProtocol() } : {}),
  });
}

/**
 * local-aws-sqs counts in-flight messages in ApproximateNumberOfMessages too
 * (SQS counts only visible ones), so ready = that minus NotVisible.
 */
const LOCAL_AWS_SQS_COUNTS = { countIncludesInFlight: true } as const;

/** Starts local-aws-sqs on a free loopback port with LocalStack's account id. */
export async function startLocalAwsSqs(): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const server = await createSqsServer({
    port: 0,
    hostname: "127.0.0.1",
    accountId: "000000000000",
    // Tests create and drop many queues; AWS's 60 s name cool-down only slows them.
    emulateQueueCreationLifecycle: false,
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Starts one endpoint of `kind` on loopback. Use with `await using`. */
export async function startEndpoint(
  kind: EndpointKind,
  options: LegacyProxyOptions = {},
): Promise<TestEndpoint> {
  if (kind === "fauxqs") {
    const server = await startFauxqs({ port: 0, logger: false, host: "127.0.0.1" });
    const endpoint = `http://127.0.0.1:${server.port}`;
    const client = sdkClient(endpoint, "json");
    return {
      kind,
      endpoint,
      requests: { json: 0, query: 0 },
      ...sdkHelpers(client, endpoint, { countIncludesInFlight: false }),
      async [Symbol.asyncDispose]() {
        client.destroy();
        await server.stop();
      },
    };
  }
  const upstream = await startLocalAwsSqs();
  if (kind === "local-aws-sqs") {
    const client = sdkClient(upstream.endpoint, "json");
    return {
      kind,
      endpoint: upstream.endpoint,
      requests: { json: 0, query: 0 },
      ...sdkHelpers(client, upstream.endpoint, LOCAL_AWS_SQS_COUNTS),
      async [Symbol.asyncDispose]() {
        client.destroy();
        await upstream.stop();
      },
    };
  }
  const proxy = startLegacyProxy(upstream.endpoint, options);
  const client = sdkClient(proxy.endpoint, "query");
  return {
    kind,
    endpoint: proxy.endpoint,
    requests: proxy.requests,
    ...sdkHelpers(client, proxy.endpoint, LOCAL_AWS_SQS_COUNTS),
    async [Symbol.asyncDispose]() {
      client.destroy();
      await proxy.stop();
      await upstream.stop();
    },
  };
}
