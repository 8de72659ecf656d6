// Unit tests of src/sqs/credentials.ts: the one line that says which
// credential source the SDK's chain tried when it found nothing, read from
// temporary shared files (never ~/.aws, never instance metadata).

import assert from "node:assert/strict";
import { describeChainFailure } from "../../../src/sqs/credentials.ts";

/** The chain's own last words when every provider passed. */
const GENERIC = new Error("Could not load credentials from any providers");

Deno.test("describeChainFailure() names the source tried and why it gave nothing", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "login_etl_chain_" });
  try {
    await Deno.writeTextFile(
      `${dir}/config`,
      "[default]\nregion = eu-west-1\n\n[profile regiononly]\nregion = us-east-1\n\n[profile sso]\nsso_session = corp\n",
    );
    await Deno.writeTextFile(`${dir}/credentials`, "[keys]\naws_access_key_id = AKIDFILE\n");
    const files = {
      AWS_CONFIG_FILE: `${dir}/config`,
      AWS_SHARED_CREDENTIALS_FILE: `${dir}/credentials`,
    };
    const where = `${dir}/config or ${dir}/credentials`;
    const cases: { name: string; env: Record<string, string>; error?: Error; expected: string }[] =
      [
        {
          name: "a profile named by AWS_PROFILE that neither file holds",
          env: { ...files, AWS_PROFILE: "nope" },
          expected:
            `Cannot load AWS credentials from profile nope in ${where}: profile not found; fix AWS_PROFILE or add the profile`,
        },
        {
          name: "a profile with a region and no credentials",
          env: { ...files, AWS_PROFILE: "regiononly" },
          expected:
            `Cannot load AWS credentials from profile regiononly in ${where}: the profile holds no credentials (aws_access_key_id, role_arn, sso_session or credential_process)`,
        },
        {
          name: "a profile whose provider said why it failed",
          env: { ...files, AWS_PROFILE: "sso" },
          error: new Error(
            "The SSO session associated with this profile has expired.\nRun aws sso login",
          ),
          expected:
            `Cannot load AWS credentials from profile sso in ${where}: The SSO session associated with this profile has expired.`,
        },
        {
          name: "a key id in the environment without its secret",
          env: { ...files, AWS_ACCESS_KEY_ID: "AKIDENV" },
          expected:
            "Cannot load AWS credentials from the environment: AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY",
        },
        {
          name: "the container endpoint",
          env: { ...files, AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://127.0.0.1:1/creds" },
          expected:
            "Cannot load AWS credentials from the container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI): it gave no credentials (no answer, or none in it)",
        },
        {
          name: "the web identity token",
          env: { ...files, AWS_WEB_IDENTITY_TOKEN_FILE: `${dir}/token` },
          expected:
            "Cannot load AWS credentials from the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE): no credentials came back; check AWS_ROLE_ARN and the token file",
        },
        {
          name: "the whole default chain, metadata off",
          env: { ...files, AWS_EC2_METADATA_DISABLED: "true" },
          expected:
            `No AWS credentials found: tried the environment (no AWS_ACCESS_KEY_ID), profile default in ${where} (no credentials in it) and instance metadata (off: AWS_EC2_METADATA_DISABLED); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE`,
        },
        {
          name: "the whole default chain without files, metadata on",
          env: { AWS_CONFIG_FILE: `${dir}/none`, AWS_SHARED_CREDENTIALS_FILE: `${dir}/none2` },
          expected:
            `No AWS credentials found: tried the environment (no AWS_ACCESS_KEY_ID), profile default in ${dir}/none or ${dir}/none2 (profile not found) and instance metadata (no role); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE`,
        },
      ];
    for (const c of cases) {
      await t.step(`describeChainFailure() names ${c.name}`, async () => {
        assert.equal(await describeChainFailure(c.error ?? GENERIC, c.env), c.expected);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
