/**
 * Credentials, and what to say when they fail: which source the SDK's chain
 * used (or tried), and one line per failure (none found, a missing profile,
 * a refused signature, an expired token, denied access). Such failures are
 * not transient: waiting would not fix them, so they stop a run at once.
 * The one exception is a credential endpoint that may come back (`mayReturn`).
 *
 * @module
 */

import type { SQSClient, SQSClientConfig } from "@aws-sdk/client-sqs";
import { defaultProvider } from "@aws-sdk/credential-provider-node";
import { loadSharedConfigFiles } from "@smithy/core/config";
import { CredentialsError } from "../errors.ts";
import { type AuthRefusal, authRefusal } from "./_errors.ts";

/** The dummy pair LocalStack and other emulators accept. */
const EMULATOR_CREDENTIALS = { accessKeyId: "test", secretAccessKey: "test" } as const;

/** The SDK's hook for the default chain, and the provider it makes. */
type DefaultProviderHook = NonNullable<SQSClientConfig["credentialDefaultProvider"]>;
type Provider = ReturnType<DefaultProviderHook>;

/** Credentials for one client, and where those of the last signed request came from. */
export interface ClientCredentials {
  /** To spread into the SQSClient's configuration. */
  readonly config:
    | { readonly credentials: typeof EMULATOR_CREDENTIALS }
    | { readonly credentialDefaultProvider: DefaultProviderHook };
  /** The source of the credentials last handed to the signer, in words. */
  source(): string;
  /** True when `error` is the SDK chain's own failure to find credentials. */
  chainFailed(error: unknown): boolean;
}

/** The shared files' paths as the SDK reads them, for messages. */
function sharedFiles(awsEnv: Readonly<Record<string, string>>): {
  readonly config: string;
  readonly credentials: string;
} {
  return {
    config: awsEnv["AWS_CONFIG_FILE"] ?? "~/.aws/config",
    credentials: awsEnv["AWS_SHARED_CREDENTIALS_FILE"] ?? "~/.aws/credentials",
  };
}

function profileOf(awsEnv: Readonly<Record<string, string>>): string {
  return awsEnv["AWS_PROFILE"] ?? "default";
}

/**
 * Names a source from the features the SDK marks resolved credentials with
 * (`$source`, its user-agent feature ids), so the words follow what the
 * chain actually used rather than a guess from the environment.
 */
function describeSource(features: unknown, awsEnv: Readonly<Record<string, string>>): string {
  const ids = typeof features === "object" && features !== null ? Object.keys(features) : [];
  const has = (part: string) => ids.some((id) => id.includes(part));
  const files = sharedFiles(awsEnv);
  if (has("PROFILE")) {
    return `profile ${profileOf(awsEnv)} in ${files.config} or ${files.credentials}`;
  }
  if (has("WEB_ID")) return "the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)";
  if (has("ENV_VARS")) return "the environment (AWS_ACCESS_KEY_ID)";
  if (has("HTTP")) return "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)";
  if (has("IMDS")) return "instance metadata (the instance's role)";
  if (has("SSO") || has("LOGIN")) return "an SSO session";
  if (has("PROCESS")) return "a credential_process";
  return "the AWS SDK's default chain";
}

/**
 * The credentials a client signs with: the emulators' dummy pair when
 * `emulatorPair` (a non-AWS endpoint and no credentials configured), else the
 * SDK's own default chain, watched so a failure can name its source.
 */
export function clientCredentials(
  awsEnv: Readonly<Record<string, string>>,
  options: { readonly emulatorPair: boolean },
): ClientCredentials {
  if (options.emulatorPair) {
    return {
      config: { credentials: EMULATOR_CREDENTIALS },
      source: () =>
        "login-etl's emulator pair test/test (no AWS credentials are set: set AWS_ACCESS_KEY_ID or AWS_PROFILE)",
      chainFailed: () => false,
    };
  }
  let used = "the AWS SDK's default chain";
  const failures = new WeakSet<object>();
  return {
    // The SDK's own chain, wrapped through its documented hook: the SDK
    // still builds the chain's input (profile, region for STS, logger).
    config: {
      credentialDefaultProvider: (init: unknown) => {
        const chain: Provider = defaultProvider(init as Parameters<typeof defaultProvider>[0]);
        return async (callOptions) => {
          try {
            const identity = await chain(callOptions);
            used = describeSource((identity as { readonly $source?: unknown }).$source, awsEnv);
            return identity;
          } catch (error) {
            if (typeof error === "object" && error !== null) failures.add(error);
            throw error;
          }
        };
      },
    },
    source: () => used,
    chainFailed: (error) => typeof error === "object" && error !== null && failures.has(error),
  };
}

/** The first line of an SDK message, capped: enough to say why, never a wall of text. */
function firstLine(text: string, max = 300): string {
  const line = (text.split("\n")[0] ?? "").trim();
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}

type SharedFiles = { readonly [K in "configFile" | "credentialsFile"]: Record<string, object> };

/** Keys that make a profile a credential source (the SDK's fromIni and friends). */
const PROFILE_CREDENTIAL_KEYS = [
  "aws_access_key_id",
  "role_arn",
  "sso_session",
  "sso_start_url",
  "credential_process",
  "web_identity_token_file",
  "login_session",
];

/**
 * Why the SDK's chain found no credentials, in one line naming the source it
 * tried: a named profile (missing, or without credentials), the variables,
 * the container or web identity settings, or the whole default chain.
 */
export async function describeChainFailure(
  error: unknown,
  awsEnv: Readonly<Record<string, string>>,
): Promise<string> {
  const files = sharedFiles(awsEnv);
  const sdkSays = error instanceof Error && !/any providers/.test(error.message)
    ? firstLine(error.message)
    : null;
  const where = `${files.config} or ${files.credentials}`;
  const loaded: SharedFiles = await loadSharedConfigFiles({
    ...(awsEnv["AWS_CONFIG_FILE"] === undefined
      ? {}
      : { configFilepath: awsEnv["AWS_CONFIG_FILE"] }),
    ...(awsEnv["AWS_SHARED_CREDENTIALS_FILE"] === undefined
      ? {}
      : { filepath: awsEnv["AWS_SHARED_CREDENTIALS_FILE"] }),
  }).catch((): SharedFiles => ({ configFile: {}, credentialsFile: {} }));
  const profile = profileOf(awsEnv);
  const section = { ...loaded.configFile[profile], ...loaded.credentialsFile[profile] };
  const found = profile in loaded.configFile || profile in loaded.credentialsFile;
  const usable = PROFILE_CREDENTIAL_KEYS.some((key) => key in section);
  if (awsEnv["AWS_PROFILE"] !== undefined) {
    return `Cannot load AWS credentials from profile ${profile} in ${where}: ${
      !found
        ? "profile not found; fix AWS_PROFILE or add the profile"
        : usable
        ? sdkSays ?? "its credentials did not load"
        : "the profile holds no credentials (aws_access_key_id, role_arn, sso_session or credential_process)"
    }`;
  }
  for (
    const name of ["AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
  ) {
    if (awsEnv[name] !== undefined) {
      return `Cannot load AWS credentials from the container endpoint (${name}): ${
        sdkSays ?? "it gave no credentials (no answer, or none in it)"
      }`;
    }
  }
  if (awsEnv["AWS_WEB_IDENTITY_TOKEN_FILE"] !== undefined) {
    return `Cannot load AWS credentials from the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE): ${
      sdkSays ?? "no credentials came back; check AWS_ROLE_ARN and the token file"
    }`;
  }
  if (awsEnv["AWS_ACCESS_KEY_ID"] !== undefined) {
    return "Cannot load AWS credentials from the environment: AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY";
  }
  const metadataOff = (awsEnv["AWS_EC2_METADATA_DISABLED"] ?? "false").toLowerCase() !== "false";
  const profileState = !found
    ? "profile not found"
    : usable
    ? sdkSays ?? "its credentials did not load"
    : "no credentials in it";
  return `No AWS credentials found: tried the environment (no AWS_ACCESS_KEY_ID), profile ${profile} in ${where} (${profileState}) and instance metadata (${
    metadataOff ? "off: AWS_EC2_METADATA_DISABLED" : "no role"
  }); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE`;
}

/**
 * True when a failed chain may succeed later: its source is a remote
 * endpoint the platform runs (the container's credential endpoint, or STS
 * for a web identity token, as on ECS and EKS) that can be briefly away, or
 * the error is a remote call's own failure (a network error or a 5xx from
 * STS or SSO) rather than the SDK finding nothing. Never for a refusal (a
 * client fault), a missing profile or no source at all: retrying those for
 * --max-retry-seconds would only delay the line that says what to fix.
 */
function mayReturn(error: unknown, awsEnv: Readonly<Record<string, string>>): boolean {
  if (!(error instanceof Error) || (error as { $fault?: unknown }).$fault === "client") {
    return false;
  }
  const remoteSource = awsEnv["AWS_PROFILE"] === undefined &&
    [
      "AWS_CONTAINER_CREDENTIALS_FULL_URI",
      "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
      "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]
      .some((name) => awsEnv[name] !== undefined);
  return remoteSource || !/ProviderError$/.test(error.name);
}

/** One line for a refusal, naming the credentials' source and what to check. */
export function describeRefusal(refusal: AuthRefusal, source: string): string {
  const code = refusal.code;
  switch (refusal.kind) {
    case "signature":
      return `The queue refused the request signature (${code}) for credentials from ${source}: check the secret key`;
    case "unknown-key":
      return `The queue does not recognise the access key (${code}) of credentials from ${source}: check the access key id, and the session token that goes with it`;
    case "expired":
      return `The queue refused expired credentials (${code}) from ${source}: renew them (a new session token, or aws sso login) and run again`;
    case "clock":
      return `The queue refused the request's time (${code}) for credentials from ${source}: set this machine's clock right`;
    case "denied":
      return `The queue denied access (${code}) to credentials from ${source}${
        refusal.message === "" ? "" : `: ${firstLine(refusal.message)}`
      }; grant them the SQS actions login-etl needs (docs/operations.md)`;
    case "other":
      return `The queue refused the request (HTTP 403, ${code}) for credentials from ${source}: check the credentials and the queue's access policy`;
  }
}

/**
 * Turns every credentials failure of `client`'s calls into one
 * `CredentialsError` (code `sqs_credentials`), whichever call met it. It sits outermost, so the SDK's retries and the protocol
 * fallback have had their say and the error it sees is the final one.
 */
export function reportCredentialFailures(
  client: SQSClient,
  credentials: ClientCredentials,
  awsEnv: Readonly<Record<string, string>>,
): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (error) {
        if (credentials.chainFailed(error)) {
          throw new CredentialsError(await describeChainFailure(error, awsEnv), "NoCredentials", {
            cause: error,
            transient: mayReturn(error, awsEnv),
          });
        }
        const refusal = authRefusal(error);
        if (refusal === null) throw error;
        throw new CredentialsError(describeRefusal(refusal, credentials.source()), refusal.code, {
          cause: error,
        });
      }
    },
    { step: "initialize", priority: "high", name: "loginEtlCredentialFailures" },
  );
}
