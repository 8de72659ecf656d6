/**
 * The region requests are signed for. A queue URL on an AWS host names the
 * region the queue lives in, and a request signed for any other region is
 * refused, so that region wins over every configured one (which only earns a
 * warning when it differs). For other hosts (emulators) the configured region
 * decides: the flag or AWS_REGION, then AWS_DEFAULT_REGION, then the SDK's
 * own chain (the profile in ~/.aws/config), then a region the URL names in
 * LocalStack's forms, then us-east-1, which local emulators accept.
 *
 * @module
 */

import { SQSClient } from "@aws-sdk/client-sqs";

/** Where the region came from, for the start log line and the warning. */
export type RegionSource =
  | "queue URL"
  | "--region or AWS_REGION"
  | "AWS_DEFAULT_REGION"
  | "AWS config"
  | "fallback";

/** A region and why. */
export interface RegionChoice {
  readonly region: string;
  readonly source: RegionSource;
}

/** The region in use, and a configured one an AWS queue URL's overrode (`null`: none differs). */
export interface ResolvedRegion extends RegionChoice {
  readonly overridden: RegionChoice | null;
}

/** The region of last resort: what LocalStack and other emulators sign with by default. */
export const FALLBACK_REGION = "us-east-1";

const REGION = "([a-z]{2}(?:-[a-z]+)+-\\d)";

/** What an AWS queue URL's host says: the region, and the endpoint variant it names. */
export interface AwsQueueHost {
  readonly region: string;
  /** `sqs-fips.*`: the FIPS endpoint. */
  readonly fips: boolean;
  /** `*.api.aws`: the dual-stack (IPv4 and IPv6) endpoint. */
  readonly dualStack: boolean;
}

/** AWS's SQS host forms, each capturing the region (`sqs/client.ts` knows AWS hosts at large). */
const AWS_HOSTS: readonly RegExp[] = [
  // sqs.eu-west-1.amazonaws.com, sqs-fips.us-east-1.amazonaws.com, the .amazonaws.com.cn
  // forms of China, and the dual-stack sqs.eu-west-1.api.aws
  new RegExp(`^sqs(?:-fips)?\\.${REGION}\\.(?:amazonaws\\.com(?:\\.cn)?|api\\.aws)$`),
  // the legacy eu-west-1.queue.amazonaws.com
  new RegExp(`^${REGION}\\.queue\\.amazonaws\\.com(?:\\.cn)?$`),
  // an interface VPC endpoint: vpce-0abc-def.sqs.eu-west-1.vpce.amazonaws.com
  new RegExp(`^vpce-[a-z0-9-]+\\.sqs\\.${REGION}\\.vpce\\.amazonaws\\.com(?:\\.cn)?$`),
];

/**
 * A host name as the AWS checks compare it: lower case, without the one
 * trailing dot of a fully qualified name. `sqs.eu-west-1.amazonaws.com.`
 * resolves to the same servers as without the dot, so it is the same AWS
 * host (its region, the SDK's endpoint, never the emulators' dummy pair).
 */
export function dnsName(hostname: string): string {
  const lower = hostname.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/**
 * The region and endpoint variant an AWS queue URL names, or `null` for any
 * other host (emulators, LocalStack's look-alike `*.localstack.cloud` names).
 * AWS's legacy `queue.amazonaws.com` is us-east-1.
 */
export function awsQueueHost(queueUrl: string): AwsQueueHost | null {
  let host: string;
  try {
    host = dnsName(new URL(queueUrl).hostname);
  } catch {
    return null;
  }
  if (host === "queue.amazonaws.com") {
    return { region: "us-east-1", fips: false, dualStack: false };
  }
  for (const pattern of AWS_HOSTS) {
    const match = pattern.exec(host);
    if (match?.[1] !== undefined) {
      return {
        region: match[1],
        fips: host.startsWith("sqs-fips."),
        dualStack: host.endsWith(".api.aws"),
      };
    }
  }
  return null;
}

/**
 * The region a queue URL names, if any: an AWS host's (`awsQueueHost`), or
 * one of LocalStack's forms, `sqs.<region>.localhost.localstack.cloud` and
 * the path style `/queue/<region>/<account>/<name>`.
 */
export function regionFromQueueUrl(queueUrl: string): string | null {
  const aws = awsQueueHost(queueUrl);
  if (aws !== null) return aws.region;
  let url: URL;
  try {
    url = new URL(queueUrl);
  } catch {
    return null;
  }
  const host = new RegExp(`^sqs\\.${REGION}\\.`).exec(dnsName(url.hostname));
  if (host?.[1] !== undefined) return host[1];
  const path = new RegExp(`^/queue/${REGION}/`).exec(url.pathname);
  return path?.[1] ?? null;
}

/**
 * The region the SDK's default chain finds (AWS_REGION, then the profile's
 * `region` in the shared config file), or null when it finds none. It asks a
 * throwaway client, so the chain is exactly the SDK's.
 */
export async function regionFromSdkChain(): Promise<string | null> {
  const probe = new SQSClient({});
  try {
    const region = await probe.config.region();
    return region === "" ? null : region;
  } catch {
    return null; // "Region is missing": the chain found nothing
  } finally {
    probe.destroy();
  }
}

/** What `resolveRegion` reads besides the queue URL. */
export interface RegionInputs {
  /** --region or AWS_REGION (or the config file's `region`); `null` when unset. */
  readonly explicit: string | null;
  /** AWS_* variables as configuration read them (AWS_DEFAULT_REGION). */
  readonly awsEnv?: Readonly<Record<string, string>>;
  /** The SDK's region chain; tests replace it. */
  readonly sdkChain?: () => Promise<string | null>;
}

/** The configured region in the AWS CLI's order: flag/AWS_REGION, AWS_DEFAULT_REGION, profile. */
async function configuredRegion(inputs: RegionInputs): Promise<RegionChoice | null> {
  if (inputs.explicit !== null) {
    return { region: inputs.explicit, source: "--region or AWS_REGION" };
  }
  const fromDefault = inputs.awsEnv?.["AWS_DEFAULT_REGION"];
  if (fromDefault !== undefined && fromDefault !== "") {
    return { region: fromDefault, source: "AWS_DEFAULT_REGION" };
  }
  const fromChain = await (inputs.sdkChain ?? regionFromSdkChain)();
  return fromChain === null ? null : { region: fromChain, source: "AWS config" };
}

/**
 * Picks the region: an AWS queue URL's, noting a configured region that
 * differs; for other hosts the configured one, then a region the URL names,
 * then us-east-1.
 */
export async function resolveRegion(
  queueUrl: string,
  inputs: RegionInputs,
): Promise<ResolvedRegion> {
  const configured = await configuredRegion(inputs);
  const aws = awsQueueHost(queueUrl);
  if (aws !== null) {
    return {
      region: aws.region,
      source: "queue URL",
      overridden: configured !== null && configured.region !== aws.region ? configured : null,
    };
  }
  if (configured !== null) return { ...configured, overridden: null };
  const fromUrl = regionFromQueueUrl(queueUrl);
  if (fromUrl !== null) return { region: fromUrl, source: "queue URL", overridden: null };
  return { region: FALLBACK_REGION, source: "fallback", overridden: null };
}
