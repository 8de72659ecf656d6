/**
 * A lean HTTP handler for the AWS SDK over the runtime's native `fetch`.
 *
 * Why: under Deno the SDK's default handler runs on the node:http
 * compatibility layer, which parses HTTP in JavaScript; with the SDK's
 * middleware it was most of a drain's CPU (see docs/performance.md). Deno's
 * fetch keeps connections alive and parses in native code. This handler does
 * only what SQS's JSON protocol needs: one request, the whole response body
 * as bytes, a timeout, and cancellation.
 *
 * @module
 */

/** The parts of a Smithy `HttpRequest` this handler reads. */
interface SdkRequest {
  readonly protocol: string;
  readonly hostname: string;
  readonly port?: number;
  readonly path: string;
  readonly query?: Record<string, string | string[] | null>;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body?: unknown;
}

/** What the SDK's deserializers read from a response (duck-typed by the SDK). */
interface SdkResponse {
  readonly statusCode: number;
  readonly reason: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
}

function queryString(query: SdkRequest["query"]): string {
  if (query === undefined) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === null) params.append(key, "");
    else if (Array.isArray(value)) { for (const v of value) params.append(key, v); }
    else params.append(key, value);
  }
  const text = params.toString();
  return text === "" ? "" : `?${text}`;
}

/** A network failure shaped like Node's, so the SDK's retry strategy treats it as transient. */
function networkError(cause: unknown, timedOut: boolean): Error {
  const error = new Error(
    timedOut
      ? "request timed out"
      : `connection failed: ${cause instanceof Error ? cause.message : String(cause)}`,
    { cause },
  );
  error.name = timedOut ? "TimeoutError" : "NetworkError";
  return Object.assign(error, { code: timedOut ? "ETIMEDOUT" : "ECONNRESET" });
}

/** A Smithy-compatible request handler over `fetch`. */
export class FetchRequestHandler {
  readonly metadata = { handlerProtocol: "http/1.1" };
  readonly #requestTimeoutMs: number;

  constructor(options: { readonly requestTimeoutMs: number }) {
    this.#requestTimeoutMs = options.requestTimeoutMs;
  }

  async handle(
    request: SdkRequest,
    options: { readonly abortSignal?: AbortSignal } = {},
  ): Promise<{ response: SdkResponse }> {
    const port = request.port === undefined ? "" : `:${request.port}`;
    const url = `${request.protocol}//${request.hostname}${port}${request.path}${
      queryString(request.query)
    }`;
    // A timer we clear ourselves: AbortSignal.timeout's would outlive each request.
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.#requestTimeoutMs);
    const signal = options.abortSignal === undefined
      ? timeout.signal
      : AbortSignal.any([timeout.signal, options.abortSignal]);
    const headers = { ...request.headers };
    // fetch sets these itself and refuses some of them.
    delete headers["host"];
    delete headers["Host"];
    delete headers["content-length"];
    delete headers["Content-Length"];
    let response: Response;
    let body: Uint8Array;
    try {
      response = await fetch(url, {
        method: request.method,
        headers,
        body: (request.body ?? null) as BodyInit | null,
        signal,
      });
      body = new Uint8Array(await response.arrayBuffer());
    } catch (error) {
      if (options.abortSignal?.aborted === true) {
        throw Object.assign(new Error("request aborted", { cause: error }), { name: "AbortError" });
      }
      throw networkError(error, timeout.signal.aborted);
    } finally {
      clearTimeout(timer);
    }
    const responseHeaders: Record<string, string> = {};
    response.headers.forEach((value, name) => {
      responseHeaders[name] = value;
    });
    return {
      response: {
        statusCode: response.status,
        reason: response.statusText,
        headers: responseHeaders,
        body,
      },
    };
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {}
}
