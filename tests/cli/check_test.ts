// `login-etl check` against the real Postgres and third-party SQS endpoints
// (local-aws-sqs, and it behind the LocalStack<3 proxy that answers JSON with
// an error): 0 when all pass, 1 with the failing line when something is
// wrong, within 10 s when a service is unreachable, 2 for bad usage. Nothing
// is received or written.
// The healthy, unreachable, usage and AWS-endpoint cases run the CLI with the
// binary's permissions; the refusals of keys, privileges and reject queues
// run `main` in this process (tests/helpers/in_process.ts): same exit code
// and output, where the process adds nothing to what they check.

import assert from "node:assert/strict";
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { AwsQueryProtocol } from "@aws-sdk/core/protocols";
import { LATEST_VERSION, MIGRATIONS } from "../../src/db/migrations.ts";
import { migrate } from "../../src/db/schema.ts";
import { failureLine, runCli } from "../helpers/cli.ts";
import { runInProcess } from "../helpers/in_process.ts";
import {
  DATABASE_URL,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
  uniqueName,
} from "../helpers/services.ts";
import { startEndpoint } from "../helpers/sqs_endpoints.ts";

/** Receives and deletes every message with the stock SDK, speaking the endpoint's protocol. */
async function purge(endpoint: string, queueUrl: string, protocol: "json" | "query") {
  const client = new SQSClient({
    region: "us-east-1",
    endpoint,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
    ...(protocol === "query"
      ? {
        protocol: new AwsQueryProtocol({
          defaultNamespace: "com.amazonaws.sqs",
          xmlNamespace: "http://queue.amazonaws.com/doc/2012-11-05/",
          version: "2012-11-05",
        }),
      }
      : {}),
  });
  try {
    for (;;) {
      const { Messages = [] } = await client.send(
        new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }),
      );
      if (Messages.length === 0) return;
      await client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
        }),
      );
    }
  } finally {
    client.destroy();
  }
}

/** A loopback port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The check lines as [status, check] pairs, and the detail of each by check name. */
function linesOf(stdout: string): { pairs: [string, string][]; detail: Map<string, string> } {
  const pairs: [string, string][] = [];
  const detail = new Map<string, string>();
  for (const line of stdout.trim().split("\n")) {
    const match = /^(ok|fail|skip)\s+(.+?)\s{2,}(.*)$/.exec(line);
    assert.ok(match, `not a check line: ${line}`);
    pairs.push([match[1]!, match[2]!]);
    detail.set(match[2]!, match[3]!);
  }
  return { pairs, detail };
}

Deno.test("check passes on a healthy setup, names the protocol in use, and touches no message", async (t) => {
  await using db = await freshSchema();
  await migrate(db.sql, db);
  for (const kind of ["local-aws-sqs", "legacy-localstack"] as const) {
    await t.step(kind, async () => {
      await using sqs = await startEndpoint(kind);
      const queueUrl = await sqs.createQueue();
      await sqs.send(queueUrl, ['{"user_id":"a"}', '{"user_id":"b"}']);
      const env = {
        DATABASE_URL,
        ...db.env,
        SQS_QUEUE_URL: queueUrl,
        PII_HMAC_KEY: TEST_SECRET,
      };
      const result = await runCli(["check"], { env });
      assert.equal(result.code, 0, result.stdout + result.stderr);
      const { pairs, detail } = linesOf(result.stdout);
      assert.deepEqual(pairs.map(([s]) => s), pairs.map(() => "ok"));
      assert.deepEqual(pairs.map(([, c]) => c.startsWith("queue ") ? "queue" : c), [
        "hmac key",
        "vault key",
        "queue",
        "postgres",
        "schema",
        "schema rights",
        "privileges",
        "key registry",
        "hmac key ids",
      ]);
      const queue = detail.get(`queue ${queueUrl.split("/").pop()}`) ?? "";
      assert.match(
        queue,
        kind === "legacy-localstack" ? /protocol query \(auto, switched/ : /protocol json \(auto\)/,
      );
      assert.match(queue, /2 waiting, 0 in flight/);
      assert.match(detail.get("postgres") ?? "", /TLS on \(TLSv1\.[23]/);
      assert.match(
        detail.get("schema") ?? "",
        new RegExp(
          `^${db.schema} \\(state schema ${db.stateSchema}\\) at version ${LATEST_VERSION} \\(latest\\)$`,
        ),
      );
      assert.deepEqual(await sqs.counts(queueUrl), { ready: 2, inFlight: 0 }, "nothing received");
      const [rows] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM login_etl_keys`;
      assert.equal(rows?.n, 0, "nothing recorded");
      // local-aws-sqs keeps a retention timer per message it holds: empty the queue.
      await purge(sqs.endpoint, queueUrl, kind === "legacy-localstack" ? "query" : "json");
    });
  }
});

Deno.test("check fails with the reason, within 10 s, when Postgres or the queue is unreachable", async () => {
  await using sqs = await startEndpoint("local-aws-sqs");
  const queueUrl = await sqs.createQueue();
  const deadDb = `postgres://postgres:postgres@127.0.0.1:${closedPort()}/postgres?sslmode=disable`;
  const deadQueue = `http://127.0.0.1:${closedPort()}/000000000000/login-queue`;
  const figures: Record<string, number> = {};
  for (
    const [label, env, failing] of [
      [
        "database",
        { DATABASE_URL: deadDb, SQS_QUEUE_URL: queueUrl },
        /^fail\s+postgres\s+Cannot connect to Postgres at .*ECONNREFUSED/m,
      ],
      [
        "queue",
        { DATABASE_URL, SQS_QUEUE_URL: deadQueue },
        /^fail\s+queue login-queue\s+Cannot reach queue .*ECONNREFUSED/m,
      ],
    ] as const
  ) {
    const started = performance.now();
    const result = await runCli(["check"], { env: { ...env, PII_HMAC_KEY: TEST_SECRET } });
    const seconds = (performance.now() - started) / 1000;
    figures[`${label}_s`] = Math.round(seconds * 10) / 10;
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, failing);
    assert.equal(result.stderr.trimEnd().split("\n").length, 1, result.stderr);
    assert.match(
      failureLine(result),
      /^error: \d of \d+ checks failed; the lines above say what to fix$/,
    );
    assert.ok(seconds < 10, `${label}: ${seconds} s`);
  }
  reportFigures("check, unreachable", figures);
});

Deno.test("check fails on a key id recorded with another secret, a missing key, missing privileges, and a schema it may not migrate", async (t) => {
  await using sqs = await startEndpoint("local-aws-sqs");
  const queueUrl = await sqs.createQueue();
  await using db = await freshSchema();
  await migrate(db.sql, db);
  const env = { DATABASE_URL, ...db.env, SQS_QUEUE_URL: queueUrl };

  await t.step("no HMAC key", async () => {
    const result = await runInProcess(["check"], env);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^fail\s+hmac key\s+none: set PII_HMAC_KEY or --hmac-key-file$/m);
  });

  await t.step("a key id recorded with another secret", async () => {
    await db.sql`INSERT INTO login_etl_keys (key_id, fingerprint) VALUES ('k1', 'another-secret')`;
    const result = await runInProcess(["check"], { ...env, PII_HMAC_KEY: TEST_SECRET });
    assert.equal(result.code, 1);
    assert.match(
      result.stdout,
      /^fail\s+key registry\s+key ids k1 are recorded with a different secret/m,
    );
    assert.ok(!result.stdout.includes(TEST_SECRET));
    await db.sql`DELETE FROM login_etl_keys`;
  });

  await t.step("a role without the consumer's privileges, for drain and for recover", async () => {
    const user = uniqueName("nopriv");
    const password = crypto.randomUUID();
    await db.sql.unsafe(`CREATE ROLE "${user}" LOGIN PASSWORD '${password}';
      GRANT USAGE ON SCHEMA "${db.schema}" TO "${user}";
      GRANT INSERT ON "${db.schema}".user_logins TO "${user}"`);
    try {
      const url = new URL(DATABASE_URL);
      url.hostname = "127.0.0.1";
      url.username = user;
      url.password = password;
      const asUser = { ...env, DATABASE_URL: url.toString(), PII_HMAC_KEY: TEST_SECRET };
      const outside = await runInProcess(["check"], asUser);
      assert.equal(outside.code, 1, outside.stdout + outside.stderr);
      assert.match(
        outside.stdout,
        new RegExp(
          `^fail\\s+schema\\s+.*permission denied for schema ${db.stateSchema}.*; the role needs USAGE on schema ${db.stateSchema} \\(see sql/roles.sql\\)$`,
          "m",
        ),
      );

      await db.sql.unsafe(`GRANT USAGE ON SCHEMA "${db.stateSchema}" TO "${user}"`);
      const drain = await runInProcess(["check"], asUser);
      assert.equal(drain.code, 1, drain.stdout + drain.stderr);
      const line = drain.stdout.split("\n").find((l) => l.startsWith("fail  privileges")) ?? "";
      const state = db.stateSchema;
      assert.ok(
        line.includes(
          `drain lacks SELECT on ${state}.login_etl_ledger, INSERT on ${state}.login_etl_ledger`,
        ),
        line,
      );
      assert.ok(line.includes(`EXECUTE on ${state}.login_etl_ledger_maintain(integer,integer)`));
      assert.doesNotMatch(line, /on \w+\.user_logins/, "what it has is not listed");
      assert.doesNotMatch(line, /USAGE on schema/, "nor the schemas it may use");
      const recover = await runInProcess(["check", "--for", "recover"], {
        ...asUser,
        PII_VAULT_KEY: "a different secret for the vault, 32+ bytes",
      });
      assert.equal(recover.code, 1);
      assert.ok(
        recover.stdout.includes(
          `recover lacks EXECUTE on ${state}.login_etl_release_request(text[],text,text), EXECUTE on ${state}.login_etl_release(bigint)`,
        ),
        recover.stdout,
      );
      assert.doesNotMatch(recover.stdout, /^\S+\s+queue/m, "recover needs no queue");

      // Without USAGE on the data schema, nothing in it can be reached: one privilege says so.
      await db.sql.unsafe(`REVOKE USAGE ON SCHEMA "${db.schema}" FROM "${user}"`);
      const noData = await runInProcess(["check"], asUser);
      assert.match(noData.stdout, new RegExp(`drain lacks USAGE on schema ${db.schema}, SELECT`));
      await db.sql.unsafe(`GRANT USAGE ON SCHEMA "${db.schema}" TO "${user}"`);

      await db.sql`DELETE FROM login_etl_migrations WHERE version > 5`;
      const behind = await runInProcess(["check"], asUser);
      assert.equal(behind.code, 1);
      assert.match(
        behind.stdout,
        new RegExp(
          `^fail\\s+schema\\s+${db.schema} \\(state schema ${state}\\) at version 5, needs ${LATEST_VERSION}, and this role may not migrate it \\(no CREATE on schema ${db.schema}, ${state}\\); run \`login-etl migrate\` as the owner role$`,
          "m",
        ),
      );
      assert.match(behind.stdout, /^skip\s+privileges\s+the schema is not current/m);
    } finally {
      await db.sql.unsafe(`DROP OWNED BY "${user}"; DROP ROLE "${user}"`);
    }
  });
});

Deno.test("check --summary-json prints one object; a bad --for is a usage error (exit 2)", async () => {
  await using db = await freshSchema();
  const result = await runCli(["check", "--for", "migrate", "--summary-json"], {
    env: { DATABASE_URL, ...db.env },
  });
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as {
    for: string;
    passed: boolean;
    checks: { check: string; status: string; detail: string }[];
  };
  assert.equal(report.for, "migrate");
  assert.equal(report.passed, true);
  assert.deepEqual(report.checks.map((c) => c.check), ["postgres", "schema", "schema rights"]);
  assert.match(
    report.checks[1]?.detail ?? "",
    new RegExp(
      `at version 0; migrate applies ${MIGRATIONS.map((m) => m.version).join(", ")}$`,
    ),
  );
  const bad = await runCli(["check", "--for", "everything"]);
  assert.equal(bad.code, 2);
  assert.match(failureLine(bad), /^error: Invalid --for "everything": must be one of/);
});

Deno.test("check --for drain reports the reject queue's encryption and retention, and fails an AWS one kept in clear", async (t) => {
  await using db = await freshSchema();
  await migrate(db.sql, db);
  await using sqs = await startSqs();
  const queueUrl = sqs.createQueue();
  const env = { DATABASE_URL, ...db.env, SQS_QUEUE_URL: queueUrl, PII_HMAC_KEY: TEST_SECRET };
  const name = (url: string) => `reject queue ${url.split("/").pop()}`;

  await t.step("an emulator's queue with SSE, kept 4 days: reported", async () => {
    const rejects = sqs.createQueue();
    const result = await runInProcess(
      ["check", "--for", "drain", "--reject-queue-url", rejects],
      env,
    );
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal(
      linesOf(result.stdout).detail.get(name(rejects)),
      "encrypted at rest (SQS-managed keys); keeps copies 4 days; it holds raw messages with their PII",
    );
  });

  await t.step("an emulator's queue in clear: reported, not failed (not AWS)", async () => {
    const rejects = sqs.createQueue({
      SqsManagedSseEnabled: "false",
      MessageRetentionPeriod: "3600",
    });
    const result = await runInProcess(
      ["check", "--for", "run", "--reject-queue-url", rejects],
      env,
    );
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(
      linesOf(result.stdout).detail.get(name(rejects)) ?? "",
      /^not encrypted at rest \(not AWS: protect the endpoint's storage\); keeps copies 1 hour;/,
    );
  });

  await t.step("an AWS queue in clear fails, with the statement that fixes it", async () => {
    const local = sqs.createQueue({ SqsManagedSseEnabled: "false" });
    const rejects = `https://sqs.us-east-1.amazonaws.com/000000000000/${local.split("/").pop()}`;
    const result = await runCli(["check", "--for", "drain", "--reject-queue-url", rejects], {
      env: {
        ...env,
        // The AWS host answered by the emulator, with explicit test credentials.
        AWS_ENDPOINT_URL_SQS: sqs.endpoint,
        AWS_ACCESS_KEY_ID: "AKIDTEST",
        AWS_SECRET_ACCESS_KEY: "test-secret",
        AWS_EC2_METADATA_DISABLED: "true",
      },
    });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const line = result.stdout.split("\n").find((l) => l.includes("reject queue")) ?? "";
    assert.match(
      line,
      /^fail\s+reject queue \S+\s+not encrypted at rest, and it holds raw messages with their PII; keeps copies 4 days: turn on SSE \(aws sqs set-queue-attributes --queue-url https:\/\/sqs\.us-east-1\.amazonaws\.com\/000000000000\/\S+ --attributes SqsManagedSseEnabled=true, or a KMS key\)$/,
    );
  });

  await t.step("not for commands that copy no rejects", async () => {
    const rejects = sqs.createQueue();
    const result = await runInProcess(
      ["check", "--for", "migrate", "--reject-queue-url", rejects],
      env,
    );
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.ok(!result.stdout.includes("reject queue"));
  });
});
