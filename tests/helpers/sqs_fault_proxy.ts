// An HTTP proxy in front of the SQS endpoint that injects the faults real
// SQS shows: throttling, 500s, connections reset before or after the call
// reached the queue, and stalls, chosen per call by a policy function.

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

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
  /** Calls seen, by `action:fault`. */
  readonly stats: Map<string, number>;
}

function sendError(res: ServerResponse, status: number, type: string, message: string): void {
  res.writeHead(status, {
    "content-type": "application/x-amz-json-1.0",
    "x-amzn-query-error": `${type.split("#").pop()};${status >= 500 ? "Receiver" : "Sender"}`,
  });
  res.end(JSON.stringify({ __type: type, message }));
}

async function readBody(req: IncomingMessage): Promise<string> {
  let text = "";
  req.setEncoding("utf8");
  for await (const chunk of req) text += chunk;
  return text;
}

/** Starts the proxy on a free loopback port, forwarding to `target` (an endpoint origin). */
export async function startSqsFaultProxy(
  target: string,
  policy: FaultPolicy = () => "pass",
): Promise<SqsFaultProxy> {
  const stats = new Map<string, number>();
  const count = (key: string) => stats.set(key, (stats.get(key) ?? 0) + 1);
  const state: { policy: FaultPolicy } = { policy };
  const server = createServer((req, res) => {
    const action = String(req.headers["x-amz-target"] ?? "").split(".").pop() || "unknown";
    const fault = state.policy(action);
    count(`${action}:${typeof fault === "string" ? fault : "stall"}`);
    (async () => {
      const body = await readBody(req);
      if (fault === "throttle") {
        return sendError(res, 400, "com.amazonaws.sqs#ThrottlingException", "Rate exceeded");
      }
      if (fault === "error500") {
        return sendError(res, 500, "com.amazonaws.sqs#InternalError", "injected");
      }
      if (fault === "reset-before") return void req.socket.destroy();
      if (typeof fault === "object") await fault.stallUntil;
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (name !== "host" && typeof value === "string") headers[name] = value;
      }
      const upstream = await fetch(`${target}${req.url ?? "/"}`, {
        method: req.method ?? "POST",
        headers,
        body,
      });
      const answer = new Uint8Array(await upstream.arrayBuffer());
      // The call took effect; its answer is lost on the way back.
      if (fault === "reset-after") return void req.socket.destroy();
      const out: Record<string, string> = {};
      upstream.headers.forEach((value, name) => {
        if (name !== "content-length" && name !== "transfer-encoding") out[name] = value;
      });
      res.writeHead(upstream.status, out);
      res.end(answer);
    })().catch(() => req.socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get policy() {
      return state.policy;
    },
    set policy(p: FaultPolicy) {
      state.policy = p;
    },
    stats,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
