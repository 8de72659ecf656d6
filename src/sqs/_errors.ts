/**
 * What an AWS SDK error means for us: a short description without request
 * details, whether a retry may succeed, whether the endpoint speaks another
 * wire protocol than the one we used, and whether it refused our credentials.
 *
 * @module
 */

/** The SDK's error metadata we read. */
interface AwsErrorShape {
  readonly Code?: string;
  readonly message?: string;
  readonly $fault?: string;
  readonly $retryable?: unknown;
  readonly $metadata?: { readonly httpStatusCode?: number };
  /** Hidden field the SDK sets on deserialization errors. */
  readonly $response?: {
    readonly statusCode?: number;
    readonly headers?: Readonly<Record<string, string>>;
    readonly body?: unknown;
  };
}

/** LocalStack < 3.0's answer to a JSON-protocol request (it speaks only Query). */
const QUERY_ONLY_ANSWER = /Operation detection failed|Missing Action in request/;

function bodyText(body: unknown): string {
  if (typeof body === "string") return body.slice(0, 2000);
  if (body instanceof Uint8Array) return new TextDecoder().decode(body.subarray(0, 2000));
  return "";
}

/**
 * Why an error shows the endpoint does not speak the JSON protocol we sent:
 * HTTP 415, LocalStack's "Operation detection failed" answer, or an XML or
 * HTML body where JSON was expected. `null` for every other error (bad
 * credentials, a missing queue, throttling, a network failure), which keep
 * their own meaning.
 */
export function protocolMismatch(error: unknown): string | null {
  if (!(error instanceof Error)) return null;
  const shape = error as AwsErrorShape;
  const status = shape.$metadata?.httpStatusCode ?? shape.$response?.statusCode;
  const text = `${error.message} ${bodyText(shape.$response?.body)}`;
  if (QUERY_ONLY_ANSWER.test(text)) {
    return `HTTP ${
      status ?? "error"
    }: "Operation detection failed. Missing Action", the answer of a Query-only endpoint`;
  }
  if (status === 415) return "HTTP 415: the endpoint does not accept JSON requests";
  const type = Object.entries(shape.$response?.headers ?? {})
    .find(([name]) => name.toLowerCase() === "content-type")?.[1] ?? "";
  const markup = /xml|html/i.test(type) || /Unexpected token '<'/.test(error.message);
  // Only a failed JSON parse: an XML error the SDK could read is a real answer.
  if (markup && (error.name === "SyntaxError" || /not valid JSON/.test(error.message))) {
    return `HTTP ${status ?? "?"} with ${
      /html/i.test(type) ? "an HTML" : "an XML"
    } body where JSON was expected`;
  }
  return null;
}

/** Short text of an AWS SDK error: its name or code and message, no request details. */
export function describeAwsError(error: unknown): string {
  const mismatch = protocolMismatch(error);
  if (mismatch !== null) {
    return `${mismatch}; the endpoint speaks the SQS Query protocol only: use --sqs-protocol query (or auto)`;
  }
  if (error instanceof Error) {
    const code = (error as AwsErrorShape).Code ?? error.name;
    const message = error.message.split("\n")[0] ?? "";
    // A network error has no AWS code, only the class name "Error": its message says it all.
    if (code === "Error") return message === "" ? "Error" : message;
    return message !== "" && message !== code ? `${code}: ${message}` : code;
  }
  return String(error);
}

const THROTTLING =
  /Throttl|RequestLimitExceeded|TooManyRequests|SlowDown|ServiceUnavailable|InternalError|RequestTimeout/;

/**
 * True when retrying later may succeed: throttling, a server fault, or no
 * complete answer at all (connection refused or reset, timeout, a truncated
 * response). False for client faults such as a missing queue or denied
 * access, for a protocol mismatch, which a retry would only repeat, and for a
 * permission the runtime refused (the binary's flags lack one Deno asks for,
 * as sys "ca" was when NODE_EXTRA_CA_CERTS is set): no wait grants it.
 */
export function isTransientAwsError(error: unknown): boolean {
  if (!(error instanceof Error) || protocolMismatch(error) !== null) return false;
  if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
    return false;
  }
  const meta = error as AwsErrorShape;
  if (meta.$retryable !== undefined || THROTTLING.test(error.name)) return true;
  return meta.$fault !== "client";
}

/** How a refusal of our credentials reads, each with its own fix. */
export type RefusalKind = "signature" | "unknown-key" | "expired" | "clock" | "denied" | "other";

/** AWS refused a request for its credentials or their rights. */
export interface AuthRefusal {
  readonly kind: RefusalKind;
  /** AWS's code, e.g. `InvalidClientTokenId`. */
  readonly code: string;
  /** AWS's message (kept for `denied`, where it names the missing action). */
  readonly message: string;
}

/**
 * AWS's codes for refused credentials, both protocols' spellings: the Query
 * code (also the JSON answer's `x-amzn-query-error`, which the SDK names the
 * error after) and the JSON `__type`. Some of these come as HTTP 400, so the
 * code decides, and any other 403 counts too.
 */
const REFUSALS: Readonly<Record<string, RefusalKind>> = {
  SignatureDoesNotMatch: "signature",
  InvalidSignatureException: "signature",
  IncompleteSignature: "signature",
  IncompleteSignatureException: "signature",
  MissingAuthenticationToken: "signature",
  MissingAuthenticationTokenException: "signature",
  InvalidClientTokenId: "unknown-key",
  UnrecognizedClientException: "unknown-key",
  InvalidAccessKeyId: "unknown-key",
  ExpiredToken: "expired",
  ExpiredTokenException: "expired",
  TokenRefreshRequired: "expired",
  RequestExpired: "clock",
  RequestTimeTooSkewed: "clock",
  RequestInTheFuture: "clock",
  AccessDenied: "denied",
  AccessDeniedException: "denied",
  AuthorizationError: "denied",
  AuthFailure: "denied",
  KmsAccessDenied: "denied",
};

/**
 * The refusal an AWS error is, when SQS refused the request's credentials or
 * their rights (a 403 of any code, or a code of `REFUSALS`); `null` for
 * every other error. A refused connection is not one: no answer came.
 */
export function authRefusal(error: unknown): AuthRefusal | null {
  if (!(error instanceof Error)) return null;
  const shape = error as AwsErrorShape;
  const code = (shape.Code ?? error.name).split("#").pop() ?? error.name;
  const kind = REFUSALS[code] ??
    (/AccessDenied/.test(code)
      ? "denied"
      : shape.$metadata?.httpStatusCode === 403 && protocolMismatch(error) === null
      ? "other"
      : null);
  return kind === null ? null : { kind, code, message: error.message };
}
