/**
 * Watches a connection's authentication before postgres.js sees it, with
 * libpq's rules (`check_expected_areq` and `pg_fe_sendauth` in fe-auth.c), so
 * that no password, hash or SCRAM proof leaves unless the server asked for it,
 * in order, by a method `require_auth` and `channel_binding` allow.
 *
 * Why here: postgres.js 4.2.0 answers an AuthenticationSASLContinue (and
 * handles a SASLFinal) that came without an AuthenticationSASL. It then sends a
 * valid SCRAM proof without channel binding (its client nonce is the text
 * "undefined"), whatever `channel_binding=require` or `require_auth` say and
 * even over a plain socket; its checks run on AuthenticationSASL and
 * AuthenticationOk only. A man-in-the-middle relays that proof to the real
 * server and is logged in as the user. The sockets are ours (`openSocket`), so
 * the server's messages pass through here first: a request that breaks the
 * rules is never delivered, the socket is destroyed with the reason, and a
 * gate on writes refuses any credential message the server did not ask for.
 * Remove this once postgres.js refuses such a request itself.
 *
 * @module
 */

import tls from "node:tls";
import type net from "node:net";
import { connectError, endpointName, isSocketDir, type PgEndpoint } from "./socket.ts";

/** What a connection demands of the server's authentication. */
export interface AuthPolicy {
  /** libpq's channel_binding. */
  readonly channelBinding: "disable" | "prefer" | "require";
  /** libpq's require_auth list (`scram-sha-256`, `!password,!md5`, …); `null`: any method. */
  readonly requireAuth: string | null;
}

/** Why an authentication step is refused: a stable code and a reason. */
export interface AuthRefusal {
  readonly code: "AUTH_METHOD_REFUSED" | "CHANNEL_BINDING_REQUIRED" | "AUTH_PROTOCOL_VIOLATION";
  readonly reason: string;
}

// AuthenticationRequest subtypes (the protocol's message formats; libpq's AUTH_REQ_*).
const AUTH_OK = 0;
const AUTH_PASSWORD = 3;
const AUTH_MD5 = 5;
const AUTH_SASL = 10;
const AUTH_SASL_CONTINUE = 11;
const AUTH_SASL_FINAL = 12;

/** The require_auth method each request belongs to, as libpq maps them. */
const METHODS: Readonly<Record<number, string>> = {
  [AUTH_PASSWORD]: "password",
  [AUTH_MD5]: "md5",
  7: "gss",
  8: "gss",
  9: "sspi",
  [AUTH_SASL]: "scram-sha-256",
  [AUTH_SASL_CONTINUE]: "scram-sha-256",
  [AUTH_SASL_FINAL]: "scram-sha-256",
};

/** libpq's words for what the server asked (`auth_method_description`). */
const REQUESTED: Readonly<Record<string, string>> = {
  password: "server requested a cleartext password",
  md5: "server requested a hashed password",
  gss: "server requested GSSAPI authentication",
  sspi: "server requested SSPI authentication",
  "scram-sha-256": "server requested SASL authentication",
};

/** The PasswordMessage type byte: a password, an MD5 hash, or a SASL message. */
const PASSWORD_MESSAGE = 0x70;
const READY_FOR_QUERY = 0x5a;
const AUTHENTICATION = 0x52;

/**
 * The rules of one authentication exchange, pure: fed the server's
 * AuthenticationRequests and the types of the client's messages, it says
 * which to refuse. The SCRAM order is SASL, initial response, continue,
 * response, final, then Ok; a password or hash answers its own request only.
 */
export class AuthExchange {
  readonly #policy: AuthPolicy;
  readonly #tls: boolean;
  #sasl: "none" | "offered" | "started" | "continued" | "answered" | "final" = "none";
  /** What a PasswordMessage from the client may answer now. */
  #expects: "password" | "sasl" | null = null;
  /** libpq's client_finished_auth: a password sent, or a SCRAM exchange finished. */
  #finished = false;
  #authenticated = false;

  /** @param tls whether the connection is TLS (channel binding needs it) */
  constructor(policy: AuthPolicy, tls: boolean) {
    this.#policy = policy;
    this.#tls = tls;
  }

  /** True once the server sent AuthenticationOk and it was accepted. */
  get authenticated(): boolean {
    return this.#authenticated;
  }

  /** The server's AuthenticationRequest (subtype and the bytes after it): `null` to pass it on. */
  request(subtype: number, data: Uint8Array): AuthRefusal | null {
    if (this.#authenticated) {
      return violation("sent an authentication request after authentication had completed");
    }
    const method = METHODS[subtype];
    const required = this.#policy.requireAuth;
    // libpq checks require_auth first, then channel binding, then the order.
    if (required !== null) {
      if (subtype === AUTH_OK) {
        if (!this.#finished && !allows(required, "none")) {
          return refusedMethod(required, "server did not complete authentication");
        }
      } else if (method === undefined || !allows(required, method)) {
        return refusedMethod(
          required,
          method === undefined
            ? `server requested authentication type ${subtype}`
            : REQUESTED[method] as string,
        );
      }
    }
    if (this.#policy.channelBinding === "require") {
      if (subtype === AUTH_OK && this.#sasl !== "final") {
        return unbound("the server authenticated without it");
      }
      if (subtype !== AUTH_OK && method !== "scram-sha-256") {
        return unbound(
          method === undefined
            ? `the server asked for authentication type ${subtype}`
            : `the ${REQUESTED[method]?.replace("server requested", "server asked for")}`,
        );
      }
    }
    switch (subtype) {
      case AUTH_OK:
        if (this.#sasl !== "none" && this.#sasl !== "final") {
          return violation("ended SCRAM authentication before proving it knows the password");
        }
        this.#authenticated = true;
        this.#expects = null;
        return null;
      case AUTH_PASSWORD:
      case AUTH_MD5:
        this.#expects = "password";
        return null;
      case AUTH_SASL: {
        if (this.#sasl !== "none") return violation("sent a second AuthenticationSASL");
        const offered = new TextDecoder().decode(data).split("\0").filter((m) => m !== "");
        if (
          this.#policy.channelBinding === "require" &&
          !(this.#tls && offered.includes("SCRAM-SHA-256-PLUS"))
        ) {
          return unbound("the server did not offer SCRAM-SHA-256-PLUS");
        }
        this.#sasl = "offered";
        this.#expects = "sasl";
        return null;
      }
      case AUTH_SASL_CONTINUE:
        if (this.#sasl !== "started") {
          return violation(
            this.#sasl === "none"
              ? "sent a SCRAM challenge without starting SASL authentication (AuthenticationSASLContinue without AuthenticationSASL)"
              : "sent a SCRAM challenge out of order",
          );
        }
        this.#sasl = "continued";
        this.#expects = "sasl";
        return null;
      case AUTH_SASL_FINAL:
        if (this.#sasl !== "answered") {
          return violation(
            this.#sasl === "none"
              ? "sent a SCRAM outcome without starting SASL authentication (AuthenticationSASLFinal without AuthenticationSASL)"
              : "sent a SCRAM outcome out of order",
          );
        }
        this.#sasl = "final";
        this.#finished = true;
        this.#expects = null;
        return null;
      default:
        // GSSAPI, SSPI, obsolete or unknown: postgres.js refuses these itself.
        this.#expects = null;
        return null;
    }
  }

  /** The client is about to send a message of this type: `null` to let it go. */
  send(type: number): AuthRefusal | null {
    if (type !== PASSWORD_MESSAGE) return null;
    const expected = this.#expects;
    this.#expects = null;
    if (expected === null) {
      return violation("had not asked for the credentials about to be sent");
    }
    if (expected === "password") this.#finished = true;
    else if (this.#sasl === "offered") this.#sasl = "started";
    else if (this.#sasl === "continued") this.#sasl = "answered";
    return null;
  }
}

/** libpq's require_auth: a list of methods to allow, or (all `!name`) to forbid. */
function allows(requireAuth: string, method: string): boolean {
  const list = requireAuth.split(",").map((m) => m.trim());
  const negated = list[0]?.startsWith("!") ?? false;
  return negated ? !list.includes(`!${method}`) : list.includes(method);
}

function refusedMethod(requireAuth: string, reason: string): AuthRefusal {
  return {
    code: "AUTH_METHOD_REFUSED",
    reason: `authentication method requirement "${requireAuth}" failed: ${reason}`,
  };
}

function unbound(reason: string): AuthRefusal {
  return { code: "CHANNEL_BINDING_REQUIRED", reason: `channel_binding is require, but ${reason}` };
}

function violation(what: string): AuthRefusal {
  return { code: "AUTH_PROTOCOL_VIOLATION", reason: `the server ${what}` };
}

/** Largest message taken during authentication: libpq's PG_MAX_AUTH_TOKEN_LENGTH and header. */
const MAX_AUTH_MESSAGE = 65535 + 8;
/** Largest other message taken before ReadyForQuery (an error with a long detail). */
const MAX_STARTUP_MESSAGE = 1 << 20;

/** The server's messages, whole, from chunks cut anywhere. */
class ServerFrames {
  #pending = new Uint8Array(0);

  /** The messages that `chunk` completes, or `null` for a length no server sends. */
  push(chunk: Uint8Array): { type: number; body: Uint8Array }[] | null {
    const buffer = new Uint8Array(this.#pending.length + chunk.length);
    buffer.set(this.#pending);
    buffer.set(chunk, this.#pending.length);
    const view = new DataView(buffer.buffer);
    const messages: { type: number; body: Uint8Array }[] = [];
    let at = 0;
    while (buffer.length - at >= 5) {
      const type = buffer[at] as number;
      const length = view.getInt32(at + 1);
      const limit = type === AUTHENTICATION ? MAX_AUTH_MESSAGE : MAX_STARTUP_MESSAGE;
      if (length < 4 || length > limit || (type === AUTHENTICATION && length < 8)) return null;
      if (buffer.length - at < 1 + length) break;
      messages.push({ type, body: buffer.subarray(at + 5, at + 1 + length) });
      at += 1 + length;
    }
    this.#pending = buffer.slice(at);
    return messages;
  }
}

/** The type bytes of the client's messages as they start; the first (start-up) has none. */
class ClientFrames {
  #typed = false;
  #header: number[] = [];
  #remaining = 0;

  /** The types of the messages that begin in `chunk`. */
  starts(chunk: Uint8Array): number[] {
    const types: number[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.#remaining > 0) {
        const n = Math.min(this.#remaining, chunk.length - i);
        i += n;
        this.#remaining -= n;
        continue;
      }
      if (this.#header.length === 0 && this.#typed) types.push(chunk[i] as number);
      this.#header.push(chunk[i++] as number);
      const size = this.#typed ? 5 : 4;
      if (this.#header.length === size) {
        const [a = 0, b = 0, c = 0, d = 0] = this.#header.slice(size - 4);
        this.#remaining = Math.max(0, ((a << 24) | (b << 16) | (c << 8) | d) - 4);
        this.#header = [];
        this.#typed = true;
      }
    }
    return types;
  }
}

/** Options of `guardAuthentication`. */
export interface GuardOptions {
  readonly endpoint: PgEndpoint;
  /** Runs postgres.js's handling of each chunk, e.g. in an async context naming the endpoint. */
  readonly within?: <T>(deliver: () => T) => T;
}

/**
 * Puts the authentication watch on a negotiated socket, before postgres.js
 * writes its start-up message; it comes off at ReadyForQuery. Refuses at once
 * (nothing sent) `channel_binding=require` on a connection that is not TLS,
 * as libpq ("channel binding required, but SSL not in use").
 *
 * @throws an Error with code `CHANNEL_BINDING_REQUIRED` for that case
 */
export function guardAuthentication(
  socket: net.Socket,
  policy: AuthPolicy,
  options: GuardOptions,
): net.Socket {
  const { endpoint } = options;
  const secure = socket instanceof tls.TLSSocket;
  if (policy.channelBinding === "require" && !secure) {
    socket.destroy();
    throw connectError(
      "CHANNEL_BINDING_REQUIRED",
      `channel_binding is require, but the connection to ${endpointName(endpoint)} is not TLS (${
        isSocketDir(endpoint.host)
          ? "a Unix socket never is"
          : "the server answered the TLS request with no"
      })`,
      endpoint,
    );
  }
  const exchange = new AuthExchange(policy, secure);
  const server = new ServerFrames();
  const client = new ClientFrames();
  const within = options.within ?? ((deliver) => deliver());
  // postgres.js listens with on("data"); a listener of ours, even prepended,
  // could not keep a chunk from it, so the socket's own emit is wrapped.
  const patched = socket as unknown as {
    emit: (event: string | symbol, ...args: unknown[]) => boolean;
    write: (chunk: unknown, ...rest: unknown[]) => boolean;
    end: (...args: unknown[]) => unknown;
  };
  const { emit, write, end } = patched;
  const restore = () => Object.assign(patched, { emit, write, end });
  const refuse = (refusal: AuthRefusal) => {
    restore();
    socket.destroy(
      connectError(
        refusal.code,
        `${refusal.reason} (server at ${endpointName(endpoint)}; no credentials were sent)`,
        endpoint,
      ),
    );
  };
  patched.emit = function (event, ...args) {
    if (event !== "data") return emit.call(this, event, ...args);
    const messages = server.push(args[0] as Uint8Array);
    if (messages === null) {
      refuse(violation("sent a message of an impossible length during authentication"));
      return false;
    }
    let ready = false;
    for (const { type, body } of messages) {
      if (type === READY_FOR_QUERY) ready = true;
      if (type !== AUTHENTICATION) continue;
      const refusal = exchange.request(
        new DataView(body.buffer, body.byteOffset).getInt32(0),
        body.subarray(4),
      );
      if (refusal !== null) {
        refuse(refusal);
        return false;
      }
    }
    if (ready) restore();
    return within(() => emit.call(this, event, ...args));
  };
  const gate = (chunk: unknown): boolean => {
    if (!(chunk instanceof Uint8Array)) return true;
    for (const type of client.starts(chunk)) {
      const refusal = exchange.send(type);
      if (refusal !== null) {
        refuse(refusal);
        return false;
      }
    }
    return true;
  };
  patched.write = function (chunk, ...rest) {
    return gate(chunk) ? write.call(this, chunk, ...rest) : false;
  };
  patched.end = function (...args) {
    const [chunk] = args;
    if (typeof chunk !== "function" && chunk !== undefined && !gate(chunk)) return this;
    return end.apply(this, args);
  };
  socket.once("close", restore);
  return socket;
}
