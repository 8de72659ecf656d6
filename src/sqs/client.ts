/**
 * The SQS client built from configuration: which endpoint, region and
 * credentials, with connection reuse sized for the receive loops.
 *
 * @module
 */

import { SQSClient } from "@aws-sdk/client-sqs";
import { AwsQueryProtocol } from "@aws-sdk/core/protocols";
import { protocolMismatch } from "./_errors.ts";
import { clientCredentials, reportCredentialFailures } from "./credentials.ts";
import type { SqsProtocol } from "../config/configs.ts";
import { dnsName, isLoopbackName } from "../config/hosts.ts";
import { awsQueueHost, type ResolvedRegion, resolveRegion } from "./region.ts";
import type { Telemetry } from "../ops/telemetry.ts";

/** Environment variables the SDK reads for credentials; any one means "use the SDK's chain". */
const CREDENTIAL_VARS = [
  "AWS_ACCESS_KEY_ID",
  "AWS_PROFILE",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
] as const;

/**
 * True for hosts of AWS itself, where the SDK's own endpoint resolution
 * applies; a fully qualified name (one trailing dot) included.
 */
export function isAwsHost(hostname: string): boolean {
  const host = dnsName(hostname);
  return /(^|\.)amazonaws\.com(\.cn)?$/.test(host) || /(^|\.)api\.aws$/.test(host);
}

/**
 * The origin to dial for a URL. Emulators hand out queue URLs such as
 * `http://sqs.us-east-1.localhost.localstack.cloud:4566/…` that need DNS
 * (or none at all, for `*.localhost`), so loopback names dial 127.0.0.1.
 * Inside a container network, name the emulator's service host instead, or
 * set AWS_ENDPOINT_URL.
 */
export function loopbackForLocalhost(url: string): string {
  const parsed = new URL(url);
  if (isLoopbackName(parsed.hostname)) parsed.hostname = "127.0.0.1";
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
 * For an AWS host the SDK builds the endpoint from the region, which the
 * queue URL sets (`sqs/region.ts`), so requests go where the queue lives.
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

/**
 * Connections kept for deletes, visibility changes and sends beside the
 * receive loops' own: the SDK's default pool size, which they shared with
 * the loops before the pool was sized to them.
 */
export const ACK_SOCKETS = 50;

/** What the client needs from configuration. */
export interface SqsClientOptions {
  readonly queueUrl: string;
  /** --region or AWS_REGION; `null` when unset (`sqs/region.ts` decides). */
  readonly region: string | null;
  readonly protocol: SqsProtocol;
  readonly awsEnv: Readonly<Record<string, string>>;
  /** Longest long poll, to set the request timeout above it. */
  readonly waitSeconds: number;
  /**
   * Receive calls that may be under way at once (the most receive loops): the
   * connection pool holds that many plus `ACK_SOCKETS`. Unset: the SDK's 50.
   */
  readonly receivers?: number;
  /** Check each received body against its MD5OfBody (default off). */
  readonly verifyMd5?: boolean;
  /** Told once, when `auto` switches to Query, with the answer that showed why. */
  readonly onProtocolSwitch?: (reason: string) => void;
  /** Told once, at creation, when an AWS queue URL's region overrides a configured one. */
  readonly onRegionOverridden?: (override: RegionOverride) => void;
  /** The SDK's region chain; tests replace it. */
  readonly regionChain?: () => Promise<string | null>;
}

/** An AWS queue URL's region, and the configured one it overrides. */
export interface RegionOverride {
  readonly region: string;
  readonly configured: string;
  readonly configuredFrom: string;
}

/** The client and what was decided in making it, for the start log line. */
export interface SqsConnection {
  readonly client: SQSClient;
  readonly endpoint: SqsEndpoint;
  readonly region: ResolvedRegion;
  /** The protocol in use now: `auto` may switch from json to query once. */
  protocol(): "json" | "query";
}

/**
 * The SDK's own Query protocol for SQS (its 2012-11-05 API), as the SDK
 * builds it for services that speak only Query.
 */
function queryProtocol(): AwsQueryProtocol {
  return new AwsQueryProtocol({
    defaultNamespace: "com.amazonaws.sqs",
    xmlNamespace: "http://queue.amazonaws.com/doc/2012-11-05/",
    version: "2012-11-05",
  });
}

/**
 * Creates the SQS client. Against a non-AWS endpoint with no credentials in
 * the environment, it signs with the dummy pair `test`/`test` that LocalStack
 * and other emulators accept, so a queue URL alone is enough locally.
 * Missing or refused credentials fail every call with one `CredentialsError`
 * (`sqs/credentials.ts`).
 *
 * With `auto`, a middleware at the start of every call catches an answer that
 * shows a protocol mismatch, switches the client's protocol to Query once and
 * repeats the call. A JSON endpoint pays one try/catch per call, nothing more.
 */
export async function createSqsClient(options: SqsClientOptions): Promise<SqsConnection> {
  const endpoint = resolveSqsEndpoint(options.queueUrl, options.awsEnv);
  const region = await resolveRegion(options.queueUrl, {
    explicit: options.region,
    awsEnv: options.awsEnv,
    ...(options.regionChain === undefined ? {} : { sdkChain: options.regionChain }),
  });
  if (region.overridden !== null) {
    options.onRegionOverridden?.({
      region: region.region,
      configured: region.overridden.region,
      configuredFrom: region.overridden.source,
    });
  }
  const hasCredentials = CREDENTIAL_VARS.some((name) => options.awsEnv[name] !== undefined);
  // Never the dummy pair for an AWS host, even one given by AWS_ENDPOINT_URL
  // (a VPC or FIPS endpoint): there the SDK's own chain (instance role, ~/.aws) applies.
  const credentials = clientCredentials(options.awsEnv, {
    emulatorPair: endpoint.source !== "aws" &&
      !isAwsHost(new URL(endpoint.endpoint ?? options.queueUrl).hostname) && !hasCredentials,
  });
  // The SDK's own endpoint for an AWS queue URL: the FIPS or dual-stack one
  // when the URL names it (a custom endpoint with either flag is refused).
  const variant = endpoint.endpoint === undefined ? awsQueueHost(options.queueUrl) : null;
  let current: "json" | "query" = options.protocol === "query" ? "query" : "json";
  const client = new SQSClient({
    region: region.region,
    ...(endpoint.endpoint === undefined ? {} : { endpoint: endpoint.endpoint }),
    ...(variant?.fips === true ? { useFipsEndpoint: true } : {}),
    ...(variant?.dualStack === true ? { useDualstackEndpoint: true } : {}),
    ...(current === "query" ? { protocol: queryProtocol() } : {}),
    // The endpoint is decided above; never let a QueueUrl on another host
    // redirect calls (the SDK would also warn on the console for each).
    useQueueUrlAsEndpoint: false,
    ...credentials.config,
    maxAttempts: 3,
    // Received bodies are checked against MD5OfBody only when asked: over TLS
    // (every AWS endpoint) integrity is already assured, and hashing every
    // body was a measurable share of a drain's CPU (docs/performance.md).
    ...(options.verifyMd5 === true ? {} : { md5: false as const }),
    // The SDK's own node:http handler. A long poll holds its request open
    // for waitSeconds, so time out only well after. (A hand-written handler
    // over fetch was measured against it and gained nothing beyond the noise,
    // so it was removed: docs/performance.md.)
    // Its pool holds 50 connections unless told otherwise: more receive
    // loops than that would queue behind each other for a socket.
    requestHandler: {
      requestTimeout: (options.waitSeconds + 10) * 1000,
      connectionTimeout: 10_000,
      ...(options.receivers === undefined ? {} : {
        httpAgent: { maxSockets: options.receivers + ACK_SOCKETS },
        httpsAgent: { maxSockets: options.receivers + ACK_SOCKETS },
      }),
    },
  });
  if (options.protocol === "auto") {
    const switchToQuery = (reason: string): void => {
      if (current === "query") return; // another call in flight switched first
      current = "query";
      // The schema serde middleware reads config.protocol on every call.
      const protocol = queryProtocol();
      protocol.setSerdeContext(client.config as Parameters<AwsQueryProtocol["setSerdeContext"]>[0]);
      (client.config as { protocol: unknown }).protocol = protocol;
      options.onProtocolSwitch?.(reason);
    };
    client.middlewareStack.add(
      (next) => async (args) => {
        const sentAs = current;
        try {
          return await next(args);
        } catch (error) {
          const why = sentAs === "json" ? protocolMismatch(error) : null;
          if (why === null) throw error;
          switchToQuery(why); // once; a no-op for calls sent before another switched
          return await next(args);
        }
      },
      { step: "initialize", name: "loginEtlSqsProtocolFallback" },
    );
  }
  reportCredentialFailures(client, credentials, options.awsEnv);
  return { client, endpoint, region, protocol: () => current };
}

/**
 * The SQS client of a command, its region override and protocol switch, if
 * any, logged as they happen.
 */
export function openQueue(
  options: Omit<SqsClientOptions, "onProtocolSwitch" | "onRegionOverridden">,
  telemetry: Telemetry,
): Promise<SqsConnection> {
  return createSqsClient({
    ...options,
    onProtocolSwitch: (reason) =>
      telemetry.emit({ type: "SqsProtocolSwitched", protocol: "query", reason }),
    onRegionOverridden: (override) => telemetry.emit({ type: "RegionOverridden", ...override }),
  });
}
