// An SQS client ceiling as its own process, so that it pays for its own
// start and its CPU is counted apart: `concurrency` loops of
// ReceiveMessage(10) + DeleteMessageBatch until `total` messages are gone, no
// processing. Two clients:
//   stock    the program users would otherwise write: `new SQSClient(...)`
//            with nothing but region, endpoint and credentials set;
//   project  login-etl's own client (src/sqs/client.ts) and calls.
// Usage: deno run -A bench/ceiling.ts stock|project QUEUE_URL TOTAL CONCURRENCY
// Prints one JSON line: {"client", "msgs_per_s", "cpu_ms"}, and "ready" on
// stderr as its loops start (bench/latency.ts counts CPU from there).

import process from "node:process";
import {
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { deleteMessages } from "../src/sqs/ack.ts";
import { createSqsClient } from "../src/sqs/client.ts";
import { receiveMessages } from "../src/sqs/receive.ts";

const [kind, queueUrl = "", totalText = "0", concurrencyText = "8"] = Deno.args;
const total = Number(totalText);
const concurrency = Number(concurrencyText);
// A count that is not one (`auto`, say) would start no loop and report 0 msg/s.
if (!Number.isInteger(concurrency) || concurrency < 1) {
  throw new Error(`CONCURRENCY must be a whole number of loops, got ${concurrencyText}`);
}
const endpoint = new URL(queueUrl).origin;

/** One loop's step: receive up to 10 and delete them; how many were done. */
type Step = () => Promise<number>;

function stockStep(): { step: Step; close: () => void } {
  const client = new SQSClient({
    region: "us-east-1",
    endpoint,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  return {
    step: async () => {
      const { Messages = [] } = await client.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
        }),
      );
      if (Messages.length === 0) return 0;
      await client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: Messages.map((m: Message, i: number) => ({
            Id: String(i),
            ReceiptHandle: m.ReceiptHandle,
          })),
        }),
      );
      return Messages.length;
    },
    close: () => client.destroy(),
  };
}

async function projectStep(): Promise<{ step: Step; close: () => void }> {
  const { client } = await createSqsClient({
    queueUrl,
    region: "us-east-1",
    protocol: "json",
    awsEnv: {},
    waitSeconds: 1,
  });
  return {
    step: async () => {
      const { messages } = await receiveMessages(client, queueUrl, { max: 10, waitSeconds: 1 });
      if (messages.length === 0) return 0;
      await deleteMessages(client, queueUrl, messages);
      return messages.length;
    },
    close: () => client.destroy(),
  };
}

const { step, close } = kind === "stock" ? stockStep() : await projectStep();
Deno.stderr.writeSync(new TextEncoder().encode("ready\n"));
const cpuBefore = process.cpuUsage();
let done = 0;
const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (done < total) {
    // Not `done += await step()`: that reads `done` before the await, and the
    // loops would overwrite each other's counts.
    const n = await step();
    done += n;
  }
}));
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
close();
// deno-lint-ignore no-console
console.log(JSON.stringify({
  client: kind,
  msgs_per_s: Math.round(done / seconds),
  cpu_ms: Math.round((cpu.user + cpu.system) / 1000),
}));
