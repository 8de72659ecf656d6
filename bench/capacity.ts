// docs/scaling.md's capacity table: what one pod moves at each SQS round
// trip and how many pods a rate needs, as arithmetic on a `make bench`
// summary (drain with default settings). bench/latency.ts writes it after a
// full run; tests/repo/scaling_test.ts checks the page against the results
// file with the same arithmetic.

/** One contender's medians in a latency summary. */
export interface ContenderMedians {
  readonly id: string;
  readonly "median_msgs_per_s": number;
  readonly "median_cpu_s_per_10k": number;
}

/** The capacity table's header and rule. */
export const CAPACITY_HEADER: readonly string[] = [
  "| SQS RTT | drain msg/s (measured) | CPU-s per 10,000 | cores at that rate | one pod, 1 CPU (msg/s) | pods for 1,000 msg/s | pods for 10,000 msg/s | pods for 100,000 msg/s |",
  "| --- | --- | --- | --- | --- | --- | --- | --- |",
];

/**
 * A row's cells for drain at `rtt`: its measured rate and CPU, the cores
 * that rate takes, what one CPU (the manifests' limit) allows at that CPU
 * per message, and pods for 1k, 10k and 100k msg/s, rounded up.
 */
export function capacityRow(rtt: number, drain: ContenderMedians): string[] {
  const rate = drain.median_msgs_per_s;
  const cpu = drain.median_cpu_s_per_10k;
  const pod = Math.min(rate, Math.floor(10_000 / cpu));
  const n = (x: number) => x.toLocaleString("en-US");
  return [
    `${rtt} ms`,
    n(rate),
    String(cpu),
    String(Math.round(rate * cpu / 100) / 100),
    n(pod),
    ...[1_000, 10_000, 100_000].map((target) => String(Math.ceil(target / pod))),
  ];
}

/** One round trip's part of a latency summary (bench/results/latency-latest.json). */
export interface RttSummary {
  readonly "sqs_rtt_ms": number;
  readonly contenders: readonly ContenderMedians[];
}

/** The table for a bench's summaries, one row per round trip, as markdown lines. */
export function capacityTable(summary: readonly RttSummary[]): string[] {
  return [
    ...CAPACITY_HEADER,
    ...summary.map((s) => {
      const drain = s.contenders.find((c) => c.id === "drain");
      if (drain === undefined) throw new Error(`no drain at ${s.sqs_rtt_ms} ms`);
      return `| ${capacityRow(s.sqs_rtt_ms, drain).join(" | ")} |`;
    }),
  ];
}
