// Unit tests of src/db/auth_guard.ts: libpq's rules for the server's
// authentication requests as a table, then the whole path (resolvePgTarget →
// loadPgConnection → connect, postgres.js speaking) against a loopback
// stand-in that plays the man-in-the-middle: after the start-up message it
// sends a SCRAM challenge it never started. Nothing after the start-up message
// may reach it.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { AuthExchange, type AuthPolicy } from "../../../src/db/auth_guard.ts";
import { loadPgConnection } from "../../../src/db/connection.ts";
import { resolvePgTarget } from "../../../src/config/pg_target.ts";
import { checkConnection, connect } from "../../../src/db/pool.ts";
import { DatabaseError } from "../../../src/errors.ts";
import { makeTlsIdentity } from "../../helpers/pki.ts";

const P = 0x70; // PasswordMessage: a password, a hash or a SASL message
const sasl = (...mechanisms: string[]) =>
  new TextEncoder().encode(mechanisms.map((m) => `${m}\0`).join("") + "\0");
const none = new Uint8Array(0);

type Step = ["server", number, Uint8Array] | ["client", number];

Deno.test("AuthExchange refuses what libpq refuses, at the step libpq refuses it", async (t) => {
  const scram: Step[] = [
    ["server", 10, sasl("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")],
    ["client", P],
    ["server", 11, none],
    ["client", P],
    ["server", 12, none],
    ["server", 0, none],
  ];
  const cases: {
    name: string;
    policy: Partial<AuthPolicy>;
    tls?: boolean;
    steps: Step[];
    refused: [number, string] | null;
  }[] = [
    { name: "a whole SCRAM exchange passes", policy: {}, steps: scram, refused: null },
    {
      name: "channel_binding=require and require_auth=scram-sha-256: SCRAM-PLUS over TLS passes",
      policy: { channelBinding: "require", requireAuth: "scram-sha-256" },
      steps: scram,
      refused: null,
    },
    {
      name: "a SASLContinue without SASL",
      policy: {},
      steps: [["server", 11, none], ["client", P]],
      refused: [0, "AUTH_PROTOCOL_VIOLATION"],
    },
    {
      name: "a SASLFinal without SASL",
      policy: {},
      steps: [["server", 12, none], ["server", 0, none]],
      refused: [0, "AUTH_PROTOCOL_VIOLATION"],
    },
    {
      name: "a SASLContinue before the client's initial response",
      policy: {},
      steps: [["server", 10, sasl("SCRAM-SHA-256")], ["server", 11, none]],
      refused: [1, "AUTH_PROTOCOL_VIOLATION"],
    },
    {
      name: "a second SASLContinue",
      policy: {},
      steps: [...scram.slice(0, 4), ["server", 11, none]],
      refused: [4, "AUTH_PROTOCOL_VIOLATION"],
    },
    {
      name: "AuthenticationOk in the middle of SCRAM",
      policy: {},
      steps: [...scram.slice(0, 4), ["server", 0, none]],
      refused: [4, "AUTH_PROTOCOL_VIOLATION"],
    },
    {
      name: "a second SASL",
      policy: {},
      steps: [...scram.slice(0, 2), ["server", 10, sasl("SCRAM-SHA-256")]],
      refused: [2, "AUTH_PROTOCOL_VIOLATION"],
    },
    {
      name: "a request after AuthenticationOk",
      policy: {},
      steps: [...scram, ["server", 3, none]],
      refused: [6, "AUTH_PROTOCOL_VIOLATION"],
    },
    {
      name: "a password the server did not ask for",
      policy: {},
      steps: [["client", P]],
      refused: [0, "AUTH_PROTOCOL_VIOLATION"],
    },
    {
      name: "two answers to one cleartext request",
      policy: {},
      steps: [["server", 3, none], ["client", P], ["client", P]],
      refused: [2, "AUTH_PROTOCOL_VIOLATION"],
    },
    {
      name: "channel_binding=require: a cleartext request",
      policy: { channelBinding: "require" },
      steps: [["server", 3, none]],
      refused: [0, "CHANNEL_BINDING_REQUIRED"],
    },
    {
      name: "channel_binding=require: MD5",
      policy: { channelBinding: "require" },
      steps: [["server", 5, new Uint8Array(4)]],
      refused: [0, "CHANNEL_BINDING_REQUIRED"],
    },
    {
      name: "channel_binding=require: SCRAM without PLUS",
      policy: { channelBinding: "require" },
      steps: [["server", 10, sasl("SCRAM-SHA-256")]],
      refused: [0, "CHANNEL_BINDING_REQUIRED"],
    },
    {
      name: "channel_binding=require: PLUS offered on a plain connection",
      policy: { channelBinding: "require" },
      tls: false,
      steps: [["server", 10, sasl("SCRAM-SHA-256-PLUS")]],
      refused: [0, "CHANNEL_BINDING_REQUIRED"],
    },
    {
      name: "channel_binding=require: AuthenticationOk with no exchange (trust)",
      policy: { channelBinding: "require" },
      steps: [["server", 0, none]],
      refused: [0, "CHANNEL_BINDING_REQUIRED"],
    },
    {
      name: "require_auth=scram-sha-256: a cleartext request",
      policy: { requireAuth: "scram-sha-256" },
      steps: [["server", 3, none]],
      refused: [0, "AUTH_METHOD_REFUSED"],
    },
    {
      name: "require_auth=scram-sha-256: AuthenticationOk with no exchange",
      policy: { requireAuth: "scram-sha-256" },
      steps: [["server", 0, none]],
      refused: [0, "AUTH_METHOD_REFUSED"],
    },
    {
      name: "require_auth=password: SCRAM",
      policy: { requireAuth: "password" },
      steps: [["server", 10, sasl("SCRAM-SHA-256")]],
      refused: [0, "AUTH_METHOD_REFUSED"],
    },
    {
      name: "require_auth=password: a SASLContinue alone",
      policy: { requireAuth: "password" },
      steps: [["server", 11, none]],
      refused: [0, "AUTH_METHOD_REFUSED"],
    },
    {
      name: "require_auth=password: cleartext passes",
      policy: { requireAuth: "password" },
      steps: [["server", 3, none], ["client", P], ["server", 0, none]],
      refused: null,
    },
    {
      name: "require_auth=!password,!md5: MD5",
      policy: { requireAuth: "!password,!md5" },
      steps: [["server", 5, new Uint8Array(4)]],
      refused: [0, "AUTH_METHOD_REFUSED"],
    },
    {
      name: "require_auth=!password: trust passes",
      policy: { requireAuth: "!password" },
      steps: [["server", 0, none]],
      refused: null,
    },
    {
      name: "require_auth=none: trust passes, a password request does not",
      policy: { requireAuth: "none" },
      steps: [["server", 3, none]],
      refused: [0, "AUTH_METHOD_REFUSED"],
    },
  ];
  for (const { name, policy, tls = true, steps, refused } of cases) {
    await t.step(name, () => {
      const exchange = new AuthExchange(
        { channelBinding: "prefer", requireAuth: null, ...policy },
        tls,
      );
      let outcome: [number, string] | null = null;
      for (const [i, step] of steps.entries()) {
        const refusal = step[0] === "server"
          ? exchange.request(step[1], step[2])
          : exchange.send(step[1]);
        if (refusal !== null) {
          outcome = [i, refusal.code];
          assert.ok(!refusal.reason.includes("\n"));
          break;
        }
      }
      assert.deepEqual(outcome, refused);
    });
  }
});

/** A key and a certificate for "localhost" (and its addresses), from a CA made for the test. */
async function serverIdentity(dir: string): Promise<{ key: string; cert: string }> {
  const { keyPem, certPem } = await makeTlsIdentity(dir);
  return { key: keyPem, cert: certPem };
}

/** One backend message: type, length, body. */
function message(type: string, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setInt32(1, body.length + 4);
  out.set(body, 5);
  return out;
}

/** An AuthenticationRequest of this subtype with this text after it. */
function authRequest(subtype: number, text: string): Uint8Array {
  const data = new TextEncoder().encode(text);
  const body = new Uint8Array(4 + data.length);
  new DataView(body.buffer).setInt32(0, subtype);
  body.set(data, 4);
  return message("R", body);
}

/** What the stand-in saw of one connection. */
interface Seen {
  secure: boolean;
  startup: boolean;
  /** Every byte the client sent after its start-up message. */
  after: number[];
}

/**
 * The relay's client side: answers the SSLRequest with `S` (then TLS) or `N`,
 * reads the start-up message and sends `first` (an unsolicited request).
 */
async function relay(
  identity: { key: string; cert: string },
  answer: "S" | "N",
  first: Uint8Array,
): Promise<{ port: number; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const sockets = new Set<net.Socket>();
  const session = (socket: net.Socket, record: Seen) => {
    let buffer = new Uint8Array(0);
    socket.on("data", (chunk: Uint8Array) => {
      if (record.startup) {
        record.after.push(...chunk);
        // The SASLResponse arrived: what the relay wanted. Hang up.
        socket.destroy();
        return;
      }
      buffer = new Uint8Array([...buffer, ...chunk]);
      if (buffer.length < 4) return;
      const length = new DataView(buffer.buffer).getInt32(0);
      if (buffer.length < length) return;
      record.startup = true;
      record.after.push(...buffer.subarray(length));
      socket.write(first);
    });
    socket.on("error", () => {});
  };
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on("close", () => sockets.delete(raw));
    raw.on("error", () => {});
    const record: Seen = { secure: false, startup: false, after: [] };
    seen.push(record);
    raw.once("data", () => {
      raw.write(answer);
      if (answer === "N") return session(raw, record);
      const secure = new tls.TLSSocket(raw, { isServer: true, ...identity });
      secure.once("secure", () => (record.secure = true));
      session(secure, record);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Connects as login-etl does; the one-line refusal. */
async function refusal(url: string, home: string): Promise<string> {
  const connection = await loadPgConnection(
    resolvePgTarget({ value: url, origin: "DATABASE_URL" }, {
      HOME: home,
    }),
  );
  const sql = connect({ connection, schema: "public", stateSchema: "login_etl", max: 1 });
  try {
    await checkConnection(sql, connection);
  } catch (error) {
    assert.ok(error instanceof DatabaseError, String(error));
    return error.message;
  } finally {
    await sql.end({ timeout: 1 });
  }
  throw new Error("connected to the relay");
}

Deno.test("an unsolicited SCRAM challenge gets no answer, plain or TLS, whatever the policy", async (t) => {
  const dir = await Deno.makeTempDir();
  const identity = await serverIdentity(dir);
  // The real server's first SCRAM message as a relay forwards it, for postgres.js's nonce "undefined".
  const challenge = authRequest(11, "r=undefinedXYZ,s=c2FsdA==,i=4096");
  const final = authRequest(12, "v=c2lnbmF0dXJl");
  try {
    const cases: [string, "S" | "N", string, Uint8Array, RegExp][] = [
      [
        "TLS, channel_binding=require",
        "S",
        "sslmode=require&channel_binding=require",
        challenge,
        /AuthenticationSASLContinue without AuthenticationSASL.*no credentials were sent/,
      ],
      [
        "TLS, require_auth=scram-sha-256",
        "S",
        "sslmode=require&require_auth=scram-sha-256",
        challenge,
        /AuthenticationSASLContinue without AuthenticationSASL/,
      ],
      [
        "TLS, require_auth=password",
        "S",
        "sslmode=require&require_auth=password",
        challenge,
        /authentication method requirement "password" failed: server requested SASL authentication/,
      ],
      [
        "TLS, no requirement",
        "S",
        "sslmode=require",
        challenge,
        /AuthenticationSASLContinue without AuthenticationSASL/,
      ],
      [
        "TLS, a SASLFinal alone",
        "S",
        "sslmode=require&require_auth=scram-sha-256",
        final,
        /AuthenticationSASLFinal without AuthenticationSASL/,
      ],
      [
        "plain (prefer, the server says N), channel_binding=require: refused before the start-up",
        "N",
        "sslmode=prefer&channel_binding=require",
        challenge,
        /channel_binding=require, but the connection to 127\.0\.0\.1:\d+ is not TLS/,
      ],
      [
        "plain, require_auth=scram-sha-256",
        "N",
        "sslmode=prefer&require_auth=scram-sha-256",
        challenge,
        /AuthenticationSASLContinue without AuthenticationSASL/,
      ],
      [
        "plain, require_auth=password",
        "N",
        "sslmode=prefer&require_auth=password",
        challenge,
        /authentication method requirement "password" failed/,
      ],
    ];
    const home = `${dir}/home`;
    await Deno.mkdir(home);
    for (const [name, answer, params, first, pattern] of cases) {
      await t.step(name, async () => {
        const server = await relay(identity, answer, first);
        try {
          const message = await refusal(
            `postgres://victim:S3cret-pw@127.0.0.1:${server.port}/logins?connect_timeout=5&${params}`,
            home,
          );
          assert.match(message, pattern);
          assert.ok(!message.includes("\n") && !message.includes("S3cret-pw"), message);
          await new Promise((r) => setTimeout(r, 100));
          assert.ok(server.seen.length >= 1);
          for (const record of server.seen) {
            assert.equal(record.secure, answer === "S");
            assert.deepEqual(record.after, [], "nothing after the start-up message");
          }
          if (/before the start-up/.test(name)) {
            assert.ok(server.seen.every((r) => !r.startup), "not even the start-up");
          }
        } finally {
          await server.close();
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
