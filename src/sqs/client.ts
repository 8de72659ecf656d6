/**
 * The SQS client built from configuration: which endpoint, region and
 * credentials, with connection reuse sized for the receive loops.
 *
 * @module
 */

import { SQSClient, type SQSClientConfig } from "@aws-sdk/client-sqs";
import { FetchRequestHandler } from "./fetch_handler.ts";

/** Environment variables the SDK reads for credentials; any one means "use the SDK's chain". */
const CREDENTIAL_VARS = [
  "AWS_ACCESS_KEY_ID",
  "AWS_PROFILE",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
] as const;

/** True for hosts of AWS itself, where the SDK's own endpoint resolution applies. */
export function isAwsHost(hostname: string): boolean {
  return /(^|\.)amazonaws\.com(\.cn)?$/.test(hostname) || /(^|\.)api\.aws$/.test(hostname);
}

/**
 * `localhost` and `*.localhost` are loopback by RFC 6761; emulators hand out
 * queue URLs such as `http://sqs.us-east-1.localhost:4566/…` that ordinary DNS
 * does not resolve, so we dial 127.0.0.1 instead.
 */
export function loopbackForLocalhost(url: string): string {
  const parsed = new URL(url);
  if (parsed.hostname === "localhost" || parsed.hostname.endsWith(".localhost")) {
    parsed.hostname = "127.0.0.1";
  }
  return parsed.origin;
}

/** Where requests go, and why: decided from the queue URL and AWS_* variables. */
export interface SqsEndpoint {
  /** Endpoint origin to pass to the SDK; undefined lets the SDK resolve AWS's. */
  readonly endpoint: string | undefined;
  readonly source: "AWS_ENDPOINT_URL_SQS" | "AWS_ENDPOINT_URL" | "queue-url" | "aws";
}

/**
 * Resolves the endpoint as the SDK documents (service variable, then global
 * variable), else the queue URL's origin when it is not an AWS host. Passing
 * it explicitly also stops the SDK's per-call "QueueUrl differs" warning.
 */
export function resolveSqsEndpoint(
  queueUrl: string,
  awsEnv: Readonly<Record<string, string>>,
): SqsEndpoint {
  const ignore = (awsEnv["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] ?? "").toLowerCase() === "true";
  if (!ignore) {
    for (const name of ["AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"] as const) {
      const value = awsEnv[name];
      if (value !== undefined && value !== "") {
        return { endpoint: loopbackForLocalhost(value), source: name };
      }
    }
  }
  const host = new URL(queueUrl).hostname;
  if (isAwsHost(host)) return { endpoint: undefined, source: "aws" };
  return { endpoint: loopbackForLocalhost(queueUrl), source: "queue-url" };
}

/** What the client needs from configuration. */
export interface SqsClientOptions {
  readonly queueUrl: string;
  readonly region: string;
  readonly awsEnv: Readonly<Record<string, string>>;
  /** Parallel calls to expect, to size the connection pool. */
  readonly concurrency: number;
  /** Longest long poll, to set the request timeout above it. */
  readonly waitSeconds: number;
  /** Check each received body against its MD5OfBody (default off). */
  readonly verifyMd5?: boolean;
}

/**
 * Creates the SQS client. Against a non-AWS endpoint with no credentials in
 * the environment, it signs with the dummy pair `test`/`test` that LocalStack
 * and other emulators accept, so a queue URL alone is enough locally.
 */
export function createSqsClient(
  options: SqsClientOptions,
): { client: SQSClient; endpoint: SqsEndpoint } {
  const endpoint = resolveSqsEndpoint(options.queueUrl, options.awsEnv);
  const hasCredentials = CREDENTIAL_VARS.some((name) => options.awsEnv[name] !== undefined);
  const client = new SQSClient({
    region: options.region,
    ...(endpoint.endpoint === undefined ? {} : { endpoint: endpoint.endpoint }),
    // Never for an AWS host, even one given by AWS_ENDPOINT_URL (a VPC or
    // FIPS endpoint): there the SDK's own chain (instance role, ~/.aws) applies.
    ...(endpoint.source !== "aws" &&
        !isAwsHost(new URL(endpoint.endpoint ?? options.queueUrl).hostname) &&
        !hasCredentials
      ? { credentials: { accessKeyId: "test", secretAccessKey: "test" } }
      : {}),
    maxAttempts: 3,
    // Received bodies are checked against MD5OfBody only when asked: over TLS
    // (every AWS endpoint) integrity is already assured, and hashing every
    // body was a measurable share of a drain's CPU (README, Performance).
    ...(options.verifyMd5 === true ? {} : { md5: false as const }),
    // A long poll holds its request open for waitSeconds; time out only well after.
    // The SDK's handler type comes from @smithy/types, which we do not import;
    // FetchRequestHandler implements the part of it the SDK calls.
    requestHandler: new FetchRequestHandler({
      requestTimeoutMs: (options.waitSeconds + 10) * 1000,
    }) as unknown as NonNullable<SQSClientConfig["requestHandler"]>,
  });
  return { client, endpoint };
}
