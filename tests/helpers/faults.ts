// Shared by the fault tests of tests/reliability/faults_*_test.ts (split so
// that no one file bounds a parallel run): loading a queue with generated
// logins, a migrated schema behind a slowed Postgres, counting the ledger of
// a schema that may not exist yet, polling until a condition holds, and
// reading a consumer's JSON log (after it ends, or as it runs).

import { migrate } from "../../src/db/schema.ts";
import { generateBodies } from "../../src/seed/generate.ts";
import { assertRunning, type Consumer, delay } from "./consumers.ts";
import { DATABASE_URL, enqueue, freshSchema, type TestDb, type TestSqs } from "./services.ts";
import { targetOf, TcpProxy, viaProxy } from "./tcp_proxy.ts";

/** A test schema, and a URL of its server through a proxy that delays every packet. */
export interface SlowedDb extends AsyncDisposable {
  readonly db: TestDb;
  /** DATABASE_URL through the proxy. */
  readonly slowUrl: string;
}

/**
 * A migrated schema, and a proxy to its server delaying every packet by
 * `delayMs`. Migrated first, as in production: through the proxy the
 * migrations alone took most of a minute, and the faults are in the writes.
 */
export async function slowedDb(delayMs: number): Promise<SlowedDb> {
  const db = await freshSchema();
  await migrate(db.sql, db);
  const proxy = TcpProxy.start(targetOf(DATABASE_URL));
  proxy.delayMs = delayMs;
  return {
    db,
    slowUrl: viaProxy(DATABASE_URL, proxy),
    async [Symbol.asyncDispose]() {
      await proxy[Symbol.asyncDispose]();
      await db[Symbol.asyncDispose]();
    },
  };
}

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

/** The JSON log records a running consumer has written so far, its line being written left out. */
export function eventsSoFar(consumer: Consumer): Record<string, unknown>[] {
  const log = consumer.stderrSoFar();
  return events(log.slice(0, log.lastIndexOf("\n") + 1));
}

/**
 * The port a consumer started with `--listen 127.0.0.1:0` serves on, from
 * its ListenStarted record: a port chosen free beforehand could be taken by
 * another test file before the consumer binds it. Fails at once, with its
 * log, if the consumer exits first.
 */
export async function listenedPort(consumer: Consumer, timeoutMs = 30_000): Promise<number> {
  let port: number | undefined;
  await waitFor(
    () => {
      const address = eventsSoFar(consumer).find((e) => e.event === "ListenStarted")?.address;
      port = Number(/^127\.0\.0\.1:(\d+)$/.exec(String(address))?.[1]) || undefined;
      if (port === undefined) assertRunning([consumer]);
      return port !== undefined;
    },
    timeoutMs,
    "ListenStarted",
  );
  return port!;
}
