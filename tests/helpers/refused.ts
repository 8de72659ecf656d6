// Shared by the tests of rows the database refuses and of --reject-queue-url
// (tests/integration/refused_test.ts, reject_queue_test.ts,
// reject_queue_endpoints_test.ts): a login body, thirty valid logins around
// one more, drain (in process) against a test schema, and every message
// of a queue received and deleted.

import type { CliResult } from "./cli.ts";
import { runInProcess } from "./in_process.ts";
import { DATABASE_URL, startSqs, TEST_SECRET, type TestDb } from "./services.ts";

/** A valid login body of `user` (the same ip and device id for all). */
export const login = (
  user: string,
  deviceType = "android",
  extra: Record<string, unknown> = {},
): string =>
  JSON.stringify({
    user_id: user,
    app_version: "2.3.0",
    device_type: deviceType,
    ip: "203.0.113.9",
    locale: "RU",
    device_id: "593-47-5928",
    ...extra,
  });

/** Thirty good logins, and one more built by `bad`, in the middle. */
export function thirtyAndOne(bad: string): string[] {
  const good = Array.from({ length: 30 }, (_, i) => login(`user-${i}`));
  return [...good.slice(0, 15), bad, ...good.slice(15)];
}

/**
 * `drain --summary-json` into `db` with the test key, run by `main` in this
 * process (the same exit code, summary and log lines as the CLI's; drain's
 * CLI cases are in tests/cli/cli_test.ts).
 */
export async function drain(
  db: TestDb,
  queueUrl: string,
  extraEnv: Record<string, string> = {},
): Promise<CliResult> {
  return await runInProcess(["drain", "--queue-url", queueUrl, "--summary-json"], {
    DATABASE_URL,
    ...db.env,
    PII_HMAC_KEY: TEST_SECRET,
    LOGIN_ETL_LOG_FORMAT: "json",
    LOGIN_ETL_MAX_RETRY_SECONDS: "2",
    ...extraEnv,
  });
}

/** Every message on a queue, received with the stock SDK and deleted. */
export async function receiveAll(
  sqs: Awaited<ReturnType<typeof startSqs>>,
  queueUrl: string,
): Promise<{ body: string; attributes: Record<string, string> }[]> {
  const { ReceiveMessageCommand, DeleteMessageBatchCommand } = await import("@aws-sdk/client-sqs");
  const all: { body: string; attributes: Record<string, string> }[] = [];
  for (;;) {
    const { Messages = [] } = await sqs.client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        MessageAttributeNames: ["All"],
      }),
    );
    if (Messages.length === 0) return all;
    for (const m of Messages) {
      all.push({
        body: m.Body ?? "",
        attributes: Object.fromEntries(
          Object.entries(m.MessageAttributes ?? {}).map(([k, v]) => [k, v.StringValue ?? ""]),
        ),
      });
    }
    await sqs.client.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
      }),
    );
  }
}
