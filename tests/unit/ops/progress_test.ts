// Unit tests of drain's progress line: renderProgress() and rateOf() are
// pure; StatusLine keeps log lines above the status without interleaving;
// startProgress() draws at once, polls the queue depth and erases its line
// when stopped.

import assert from "node:assert/strict";
import { StatusLine } from "../../../src/log.ts";
import { rateOf, renderProgress, startProgress } from "../../../src/ops/progress.ts";

Deno.test("renderProgress() shows done, rejects, rate and the queue left, with fixed separators", async (t) => {
  const cases = [
    {
      name: "the issue's example",
      input: { done: 12_340, rejected: 0, perSecond: 6_120, queueDepth: 37_600 },
      expected: "12,340 done · 6,120 msg/s · ~37,600 left in queue",
    },
    {
      name: "rejects counted, not listed",
      input: { done: 12_340, rejected: 1_051, perSecond: 6_120, queueDepth: 37_600 },
      expected: "12,340 done · 1,051 rejected · 6,120 msg/s · ~37,600 left in queue",
    },
    {
      name: "before the first depth answer",
      input: { done: 0, rejected: 0, perSecond: 0, queueDepth: null },
      expected: "0 done · 0 msg/s",
    },
    {
      name: "rates are rounded, millions grouped",
      input: { done: 1_234_567, rejected: 0, perSecond: 999.6, queueDepth: 0 },
      expected: "1,234,567 done · 1,000 msg/s · ~0 left in queue",
    },
    {
      name: "a negative or fractional count never shows",
      input: { done: -3, rejected: 0, perSecond: 0.4, queueDepth: 12.4 },
      expected: "0 done · 0 msg/s · ~12 left in queue",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assert.equal(renderProgress(c.input), c.expected));
  }
  await t.step("cut to the terminal width less one", () => {
    const line = renderProgress(
      { done: 12_340, rejected: 0, perSecond: 6_120, queueDepth: 37_600 },
      20,
    );
    assert.equal(line, "12,340 done · 6,12…");
    assert.equal(line.length, 19);
  });
});

Deno.test("rateOf() is the rate between the oldest and newest sample", async (t) => {
  const cases = [
    { name: "no samples", input: [], expected: 0 },
    { name: "one sample", input: [{ atMs: 0, done: 5 }], expected: 0 },
    {
      name: "two seconds apart",
      input: [{ atMs: 1000, done: 100 }, { atMs: 2000, done: 400 }, { atMs: 3000, done: 2100 }],
      expected: 1000,
    },
    { name: "same instant", input: [{ atMs: 5, done: 1 }, { atMs: 5, done: 9 }], expected: 0 },
  ];
  for (const c of cases) await t.step(c.name, () => assert.equal(rateOf(c.input), c.expected));
});

function collector() {
  const writes: string[] = [];
  return {
    writes,
    status: new StatusLine((text) => writes.push(text)),
    screen: () => render(writes),
  };
}

/** What a terminal shows after the writes: `\r` returns to the line start, `\n` ends a line. */
function render(writes: readonly string[]): string[] {
  const lines: string[] = [""];
  let column = 0;
  for (const char of writes.join("")) {
    if (char === "\r") column = 0;
    else if (char === "\n") {
      lines.push("");
      column = 0;
    } else {
      const row = lines.length - 1;
      const line = lines[row] as string;
      lines[row] = line.slice(0, column) + char + line.slice(column + 1);
      column++;
    }
  }
  return lines.map((l) => l.trimEnd());
}

Deno.test("StatusLine writes log lines above the status and never mixes the two", () => {
  const { writes, status, screen } = collector();
  status.writeLine("first log line");
  status.show("10 done · 5 msg/s");
  status.writeLine("a");
  status.show("100 done · 50 msg/s · ~7 left in queue");
  status.show("110 done · 50 msg/s");
  assert.deepEqual(screen(), ["first log line", "a", "110 done · 50 msg/s"]);
  status.writeLine("a log line longer than the status line ever was");
  assert.deepEqual(screen(), [
    "first log line",
    "a",
    "a log line longer than the status line ever was",
    "110 done · 50 msg/s",
  ]);
  status.clear();
  status.clear(); // twice is harmless
  status.writeLine("summary");
  assert.deepEqual(screen(), [
    "first log line",
    "a",
    "a log line longer than the status line ever was",
    "summary",
    "",
  ]);
  // Each log line is one write: another writer cannot land between erase and redraw.
  assert.ok(writes.every((w) => !w.includes("\n") || w.split("\n").length === 2));
});

Deno.test("startProgress() draws at once, shows the polled depth, and erases its line on stop", async () => {
  const { status, screen } = collector();
  let done = 0;
  let polls = 0;
  let answer = () => {};
  const depth = new Promise<number>((resolve) => (answer = () => resolve(41_000)));
  const progress = startProgress({
    done: () => ({ done, rejected: 0 }),
    queueDepth: () => {
      polls++;
      return depth;
    },
    status,
    columns: () => 120,
  });
  assert.deepEqual(screen(), ["0 done · 0 msg/s"]);
  assert.equal(polls, 1);
  answer();
  done = 1_500;
  await new Promise((resolve) => setTimeout(resolve, 300)); // one redraw (every 250 ms)
  assert.match(screen()[0] ?? "", /^1,500 done · [\d,]+ msg\/s · ~41,000 left in queue$/);
  assert.equal(polls, 1, "the depth is polled every few seconds, not per redraw");
  await progress.stop();
  assert.deepEqual(screen(), [""]);
});

Deno.test("startProgress() keeps drawing when the depth poll fails", async () => {
  const { status, screen } = collector();
  const progress = startProgress({
    done: () => ({ done: 3, rejected: 1 }),
    queueDepth: () => Promise.reject(new Error("unreachable")),
    status,
  });
  await progress.stop();
  assert.deepEqual(screen(), [""]);
});
