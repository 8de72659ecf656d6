/**
 * The environment variables configuration reads: each setting's, the inline
 * secrets, the AWS and PG* variables, and libpq's defaults. `main.ts` reads
 * exactly these, so the binary needs `--allow-env` for no other.
 *
 * @module
 */

import { OPTIONS } from "./options.ts";
import { PG_ENV_NAMES } from "./pg_target.ts";

/**
 * AWS variables our code reads to decide the endpoint, the region, whether
 * to sign with the emulators' dummy credentials, and to say which credential
 * source failed (`sqs/`). Never the secret key or session token: the SDK
 * reads its own variables itself; the binary may read every `AWS_*` one.
 */
export const AWS_ENV_NAMES: readonly string[] = [
  "AWS_ENDPOINT_URL",
  "AWS_ENDPOINT_URL_SQS",
  "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
  "AWS_DEFAULT_REGION",
  "AWS_ACCESS_KEY_ID",
  "AWS_PROFILE",
  "AWS_CONFIG_FILE",
  "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_EC2_METADATA_DISABLED",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

/**
 * The variables that hold secrets themselves (not a path to them): `main.ts`
 * deletes them from the environment once read.
 */
export const SECRET_ENV_NAMES: readonly string[] = ["PII_HMAC_KEY", "PII_VAULT_KEY"];

/**
 * Every environment variable resolution reads: each setting's variable, the
 * inline secrets, the AWS and PG* variables, and libpq's defaults. `main.ts`
 * reads exactly these (not the whole environment, which would need
 * `--allow-env` for all).
 */
export function envNames(): string[] {
  const names = new Set<string>();
  for (const spec of OPTIONS) if (spec.env !== undefined) names.add(spec.env);
  for (
    const name of [
      ...SECRET_ENV_NAMES,
      ...AWS_ENV_NAMES,
      ...PG_ENV_NAMES,
      // libpq's defaults: the password file and CA under HOME, the OS user name.
      "HOME",
      "USER",
      "LOGNAME",
      "USERNAME",
    ]
  ) names.add(name);
  return [...names];
}
