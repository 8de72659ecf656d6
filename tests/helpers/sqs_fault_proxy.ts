// An HTTP proxy in front of the SQS endpoint that injects the faults real
// SQS shows: throttling, 500s, connections reset before or after the call
// reached the queue, stalls, and refused credentials (HTTP 403 in the
// protocol of the request, as AWS answers), chosen per call by a policy
// function. It records each request's SigV4 credential scope, so a test sees
// which region every call was signed for.

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

/**
 * AWS's answers when it refuses a request's credentials: the Query code
 * (also what the JSON protocol's `x-amzn-query-error` header carries), the
 * JSON `__type`, and the message, as AWS words them.
 */
export const REFUSALS = {
  SignatureDoesNotMatch: {
    type: "com.amazon.coral.service#InvalidSignatureException",
    message:
      "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
  },
  InvalidClientTokenId: {
    type: "com.amazon.coral.service#UnrecognizedClientException",
    message: "The security token included in the request is invalid.",
  },
  ExpiredToken: {
    type: "com.amazon.coral.service#ExpiredTokenException",
    message: "The security token included in the request is expired",
  },
  AccessDenied: {
    type: "com.amazon.coral.service#AccessDeniedException",
    message:
      "User: arn:aws:iam::000000000000:user/etl is not authorized to perform: sqs:receivemessage on resource: arn:aws:sqs:eu-west-1:000000000000:login-queue because no identity-based policy allows the sqs:receivemessage action",
  },
} as const;

/** A code of `REFUSALS`. */
export type RefusalCode = keyof typeof REFUSALS;

/** What happens to one SQS call. */
export type Fault =
  | "pass"
  | "throttle"
  | "error500"
  | "reset-before"
  | "reset-after"
  | { readonly stallUntil: Promise<void> }
  /** HTTP 403 with AWS's answer for `refuse`; `headerless` leaves out `x-amzn-query-error`. */
  | { readonly refuse: RefusalCode; readonly headerless?: boolean };

/** Decides the fault for a call, given its action name (e.g. `ReceiveMessage`). */
export type FaultPolicy = (action: string) => Fault;

/** One request as signed: its action and SigV4 credential scope (never the key id). */
export interface SignedRequest {
  readonly action: string;
  /** The scope's region, or `null` when the request was not signed with SigV4. */
  readonly region: string | null;
  readonly service: string | null;
}

/** A running fault proxy; dispose with `await using`. */
export interface SqsFaultProxy extends AsyncDisposable {
  readonly endpoint: string;
  policy: FaultPolicy;
  /** Calls seen, by `action:fault`. */
  readonly stats: Map<string, number>;
  /** Every request, in order of arrival, with the scope it was signed for. */
  readonly signed: SignedRequest[];
}

function sendError(res: ServerResponse, status: number, type: string, message: string): void {
  res.writeHead(status, {
    "content-type": "application/x-amz-json-1.0",
    "x-amzn-query-error": `${type.split("#").pop()};${status >= 500 ? "Receiver" : "Sender"}`,
  });
  res.end(JSON.stringify({ __type: type, message }));
}

/** AWS's Query-protocol error document for a refusal. */
function queryRefusal(code: RefusalCode): string {
  return `<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${
    REFUSALS[code].message
  }</Message><Detail/></Error><RequestId>8f1e2f5c-1d5b-5c8e-9f0e-refused</RequestId></ErrorResponse>`;
}

/** Answers 403 as AWS does, in the protocol the request spoke. */
function sendRefusal(
  res: ServerResponse,
  fault: { readonly refuse: RefusalCode; readonly headerless?: boolean },
  query: boolean,
): void {
  const requestId = { "x-amzn-requestid": "8f1e2f5c-1d5b-5c8e-9f0e-refused" };
  if (query) {
    res.writeHead(403, { ...requestId, "content-type": "text/xml" });
    return void res.end(queryRefusal(fault.refuse));
  }
  res.writeHead(403, {
    ...requestId,
    "content-type": "application/x-amz-json-1.0",
    ...(fault.headerless === true ? {} : { "x-amzn-query-error": `${fault.refuse};Sender` }),
  });
  const { type, message } = REFUSALS[fault.refuse];
  res.end(JSON.stringify({ __type: type, message }));
}

/** The SigV4 scope of a request: `Credential=AKID/DATE/REGION/SERVICE/aws4_request`. */
function scopeOf(req: IncomingMessage): { region: string | null; service: string | null } {
  const match = /Credential=[^/,\s]+\/\d{8}\/([^/,\s]+)\/([^/,\s]+)\/aws4_request/.exec(
    String(req.headers["authorization"] ?? ""),
  );
  return { region: match?.[1] ?? null, service: match?.[2] ?? null };
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
  const signed: SignedRequest[] = [];
  const count = (key: string) => stats.set(key, (stats.get(key) ?? 0) + 1);
  const state: { policy: FaultPolicy } = { policy };
  const server = createServer((req, res) => {
    (async () => {
      const body = await readBody(req);
      // JSON names the action in X-Amz-Target; Query in the form body.
      const query = String(req.headers["content-type"] ?? "").includes("x-www-form-urlencoded");
      const action = query
        ? new URLSearchParams(body).get("Action") ?? "unknown"
        : String(req.headers["x-amz-target"] ?? "").split(".").pop() || "unknown";
      signed.push({ action, ...scopeOf(req) });
      const fault = state.policy(action);
      count(
        `${action}:${
          typeof fault === "string" ? fault : "refuse" in fault ? `refuse-${fault.refuse}` : "stall"
        }`,
      );
      if (typeof fault === "object" && "refuse" in fault) return sendRefusal(res, fault, query);
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
    signed,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
