// deno-lint-ignore-file no-console -- the test prints what the proxy adds, which it does not assert
// Tests of bench/delay_proxy.ts on loopback: it forwards every byte in order,
// a round trip through it never takes less than its delays, and what it adds
// beyond them is printed (timing decides a pass only by that lower bound and
// a generous upper one: the machine is shared).
import assert from "node:assert/strict";
import { DelayProxy, type Delays } from "../../bench/delay_proxy.ts";

/** An echo server: every byte back as it comes; closes once the client has ended. */
function echoServer(): { port: number; close: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    const buffer = new Uint8Array(32 * 1024);
    try {
      for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
        let written = 0;
        while (written < n) written += await conn.write(buffer.subarray(written, n));
      }
    } catch { /* closed under us */ }
    conns.delete(conn);
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const accepting = (async () => {
    for (;;) {
      try {
        const task = serve(await listener.accept());
        tasks.add(task);
        task.finally(() => tasks.delete(task));
      } catch {
        return;
      }
    }
  })();
  return {
    port: listener.addr.port,
    close: async () => {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      await accepting;
      await Promise.allSettled([...tasks]);
    },
  };
}

/** Deterministic bytes (xorshift), so a mismatch can be reproduced. */
function bytes(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function readExactly(conn: Deno.Conn, into: Uint8Array): Promise<void> {
  let got = 0;
  while (got < into.length) {
    const n = await conn.read(into.subarray(got));
    if (n === null) throw new Error(`ended after ${got} of ${into.length} bytes`);
    got += n;
  }
}

async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
    parts.push(buffer.slice(0, n));
  }
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const quantile = (xs: readonly number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
const ms = (x: number) => `${x.toFixed(3)} ms`;

Deno.test("DelayProxy forwards every byte in order, over many chunks and connections, and each end after its data", async () => {
  const connections = 16;
  const chunksEach = 100;
  // Made before the proxy starts: generating them would hold up the event loop the proxy runs on.
  const plans = Array.from({ length: connections }, (_, c) => {
    const chunks = Array.from(
      { length: chunksEach },
      (_, i) => bytes(c * 1000 + i, 1 + ((c * 7919 + i * 104729) % 6000)),
    );
    const sent = new Uint8Array(chunks.reduce((sum, p) => sum + p.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      sent.set(chunk, at);
      at += chunk.length;
    }
    return { chunks, sent };
  });
  const echo = echoServer();
  const delays: Delays = { upMs: 1, downMs: 2 };
  const proxy = await DelayProxy.start({ hostname: "127.0.0.1", port: echo.port }, delays);
  try {
    await Promise.all(plans.map(async ({ chunks, sent }, c) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
      try {
        const received = readToEnd(conn);
        for (const chunk of chunks) {
          let written = 0;
          while (written < chunk.length) written += await conn.write(chunk.subarray(written));
          // Now and then let the chunk go alone, so the proxy reads many small ones.
          if (chunk.length % 3 === 0) await new Promise((r) => setTimeout(r, 0));
        }
        await conn.closeWrite();
        const back = await received;
        assert.equal(back.length, sent.length, `connection ${c}: length`);
        assert.ok(back.every((b, i) => b === sent[i]), `connection ${c}: bytes differ`);
      } finally {
        conn.close();
      }
    }));
    const stats = proxy.stats();
    // Reading goes on while chunks wait: many are held at once.
    assert.ok(stats.maxHeld > 1, `held at most ${stats.maxHeld}`);
    console.log(
      `  ${stats.chunks} chunks, ${stats.bytes} bytes; released late by p50 ${
        ms(stats.p50Ms)
      }, p99 ${ms(stats.p99Ms)}, max ${
        ms(stats.maxMs)
      }; ${stats.maxHeld} held at most; ${stats.wakes} wakes, ${ms(stats.spunMs)} spun`,
    );
  } finally {
    await proxy[Symbol.asyncDispose]();
    await echo.close();
  }
});

Deno.test("a round trip through DelayProxy takes at least its delays; what it adds is printed", async () => {
  const echo = echoServer();
  const pings = 150;
  const roundTrips = async (port: number): Promise<number[]> => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    try {
      const out: number[] = [];
      const ping = bytes(7, 64);
      const pong = new Uint8Array(ping.length);
      for (let i = 0; i < pings; i++) {
        const started = performance.now();
        await conn.write(ping);
        await readExactly(conn, pong);
        out.push(performance.now() - started);
      }
      assert.deepEqual(pong, ping);
      return out;
    } finally {
      conn.close();
    }
  };
  try {
    const direct = await roundTrips(echo.port);
    console.log(
      `  direct: round trip p50 ${ms(quantile(direct, 0.5))}, p90 ${ms(quantile(direct, 0.9))}`,
    );
    for (const rttMs of [1, 2, 10]) {
      const proxy = await DelayProxy.start({ hostname: "127.0.0.1", port: echo.port }, {
        upMs: rttMs / 2,
        downMs: rttMs / 2,
      });
      try {
        const times = await roundTrips(proxy.port);
        const min = Math.min(...times);
        assert.ok(min >= rttMs, `a round trip took ${ms(min)}, under the ${rttMs} ms asked`);
        const over = times.map((t) => t - rttMs);
        const stats = proxy.stats();
        console.log(
          `  ${rttMs} ms: round trip over the target by p50 ${ms(quantile(over, 0.5))}, p90 ${
            ms(quantile(over, 0.9))
          }, max ${ms(Math.max(...over))}; the proxy released late by p50 ${ms(stats.p50Ms)}, p99 ${
            ms(stats.p99Ms)
          }; ${ms(stats.spunMs)} spun over ${stats.wakes} wakes`,
        );
        assert.ok(
          quantile(times, 0.5) < rttMs + 20,
          `median round trip ${ms(quantile(times, 0.5))} for ${rttMs} ms`,
        );
      } finally {
        await proxy[Symbol.asyncDispose]();
      }
    }
  } finally {
    await echo.close();
  }
});
