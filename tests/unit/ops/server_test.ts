// Unit tests of src/ops/server.ts, without a socket: the handler turns a Request
// into a Response; readinessProbe() times out, names what failed and does not
// pile up calls to a hung service; cachedProbe() reuses answers; and
// parseListenAddress() accepts the documented forms.

import assert from "node:assert/strict";
import { ConfigError } from "../../../src/errors.ts";
import { Metrics } from "../../../src/ops/metrics.ts";
import { zeroCounters } from "../../../src/ops/events.ts";
import {
  cachedProbe,
  createHandler,
  parseListenAddress,
  type Probe,
  type Readiness,
  readinessProbe,
} from "../../../src/ops/server.ts";

const READY: Probe = () => Promise.resolve({ ready: true });

function handlerWith(ready: Probe = READY, metrics = new Metrics(zeroCounters())) {
  return createHandler({ metrics, ready });
}

function get(path: string, method = "GET"): Request {
  return new Request(`http://localhost:9464${path}`, { method });
}

Deno.test("createHandler() answers /healthz with 200 whatever the services do", async () => {
  const handle = handlerWith(() => Promise.resolve({ ready: false, reason: "database: down" }));
  const response = await handle(get("/healthz"));
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { status: "ok" });
});

Deno.test("createHandler() answers /readyz with check names and states only; the reason goes to the log", async (t) => {
  await t.step("ready", async () => {
    const response = await handlerWith(() =>
      Promise.resolve({ ready: true, checks: { queue: "ok" } })
    )(get("/readyz"));
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    assert.deepEqual(await response.json(), { status: "ready", checks: { queue: "ok" } });
  });
  await t.step("not ready", async () => {
    const reason =
      'database: password authentication failed for user "etl" at db.internal:5432\n  at somewhere';
    const logged: string[] = [];
    const handle = createHandler({
      metrics: new Metrics(zeroCounters()),
      ready: () =>
        Promise.resolve({ ready: false, reason, checks: { queue: "ok", database: "failed" } }),
      onUnready: (why) => logged.push(why),
    });
    const response = await handle(get("/readyz"));
    assert.equal(response.status, 503);
    const text = await response.text();
    assert.deepEqual(JSON.parse(text), {
      status: "unavailable",
      checks: { queue: "ok", database: "failed" },
    });
    assert.doesNotMatch(text, /etl|db\.internal|password/, "no error text in the answer");
    assert.deepEqual(logged, [
      'database: password authentication failed for user "etl" at db.internal:5432 at somewhere',
    ]);
  });
  await t.step("a probe that throws is not ready, and says nothing of why", async () => {
    const response = await handlerWith(() => Promise.reject(new Error("boom")))(get("/readyz"));
    assert.equal(response.status, 503);
    assert.deepEqual(await response.json(), { status: "unavailable", checks: {} });
  });
});

Deno.test("createHandler() serves /metrics in the Prometheus text format", async () => {
  const counters = zeroCounters();
  counters.received = 7;
  const metrics = new Metrics(counters);
  const response = await handlerWith(READY, metrics)(get("/metrics"));
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  assert.match(text, /^# HELP login_etl_messages_received_total /m);
  assert.match(text, /^login_etl_messages_received_total 7$/m);
});

Deno.test("createHandler() refuses unknown paths and methods, and answers HEAD without a body", async (t) => {
  const handle = handlerWith();
  const cases = [
    { name: "unknown path", request: get("/"), status: 404 },
    { name: "POST /metrics", request: get("/metrics", "POST"), status: 405 },
    { name: "DELETE /readyz", request: get("/readyz", "DELETE"), status: 405 },
    { name: "a query string is ignored", request: get("/healthz?verbose=1"), status: 200 },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      const response = await handle(c.request);
      assert.equal(response.status, c.status);
      if (c.status === 405) assert.equal(response.headers.get("allow"), "GET, HEAD");
      await response.body?.cancel();
    });
  }
  await t.step("HEAD /readyz", async () => {
    const response = await handle(get("/readyz", "HEAD"));
    assert.equal(response.status, 200);
    assert.equal(response.body, null);
  });
});

Deno.test("readinessProbe() is ready only when every check answers in time", async (t) => {
  const ok = () => Promise.resolve();
  const failing = () => Promise.reject(new Error("connection refused"));
  const cases: {
    name: string;
    checks: { name: string; check: () => Promise<void> }[];
    expected: Readiness;
  }[] = [
    {
      name: "all answer",
      checks: [{ name: "queue", check: ok }],
      expected: { ready: true, checks: { queue: "ok" } },
    },
    {
      name: "one fails",
      checks: [{ name: "queue", check: ok }, { name: "database", check: failing }],
      expected: {
        ready: false,
        reason: "database: connection refused",
        checks: { queue: "ok", database: "failed" },
      },
    },
    { name: "no checks", checks: [], expected: { ready: true, checks: {} } },
  ];
  for (const c of cases) {
    await t.step(c.name, async () => {
      assert.deepEqual(await readinessProbe(c.checks, { timeoutMs: 1000 })(), c.expected);
    });
  }
  await t.step("shutting down", async () => {
    const probe = readinessProbe([{ name: "queue", check: ok }], {
      timeoutMs: 1000,
      stopping: () => true,
    });
    assert.deepEqual(await probe(), { ready: false, reason: "shutting down", checks: {} });
  });
});

Deno.test("readinessProbe() times out a hung check and does not start it again while it hangs", async () => {
  let calls = 0;
  let release = () => {};
  const hung = new Promise<void>((resolve) => (release = resolve));
  const probe = readinessProbe([{
    name: "database",
    check: () => {
      calls++;
      return hung;
    },
  }], { timeoutMs: 20 });
  const hungAnswer = {
    ready: false,
    reason: "database: no answer within 20 ms",
    checks: { database: "timeout" },
  };
  assert.deepEqual(await probe(), hungAnswer);
  assert.deepEqual(await probe(), hungAnswer);
  assert.equal(calls, 1, "the second probe awaited the first call");
  release();
  assert.deepEqual(await probe(), { ready: true, checks: { database: "ok" } });
  assert.equal(calls, 1);
  assert.deepEqual(await probe(), { ready: true, checks: { database: "ok" } });
  assert.equal(calls, 2, "a settled check runs again");
});

Deno.test("cachedProbe() reuses an answer for its time to live and shares one probe in flight", async () => {
  let now = 0;
  let calls = 0;
  let answer: Readiness = { ready: true };
  const probe = cachedProbe(() => {
    calls++;
    return Promise.resolve(answer);
  }, { ttlMs: 2000, now: () => now });
  const [a, b] = await Promise.all([probe(), probe()]);
  assert.deepEqual([a, b, calls], [{ ready: true }, { ready: true }, 1]);
  answer = { ready: false, reason: "queue: down" };
  now = 1999;
  assert.deepEqual(await probe(), { ready: true }, "cached");
  assert.equal(calls, 1);
  now = 2000;
  assert.deepEqual(await probe(), { ready: false, reason: "queue: down" }, "expired");
  assert.equal(calls, 2);
});

Deno.test("parseListenAddress() takes :PORT, HOST:PORT and [IPV6]:PORT", async (t) => {
  const cases = [
    { input: ":9464", expected: { hostname: "0.0.0.0", port: 9464 } },
    { input: "127.0.0.1:9464", expected: { hostname: "127.0.0.1", port: 9464 } },
    { input: "localhost:0", expected: { hostname: "localhost", port: 0 } },
    { input: "[::1]:9464", expected: { hostname: "::1", port: 9464 } },
    { input: " :8080 ", expected: { hostname: "0.0.0.0", port: 8080 } },
  ];
  for (const c of cases) {
    await t.step(c.input, () => assert.deepEqual(parseListenAddress(c.input), c.expected));
  }
  for (const bad of ["9464", "host", ":", ":65536", "::1:9464", "a b:1", ":-1", "http://x:1"]) {
    await t.step(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseListenAddress(bad), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /^Invalid --listen ".*": must be :PORT, HOST:PORT/);
        return true;
      });
    });
  }
});
