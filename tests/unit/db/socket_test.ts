// Unit tests of src/db/socket.ts against a loopback stand-in for a server's
// first bytes (what a real server does there is fixed by the protocol): the
// SSLRequest and its answer, SNI on and off, direct TLS with ALPN, hostaddr,
// a Unix socket left plain, and the failures: TLS refused, data after the
// answer, a server closing without a word, one never answering.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { openSocket, type PgEndpoint, type PgTls } from "../../../src/db/socket.ts";
import { makeTlsIdentity } from "../../helpers/pki.ts";

const SSL_REQUEST = [0, 0, 0, 8, 4, 210, 22, 47];

/** A key and a certificate for "localhost" (and its addresses), from a CA made for the test. */
async function serverIdentity(dir: string): Promise<{ key: string; cert: string }> {
  const { keyPem, certPem } = await makeTlsIdentity(dir);
  return { key: keyPem, cert: certPem };
}

/** What the stand-in saw of one connection. */
interface Seen {
  first: number[];
  sni?: string;
  alpn?: string | false | null;
  secure?: boolean;
}

type Behaviour = "answer-S" | "answer-N" | "answer-S-and-data" | "close" | "silent" | "direct";

/** A stand-in server on 127.0.0.1 or a Unix socket path; `behaviour` says what it does. */
async function standIn(
  identity: { key: string; cert: string },
  behaviour: Behaviour,
  path?: string,
): Promise<{ port: number; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const sockets = new Set<net.Socket>();
  const upgrade = (raw: net.Socket, record: Seen) => {
    const secure = new tls.TLSSocket(raw, {
      isServer: true,
      key: identity.key,
      cert: identity.cert,
      ALPNProtocols: ["postgresql"],
      SNICallback: (name: string, cb: (e: Error | null, c?: tls.SecureContext) => void) => {
        record.sni = name;
        cb(null, tls.createSecureContext(identity));
      },
    } as tls.TLSSocketOptions);
    secure.on("secure", () => {
      record.secure = true;
      record.alpn = secure.alpnProtocol;
    });
    secure.on("error", () => {});
  };
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on("close", () => sockets.delete(raw));
    raw.on("error", () => {});
    const record: Seen = { first: [] };
    seen.push(record);
    if (behaviour === "direct") return upgrade(raw, record);
    raw.once("data", (first) => {
      record.first = [...first];
      if (behaviour === "close") raw.end();
      else if (behaviour === "answer-N") raw.write("N");
      else if (behaviour === "answer-S-and-data") raw.write("SZ");
      else if (behaviour === "answer-S") {
        raw.write("S");
        upgrade(raw, record);
      }
    });
  });
  await new Promise<void>((resolve) =>
    path === undefined ? server.listen(0, "127.0.0.1", resolve) : server.listen(path, resolve)
  );
  return {
    port: path === undefined ? (server.address() as net.AddressInfo).port : 5432,
    seen,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const tlsSettings = (over: Partial<PgTls> = {}): PgTls => ({
  sslmode: "require",
  negotiation: "postgres",
  sni: true,
  ...over,
});

/** The error of a failed openSocket, or null. */
async function failure(endpoint: PgEndpoint, settings: PgTls, ms = 3000) {
  try {
    (await openSocket(endpoint, settings, { timeoutMs: ms })).destroy();
    return null;
  } catch (error) {
    return error as Error & { code?: string };
  }
}

Deno.test("openSocket() negotiates TLS as libpq does", async (t) => {
  const dir = await Deno.makeTempDir();
  const identity = await serverIdentity(dir);
  try {
    await t.step(
      "SSLRequest, then TLS with the host's name as SNI, dialling hostaddr",
      async () => {
        const server = await standIn(identity, "answer-S");
        try {
          const socket = await openSocket(
            { host: "localhost", hostaddr: "127.0.0.1", port: server.port },
            tlsSettings(),
            { timeoutMs: 3000 },
          );
          assert.ok(socket instanceof tls.TLSSocket);
          assert.equal((socket as unknown as { negotiated: boolean }).negotiated, true);
          socket.destroy();
          assert.deepEqual(server.seen[0]?.first, SSL_REQUEST);
          assert.equal(server.seen[0]?.sni, "localhost");
        } finally {
          await server.close();
        }
      },
    );
    await t.step("sslsni=0: no server name sent", async () => {
      const server = await standIn(identity, "answer-S");
      try {
        (await openSocket(
          { host: "localhost", hostaddr: "127.0.0.1", port: server.port },
          tlsSettings({ sni: false }),
          { timeoutMs: 3000 },
        )).destroy();
        assert.equal(server.seen[0]?.sni ?? "", "");
      } finally {
        await server.close();
      }
    });
    await t.step("sslnegotiation=direct: TLS from the first byte, ALPN postgresql", async () => {
      const server = await standIn(identity, "direct");
      try {
        (await openSocket(
          { host: "localhost", hostaddr: "127.0.0.1", port: server.port },
          tlsSettings({ negotiation: "direct" }),
          { timeoutMs: 3000 },
        )).destroy();
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(server.seen[0]?.secure, true);
        assert.equal(server.seen[0]?.alpn, "postgresql");
      } finally {
        await server.close();
      }
    });
    await t.step("answer N: plain under prefer, SSL_NOT_SUPPORTED under require", async () => {
      const server = await standIn(identity, "answer-N");
      try {
        const endpoint = { host: "127.0.0.1", hostaddr: null, port: server.port };
        const plain = await openSocket(endpoint, tlsSettings({ sslmode: "prefer" }), {
          timeoutMs: 3000,
        });
        assert.ok(!(plain instanceof tls.TLSSocket));
        plain.destroy();
        assert.equal((await failure(endpoint, tlsSettings()))?.code, "SSL_NOT_SUPPORTED");
      } finally {
        await server.close();
      }
    });
    await t.step("sslmode=disable sends no SSLRequest", async () => {
      const server = await standIn(identity, "silent");
      try {
        const socket = await openSocket(
          { host: "127.0.0.1", hostaddr: null, port: server.port },
          tlsSettings({ sslmode: "disable" }),
          { timeoutMs: 3000 },
        );
        socket.write(new Uint8Array([0, 0, 0, 4]));
        await new Promise((r) => setTimeout(r, 50));
        socket.destroy();
        assert.deepEqual(server.seen[0]?.first, [0, 0, 0, 4]);
      } finally {
        await server.close();
      }
    });
    await t.step("a Unix socket stays plain under sslmode=require", async () => {
      const server = await standIn(identity, "silent", `${dir}/.s.PGSQL.5432`);
      try {
        const socket = await openSocket(
          { host: dir, hostaddr: null, port: 5432 },
          tlsSettings(),
          { timeoutMs: 3000 },
        );
        assert.ok(!(socket instanceof tls.TLSSocket));
        socket.write(new Uint8Array([0, 0, 0, 4]));
        await new Promise((r) => setTimeout(r, 50));
        socket.destroy();
        assert.deepEqual(server.seen[0]?.first, [0, 0, 0, 4], "no SSLRequest");
      } finally {
        await server.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openSocket() fails at once, with a code, where libpq does", async (t) => {
  const dir = await Deno.makeTempDir();
  const identity = await serverIdentity(dir);
  try {
    const cases: [string, Behaviour, string, number][] = [
      ["a server closing before its answer: SERVER_CLOSED", "close", "SERVER_CLOSED", 3000],
      ["bytes after the answer (CVE-2021-23222)", "answer-S-and-data", "SSL_NEGOTIATION", 3000],
      ["no answer within the timeout", "silent", "CONNECT_TIMEOUT", 300],
    ];
    for (const [name, behaviour, code, ms] of cases) {
      await t.step(name, async () => {
        const server = await standIn(identity, behaviour);
        try {
          const started = performance.now();
          const error = await failure(
            { host: "127.0.0.1", hostaddr: null, port: server.port },
            tlsSettings(),
            ms,
          );
          assert.equal(error?.code, code, String(error));
          assert.ok(performance.now() - started < ms + 2000);
        } finally {
          await server.close();
        }
      });
    }
    await t.step(
      "a server closing a handed-over socket before its first byte: SERVER_CLOSED",
      async () => {
        const server = await standIn(identity, "close");
        try {
          const socket = await openSocket(
            { host: "127.0.0.1", hostaddr: null, port: server.port },
            tlsSettings({ sslmode: "disable" }),
            { timeoutMs: 3000 },
          );
          const closed = new Promise<Error | undefined>((resolve) => {
            socket.once("error", resolve);
            socket.once("close", () => resolve(undefined));
          });
          socket.write(new Uint8Array([0, 0, 0, 4]));
          const error = await closed;
          assert.equal((error as { code?: string } | undefined)?.code, "SERVER_CLOSED");
        } finally {
          await server.close();
        }
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
