// SQS's JSON protocol over plain fetch: the protocol ceiling of the
// benchmark, and a fast loader. Signing is skipped: emulators do not check it.

/** Calls one SQS action and returns its JSON answer. */
export async function call(
  endpoint: string,
  action: string,
  body: unknown,
): Promise<Record<string, unknown>> {
  const response = await fetch(endpoint, {
    method: "POST",
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amz-target": `AmazonSQS.${action}`,
      authorization:
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
    },
    body: JSON.stringify(body),
  });
  const json = await response.json() as Record<string, unknown>;
  if (!response.ok) throw new Error(`${action} failed: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/** Sends all bodies with `concurrency` SendMessageBatch calls in flight. */
export async function load(
  endpoint: string,
  queueUrl: string,
  bodies: readonly string[],
  concurrency = 16,
): Promise<void> {
  let next = 0;
  async function worker(): Promise<void> {
    while (next < bodies.length) {
      const part = bodies.slice(next, next + 10);
      next += part.length;
      await call(endpoint, "SendMessageBatch", {
        QueueUrl: queueUrl,
        Entries: part.map((body, i) => ({ Id: String(i), MessageBody: body })),
      });
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Receive(10) + DeleteMessageBatch loops over plain fetch until `total` messages are gone. */
export async function protocolLoop(
  endpoint: string,
  queueUrl: string,
  total: number,
  concurrency: number,
): Promise<number> {
  let done = 0;
  let finished = 0;
  const started = performance.now();
  async function worker(): Promise<void> {
    while (done < total) {
      const out = await call(endpoint, "ReceiveMessage", {
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        MessageSystemAttributeNames: ["SentTimestamp", "ApproximateReceiveCount"],
      });
      const messages = (out.Messages ?? []) as { ReceiptHandle: string }[];
      if (messages.length === 0) continue;
      await call(endpoint, "DeleteMessageBatch", {
        QueueUrl: queueUrl,
        Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
      });
      done += messages.length;
      finished = performance.now();
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  // Up to the last delete: the closing empty polls are not work.
  return (done * 1000) / (finished - started);
}
