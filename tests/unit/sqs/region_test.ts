// Unit tests of src/sqs/region.ts: the region a queue URL names (AWS's forms
// decide; LocalStack's only fill in), the order of the sources, and the SDK's
// own chain read in a child process with its own HOME and AWS_* variables
// (the chain reads the process environment).
import assert from "node:assert/strict";
import {
  type AwsQueueHost,
  awsQueueHost,
  type RegionChoice,
  regionFromQueueUrl,
  regionFromSdkChain,
  type RegionInputs,
  type ResolvedRegion,
  resolveRegion,
} from "../../../src/sqs/region.ts";
import { baseEnv } from "../../helpers/cli.ts";

Deno.test("awsQueueHost() reads the region and endpoint variant of AWS's queue URL forms, and only those", async (t) => {
  const aws = (region: string, variant: { fips?: boolean; dualStack?: boolean } = {}) => ({
    region,
    fips: variant.fips ?? false,
    dualStack: variant.dualStack ?? false,
  });
  const cases: [string, AwsQueueHost | null][] = [
    ["https://sqs.eu-west-1.amazonaws.com/123456789012/q", aws("eu-west-1")],
    ["https://sqs.ap-southeast-2.amazonaws.com/123456789012/q", aws("ap-southeast-2")],
    ["https://sqs.us-gov-west-1.amazonaws.com/123456789012/q", aws("us-gov-west-1")],
    ["https://SQS.EU-WEST-3.AMAZONAWS.COM/123456789012/q", aws("eu-west-3")],
    ["https://sqs-fips.us-east-2.amazonaws.com/123456789012/q", aws("us-east-2", { fips: true })],
    ["https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", aws("cn-north-1")],
    ["https://sqs.eu-central-1.api.aws/123456789012/q", aws("eu-central-1", { dualStack: true })],
    [
      "https://sqs-fips.us-west-2.api.aws/123456789012/q",
      aws("us-west-2", { fips: true, dualStack: true }),
    ],
    ["https://eu-west-1.queue.amazonaws.com/123456789012/q", aws("eu-west-1")],
    ["https://cn-northwest-1.queue.amazonaws.com.cn/123456789012/q", aws("cn-northwest-1")],
    ["https://queue.amazonaws.com/123456789012/q", aws("us-east-1")],
    [
      "https://vpce-0a1b2c3d-e4f5g6h7.sqs.eu-north-1.vpce.amazonaws.com/123456789012/q",
      aws("eu-north-1"),
    ],
    // A fully qualified name, one trailing dot: the same AWS host.
    ["https://sqs.eu-west-1.amazonaws.com./123456789012/q", aws("eu-west-1")],
    ["https://SQS.EU-WEST-1.AMAZONAWS.COM./123456789012/q", aws("eu-west-1")],
    ["https://sqs.ap-south-1.api.aws./123456789012/q", aws("ap-south-1", { dualStack: true })],
    ["https://eu-west-2.queue.amazonaws.com./123456789012/q", aws("eu-west-2")],
    ["https://queue.amazonaws.com./123456789012/q", aws("us-east-1")],
    ["https://sqs.cn-north-1.amazonaws.com.cn./123456789012/q", aws("cn-north-1")],
    // LocalStack's look-alikes and other hosts are not AWS: the configured region decides there.
    ["https://sqs.eu-west-1.amazonaws.com.evil.example./1/q", null],
    ["http://sqs.eu-west-2.localhost.localstack.cloud:4566/000000000000/q", null],
    ["http://localhost:4566/queue/ap-south-1/000000000000/q", null],
    ["http://sqs.us-east-1.localhost:4566/000000000000/q", null],
    ["https://sqs.eu-west-1.amazonaws.com.evil.example/1/q", null],
    ["https://sqs.eu-west-1.notamazonaws.com/1/q", null],
    ["https://sqs.amazonaws.com/1/q", null],
    ["http://127.0.0.1:9324/000000000000/q", null],
    ["not a url", null],
  ];
  for (const [url, expected] of cases) {
    await t.step(`awsQueueHost() gives ${JSON.stringify(expected)} for ${url}`, () => {
      assert.deepEqual(awsQueueHost(url), expected);
    });
  }
});

Deno.test("regionFromQueueUrl() reads AWS's and LocalStack's URL forms", async (t) => {
  const cases: [string, string | null][] = [
    ["https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"],
    ["https://sqs-fips.us-east-2.amazonaws.com/123456789012/q", "us-east-2"],
    ["https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"],
    ["https://sqs.eu-central-1.api.aws/123456789012/q", "eu-central-1"],
    ["https://eu-west-1.queue.amazonaws.com/123456789012/q", "eu-west-1"],
    ["https://queue.amazonaws.com/123456789012/q", "us-east-1"],
    ["https://sqs.eu-west-1.amazonaws.com./123456789012/q", "eu-west-1"],
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

Deno.test("resolveRegion() takes an AWS queue URL's region over every configured one, noting the one it overrides", async (t) => {
  const aws = "https://sqs.eu-west-1.amazonaws.com/1/q";
  const chain = (region: string | null) => () => Promise.resolve(region);
  const cases: { name: string; inputs: RegionInputs; expected: ResolvedRegion }[] = [
    {
      name: "over the profile's",
      inputs: { explicit: null, sdkChain: chain("us-east-1") },
      expected: {
        region: "eu-west-1",
        source: "queue URL",
        overridden: { region: "us-east-1", source: "AWS config" },
      },
    },
    {
      name: "over --region or AWS_REGION",
      inputs: { explicit: "ca-central-1", sdkChain: chain("us-east-1") },
      expected: {
        region: "eu-west-1",
        source: "queue URL",
        overridden: { region: "ca-central-1", source: "--region or AWS_REGION" },
      },
    },
    {
      name: "over AWS_DEFAULT_REGION",
      inputs: {
        explicit: null,
        awsEnv: { AWS_DEFAULT_REGION: "us-west-2" },
        sdkChain: chain("us-east-1"),
      },
      expected: {
        region: "eu-west-1",
        source: "queue URL",
        overridden: { region: "us-west-2", source: "AWS_DEFAULT_REGION" },
      },
    },
    {
      name: "with nothing overridden when the configured region agrees",
      inputs: { explicit: "eu-west-1", sdkChain: chain("us-east-1") },
      expected: { region: "eu-west-1", source: "queue URL", overridden: null },
    },
    {
      name: "with nothing overridden when none is configured",
      inputs: { explicit: null, sdkChain: chain(null) },
      expected: { region: "eu-west-1", source: "queue URL", overridden: null },
    },
  ];
  for (const c of cases) {
    await t.step(`resolveRegion() takes it ${c.name}`, async () => {
      assert.deepEqual(await resolveRegion(aws, c.inputs), c.expected);
    });
  }
});

Deno.test("resolveRegion() for other hosts takes the flag, AWS_DEFAULT_REGION, the SDK's chain, the URL, then us-east-1", async (t) => {
  const local = "http://localhost:4566/000000000000/q";
  const localstack = "http://localhost:4566/queue/ap-south-1/000000000000/q";
  const chain = (region: string | null) => () => Promise.resolve(region);
  const defaults = { AWS_DEFAULT_REGION: "us-west-2" };
  const cases: [string, string, RegionInputs, RegionChoice][] = [
    ["the flag", local, {
      explicit: "ca-central-1",
      awsEnv: defaults,
      sdkChain: chain("eu-north-1"),
    }, {
      region: "ca-central-1",
      source: "--region or AWS_REGION",
    }],
    ["AWS_DEFAULT_REGION", local, {
      explicit: null,
      awsEnv: defaults,
      sdkChain: chain("eu-north-1"),
    }, {
      region: "us-west-2",
      source: "AWS_DEFAULT_REGION",
    }],
    ["the SDK's chain", localstack, { explicit: null, sdkChain: chain("eu-north-1") }, {
      region: "eu-north-1",
      source: "AWS config",
    }],
    ["the URL's", localstack, { explicit: null, sdkChain: chain(null) }, {
      region: "ap-south-1",
      source: "queue URL",
    }],
    ["us-east-1", local, { explicit: null, sdkChain: chain(null) }, {
      region: "us-east-1",
      source: "fallback",
    }],
  ];
  for (const [name, url, inputs, expected] of cases) {
    await t.step(`resolveRegion() takes ${name}`, async () => {
      assert.deepEqual(await resolveRegion(url, inputs), { ...expected, overridden: null });
    });
  }
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
