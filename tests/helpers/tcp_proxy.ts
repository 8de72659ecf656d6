// A TCP proxy for fault tests, put between a consumer and Postgres. Modes:
// pass (forward), stall (hold bytes until pass again: a network partition
// that TCP retransmission survives), reset (close every connection and refuse
// new ones: a restart or a dead route), plus added latency per chunk.
// `startTls` terminates TLS instead, putting HTTPS in front of a plain
// HTTP server (an SQS emulator).

/** What the proxy does with traffic. */
export type ProxyMode = "pass" | "stall" | "reset";

interface Pair {
  readonly client: Deno.Conn;
  readonly server: Deno.Conn;
}

/** A running proxy; dispose with `await using`. */
export class TcpProxy implements AsyncDisposable {
  readonly #listener: Deno.Listener<Deno.Conn, Deno.NetAddr>;
  readonly #target: { hostname: string; port: number };
  readonly #pairs = new Set<Pair>();
  readonly #tasks = new Set<Promise<void>>();
  #mode: ProxyMode = "pass";
  #modeChanged: (() => void)[] = [];
  /** Latency added before forwarding each chunk, ms. */
  delayMs = 0;
  /** Connections accepted so far. */
  accepted = 0;

  private constructor(
    listener: Deno.Listener<Deno.Conn, Deno.NetAddr>,
    target: { hostname: string; port: number },
  ) {
    this.#listener = listener;
    this.#target = target;
    this.#track(this.#acceptLoop());
  }

  /** Starts a proxy on a free loopback port forwarding to `target`. */
  static start(target: { hostname: string; port: number }): TcpProxy {
    return new TcpProxy(Deno.listen({ hostname: "127.0.0.1", port: 0 }), target);
  }

  /**
   * Starts a proxy that accepts TLS with `identity` (PEM texts) on a free
   * loopback port and forwards the decrypted bytes to `target`.
   */
  static startTls(
    target: { hostname: string; port: number },
    identity: { readonly cert: string; readonly key: string },
  ): TcpProxy {
    return new TcpProxy(Deno.listenTls({ hostname: "127.0.0.1", port: 0, ...identity }), target);
  }

  /** The port clients connect to. */
  get port(): number {
    return this.#listener.addr.port;
  }

  get mode(): ProxyMode {
    return this.#mode;
  }

  /** Switches mode; `reset` closes every open connection at once. */
  setMode(mode: ProxyMode): void {
    this.#mode = mode;
    if (mode === "reset") { for (const pair of this.#pairs) this.#closePair(pair); }
    const waiters = this.#modeChanged;
    this.#modeChanged = [];
    for (const wake of waiters) wake();
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  #closePair(pair: Pair): void {
    this.#pairs.delete(pair);
    for (const conn of [pair.client, pair.server]) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      this.accepted++;
      if (this.#mode === "reset") {
        client.close();
        continue;
      }
      this.#track(this.#open(client));
    }
  }

  async #open(client: Deno.Conn): Promise<void> {
    let server: Deno.TcpConn;
    try {
      server = await Deno.connect(this.#target);
    } catch {
      client.close();
      return;
    }
    // Deno.TlsConn offers no setNoDelay; only the plain side gets it then.
    if ("setNoDelay" in client) (client as Deno.TcpConn).setNoDelay(true);
    server.setNoDelay(true);
    const pair = { client, server };
    this.#pairs.add(pair);
    await Promise.all([this.#pump(pair, client, server), this.#pump(pair, server, client)]);
    this.#closePair(pair);
  }

  async #pump(pair: Pair, from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      let n: number | null;
      try {
        n = await from.read(buffer);
      } catch {
        n = null;
      }
      if (n === null) {
        this.#closePair(pair);
        return;
      }
      const chunk = buffer.slice(0, n);
      while (this.#mode === "stall") await new Promise<void>((r) => this.#modeChanged.push(r));
      if (this.#mode === "reset" || !this.#pairs.has(pair)) return;
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      try {
        let written = 0;
        while (written < chunk.length) written += await to.write(chunk.subarray(written));
      } catch {
        this.#closePair(pair);
        return;
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.setMode("reset");
    this.#listener.close();
    await Promise.allSettled([...this.#tasks]);
  }
}

/** A postgres URL with host and port replaced by the proxy's. */
export function viaProxy(url: string, proxy: TcpProxy): string {
  const parsed = new URL(url);
  parsed.hostname = "127.0.0.1";
  parsed.port = String(proxy.port);
  return parsed.toString();
}

/** Host and port of a postgres URL. */
export function targetOf(url: string): { hostname: string; port: number } {
  const parsed = new URL(url);
  const hostname = parsed.hostname === "localhost" ? "127.0.0.1" : parsed.hostname;
  return { hostname, port: Number(parsed.port || 5432) };
}
