/**
 * @module The network between a consumer and its services, for the bench:
 * a TCP proxy that holds every chunk a fixed time per direction and forwards
 * it in order, with no cap on throughput (reading goes on while chunks wait,
 * so a connection can have any number of chunks in the air). A round trip
 * through it costs `upMs + downMs` more than without it.
 *
 * Each chunk is due at the time it was read plus its direction's delay, on
 * `performance.now()`. With one delay per direction, chunks fall due in the
 * order they were read, so one queue per direction serves every connection.
 * One `Alarm` (bench/alarm.ts) wakes the proxy at the earliest due time, and
 * each wake releases everything due by then, so a late wake delays no chunk
 * more than that wake's lateness. Nothing is released early. How late each
 * chunk went out is kept (`stats()`): the proxy's own measure of what it
 * adds beyond the delay, beside the end-to-end check in
 * tests/integration/delay_proxy_test.ts.
 */

import { Alarm } from "./alarm.ts";

/** Delay per direction, ms: `upMs` client to server, `downMs` server to client. */
export interface Delays {
  readonly upMs: number;
  readonly downMs: number;
}

/** How late the proxy released chunks past their due time, ms. */
export interface DelayStats {
  readonly chunks: number;
  readonly bytes: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** The most chunks held at once. */
  readonly maxHeld: number;
  /** Wake-ups, and the main-thread spinning they cost, ms. */
  readonly wakes: number;
  readonly spunMs: number;
}

/** The delays of a round trip of `rttMs`, half each way. */
export function halfEachWay(rttMs: number): Delays {
  return { upMs: rttMs / 2, downMs: rttMs / 2 };
}

/** A host and port, as `Deno.connect` takes. */
export interface Target {
  readonly hostname: string;
  readonly port: number;
}

/** Host and port of a URL (`localhost` as 127.0.0.1; the port as the scheme's default). */
export function targetOf(url: string, defaultPort: number): Target {
  const parsed = new URL(url);
  const hostname = parsed.hostname === "localhost" ? "127.0.0.1" : parsed.hostname;
  return { hostname, port: Number(parsed.port || defaultPort) };
}

/** `url` with its host and port replaced by the proxy's. */
export function throughProxy(url: string, proxy: DelayProxy): string {
  const parsed = new URL(url);
  parsed.hostname = "127.0.0.1";
  parsed.port = String(proxy.port);
  return parsed.toString();
}

/** One direction of one connection: where its chunks go, in order. */
interface Outbound {
  readonly conn: Deno.Conn;
  readonly pair: Pair;
  /** Released, not yet written; null is the end of the stream. */
  readonly ready: (Uint8Array | null)[];
  writing: boolean;
}

interface Pair {
  readonly client: Deno.Conn;
  readonly server: Deno.Conn;
  /** Directions whose end has been forwarded. */
  ended: number;
  closed: boolean;
}

interface Held {
  readonly due: number;
  readonly out: Outbound;
  readonly chunk: Uint8Array | null;
}

/** A first-in first-out queue that does not copy on shift. */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;
  get length(): number {
    return this.#items.length - this.#head;
  }
  push(item: T): void {
    this.#items.push(item);
  }
  peek(): T | undefined {
    return this.#items[this.#head];
  }
  shift(): T | undefined {
    const item = this.#items[this.#head];
    if (item === undefined) return undefined;
    this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

/** Lateness histogram: 10 µs buckets up to 100 ms, the rest in the last. */
const BUCKET_MS = 0.01;
const BUCKETS = 10_000;

/** A running delay proxy on a free loopback port; dispose with `await using`. */
export class DelayProxy implements AsyncDisposable {
  readonly #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  readonly #target: Target;
  readonly #delays: Delays;
  readonly #up = new Fifo<Held>();
  readonly #down = new Fifo<Held>();
  readonly #pairs = new Set<Pair>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #alarm: Alarm;
  #histogram = new Uint32Array(BUCKETS);
  #chunks = 0;
  #bytes = 0;
  #maxMs = 0;
  #maxHeld = 0;
  #closing = false;

  private constructor(target: Target, delays: Delays, alarm: Alarm) {
    this.#target = target;
    this.#delays = delays;
    this.#alarm = alarm;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#track(this.#acceptLoop());
  }

  /** Starts a proxy forwarding to `target` with `delays`, once its alarm thread runs. */
  static async start(target: Target, delays: Delays): Promise<DelayProxy> {
    if (!(delays.upMs >= 0 && delays.downMs >= 0)) throw new Error("delays must be ≥ 0 ms");
    // The alarm is only set once a chunk is held, so after `proxy` exists.
    const alarm = await Alarm.start(() => proxy.#release());
    const proxy = new DelayProxy(target, delays, alarm);
    return proxy;
  }

  /** The port clients connect to. */
  get port(): number {
    return this.#listener.addr.port;
  }

  get delays(): Delays {
    return this.#delays;
  }

  /** Release lateness since the start or the last `resetStats()`. */
  stats(): DelayStats {
    const quantile = (q: number): number => {
      if (this.#chunks === 0) return 0;
      const rank = Math.ceil(q * this.#chunks);
      let seen = 0;
      for (let i = 0; i < BUCKETS; i++) {
        seen += this.#histogram[i]!;
        // The bucket's upper edge, in whole µs (the last bucket holds everything later).
        if (seen >= rank) {
          return Math.round(Math.min((i + 1) * BUCKET_MS, this.#maxMs) * 1000) / 1000;
        }
      }
      return this.#maxMs;
    };
    return {
      chunks: this.#chunks,
      bytes: this.#bytes,
      p50Ms: quantile(0.5),
      p90Ms: quantile(0.9),
      p99Ms: quantile(0.99),
      maxMs: this.#maxMs,
      maxHeld: this.#maxHeld,
      wakes: this.#alarm.fired,
      spunMs: this.#alarm.spunMs,
    };
  }

  resetStats(): void {
    this.#histogram = new Uint32Array(BUCKETS);
    this.#chunks = 0;
    this.#bytes = 0;
    this.#maxMs = 0;
    this.#maxHeld = 0;
    this.#alarm.fired = 0;
    this.#alarm.spunMs = 0;
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      this.#track(this.#open(client));
    }
  }

  async #open(client: Deno.TcpConn): Promise<void> {
    let server: Deno.TcpConn;
    try {
      server = await Deno.connect(this.#target);
    } catch {
      client.close();
      return;
    }
    if (this.#closing) {
      client.close();
      server.close();
      return;
    }
    client.setNoDelay(true);
    server.setNoDelay(true);
    const pair: Pair = { client, server, ended: 0, closed: false };
    this.#pairs.add(pair);
    const toServer: Outbound = { conn: server, pair, ready: [], writing: false };
    const toClient: Outbound = { conn: client, pair, ready: [], writing: false };
    await Promise.all([
      this.#pump(client, toServer, this.#up, this.#delays.upMs),
      this.#pump(server, toClient, this.#down, this.#delays.downMs),
    ]);
  }

  /** Reads `from` until its end, holding each chunk (and the end) for `delayMs`. */
  async #pump(from: Deno.Conn, out: Outbound, queue: Fifo<Held>, delayMs: number): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      let n: number | null;
      try {
        n = await from.read(buffer);
      } catch {
        this.#closePair(out.pair); // reset: nothing more to forward either way
        return;
      }
      if (out.pair.closed) return;
      const chunk = n === null ? null : buffer.slice(0, n);
      queue.push({ due: performance.now() + delayMs, out, chunk });
      const held = this.#up.length + this.#down.length;
      if (held > this.#maxHeld) this.#maxHeld = held;
      if (delayMs === 0) this.#release();
      else this.#schedule();
      if (n === null) return;
    }
  }

  /** Arms the alarm for the earliest chunk held, or disarms it. */
  #schedule(): void {
    const up = this.#up.peek()?.due ?? Infinity;
    const down = this.#down.peek()?.due ?? Infinity;
    const next = Math.min(up, down);
    if (next === Infinity) this.#alarm.clear();
    else this.#alarm.set(next);
  }

  /** Hands every chunk due by now to its connection's writer. */
  #release(): void {
    const now = performance.now();
    for (const queue of [this.#up, this.#down]) {
      for (let head = queue.peek(); head !== undefined && head.due <= now; head = queue.peek()) {
        queue.shift();
        if (head.out.pair.closed) continue;
        const late = now - head.due;
        this.#histogram[Math.min(BUCKETS - 1, Math.floor(late / BUCKET_MS))]!++;
        this.#chunks++;
        this.#bytes += head.chunk?.length ?? 0;
        if (late > this.#maxMs) this.#maxMs = late;
        head.out.ready.push(head.chunk);
        if (!head.out.writing) this.#track(this.#write(head.out));
      }
    }
    this.#schedule();
  }

  /** Writes what is released for `out`, in order; at the end, closes its write side. */
  async #write(out: Outbound): Promise<void> {
    out.writing = true;
    try {
      for (let chunk = out.ready.shift(); chunk !== undefined; chunk = out.ready.shift()) {
        if (chunk === null) {
          await (out.conn as Deno.TcpConn).closeWrite();
          if (++out.pair.ended === 2) this.#closePair(out.pair);
          return;
        }
        let written = 0;
        while (written < chunk.length) written += await out.conn.write(chunk.subarray(written));
      }
    } catch {
      this.#closePair(out.pair);
    } finally {
      out.writing = false;
    }
  }

  #closePair(pair: Pair): void {
    if (pair.closed) return;
    pair.closed = true;
    this.#pairs.delete(pair);
    for (const conn of [pair.client, pair.server]) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#closing = true;
    this.#listener.close();
    for (const pair of [...this.#pairs]) this.#closePair(pair);
    this.#up.clear();
    this.#down.clear();
    this.#alarm.close();
    await Promise.allSettled([...this.#tasks]);
  }
}
