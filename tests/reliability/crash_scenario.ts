// The crash scenario shared by the crash test and the soak: N messages, the
// consumer killed with SIGKILL K times at different points (including between
// commit and delete) and restarted; then nothing lost, nothing doubled.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { Random } from "../../src/seed/random.ts";
import { checkLanded, delay, drainUntilEmpty, startConsumer } from "../helpers/consumers.ts";
import { startSqsFaultProxy } from "../helpers/sqs_fault_proxy.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  TEST_SECRET,
} from "../helpers/services.ts";

/** Size of one scenario run. */
export interface CrashScenario {
  readonly messages: number;
  readonly kills: number;
  readonly seed: number;
  readonly label: string;
}

/** Runs the scenario and asserts its outcome; prints its figures. */
export async function runCrashScenario(scenario: CrashScenario): Promise<void> {
  const started = performance.now();
  await using sqs = await startSqs();
  await using db = await freshSchema();
  // A short visibility timeout so a killed consumer's messages come back soon.
  const queueUrl = sqs.createQueue({ VisibilityTimeout: "2" });
  const bodies = [...generateBodies(scenario.messages, { badRatio: 0.02, seed: scenario.seed })];
  const ids = enqueue(sqs, queueUrl, bodies);
  const sent = ids.map((id, i) => ({ id, body: bodies[i] as string }));
  await using proxy = await startSqsFaultProxy(sqs.endpoint);
  const proxiedUrl = `${proxy.endpoint}${new URL(queueUrl).pathname}`;
  const env = { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, ...db.env };
  const random = new Random(scenario.seed);
  const ledgerCount = async () => {
    try {
      const [row] = await db.sql`SELECT count(*)::int AS n FROM login_etl_ledger`;
      return (row?.n as number | undefined) ?? 0;
    } catch {
      return 0; // tables not created yet
    }
  };

  const kinds: Record<string, number> = {};
  for (let k = 0; k < scenario.kills; k++) {
    const consumer = startConsumer(["drain", "--queue-url", proxiedUrl, "--summary-json"], env);
    let kind: string;
    if (k % 3 === 1) {
      // Between commit and delete: hold every DeleteMessageBatch, wait until a
      // batch has committed, then kill. Its messages must come back as duplicates.
      kind = "after-commit-before-delete";
      let release = () => {};
      const stall = new Promise<void>((r) => (release = r));
      proxy.policy = (action) => (action === "DeleteMessageBatch" ? { stallUntil: stall } : "pass");
      const before = await ledgerCount();
      for (let i = 0; i < 400 && (await ledgerCount()) <= before; i++) await delay(25);
      assert.ok((await ledgerCount()) > before, "a batch committed while deletes were held");
      consumer.child.kill("SIGKILL");
      await consumer.done;
      proxy.policy = () => "pass";
      release();
    } else {
      // Anywhere: during start-up, receiving, writing or deleting.
      const ms = random.int(150, 1500);
      kind = ms < 500 ? "early" : "mid-run";
      await delay(ms);
      consumer.child.kill("SIGKILL");
      const result = await consumer.done;
      if (result.signal === null) kind = "after-exit"; // it finished first; still a restart
    }
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    if (sqs.counts(queueUrl).ready === 0 && sqs.counts(queueUrl).inFlight === 0) break;
  }
  const final = await drainUntilEmpty(sqs, queueUrl, env);
  const landed = await checkLanded(db.sql, sent);
  const duplicatesSeen = final.summaries.reduce((n, s) => n + (s.redelivered ?? 0), 0);
  reportFigures(scenario.label, {
    messages: scenario.messages,
    kills: scenario.kills,
    kill_points: kinds,
    lost: landed.lost,
    duplicated: landed.duplicated,
    rows: landed.rows,
    rejected: landed.rejects,
    rejected_by_reason: landed.rejectedByReason,
    redeliveries_absorbed_in_final_drain: duplicatesSeen,
    final_drain_runs: final.runs,
    seconds: Math.round((performance.now() - started) / 100) / 10,
  });
}
