// Consumer processes for fault tests: start the CLI, kill it, drain until the
// queue is really empty, and check what landed against what was sent.

import assert from "node:assert/strict";
import type postgres from "postgres";
import { validateBody } from "../../src/validate.ts";
import { spawnCli } from "./cli.ts";
import type { TestSqs } from "./services.ts";

/** A consumer process. */
export interface Consumer {
  readonly child: Deno.ChildProcess;
  /** Exit code, stdout and stderr once it ends. */
  readonly done: Promise<ConsumerResult>;
  /** Its result once it has ended, else undefined. */
  ended(): ConsumerResult | undefined;
  /** What it has written to stderr so far (its log, while it runs). */
  stderrSoFar(): string;
}

/** How a consumer process ended, and what it wrote. */
export interface ConsumerResult {
  readonly code: number;
  readonly signal: Deno.Signal | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Throws with its last log lines when one of `consumers` has ended: for a
 * wait on them, which would otherwise time out saying nothing of why.
 */
export function assertRunning(consumers: readonly Consumer[]): void {
  for (const c of consumers) {
    const r = c.ended();
    if (r !== undefined) {
      throw new Error(`a consumer exited (code ${r.code}): ${r.stderr.slice(-1500)}`);
    }
  }
}

/** Starts `login-etl <args>` as a child process. */
export function startConsumer(args: readonly string[], env: Record<string, string>): Consumer {
  const child = spawnCli(args, env);
  const stdout = new Response(child.stdout).text();
  let log = "";
  const stderr = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) log += decoder.decode(chunk, { stream: true });
    return log += decoder.decode();
  })();
  let result: ConsumerResult | undefined;
  const done = (async () => {
    const status = await child.status;
    result = {
      code: status.code,
      signal: status.signal,
      stdout: await stdout,
      stderr: await stderr,
    };
    return result;
  })();
  return { child, done, ended: () => result, stderrSoFar: () => log };
}

/** Sleeps `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Runs `drain` until the queue holds nothing, visible or in flight: messages
 * held by a killed consumer come back only after their visibility timeout.
 */
export async function drainUntilEmpty(
  sqs: TestSqs,
  queueUrl: string,
  env: Record<string, string>,
  options: { timeoutMs?: number; extraArgs?: readonly string[]; consumerQueueUrl?: string } = {},
): Promise<{ runs: number; summaries: Record<string, number>[] }> {
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  const summaries: Record<string, number>[] = [];
  for (let runs = 1;; runs++) {
    const { done } = startConsumer([
      "drain",
      "--queue-url",
      options.consumerQueueUrl ?? queueUrl,
      "--summary-json",
      ...(options.extraArgs ?? []),
    ], env);
    const result = await done;
    assert.equal(result.code, 0, `drain failed: ${result.stderr.slice(-2000)}`);
    summaries.push(JSON.parse(result.stdout));
    const counts = sqs.counts(queueUrl);
    if (counts.ready === 0 && counts.inFlight === 0) return { runs, summaries };
    if (Date.now() > deadline) {
      throw new Error(`queue not empty in time: ${JSON.stringify(counts)}`);
    }
    // fauxqs moves expired in-flight messages back only when something
    // receives, so the next drain run is also what brings them back.
    await delay(500);
  }
}

/** What landed, compared with what was sent. */
export interface Landed {
  readonly sent: number;
  readonly valid: number;
  readonly rows: number;
  readonly rejects: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly ledger: number;
  readonly rejectedByReason: Record<string, number>;
}

/**
 * Checks that every sent message is in the ledger once, that each valid one is
 * one row (by its unique user_id) and each invalid one a reject, and nothing else.
 */
export async function checkLanded(
  sql: postgres.Sql,
  sent: readonly { id: string; body: string }[],
): Promise<Landed> {
  const ledgerIds = new Set(
    (await sql<{ message_id: string }[]>`SELECT message_id FROM login_etl_ledger`).map((r) =>
      r.message_id
    ),
  );
  const rows = await sql<{ user_id: string }[]>`SELECT user_id FROM user_logins`;
  const rejects = await sql<
    { message_id: string; reason: string }[]
  >`SELECT message_id, reason FROM login_etl_rejects`;
  const validUsers = new Set<string>();
  const invalidIds = new Set<string>();
  for (const m of sent) {
    if (validateBody(m.body, 65536).ok) validUsers.add(JSON.parse(m.body).user_id);
    else invalidIds.add(m.id);
  }
  const rowUsers = new Set(rows.map((r) => r.user_id));
  const lost = sent.filter((m) => !ledgerIds.has(m.id)).length;
  const rejectedByReason: Record<string, number> = {};
  for (const r of rejects) rejectedByReason[r.reason] = (rejectedByReason[r.reason] ?? 0) + 1;
  const landed: Landed = {
    sent: sent.length,
    valid: validUsers.size,
    rows: rows.length,
    rejects: rejects.length,
    lost,
    duplicated: rows.length - rowUsers.size,
    ledger: ledgerIds.size,
    rejectedByReason,
  };
  assert.equal(landed.lost, 0, "every sent MessageId is in the ledger");
  assert.equal(landed.ledger, sent.length, "and nothing else is");
  assert.equal(landed.duplicated, 0, "no login written twice");
  assert.equal(landed.rows, validUsers.size, "one row per valid message");
  assert.deepEqual(rowUsers, validUsers, "the rows are exactly the valid messages");
  assert.equal(landed.rejects, invalidIds.size, "one reject per invalid message");
  assert.ok(
    rejects.every((r) => invalidIds.has(r.message_id)),
    "rejects are exactly the invalid messages",
  );
  return landed;
}
