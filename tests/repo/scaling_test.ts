// docs/scaling.md's capacity table is arithmetic on the last full make bench
// (bench/results/latency-latest.json): each row's measured rate and CPU are
// the bench's medians for drain with default settings, and the pod figures
// follow from them (bench/capacity.ts, which make bench writes the table
// with). A bench run whose table was not written fails here.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { capacityRow, type ContenderMedians, type RttSummary } from "../../bench/capacity.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

interface Results {
  readonly summary: readonly RttSummary[];
}

/** The table's rows, as written: every cell of each row between the markers. */
function tableRows(doc: string): string[][] {
  const start = doc.indexOf("<!-- capacity:start -->");
  const end = doc.indexOf("<!-- capacity:end -->");
  assert.ok(start >= 0 && end > start, "capacity markers in docs/scaling.md");
  return doc.slice(start, end).split("\n")
    .filter((l) => /^\|\s*\d+ ms/.test(l))
    .map((l) => l.split("|").slice(1, -1).map((c) => c.trim()));
}

Deno.test("docs/scaling.md's capacity table follows from the last full make bench", () => {
  const results = JSON.parse(
    readFileSync(`${ROOT}bench/results/latency-latest.json`, "utf8"),
  ) as Results;
  const rows = tableRows(readFileSync(`${ROOT}docs/scaling.md`, "utf8"));
  assert.equal(rows.length, results.summary.length, "a row per SQS round trip");
  results.summary.forEach((summary, i) => {
    const drain = summary.contenders.find((c) => c.id === "drain");
    assert.ok(drain !== undefined, `drain at ${summary.sqs_rtt_ms} ms`);
    assert.deepEqual(rows[i], capacityRow(summary.sqs_rtt_ms, drain));
  });
});

Deno.test("the capacity arithmetic: CPU caps a pod at one core, and pods round up", () => {
  const drain = (rate: number, cpu: number): ContenderMedians => ({
    id: "drain",
    "median_msgs_per_s": rate,
    "median_cpu_s_per_10k": cpu,
  });
  // 5,000 msg/s at 2.5 CPU-s per 10k needs 1.25 cores: one core caps it at 4,000.
  assert.deepEqual(capacityRow(10, drain(5_000, 2.5)), [
    "10 ms",
    "5,000",
    "2.5",
    "1.25",
    "4,000",
    "1",
    "3",
    "25",
  ]);
  // Under a core: the measured rate stands.
  assert.equal(capacityRow(0, drain(3_000, 2))[4], "3,000");
});
