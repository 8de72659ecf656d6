// Missing and refused AWS credentials, through the CLI with the binary's
// permissions: each fails at once (well within the 300 s --max-retry-seconds
// default that an outage would be retried for) with exit 1 and one line
// naming what was refused and which credential source was tried, never a
// secret. A refused connection stays an outage: retried. AWS is stood in for
// by fauxqs (JSON) or local-aws-sqs (Query) behind a proxy that answers 403
// as AWS does (JSON with `x-amzn-query-error`, or the Query XML document).
// The SDK never looks for instance metadata: AWS_EC2_METADATA_DISABLED=true,
// temporary shared files, explicit test credentials.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { type CliResult, failureLine, runCli } from "../helpers/cli.ts";
import { DATABASE_URL, reportFigures, startSqs, TEST_SECRET } from "../helpers/services.ts";
import { startLocalAwsSqs } from "../helpers/sqs_endpoints.ts";
import {
  type FaultPolicy,
  type RefusalCode,
  startSqsFaultProxy,
} from "../helpers/sqs_fault_proxy.ts";
import { CreateQueueCommand, SQSClient } from "@aws-sdk/client-sqs";

const AWS_QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/000000000000/login-queue";
/** The test credentials: neither may ever appear in the output. */
const SECRET_KEY = "wJalrXUtnFEMI-credentials-test-secret";
const SESSION_TOKEN = "FwoGZXIvYXdzE-credentials-test-session-token";
/** Far below the 300 s --max-retry-seconds default: a retried failure cannot finish in time. */
const FAIL_FAST_MS = 10_000;

/** A machine's AWS settings in a temporary HOME: empty shared files unless given. */
async function awsMachine(
  files: { readonly config?: string; readonly credentials?: string } = {},
): Promise<AsyncDisposable & { readonly home: string; readonly env: Record<string, string> }> {
  const home = await Deno.makeTempDir({ prefix: "login_etl_creds_" });
  await Deno.writeTextFile(`${home}/config`, files.config ?? "");
  await Deno.writeTextFile(`${home}/credentials`, files.credentials ?? "");
  return {
    home,
    env: {
      HOME: home,
      AWS_CONFIG_FILE: `${home}/config`,
      AWS_SHARED_CREDENTIALS_FILE: `${home}/credentials`,
      AWS_EC2_METADATA_DISABLED: "true",
      PII_HMAC_KEY: TEST_SECRET,
      // Text mode: the failure is the plain last line, as a user sees it.
      LOGIN_ETL_LOG_FORMAT: "text",
    },
    [Symbol.asyncDispose]: () => Deno.remove(home, { recursive: true }),
  };
}

/** Keys in the environment, with a session token. */
const ENV_KEYS = {
  AWS_ACCESS_KEY_ID: "AKIDCREDENTIALSTEST",
  AWS_SECRET_ACCESS_KEY: SECRET_KEY,
  AWS_SESSION_TOKEN: SESSION_TOKEN,
};

/** Runs the CLI and times it; a run that retries like an outage is killed at twice the bound. */
async function timed(
  args: readonly string[],
  env: Record<string, string>,
): Promise<CliResult & { readonly ms: number }> {
  const started = performance.now();
  const result = await runCli(args, { env, signal: AbortSignal.timeout(2 * FAIL_FAST_MS) });
  return { ...result, ms: Math.round(performance.now() - started) };
}

/**
 * Asserts a fail-fast exit: code 1 within FAIL_FAST_MS, one `error:` line
 * and it is the last, matching `line`, and no secret anywhere.
 */
function assertFailedFast(result: CliResult & { readonly ms: number }, line: RegExp): void {
  const lines = result.stderr.split("\n").filter((l) => l !== "");
  assert.equal(result.code, 1, result.stderr);
  assert.ok(result.ms < FAIL_FAST_MS, `took ${result.ms} ms: retried like an outage`);
  assert.equal(lines.filter((l) => l.startsWith("error:")).length, 1, result.stderr);
  assert.match(lines.at(-1) ?? "", line);
  for (const secret of [SECRET_KEY, SESSION_TOKEN]) {
    assert.ok(!result.stderr.includes(secret) && !result.stdout.includes(secret), "no secret");
  }
}

/** fauxqs holding `login-queue` in eu-west-1 (with `messages` in it), behind a refusing proxy. */
async function refusingAws(policy: FaultPolicy, messages = 0) {
  const sqs = await startSqs();
  sqs.server.createQueue("login-queue", { region: "eu-west-1" });
  for (const body of generateBodies(messages, { badRatio: 0, seed: 3 })) {
    sqs.server.sendMessage("login-queue", body, { region: "eu-west-1" });
  }
  const proxy = await startSqsFaultProxy(sqs.endpoint, policy);
  return {
    proxy,
    async [Symbol.asyncDispose]() {
      await proxy[Symbol.asyncDispose]();
      await sqs[Symbol.asyncDispose]();
    },
  };
}

Deno.test("no credentials in the chain (AWS host, no keys, no profile files, no metadata): drain fails at once naming what it tried", async () => {
  await using machine = await awsMachine();
  const result = await timed(["drain", "--queue-url", AWS_QUEUE_URL, "--dry-run"], machine.env);
  reportFigures("no credentials", { ms: result.ms });
  assertFailedFast(
    result,
    new RegExp(
      `^error: No AWS credentials found: tried the environment \\(no AWS_ACCESS_KEY_ID\\), profile default in ${machine.home}/config or ${machine.home}/credentials \\(profile not found\\) and instance metadata \\(off: AWS_EC2_METADATA_DISABLED\\); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE$`,
    ),
  );
});

Deno.test("a missing profile (AWS_PROFILE=nope) fails at once: drain, run, check and seed", async (t) => {
  await using machine = await awsMachine({
    config: "[default]\nregion = eu-west-1\n",
    credentials:
      "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = not-this-one\n",
  });
  const line =
    `Cannot load AWS credentials from profile nope in ${machine.home}/config or ${machine.home}/credentials: profile not found; fix AWS_PROFILE or add the profile`;
  const env = { ...machine.env, AWS_PROFILE: "nope", DATABASE_URL };
  for (const command of ["drain", "run"]) {
    await t.step(command, async () => {
      const result = await timed([command, "--queue-url", AWS_QUEUE_URL, "--dry-run"], env);
      assertFailedFast(result, new RegExp(`^error: ${RegExp.escape(line)}$`));
    });
  }
  await t.step("seed", async () => {
    const result = await timed(["seed", "--queue-url", AWS_QUEUE_URL, "--count", "5"], env);
    assertFailedFast(result, new RegExp(`^error: ${RegExp.escape(line)}$`));
  });
  await t.step("check", async () => {
    const result = await timed(["check", "--queue-url", AWS_QUEUE_URL], env);
    assert.equal(result.code, 1, result.stderr);
    assert.ok(result.ms < FAIL_FAST_MS);
    const queueLine = result.stdout.split("\n").find((l) => /^\S+\s+queue login-queue/.test(l));
    assert.match(
      queueLine ?? "",
      new RegExp(`^fail\\s+queue login-queue\\s+${RegExp.escape(line)}$`),
    );
  });
});

/** The line for each refusal, with the source of the environment's keys. */
const FROM_ENV = "credentials from the environment \\(AWS_ACCESS_KEY_ID\\)";
const REFUSED_LINES: Record<RefusalCode, RegExp> = {
  SignatureDoesNotMatch: new RegExp(
    `^error: The queue refused the request signature \\(SignatureDoesNotMatch\\) for ${FROM_ENV}: check the secret key$`,
  ),
  InvalidClientTokenId: new RegExp(
    `^error: The queue does not recognise the access key \\(InvalidClientTokenId\\) of ${FROM_ENV}: check the access key id, and the session token that goes with it$`,
  ),
  ExpiredToken: new RegExp(
    `^error: The queue refused expired credentials \\(ExpiredToken\\) from the environment \\(AWS_ACCESS_KEY_ID\\): renew them \\(a new session token, or aws sso login\\) and run again$`,
  ),
  AccessDenied: new RegExp(
    `^error: The queue denied access \\(AccessDenied\\) to ${FROM_ENV}: User: arn:aws:iam::000000000000:user/etl is not authorized to perform: sqs:receivemessage .*; grant them the SQS actions login-etl needs \\(docs/operations.md\\)$`,
  ),
};

Deno.test("a 403 at start (JSON, as AWS answers) fails drain at once with one line, after one request", async (t) => {
  for (const code of Object.keys(REFUSED_LINES) as RefusalCode[]) {
    await t.step(code, async () => {
      await using aws = await refusingAws(() => ({ refuse: code }));
      await using machine = await awsMachine();
      const result = await timed(["drain", "--queue-url", AWS_QUEUE_URL, "--dry-run"], {
        ...machine.env,
        ...ENV_KEYS,
        AWS_ENDPOINT_URL_SQS: aws.proxy.endpoint,
      });
      reportFigures(code, { ms: result.ms, requests: aws.proxy.signed.length });
      assertFailedFast(result, REFUSED_LINES[code]);
      // Neither the SDK's retries nor the start-up retries asked again.
      assert.deepEqual(aws.proxy.signed.map((r) => r.action), ["GetQueueAttributes"]);
    });
  }
  await t.step("UnrecognizedClientException without x-amzn-query-error", async () => {
    await using aws = await refusingAws(() => ({
      refuse: "InvalidClientTokenId",
      headerless: true,
    }));
    await using machine = await awsMachine();
    const result = await timed(["drain", "--queue-url", AWS_QUEUE_URL, "--dry-run"], {
      ...machine.env,
      ...ENV_KEYS,
      AWS_ENDPOINT_URL_SQS: aws.proxy.endpoint,
    });
    assertFailedFast(
      result,
      /^error: The queue does not recognise the access key \(UnrecognizedClientException\) of credentials from the environment \(AWS_ACCESS_KEY_ID\)/,
    );
  });
});

Deno.test("a refused signature in the Query protocol (XML 403) fails at once too, naming the profile the keys came from", async () => {
  const upstream = await startLocalAwsSqs();
  try {
    const admin = new SQSClient({
      region: "eu-west-1",
      endpoint: upstream.endpoint,
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
    });
    await admin.send(new CreateQueueCommand({ QueueName: "login-queue" }));
    admin.destroy();
    await using proxy = await startSqsFaultProxy(
      upstream.endpoint,
      () => ({ refuse: "SignatureDoesNotMatch" }),
    );
    await using machine = await awsMachine({
      credentials:
        `[etl]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = ${SECRET_KEY}\n`,
    });
    const result = await timed([
      "drain",
      "--queue-url",
      AWS_QUEUE_URL,
      "--dry-run",
      "--sqs-protocol",
      "query",
      "--verbose",
    ], { ...machine.env, AWS_PROFILE: "etl", AWS_ENDPOINT_URL_SQS: proxy.endpoint });
    assertFailedFast(
      result,
      new RegExp(
        `^error: The queue refused the request signature \\(SignatureDoesNotMatch\\) for credentials from profile etl in ${machine.home}/config or ${machine.home}/credentials: check the secret key: caused by `,
      ),
    );
    assert.deepEqual(proxy.signed.map((r) => r.action), ["GetQueueAttributes"]);
  } finally {
    await upstream.stop();
  }
});

Deno.test("credentials refused mid-run fail drain and run at once", async (t) => {
  for (const command of ["drain", "run"]) {
    await t.step(command, async () => {
      // The first receive gets messages; every later call is refused, as when a token expires.
      let received = 0;
      await using aws = await refusingAws((action) => {
        if (action === "GetQueueAttributes") return "pass";
        return action === "ReceiveMessage" && received++ === 0
          ? "pass"
          : { refuse: "ExpiredToken" };
      }, 20);
      await using machine = await awsMachine();
      const result = await timed(
        [command, "--queue-url", AWS_QUEUE_URL, "--dry-run", "--concurrency", "1"],
        { ...machine.env, ...ENV_KEYS, AWS_ENDPOINT_URL_SQS: aws.proxy.endpoint },
      );
      reportFigures(`${command} mid-run`, {
        ms: result.ms,
        stats: Object.fromEntries(aws.proxy.stats),
      });
      assertFailedFast(result, REFUSED_LINES.ExpiredToken);
      assert.ok(
        result.stdout.split("\n").filter((l) => l !== "").length > 0,
        "the first batch was printed",
      );
      assert.equal(aws.proxy.stats.get("ReceiveMessage:refuse-ExpiredToken"), 1, "never retried");
    });
  }
});

Deno.test("seed and check fail at once on a refused signature", async (t) => {
  await using aws = await refusingAws(() => ({ refuse: "SignatureDoesNotMatch" }));
  await using machine = await awsMachine();
  const env = {
    ...machine.env,
    ...ENV_KEYS,
    AWS_ENDPOINT_URL_SQS: aws.proxy.endpoint,
    DATABASE_URL,
  };
  await t.step("seed", async () => {
    const result = await timed(["seed", "--queue-url", AWS_QUEUE_URL, "--count", "5"], env);
    assertFailedFast(result, REFUSED_LINES.SignatureDoesNotMatch);
  });
  await t.step("check", async () => {
    const result = await timed(["check", "--queue-url", AWS_QUEUE_URL], env);
    assert.equal(result.code, 1, result.stderr);
    assert.ok(result.ms < FAIL_FAST_MS);
    const queueLine = result.stdout.split("\n").find((l) => /^\S+\s+queue login-queue/.test(l));
    assert.match(
      queueLine ?? "",
      /^fail\s+queue login-queue\s+The queue refused the request signature \(SignatureDoesNotMatch\) for credentials from the environment \(AWS_ACCESS_KEY_ID\): check the secret key$/,
    );
  });
});

Deno.test("a refused connection (a closed local port) is still an outage: retried until --max-retry-seconds", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await using machine = await awsMachine();
  const result = await timed(
    ["drain", "--queue-url", AWS_QUEUE_URL, "--dry-run", "--max-retry-seconds", "2"],
    {
      ...machine.env,
      ...ENV_KEYS,
      AWS_ENDPOINT_URL_SQS: `http://127.0.0.1:${port}`,
      LOGIN_ETL_LOG_FORMAT: "json",
    },
  );
  const retries = result.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) =>
    JSON.parse(l)
  )
    .filter((e) => e.event === "StageFailed" && e.stage === "startup");
  reportFigures("closed port", { ms: result.ms, retries: retries.length });
  assert.equal(result.code, 1, result.stderr);
  assert.ok(retries.length >= 2, "retried");
  assert.ok(retries.every((e) => e.code === "sqs_queue"), "not a credentials failure");
  assert.match(
    result.stderr.trim().split("\n").at(-1) ?? "",
    /ECONNREFUSED.*gave up after \d+ attempts in 2 s/,
  );
});

Deno.test("a container credential endpoint that does not answer is retried like an outage, then named", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await using machine = await awsMachine();
  const result = await timed(
    ["drain", "--queue-url", AWS_QUEUE_URL, "--dry-run", "--max-retry-seconds", "2"],
    {
      ...machine.env,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${port}/v2/credentials`,
      LOGIN_ETL_LOG_FORMAT: "json",
    },
  );
  const retries = result.stderr.split("\n").filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l)).filter((e) => e.event === "StageFailed");
  reportFigures("container endpoint away", { ms: result.ms, retries: retries.length });
  assert.equal(result.code, 1, result.stderr);
  assert.ok(retries.length >= 1 && retries.every((e) => e.code === "sqs_credentials"));
  assert.match(
    failureLine(result),
    /^error: Cannot load AWS credentials from the container endpoint \(AWS_CONTAINER_CREDENTIALS_FULL_URI\): it gave no credentials \(no answer, or none in it\) \(gave up after \d+ attempts in 2 s, --max-retry-seconds\)$/,
  );
});
