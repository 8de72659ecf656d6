// Shared by the fault tests of tests/reliability/faults_*_test.ts (split so
// that no one file bounds a parallel run): loading a queue with generated
// logins, counting the ledger of a schema that may not exist yet, polling
// until a condition holds, and reading a consumer's JSON log.

import { generateBodies } from "../../src/seed/generate.ts";
import { delay } from "./consumers.ts";
import { enqueue, type TestSqs } from "./services.ts";

/** Sends `count` generated logins (2 % invalid) and returns each one's id and body. */
export function load(
  sqs: TestSqs,
  queueUrl: string,
  count: number,
  seed: number,
): { id: string; body: string }[] {
  const bodies = [...generateBodies(count, { badRatio: 0.02, seed })];
  return enqueue(sqs, queueUrl, bodies).map((id, i) => ({ id, body: bodies[i] as string }));
}

/** Rows in the ledger, or 0 while the consumer has not yet migrated it. */
export async function ledgerCount(
  sql: { unsafe: (q: string) => Promise<unknown[]> },
): Promise<number> {
  try {
    const [row] = (await sql.unsafe("SELECT count(*)::int AS n FROM login_etl_ledger")) as {
      n: number;
    }[];
    return row?.n ?? 0;
  } catch {
    return 0;
  }
}

/** Polls `check` every 25 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

/** The JSON log records of a consumer's stderr. */
export function events(stderr: string): Record<string, unknown>[] {
  return stderr.trimEnd().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}
