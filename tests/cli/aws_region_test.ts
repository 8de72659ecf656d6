// The signing region on AWS, through the CLI with the binary's permissions: a
// queue URL on an AWS host signs every request for the region it names, even
// when the AWS profile, --region or AWS_DEFAULT_REGION say another, and says
// so in one warning line; other hosts keep the configured region. AWS itself
// is stood in for by fauxqs behind a recording proxy (AWS_ENDPOINT_URL_SQS),
// which notes each request's SigV4 credential scope, so the drain really
// happens. The SDK never looks for instance metadata: explicit test
// credentials, temporary shared files, AWS_EC2_METADATA_DISABLED=true.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { runCli } from "../helpers/cli.ts";
import { drainCli } from "../helpers/drain.ts";
import { freshSchema, reportFigures, startSqs, TEST_SECRET } from "../helpers/services.ts";
import { startSqsFaultProxy } from "../helpers/sqs_fault_proxy.ts";

const AWS_QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/000000000000/login-queue";

/** AWS settings of a machine whose default profile is in `profileRegion`, in a temporary HOME. */
async function awsMachine(profileRegion: string): Promise<
  AsyncDisposable & { readonly env: Record<string, string> }
> {
  const home = await Deno.makeTempDir({ prefix: "login_etl_aws_" });
  await Deno.writeTextFile(`${home}/config`, `[default]\nregion = ${profileRegion}\n`);
  await Deno.writeTextFile(`${home}/credentials`, "");
  return {
    env: {
      HOME: home,
      AWS_CONFIG_FILE: `${home}/config`,
      AWS_SHARED_CREDENTIALS_FILE: `${home}/credentials`,
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_ACCESS_KEY_ID: "AKIDREGIONTEST",
      AWS_SECRET_ACCESS_KEY: "region-test-secret",
      LOGIN_ETL_LOG_FORMAT: "json",
    },
    [Symbol.asyncDispose]: () => Deno.remove(home, { recursive: true }),
  };
}

/** The log events of a run's stderr. */
function events(stderr: string): Record<string, unknown>[] {
  return stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

Deno.test("drain of an eu-west-1 queue with a us-east-1 default profile signs every request for eu-west-1 and warns once", async () => {
  await using sqs = await startSqs();
  await using proxy = await startSqsFaultProxy(sqs.endpoint);
  await using db = await freshSchema();
  await using machine = await awsMachine("us-east-1");
  // fauxqs keeps queues per region, as AWS does: this one lives in eu-west-1.
  sqs.server.createQueue("login-queue", { region: "eu-west-1" });
  for (const body of generateBodies(60, { badRatio: 0, seed: 18 })) {
    sqs.server.sendMessage("login-queue", body, { region: "eu-west-1" });
  }

  const result = await drainCli(AWS_QUEUE_URL, db.schema, {
    env: { ...machine.env, AWS_ENDPOINT_URL_SQS: proxy.endpoint },
  });

  const regions = Object.groupBy(proxy.signed, (r) => String(r.region));
  reportFigures("signing regions", {
    requests: proxy.signed.length,
    by_region: Object.fromEntries(Object.entries(regions).map(([k, v]) => [k, v?.length])),
  });
  assert.ok(proxy.signed.length >= 3, "GetQueueAttributes, receives and deletes went through");
  assert.deepEqual(Object.keys(regions), ["eu-west-1"], "every request signed for eu-west-1");
  assert.ok(proxy.signed.every((r) => r.service === "sqs"));
  const warnings = events(result.stderr).filter((e) => e.event === "RegionOverridden");
  assert.equal(warnings.length, 1, result.stderr);
  assert.equal(warnings[0]?.level, "warn");
  assert.equal(warnings[0]?.region, "eu-west-1");
  assert.equal(warnings[0]?.configured_region, "us-east-1");
  assert.match(String(warnings[0]?.msg), /eu-west-1.*us-east-1/);
  const started = events(result.stderr).find((e) => e.event === "RunStarted");
  assert.equal(started?.region, "eu-west-1");
  assert.equal(started?.region_source, "queue URL");
  const [rows] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`;
  assert.equal(rows?.n, 60, "the drain wrote every login");
  assert.deepEqual(sqs.counts(AWS_QUEUE_URL), { ready: 0, inFlight: 0 });
});

Deno.test("the AWS queue URL's region wins over --region and AWS_DEFAULT_REGION too; an agreeing profile earns no warning", async (t) => {
  await using sqs = await startSqs();
  await using proxy = await startSqsFaultProxy(sqs.endpoint);
  sqs.server.createQueue("login-queue", { region: "eu-west-1" });
  const cases: {
    name: string;
    profile: string;
    args?: string[];
    env?: Record<string, string>;
    warned: { configured_region: string; configured_from: string } | null;
  }[] = [
    {
      name: "--region us-east-1",
      profile: "eu-west-1",
      args: ["--region", "us-east-1"],
      warned: { configured_region: "us-east-1", configured_from: "--region or AWS_REGION" },
    },
    {
      name: "AWS_REGION=ap-south-1",
      profile: "eu-west-1",
      env: { AWS_REGION: "ap-south-1" },
      warned: { configured_region: "ap-south-1", configured_from: "--region or AWS_REGION" },
    },
    {
      name: "AWS_DEFAULT_REGION=us-west-2",
      profile: "eu-west-1",
      env: { AWS_DEFAULT_REGION: "us-west-2" },
      warned: { configured_region: "us-west-2", configured_from: "AWS_DEFAULT_REGION" },
    },
    { name: "a profile in eu-west-1", profile: "eu-west-1", warned: null },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await using machine = await awsMachine(c.profile);
      const before = proxy.signed.length;
      const result = await runCli(
        ["drain", "--queue-url", AWS_QUEUE_URL, "--dry-run", ...c.args ?? []],
        {
          env: {
            ...machine.env,
            ...c.env,
            PII_HMAC_KEY: TEST_SECRET,
            AWS_ENDPOINT_URL_SQS: proxy.endpoint,
          },
        },
      );
      assert.equal(result.code, 0, result.stderr);
      const signed = proxy.signed.slice(before);
      assert.ok(signed.length >= 2, "GetQueueAttributes and a receive went through");
      assert.deepEqual([...new Set(signed.map((r) => r.region))], ["eu-west-1"]);
      const warnings = events(result.stderr).filter((e) => e.event === "RegionOverridden");
      if (c.warned === null) assert.equal(warnings.length, 0, result.stderr);
      else {
        assert.equal(warnings.length, 1, result.stderr);
        assert.equal(warnings[0]?.configured_region, c.warned.configured_region);
        assert.equal(warnings[0]?.configured_from, c.warned.configured_from);
      }
    });
  }
});

Deno.test("a queue URL on an emulator's host keeps the configured region, unwarned: AWS_DEFAULT_REGION, else the profile's", async (t) => {
  await using sqs = await startSqs();
  await using proxy = await startSqsFaultProxy(sqs.endpoint);
  sqs.server.createQueue("login-queue");
  const cases = [
    { name: "the profile's", env: {}, expected: "ca-central-1" },
    {
      name: "AWS_DEFAULT_REGION over the profile's",
      env: { AWS_DEFAULT_REGION: "sa-east-1" },
      expected: "sa-east-1",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      await using machine = await awsMachine("ca-central-1");
      const before = proxy.signed.length;
      const result = await runCli(
        ["drain", "--queue-url", `${proxy.endpoint}/000000000000/login-queue`, "--dry-run"],
        { env: { ...machine.env, ...c.env, PII_HMAC_KEY: TEST_SECRET } },
      );
      assert.equal(result.code, 0, result.stderr);
      const signed = proxy.signed.slice(before);
      assert.ok(signed.length >= 2);
      assert.deepEqual([...new Set(signed.map((r) => r.region))], [c.expected]);
      assert.equal(events(result.stderr).filter((e) => e.event === "RegionOverridden").length, 0);
    });
  }
});

Deno.test("a trailing-dot AWS host (sqs.eu-west-1.amazonaws.com.) is the same AWS host: signed for eu-west-1, warned once", async () => {
  await using sqs = await startSqs();
  await using proxy = await startSqsFaultProxy(sqs.endpoint);
  await using machine = await awsMachine("us-east-1");
  sqs.server.createQueue("login-queue", { region: "eu-west-1" });
  const result = await runCli(
    [
      "drain",
      "--queue-url",
      "https://sqs.eu-west-1.amazonaws.com./000000000000/login-queue",
      "--dry-run",
    ],
    { env: { ...machine.env, PII_HMAC_KEY: TEST_SECRET, AWS_ENDPOINT_URL_SQS: proxy.endpoint } },
  );
  assert.equal(result.code, 0, result.stderr);
  assert.ok(proxy.signed.length >= 2, "GetQueueAttributes and a receive went through");
  assert.deepEqual([...new Set(proxy.signed.map((r) => r.region))], ["eu-west-1"]);
  const warnings = events(result.stderr).filter((e) => e.event === "RegionOverridden");
  assert.equal(warnings.length, 1, result.stderr);
  assert.equal(warnings[0]?.configured_region, "us-east-1");
  const started = events(result.stderr).find((e) => e.event === "RunStarted");
  assert.equal(started?.region_source, "queue URL");
});
