// Unit tests of src/sqs/region.ts: the region a queue URL names, the order of
// the sources, and the SDK's own chain read in a child process with its own
// HOME and AWS_* variables (the chain reads the process environment).
import assert from "node:assert/strict";
import { regionFromQueueUrl, regionFromSdkChain, resolveRegion } from "../../../src/sqs/region.ts";
import { baseEnv } from "../../helpers/cli.ts";

Deno.test("regionFromQueueUrl() reads AWS's and LocalStack's URL forms", async (t) => {
  const cases: [string, string | null][] = [
    ["https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"],
    ["https://sqs.ap-southeast-2.amazonaws.com/123456789012/q", "ap-southeast-2"],
    ["https://sqs.us-gov-west-1.amazonaws.com/123456789012/q", "us-gov-west-1"],
    ["https://sqs-fips.us-east-2.amazonaws.com/123456789012/q", "us-east-2"],
    ["https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"],
    ["https://sqs.eu-central-1.api.aws/123456789012/q", "eu-central-1"],
    ["https://eu-west-1.queue.amazonaws.com/123456789012/q", "eu-west-1"],
    ["https://queue.amazonaws.com/123456789012/q", "us-east-1"],
    ["http://sqs.eu-west-2.localhost.localstack.cloud:4566/000000000000/q", "eu-west-2"],
    ["http://localhost:4566/queue/ap-south-1/000000000000/q", "ap-south-1"],
    ["http://localhost:4566/000000000000/login-queue", null],
    ["http://127.0.0.1:9324/queue/login-queue", null],
    ["not a url", null],
  ];
  for (const [url, expected] of cases) {
    await t.step(`regionFromQueueUrl() gives ${expected} for ${url}`, () => {
      assert.equal(regionFromQueueUrl(url), expected);
    });
  }
});

Deno.test("resolveRegion() takes the flag, then the SDK's chain, then the URL, then us-east-1", async () => {
  const aws = "https://sqs.eu-west-1.amazonaws.com/1/q";
  const local = "http://localhost:4566/000000000000/q";
  const chain = (region: string | null) => () => Promise.resolve(region);
  assert.deepEqual(await resolveRegion("ca-central-1", aws, chain("eu-north-1")), {
    region: "ca-central-1",
    source: "--region or AWS_REGION",
  });
  assert.deepEqual(await resolveRegion(null, aws, chain("eu-north-1")), {
    region: "eu-north-1",
    source: "AWS config",
  });
  assert.deepEqual(await resolveRegion(null, aws, chain(null)), {
    region: "eu-west-1",
    source: "queue URL",
  });
  assert.deepEqual(await resolveRegion(null, local, chain(null)), {
    region: "us-east-1",
    source: "fallback",
  });
});

/** Runs regionFromSdkChain() in a child with only `env` (and PATH). */
async function chainIn(env: Record<string, string>): Promise<string> {
  const module = new URL("../../../src/sqs/region.ts", import.meta.url).href;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const { regionFromSdkChain } = await import(${
        JSON.stringify(module)
      }); console.log(await regionFromSdkChain());`,
    ],
    cwd: new URL("../../../", import.meta.url).pathname,
    clearEnv: true,
    env: { ...baseEnv(), ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  return new TextDecoder().decode(output.stdout).trim();
}

Deno.test("regionFromSdkChain() reads AWS_REGION and the profile's region, and null when neither is set", async () => {
  const home = await Deno.makeTempDir();
  try {
    assert.equal(await chainIn({ HOME: home }), "null");
    await Deno.mkdir(`${home}/.aws`);
    await Deno.writeTextFile(
      `${home}/.aws/config`,
      "[default]\nregion = eu-central-1\n\n[profile analytics]\nregion = sa-east-1\n",
    );
    assert.equal(await chainIn({ HOME: home }), "eu-central-1");
    assert.equal(await chainIn({ HOME: home, AWS_PROFILE: "analytics" }), "sa-east-1");
    assert.equal(await chainIn({ HOME: home, AWS_REGION: "af-south-1" }), "af-south-1");
  } finally {
    await Deno.remove(home, { recursive: true });
  }
  // In this process too, the function answers without throwing.
  const here = await regionFromSdkChain();
  assert.ok(here === null || typeof here === "string");
});
