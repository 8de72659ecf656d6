// The exercise's own setup, as a new user meets it: a Query-only SQS endpoint
// (LocalStack < 3.0) at the default queue URL, Postgres given only by PG*
// variables, and `login-etl drain` with no flags. Also the verify-full failure
// a user with the wrong CA bundle sees, and the region from an AWS profile.

import assert from "node:assert/strict";
import postgres from "postgres";
import { generateBodies } from "../../src/seed/generate.ts";
import { loadSampleBodies } from "../../src/seed/sample.ts";
import { failureLine, runCli } from "../helpers/cli.ts";
import {
  DATABASE_URL,
  hasSample,
  reportFigures,
  SAMPLE_PATH,
  TEST_CA,
  TEST_SECRET,
  uniqueName,
} from "../helpers/services.ts";
import { startLegacyProxy, startLocalAwsSqs } from "../helpers/sqs_endpoints.ts";
import { CreateQueueCommand, SendMessageBatchCommand, SQSClient } from "@aws-sdk/client-sqs";
import { AwsQueryProtocol } from "@aws-sdk/core/protocols";
import { makePki } from "../helpers/pki.ts";

/** LocalStack's port: the default queue URL is http://localhost:4566/000000000000/login-queue. */
const LOCALSTACK_PORT = 4566;

function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Waits until the port is free, then fails with what to do: the test never
 * skips itself. No other file of the suite binds this port (tests take free
 * ports), so inside one run it is free; the wait covers another run's copy of
 * this test on the same machine, which holds it for a few seconds.
 */
async function waitForPort(port: number, waitMs = 60_000): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (!portFree(port)) {
    if (Date.now() > deadline) {
      throw new Error(
        `Port ${port} on 127.0.0.1 stayed taken for ${
          waitMs / 1000
        } s: this test serves the default queue URL there; stop what holds it (a LocalStack of your own?) and run again`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A database of its own, so that drain with no flags writes into it and nowhere else. */
async function freshDatabase(): Promise<{ name: string; drop(): Promise<void> }> {
  const name = uniqueName("etl_db");
  const admin = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE "${name}"`);
  await admin.end();
  return {
    name,
    async drop() {
      const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
      await sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await sql.end();
    },
  };
}

Deno.test({
  name:
    "drain with no flags: a Query-only endpoint at the default queue URL, Postgres from PG* only; sample loaded, the malformed message rejected, queue empty",
  async fn() {
    await waitForPort(LOCALSTACK_PORT);
    const upstream = await startLocalAwsSqs();
    const proxy = startLegacyProxy(upstream.endpoint, { port: LOCALSTACK_PORT });
    const producer = new SQSClient({
      region: "us-east-1",
      endpoint: proxy.endpoint,
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
      protocol: new AwsQueryProtocol({
        defaultNamespace: "com.amazonaws.sqs",
        xmlNamespace: "http://queue.amazonaws.com/doc/2012-11-05/",
        version: "2012-11-05",
      }),
    });
    const db = await freshDatabase();
    try {
      const created = await producer.send(new CreateQueueCommand({ QueueName: "login-queue" }));
      const queueUrl = created.QueueUrl ?? "";
      const bodies = hasSample()
        ? await loadSampleBodies(SAMPLE_PATH)
        : [...generateBodies(100, { badRatio: 0, seed: 11 })];
      const all = [...bodies, JSON.stringify({ foo: "oops_wrong_msg_format", bar: "not a login" })];
      for (let i = 0; i < all.length; i += 10) {
        await producer.send(
          new SendMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: all.slice(i, i + 10).map((b, j) => ({ Id: String(j), MessageBody: b })),
          }),
        );
      }
      const url = new URL(DATABASE_URL);
      const result = await runCli(["drain"], {
        env: {
          PII_HMAC_KEY: TEST_SECRET,
          PGHOST: url.hostname,
          PGPORT: url.port || "5432",
          PGUSER: decodeURIComponent(url.username),
          PGPASSWORD: decodeURIComponent(url.password),
          PGDATABASE: db.name,
        },
      });
      assert.equal(result.code, 0, result.stderr.slice(-3000));
      const lines = result.stderr.trimEnd().split("\n").map((l) => JSON.parse(l));
      const started = lines.find((l) => l.event === "RunStarted");
      const finished = lines.find((l) => l.event === "RunFinished");
      reportFigures("exercise setup", { started, finished, json_requests: proxy.requests.json });
      assert.equal(started.queue_url, "http://localhost:4566/000000000000/login-queue");
      assert.equal(started.sqs_protocol, "query (auto)");
      assert.match(started.database, /from PG\* variables/);
      assert.equal(lines.filter((l) => l.event === "SqsProtocolSwitched").length, 1);
      assert.equal(finished.inserted, bodies.length);
      assert.deepEqual(finished.rejected_by_reason, { missing_field: 1 });
      assert.equal(finished.deleted, bodies.length + 1);

      const sql = postgres({ ...pgOptions(url), database: db.name });
      try {
        const [rows] = await sql`SELECT count(*)::int AS n FROM user_logins`;
        assert.equal(rows?.n, bodies.length);
        // Defaults: the rows in public, login-etl's own tables in login_etl.
        const [rejects] = await sql`SELECT count(*)::int AS n FROM login_etl.login_etl_rejects`;
        assert.equal(rejects?.n, 1);
        const [own] = await sql`SELECT count(*)::int AS n FROM pg_class
                                WHERE relnamespace = 'public'::regnamespace AND relname LIKE 'login_etl%'
                                  AND relkind <> 'v'`;
        assert.equal(own?.n, 0, "none of login-etl's tables in public (only the version view)");
      } finally {
        await sql.end();
      }
      // The default database (DATABASE_URL's) got none of it.
      const ids = bodies.map((b) => JSON.parse(b).user_id as string);
      const elsewhere = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
      try {
        const [table] = await elsewhere`SELECT to_regclass('public.user_logins') AS t`;
        if (table?.t !== null) {
          const [row] = await elsewhere<{ n: number }[]>`
            SELECT count(*)::int AS n FROM public.user_logins WHERE user_id = ANY(${ids})`;
          assert.equal(row?.n, 0, "rows went to the default database");
        }
      } finally {
        await elsewhere.end();
      }
      const depth = await producer.send(
        new (await import("@aws-sdk/client-sqs")).GetQueueAttributesCommand({
          QueueUrl: queueUrl,
          AttributeNames: ["ApproximateNumberOfMessages"],
        }),
      );
      assert.equal(Number(depth.Attributes?.ApproximateNumberOfMessages), 0, "queue empty");
    } finally {
      producer.destroy();
      await proxy.stop();
      await upstream.stop();
      await db.drop();
    }
  },
});

function pgOptions(url: URL) {
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username),
    pass: decodeURIComponent(url.password),
    max: 1,
  };
}

Deno.test({
  name:
    "drain with sslmode=verify-full and a CA that did not sign the server exits 1 with one line naming host and cause",
  // A server named with DATABASE_URL may have TLS off: then there is no certificate to refuse.
  ignore: TEST_CA === undefined,
}, async () => {
  const url = new URL(DATABASE_URL);
  url.hostname = "localhost";
  const dir = await Deno.makeTempDir();
  try {
    // A CA of its own: it signed nothing the server holds.
    await makePki(dir);
    const { startEndpoint } = await import("../helpers/sqs_endpoints.ts");
    await using sqs = await startEndpoint("fauxqs");
    const result = await runCli(["drain", "--queue-url", await sqs.createQueue()], {
      env: {
        PII_HMAC_KEY: TEST_SECRET,
        DATABASE_URL: url.toString(),
        PGSSLMODE: "verify-full",
        PGSSLROOTCERT: `${dir}/ca.crt`,
      },
    });
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      failureLine(result),
      new RegExp(
        `^error: Cannot connect to Postgres at postgres://postgres@localhost:${url.port}/postgres \\(sslmode=verify-full, from DATABASE_URL\\): the certificate of localhost:${url.port} is not signed by a trusted CA`,
      ),
    );
    assert.ok(!result.stderr.includes(`${url.username}:${url.password}@`), "no password");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("drain signs with the AWS profile's region when AWS_REGION is unset, and says where it came from", async () => {
  const { startEndpoint } = await import("../helpers/sqs_endpoints.ts");
  await using sqs = await startEndpoint("fauxqs");
  const queueUrl = await sqs.createQueue();
  const home = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${home}/.aws`);
    await Deno.writeTextFile(
      `${home}/.aws/config`,
      "[profile etl]\nregion = eu-north-1\naws_access_key_id = test\naws_secret_access_key = test\n",
    );
    const result = await runCli(["drain", "--queue-url", queueUrl, "--dry-run"], {
      env: { PII_HMAC_KEY: TEST_SECRET, HOME: home, AWS_PROFILE: "etl" },
    });
    assert.equal(result.code, 0, result.stderr);
    const started = result.stderr.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))
      .find((l) => l.event === "RunStarted");
    assert.equal(started?.region, "eu-north-1");
    assert.equal(started?.region_source, "AWS config");
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
