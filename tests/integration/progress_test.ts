// drain's progress line through the real CLI: `--progress always` draws it on
// stderr with `\r` between intact log lines and erases it before the summary
// line; `auto` (the default) off a terminal writes only the log lines.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { drainCli } from "../helpers/drain.ts";
import { enqueue, freshSchema, startSqs } from "../helpers/services.ts";

/** Drains `count` generated bodies through the CLI with `--progress <progress>`; returns stderr. */
async function drainStderr(progress: string, count: number): Promise<string> {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, [...generateBodies(count, { badRatio: 0.05, seed: 9 })]);
  const result = await drainCli(queueUrl, db.schema, {
    args: ["--progress", progress, "--max-rows", "200"],
  });
  return result.stderr;
}

Deno.test("drain --progress always rewrites one status line between intact log lines", async () => {
  // Long enough for redraws (every 250 ms) between log lines and for the queue depth to show.
  const stderr = await drainStderr("always", 2000);
  assert.match(stderr, /\r[\d,]+ done · [\d,]+ msg\/s/);
  assert.match(stderr, / · ~[\d,]+ left in queue/);
  // What a terminal keeps of each line is the text after its last \r.
  const lines = stderr.split("\n").map((line) => line.slice(line.lastIndexOf("\r") + 1).trimEnd());
  assert.equal(lines.at(-1), "", "ends with a newline: the status is erased");
  const shown = lines.slice(0, -1);
  for (const line of shown) {
    assert.doesNotThrow(() => JSON.parse(line), `not a whole log line: ${JSON.stringify(line)}`);
  }
  assert.equal(JSON.parse(shown.at(-1) ?? "").event, "RunFinished", "the summary line comes last");
  // Nothing but spaces (the erase) follows the last status before the summary.
  const tail = stderr.slice(stderr.lastIndexOf("done ·"));
  assert.match(tail, /^done · [^\n]*\r {10,}\r\{"ts"/);
});

Deno.test("drain --progress auto off a terminal writes only log lines", async () => {
  // A drawn line would show at once: the first is drawn as the drain starts.
  const stderr = await drainStderr("auto", 200);
  assert.ok(!stderr.includes("\r"), "no carriage return");
  assert.ok(!stderr.includes("msg/s"), "no progress text");
  for (const line of stderr.trimEnd().split("\n")) assert.doesNotThrow(() => JSON.parse(line));
});
