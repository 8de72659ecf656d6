/**
 * The region requests are signed for: the flag or AWS_REGION, else the SDK's
 * own chain (the profile in ~/.aws/config), else the region named in the queue
 * URL, else us-east-1, which local emulators accept.
 *
 * @module
 */

import { SQSClient } from "@aws-sdk/client-sqs";

/** Where the region came from, for the start log line. */
export type RegionSource = "--region or AWS_REGION" | "AWS config" | "queue URL" | "fallback";

/** A region and why. */
export interface ResolvedRegion {
  readonly region: string;
  readonly source: RegionSource;
}

/** The region of last resort: what LocalStack and other emulators sign with by default. */
export const FALLBACK_REGION = "us-east-1";

const REGION = "([a-z]{2}(?:-[a-z]+)+-\\d)";
/** Host forms that name a region, AWS's and LocalStack's. */
const HOST_PATTERNS: readonly RegExp[] = [
  // sqs.eu-west-1.amazonaws.com, sqs-fips.us-east-1.amazonaws.com, sqs.us-east-1.api.aws,
  // sqs.us-east-1.localhost.localstack.cloud
  new RegExp(`^sqs(?:-fips)?\\.${REGION}\\.`),
  // the legacy eu-west-1.queue.amazonaws.com
  new RegExp(`^${REGION}\\.queue\\.amazonaws\\.com(?:\\.cn)?$`),
];

/**
 * The region a queue URL names, if any: in its host (AWS's and LocalStack's
 * domain style), in LocalStack's path style `/queue/<region>/<account>/<name>`,
 * or us-east-1 for AWS's legacy `queue.amazonaws.com`.
 */
export function regionFromQueueUrl(queueUrl: string): string | null {
  let url: URL;
  try {
    url = new URL(queueUrl);
  } catch {
    return null;
  }
  const host = url.hostname.toLowerCase();
  for (const pattern of HOST_PATTERNS) {
    const match = pattern.exec(host);
    if (match?.[1] !== undefined) return match[1];
  }
  if (host === "queue.amazonaws.com") return "us-east-1";
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

/**
 * Picks the region: the explicit one, then the SDK's chain, then the queue
 * URL, then us-east-1.
 */
export async function resolveRegion(
  explicit: string | null,
  queueUrl: string,
  sdkChain: () => Promise<string | null> = regionFromSdkChain,
): Promise<ResolvedRegion> {
  if (explicit !== null) return { region: explicit, source: "--region or AWS_REGION" };
  const fromChain = await sdkChain();
  if (fromChain !== null) return { region: fromChain, source: "AWS config" };
  const fromUrl = regionFromQueueUrl(queueUrl);
  if (fromUrl !== null) return { region: fromUrl, source: "queue URL" };
  return { region: FALLBACK_REGION, source: "fallback" };
}
