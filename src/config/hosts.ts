/**
 * Host names as login-etl compares them, pure and with no I/O: the settings
 * check a URL's host (a reject queue over plain HTTP only on loopback), and
 * the SQS client decides what to dial and how to sign from the same rules.
 *
 * @module
 */

/**
 * A host name as the checks compare it: lower case, without the one
 * trailing dot of a fully qualified name (`sqs.eu-west-1.amazonaws.com.`
 * resolves to the same servers as without it), and without the brackets of
 * an IPv6 literal in a URL.
 */
export function dnsName(hostname: string): string {
  const lower = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/**
 * True for names that mean this machine: `localhost` and `*.localhost` (RFC
 * 6761), and LocalStack's `localhost.localstack.cloud` with its subdomains,
 * whose public DNS record is 127.0.0.1.
 */
export function isLoopbackName(hostname: string): boolean {
  const host = dnsName(hostname);
  return host === "localhost" || host.endsWith(".localhost") ||
    host === "localhost.localstack.cloud" || host.endsWith(".localhost.localstack.cloud");
}

/** True for a loopback name or address: 127.0.0.0/8, `::1`, or a name `isLoopbackName` takes. */
export function isLoopbackHost(hostname: string): boolean {
  const host = dnsName(hostname);
  return isLoopbackName(host) || /^127(\.\d{1,3}){3}$/.test(host) || host === "::1";
}
