// An HTTP proxy in front of the SQS endpoint that injects the faults real
// SQS shows: throttling, 500s, connections reset before or after the call
// reached the queue, and stalls, chosen per call by a policy function.

/** What happens to one SQS call. */
export type Fault =
  | "pass"
  | "throttle"
  | "error500"
  | "reset-before"
  | "reset-after"
  | { readonly stallUntil: Promise<void> };

/** Decides the fault for a call, given its action name (e.g. `ReceiveMessage`). */
export type FaultPolicy = (action: string) => Fault;

/** A running fault proxy; dispose with `await using`. */
export interface SqsFaultProxy extends AsyncDisposable {
  readonly endpoint: string;
  policy: FaultPolicy;
  /** Calls seen and faults injected, by action and fault. */
  readonly stats: Map<string, number>;
}

function jsonError(status: number, type: string, message: string): Response {
  return new Response(JSON.stringify({ __type: type, message }), {
    status,
    headers: {
      "content-type": "application/x-amz-json-1.0",
      "x-amzn-query-error": `${type.split("#").pop()};${status >= 500 ? "Receiver" : "Sender"}`,
    },
  });
}

/** A response whose body errors, so the server drops the connection mid-response. */
function reset(): Response {
  return new Response(new ReadableStream({ start: (c) => c.error(new Error("injected reset")) }), {
    headers: { "content-length": "100" },
  });
}

/** Starts the proxy on a free loopback port, forwarding to `target` (an endpoint origin). */
export function startSqsFaultProxy(
  target: string,
  policy: FaultPolicy = () => "pass",
): SqsFaultProxy {
  const stats = new Map<string, number>();
  const count = (key: string) => stats.set(key, (stats.get(key) ?? 0) + 1);
  const state: { policy: FaultPolicy } = { policy };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const action = (request.headers.get("x-amz-target") ?? "").split(".").pop() ?? "unknown";
      const fault = state.policy(action);
      const name = typeof fault === "string" ? fault : "stall";
      count(`${action}:${name}`);
      if (fault === "throttle") {
        return jsonError(
          400,
          "com.amazonaws.sqs#ThrottlingException",
          "Rate exceeded",
        );
      }
      if (fault === "error500") {
        return jsonError(
          500,
          "com.amazonaws.sqs#InternalError",
          "injected",
        );
      }
      if (fault === "reset-before") return reset();
      if (typeof fault === "object") await fault.stallUntil;
      const url = new URL(request.url);
      const headers = new Headers(request.headers);
      headers.delete("host");
      const upstream = await fetch(`${target}${url.pathname}${url.search}`, {
        method: request.method,
        headers,
        body: await request.arrayBuffer(),
      });
      const body = await upstream.arrayBuffer();
      if (fault === "reset-after") return reset(); // the call took effect; its answer is lost
      return new Response(body, { status: upstream.status, headers: upstream.headers });
    },
  );
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    get policy() {
      return state.policy;
    },
    set policy(p: FaultPolicy) {
      state.policy = p;
    },
    stats,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}
