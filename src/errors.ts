/**
 * Error classes, their stable codes and exit codes, and the one-line message a
 * user sees. Bad messages are not errors (they are `Rejection` values); these are
 * for failures of the tool, its configuration or its services.
 *
 * @module
 */

/** Exit code for bad usage or configuration: the user can fix it. */
export const EXIT_USAGE = 2;
/** Exit code for a runtime failure (a service failed or a bug). */
export const EXIT_FAILURE = 1;
/**
 * Exit code for a run that did its work but rejected more messages than
 * `--max-rejects` allows: every valid row is written and every message
 * deleted, and the input needs a look.
 */
export const EXIT_TOO_MANY_REJECTS = 3;

/** Stable codes, safe as log fields and metric labels. */
export type ErrorCode =
  | "usage"
  | "config"
  | "key_mismatch"
  | "key_missing"
  | "sqs_queue"
  | "sqs_receive"
  | "sqs_delete"
  | "sqs_send"
  | "sqs_credentials"
  | "db_connect"
  | "db_schema"
  | "db_write"
  | "check_failed"
  | "too_many_rejects"
  /** A vault entry that does not decrypt or mask back: altered, injected or swapped. */
  | "vault_integrity"
  /** `recover` found no value behind any mask it was given (erased, dropped or never vaulted). */
  | "nothing_recovered"
  /** A stop signal arrived while start-up still waited for a service: the run never began. */
  | "stopped"
  /** A bug: nothing a user did or a service said explains it. */
  | "internal";

/** Options shared by every error of this tool. */
export interface EtlErrorOptions {
  readonly cause?: unknown;
  /** SQS MessageIds the failure affected, when it concerns messages. */
  readonly messageIds?: readonly string[];
  /** True when a later attempt may succeed (a service unreachable, throttling). */
  readonly transient?: boolean;
}

/** Base class: a code, an exit code and, where it applies, the affected message ids. */
export class EtlError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  readonly messageIds: readonly string[];
  readonly transient: boolean;

  constructor(code: ErrorCode, message: string, options: EtlErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = code === "usage" || code === "config" || code === "key_mismatch" ||
        code === "key_missing"
      ? EXIT_USAGE
      : code === "too_many_rejects"
      ? EXIT_TOO_MANY_REJECTS
      : EXIT_FAILURE;
    this.messageIds = options.messageIds ?? [];
    this.transient = options.transient ?? false;
  }
}

/** A command line the tool cannot act on: unknown flag, missing value. Exit 2. */
export class UsageError extends EtlError {
  constructor(message: string, options: EtlErrorOptions = {}) {
    super("usage", message, options);
  }
}

/** A setting out of range, a missing key, an unreadable file. Exit 2. */
export class ConfigError extends EtlError {
  constructor(message: string, options: EtlErrorOptions = {}) {
    super("config", message, options);
  }
}

/** The configured HMAC key id is recorded with another key's fingerprint. Exit 2. */
export class KeyMismatchError extends EtlError {
  constructor(message: string, options: EtlErrorOptions = {}) {
    super("key_mismatch", message, options);
  }
}

/**
 * The HMAC key set lacks a key the database records in use and not retired:
 * a merge, recovery or erasure by value without it could not see an erasure
 * made under it. Exit 2.
 */
export class KeyMissingError extends EtlError {
  /** The missing key ids. */
  readonly keyIds: readonly string[];

  constructor(message: string, keyIds: readonly string[], options: EtlErrorOptions = {}) {
    super("key_missing", message, options);
    this.keyIds = keyIds;
  }
}

/** An SQS call failed after the SDK's own retries. Exit 1. */
export class SqsError extends EtlError {}

/**
 * No AWS credentials were found, or SQS refused them or their rights (an
 * HTTP 403, not an outage): code `sqs_credentials`, not transient unless
 * said (only a credential endpoint that may come back is), since waiting
 * would not fix it. The message names the credentials' source and never
 * holds a secret. Exit 1.
 */
export class CredentialsError extends SqsError {
  /** AWS's code (`InvalidClientTokenId`, `ExpiredToken`…), or `NoCredentials` when none was found. */
  readonly awsCode: string;

  constructor(message: string, awsCode: string, options: EtlErrorOptions = {}) {
    super("sqs_credentials", message, { ...options, transient: options.transient ?? false });
    this.awsCode = awsCode;
  }
}

/** A Postgres call failed. Exit 1. */
export class DatabaseError extends EtlError {}

/** `check` found something that fails (its lines say what). Exit 1. */
export class ChecksFailedError extends EtlError {
  constructor(failed: number, total: number) {
    super("check_failed", `${failed} of ${total} checks failed; the lines above say what to fix`);
  }
}

/** More messages were rejected than `--max-rejects` allows. Exit 3. */
export class TooManyRejectsError extends EtlError {
  constructor(rejected: number, limit: number, rejectsTable = "login_etl_rejects") {
    super(
      "too_many_rejects",
      `Rejected ${rejected} messages, more than --max-rejects ${limit}; every valid row was written. See ${rejectsTable} for the reasons (or login-etl report)`,
    );
  }
}

/**
 * A URL's password: `scheme://user:PASSWORD@`, up to the last `@` of the
 * word, so a password holding an unencoded `@` or `/` is covered whole.
 * Matched as text, not parsed: a value shown because it is invalid often
 * does not parse as a URL.
 */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:@/]*:)[^\s]*@/gi;

/**
 * A secret keyword's value, in a libpq keyword/value string or a URL's query:
 * `password=…`, `sslpassword=…`, `oauth_client_secret=…`, quoted or bare (a
 * bare value runs to the next space: libpq allows `&` and `#` in it), also
 * where a message or a log field quotes the string (`"password=…`): a bare
 * value then takes the closing quote with it, hiding more rather than less.
 */
const SECRET_KEYWORD =
  /(^|[\s?&;,"'])((?:ssl)?password|oauth_client_secret)(\s*=\s*)('(?:\\.|[^'\\])*'?|(?:\\.|[^\s\\])*)/gi;

/**
 * The value of an AWS signing parameter in a URL's query: a presigned or
 * SigV2-signed queue URL carries a session token, a signature or an access
 * key id there (`X-Amz-Security-Token`, `X-Amz-Signature`, `X-Amz-Credential`,
 * `AWSAccessKeyId`, `Signature`, `SecurityToken`, any case). Also found
 * percent-encoded inside another URL's query (`%26Signature%3D…`). The value
 * stops at `&`, `#`, a space or a quote, so a URL quoted in a message keeps
 * its closing quote.
 */
const AWS_QUERY_SECRET =
  /(^|[\s?&;,"']|%26|%3F)(x-amz-security-token|x-amz-signature|x-amz-credential|awsaccesskeyid|signature|securitytoken)(=|%3D)((?:(?!%26)[^&#\s"'<>\\])*)/gi;

/**
 * Replaces the secrets in a value a message is about to echo: a URL's
 * password (`postgres://user:***@host/db`), those of libpq's secret keywords
 * (`password=***`) and AWS signing values in a query
 * (`?X-Amz-Security-Token=***`). The one rule for every echoed value; it errs
 * towards hiding more (a port and path after a colon in the user info) over
 * less.
 */
export function redactSecrets(text: string): string {
  return text
    .replaceAll(URL_PASSWORD, "$1***@")
    // A value already hidden stays as it is, with the quote or colon after it:
    // messages are redacted where built and again where written.
    .replaceAll(
      SECRET_KEYWORD,
      (match, before, key, equals, value: string) =>
        /^\*\*\*[^\p{L}\p{N}]*$/u.test(value) ? match : `${before}${key}${equals}***`,
    )
    .replaceAll(AWS_QUERY_SECRET, "$1$2$3***");
}

/** The exit code a thrown value maps to: the error's own, else 1. */
export function exitCodeOf(error: unknown): number {
  return error instanceof EtlError ? error.exitCode : EXIT_FAILURE;
}

/**
 * One line for the user: the message, and with `verbose` every cause after it,
 * joined by `: caused by `. Never a stack trace unless the error is a bug.
 */
export function formatError(error: unknown, verbose = false): string {
  const parts = [describe(error)];
  if (verbose) {
    let cause = error instanceof Error ? error.cause : undefined;
    for (let depth = 0; cause !== undefined && depth < 8; depth++) {
      parts.push(describe(cause));
      cause = cause instanceof Error ? cause.cause : undefined;
    }
  }
  // Messages quote settings (a queue URL, a connection string) as given.
  return redactSecrets(parts.join(": caused by ").replaceAll(/\s*\n\s*/g, " "));
}

function describe(error: unknown): string {
  if (error instanceof EtlError) return error.message;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const name = error.name === "Error" ? "" : `${error.name}: `;
    return `${name}${error.message}${typeof code === "string" ? ` (${code})` : ""}`;
  }
  return String(error);
}

/** Why a file could not be read, in a few words for a one-line message. */
export function whyUnreadable(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  return error instanceof Error ? error.message.split("\n")[0] ?? error.name : String(error);
}
