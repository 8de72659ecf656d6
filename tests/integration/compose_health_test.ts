// docker-compose.yml's healthchecks, run as Docker runs them (the exec form,
// without a shell) against real servers in place of the containers: the
// LocalStack one against Query-speaking SQS endpoints (local-aws-sqs, and
// local-aws-sqs behind the proxy that refuses JSON as LocalStack < 3.0 does),
// the Postgres one against the tests' Postgres. Each must pass when the
// service is ready and fail when it is not.

import assert from "node:assert/strict";
import { list, readYaml } from "../helpers/documents.ts";
import { DATABASE_URL } from "../helpers/services.ts";
import { type EndpointKind, startEndpoint } from "../helpers/sqs_endpoints.ts";

/** The healthcheck's command of a compose service, without the leading CMD. */
function healthcheck(service: string): string[] {
  const [compose] = readYaml("docker-compose.yml");
  const test = list(compose, "services", service, "healthcheck", "test").map(String);
  assert.equal(test[0], "CMD");
  return test.slice(1);
}

async function exitCode(argv: readonly string[]): Promise<{ code: number; stderr: string }> {
  const [command = "", ...args] = argv;
  const output = await new Deno.Command(command, {
    args,
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(15_000),
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

/** A port that was free a moment ago: nothing listens there. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

const QUERY_KINDS: readonly EndpointKind[] = ["legacy-localstack", "local-aws-sqs"];

Deno.test("the LocalStack healthcheck passes once the queue exists, and not before", async (t) => {
  const command = healthcheck("localstack");
  for (const kind of QUERY_KINDS) {
    await t.step(kind, async () => {
      await using sqs = await startEndpoint(kind);
      // The endpoint's own free name stands in for login-queue; the URL for
      // the container's localhost:4566.
      const queueUrl = await sqs.createQueue();
      const name = queueUrl.split("/").at(-1) ?? "";
      const missing = `${name}-missing`;
      const aimed = (queue: string) =>
        command.map((arg) =>
          arg.replace("http://localhost:4566/", `${sqs.endpoint}/`)
            .replace(/(^|&)QueueName=login-queue(&|$)/, `$1QueueName=${queue}$2`)
        );
      assert.ok(aimed(name).join(" ").includes(sqs.endpoint), "the URL was replaced");
      const ready = await exitCode(aimed(name));
      assert.equal(ready.code, 0, ready.stderr);
      const absent = await exitCode(aimed(missing));
      assert.notEqual(absent.code, 0, "healthy without the queue");
      assert.match(absent.stderr, /error: 400/);
      if (kind === "legacy-localstack") assert.equal(sqs.requests.json, 0, "spoke Query only");
    });
  }
  await t.step("nothing listening", async () => {
    const down = command.map((arg) =>
      arg.replace("http://localhost:4566/", `http://127.0.0.1:${closedPort()}/`)
    );
    assert.notEqual((await exitCode(down)).code, 0);
  });
});

Deno.test("the Postgres healthcheck passes against a server that accepts connections over TCP, and not without one", async () => {
  const command = healthcheck("postgres");
  const url = new URL(DATABASE_URL);
  const aimed = (host: string, port: string) =>
    command.map((arg, i) =>
      command[i - 1] === "--host" ? host : command[i - 1] === "--port" ? port : arg
    );
  const up = await exitCode(aimed(url.hostname, url.port || "5432"));
  assert.equal(up.code, 0, up.stderr);
  // pg_isready: 2 means no answer.
  const down = await exitCode(aimed("127.0.0.1", String(closedPort())));
  assert.equal(down.code, 2);
});
