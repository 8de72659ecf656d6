/**
 * How one connection reaches the server, with libpq's rules, as postgres.js's
 * `socket` option: the host's address (`hostaddr`) or Unix socket, then TLS
 * as `sslmode` and `sslnegotiation` say, checked against the host's own name.
 *
 * Why by hand, when postgres.js 4 negotiates TLS itself: it takes one `ssl`
 * setting for every host, so it cannot leave a Unix socket plain (libpq never
 * uses TLS there), send a client certificate under `prefer`, dial `hostaddr`
 * while checking the certificate against `host`, or turn SNI off. And a
 * server that closes the connection before answering (a proxy or load
 * balancer with no backend behind it) is to postgres.js a transient close,
 * retried inside the pool until `connect_timeout` and never reported; libpq
 * fails at once, and so does this module, so that our own retry loop (with
 * its backoff, its `--max-retry-seconds` and a log line per attempt) decides.
 * The socket handed over is negotiated; postgres.js then runs the protocol.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import { certificatesIn, checkRevocation, type Crl, parseCrls, type Revoked } from "./crl.ts";
import { requirePeerFailure } from "./peer.ts";
import type { SslMode, TlsVersion } from "../config/pg_target.ts";

/** One place a server listens: a host name or address, or a Unix socket directory. */
export interface PgEndpoint {
  /** Host name or address, or a socket directory (starting with `/`). */
  readonly host: string;
  /** The address to dial instead of looking `host` up (libpq's `hostaddr`). */
  readonly hostaddr: string | null;
  readonly port: number;
}

/** TLS settings, files already read; plain data, so a worker thread can receive it. */
export interface PgTls {
  readonly sslmode: SslMode;
  /** `direct`: TLS from the first byte (PostgreSQL 17+), no SSLRequest. */
  readonly negotiation: "postgres" | "direct";
  /** PEM CA bundle; absent: the runtime's trusted roots. */
  readonly ca?: string;
  readonly cert?: string;
  /** PEM private key, already decrypted with sslpassword. */
  readonly key?: string;
  /** PEM certificate revocation lists, checked after the handshake (`crl.ts`). */
  readonly crl?: readonly string[];
  readonly minVersion?: TlsVersion;
  readonly maxVersion?: TlsVersion;
  /** Send the host name in the TLS handshake (libpq's sslsni). */
  readonly sni: boolean;
}

/** What a TLS connection checks: nothing, the certificate chain, or the chain and the host name. */
export function verificationOf(settings: PgTls): "none" | "chain" | "full" {
  if (settings.sslmode === "verify-full") return "full";
  if (settings.sslmode === "verify-ca") return "chain";
  // libpq: require with a root certificate checks the chain, as verify-ca.
  return settings.sslmode === "require" && settings.ca !== undefined ? "chain" : "none";
}

/** True for a Unix socket directory (libpq: a host starting with a slash). */
export function isSocketDir(host: string): boolean {
  return host.startsWith("/");
}

/** Postgres' SSLRequest: length 8, then the code 1234.5679 (80877103). */
const SSL_REQUEST = new Uint8Array([0, 0, 0, 8, 4, 210, 22, 47]);

/** A connection-phase error with a stable code, shaped like postgres.js's own. */
export function connectError(code: string, message: string, endpoint: PgEndpoint): Error {
  return Object.assign(new Error(message), {
    code,
    address: endpoint.host,
    port: endpoint.port,
  });
}

/** Where an endpoint is, for messages: `host:port`, or the socket file. */
export function endpointName(endpoint: PgEndpoint): string {
  return isSocketDir(endpoint.host)
    ? `${endpoint.host}/.s.PGSQL.${endpoint.port}`
    : `${endpoint.host.includes(":") ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`;
}

/** The error for a server that closed the connection before a word; not transient to postgres.js. */
function serverClosed(endpoint: PgEndpoint): Error {
  return connectError(
    "SERVER_CLOSED",
    `the server at ${
      endpointName(endpoint)
    } closed the connection before answering (a proxy without a running server behind it, or a server starting up)`,
    endpoint,
  );
}

/** The socket file of a socket-directory endpoint. */
function socketPath(endpoint: PgEndpoint, dir = endpoint.host): string {
  return `${dir}/.s.PGSQL.${endpoint.port}`;
}

function dial(
  endpoint: PgEndpoint,
  track: (socket: net.Socket) => void,
  path = socketPath(endpoint),
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = isSocketDir(endpoint.host)
      ? net.connect({ path })
      : net.connect({ host: endpoint.hostaddr ?? endpoint.host, port: endpoint.port });
    track(socket);
    const failed = (error: Error) => {
      socket.destroy();
      reject(Object.assign(error, { address: endpoint.host, port: endpoint.port }));
    };
    socket.once("error", failed);
    socket.once("connect", () => {
      socket.off("error", failed);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

/** Sends the SSLRequest and reads the server's one-byte answer (`S` or `N`). */
function askForTls(socket: net.Socket, endpoint: PgEndpoint): Promise<"S" | "N"> {
  return new Promise((resolve, reject) => {
    const cleanUp = () => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("error", onError);
    };
    const onData = (chunk: Uint8Array) => {
      cleanUp();
      if (chunk.length !== 1) {
        // CVE-2021-23222: bytes after the answer were not protected by TLS.
        reject(connectError(
          "SSL_NEGOTIATION",
          `the server at ${endpointName(endpoint)} sent data after its answer to the TLS request`,
          endpoint,
        ));
      } else if (chunk[0] === 0x53 || chunk[0] === 0x4e) {
        resolve(chunk[0] === 0x53 ? "S" : "N");
      } else {
        reject(connectError(
          "SSL_NEGOTIATION",
          `the server at ${endpointName(endpoint)} gave an invalid answer to the TLS request`,
          endpoint,
        ));
      }
    };
    const onEnd = () => (cleanUp(), reject(serverClosed(endpoint)));
    const onError = (error: Error) => (cleanUp(), reject(error));
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("error", onError);
    socket.write(SSL_REQUEST);
  });
}

function startTls(
  socket: net.Socket,
  endpoint: PgEndpoint,
  settings: PgTls,
): Promise<tls.TLSSocket> {
  const verify = verificationOf(settings);
  const name = endpoint.host;
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      // The TLS layer sends `host` as the server name unless it is an address,
      // so the dialled address stands in when SNI is off.
      host: settings.sni ? name : (socket.remoteAddress ?? endpoint.hostaddr ?? name),
      ...(settings.ca === undefined ? {} : { ca: settings.ca }),
      ...(settings.cert === undefined ? {} : { cert: settings.cert }),
      ...(settings.key === undefined ? {} : { key: settings.key }),
      ...(settings.minVersion === undefined ? {} : { minVersion: settings.minVersion }),
      ...(settings.maxVersion === undefined ? {} : { maxVersion: settings.maxVersion }),
      ...(settings.negotiation === "direct" ? { ALPNProtocols: ["postgresql"] } : {}),
      rejectUnauthorized: verify !== "none",
      // The name checked is the host's, never the dialled address (hostaddr) or
      // whatever the TLS layer would pick for an IP host.
      checkServerIdentity: verify === "full"
        ? (_: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(name, cert)
        : () => undefined,
    });
    const failed = (error: Error) => {
      secure.destroy();
      reject(Object.assign(error, { address: endpoint.host, port: endpoint.port }));
    };
    secure.once("error", failed);
    const passed = () => {
      secure.off("error", failed);
      resolve(secure);
    };
    secure.once("secureConnect", () => {
      if (verify === "none" || settings.crl === undefined) return passed();
      // The check is asynchronous (Web Crypto): `failed` stays on until it ends.
      revocation(secure, settings.crl, settings.ca).then(
        (revoked) =>
          revoked === null
            ? passed()
            : failed(connectError(revoked.code, revoked.message, endpoint)),
        failed,
      );
    });
  });
}

/** A settings object's CRLs and CA bundle, parsed once per thread; keyed by its CRL list. */
const parsed = new WeakMap<
  readonly string[],
  Promise<{ crls: Crl[]; roots: X509Certificate[] }>
>();

/** The server's chain against the CRLs (see `crl.ts`). */
async function revocation(
  socket: tls.TLSSocket,
  crlPems: readonly string[],
  ca: string | undefined,
): Promise<Revoked | null> {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  for (
    let cert: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
    cert?.raw !== undefined && !seen.has(cert.fingerprint256);
    cert = cert.issuerCertificate
  ) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw));
  }
  let lists = parsed.get(crlPems);
  if (lists === undefined) {
    lists = (async () => ({
      crls: (await Promise.all(crlPems.map((pem) => parseCrls(pem)))).flat(),
      roots: await certificatesIn(ca ?? tls.rootCertificates.join("\n")),
    }))();
    parsed.set(crlPems, lists);
  }
  const { crls, roots } = await lists;
  return await checkRevocation(chain, [...chain, ...roots], crls, Date.now());
}

/**
 * Until the server's first byte, its closing the connection is an error with
 * a code postgres.js does not retry (see the module comment).
 */
function failOnSilentClose(socket: net.Socket, endpoint: PgEndpoint): void {
  const onEnd = () => socket.destroy(serverClosed(endpoint));
  socket.once("end", onEnd);
  socket.prependOnceListener("data", () => socket.off("end", onEnd));
}

/** Options of `openSocket`. */
export interface OpenOptions {
  /** The whole wait, dial and TLS, in ms; 0: no limit. */
  readonly timeoutMs: number;
  /** libpq's requirepeer: the OS user a Unix-socket server must run as; `null`: any. */
  readonly requirePeer?: string | null;
}

/**
 * The socket file to dial under requirepeer, once its owner passed: its
 * directory resolved, so no symbolic link can be re-pointed in between.
 */
async function checkedPeer(endpoint: PgEndpoint, user: string): Promise<string> {
  let path = socketPath(endpoint);
  let failure: string | null;
  try {
    path = socketPath(endpoint, await Deno.realPath(endpoint.host));
    failure = await requirePeerFailure(path, user);
  } catch (error) {
    // Not there (yet): the dial's own error, transient as a dial's is.
    throw Object.assign(new Error(`connect ENOENT ${path}`), {
      code: "ENOENT",
      cause: error,
      address: endpoint.host,
      port: endpoint.port,
    });
  }
  if (failure !== null) throw connectError("REQUIREPEER_FAILED", failure, endpoint);
  return path;
}

/**
 * Opens a connection to `endpoint` and negotiates TLS as libpq would, within
 * `timeoutMs`. The result is marked `negotiated` for postgres.js. Under
 * requirepeer a Unix socket must belong to that user (`peer.ts`), or nothing
 * is dialled.
 *
 * @throws an Error with `code`: a socket error (`ECONNREFUSED`…), a TLS
 *   verification error, `SSL_NOT_SUPPORTED` (TLS required, the server has it
 *   off), `SERVER_CLOSED`, `CONNECT_TIMEOUT` or `REQUIREPEER_FAILED`
 */
export async function openSocket(
  endpoint: PgEndpoint,
  settings: PgTls,
  options: OpenOptions,
): Promise<net.Socket> {
  const { timeoutMs, requirePeer = null } = options;
  let raw: net.Socket | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const negotiated = (async (): Promise<net.Socket> => {
    const path = requirePeer !== null && isSocketDir(endpoint.host)
      ? await checkedPeer(endpoint, requirePeer)
      : undefined;
    const socket = await dial(endpoint, (s) => (raw = s), path);
    // libpq never uses TLS on a Unix socket, whatever sslmode says.
    if (settings.sslmode === "disable" || isSocketDir(endpoint.host)) return socket;
    if (settings.negotiation === "postgres" && await askForTls(socket, endpoint) === "N") {
      if (settings.sslmode === "allow" || settings.sslmode === "prefer") return socket;
      throw connectError(
        "SSL_NOT_SUPPORTED",
        `the server at ${endpointName(endpoint)} does not accept TLS`,
        endpoint,
      );
    }
    const secure = await startTls(socket, endpoint, settings);
    return Object.assign(secure, { negotiated: true });
  })();
  const deadline = new Promise<never>((_, reject) => {
    if (timeoutMs > 0) {
      timer = setTimeout(
        () =>
          reject(
            connectError(
              "CONNECT_TIMEOUT",
              `no answer from ${endpointName(endpoint)} within ${timeoutMs / 1000} s`,
              endpoint,
            ),
          ),
        timeoutMs,
      );
    }
  });
  try {
    const socket = await Promise.race([negotiated, deadline]);
    failOnSilentClose(socket, endpoint);
    return socket;
  } catch (error) {
    (raw as net.Socket | null)?.destroy();
    negotiated.catch(() => {}); // settled later by the destroy above
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
