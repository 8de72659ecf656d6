// Unit tests of src/pipeline/load.ts: a busy event loop shows as CPU time
// and as a late probe timer; the probe stops cleanly. Coarse bounds only.
import assert from "node:assert/strict";
import { LoadProbe } from "../../../src/pipeline/load.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("LoadProbe sees a blocked event loop as CPU time and a late timer, then restarts its interval", async () => {
  const probe = new LoadProbe(() => performance.now());
  try {
    await sleep(60);
    probe.sample(); // start the interval measured below afresh
    const until = performance.now() + 200;
    while (performance.now() < until) { /* the event loop is blocked */ }
    await sleep(40); // lets the probe timer fire, late
    const busy = probe.sample();
    assert.ok(busy.lagMs >= 50, `lag ${busy.lagMs} ms after a 200 ms block`);
    assert.ok(busy.cpuPerSecond > 0.3, `${busy.cpuPerSecond} CPU-s per s while spinning`);
    assert.ok(busy.cpuPerSecond < 64, "per wall second, not a total");
  } finally {
    probe.stop();
  }
});
