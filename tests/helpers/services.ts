// Real services for integration tests: fauxqs in process on a free port, and
// a fresh schema per test in the suite's Postgres (a throwaway PostgreSQL 15
// cluster, or the server a person names with DATABASE_URL: see
// tests/helpers/majors.ts), or in a given major's server.

import { ChangeMessageVisibilityBatchCommand, SQSClient } from "@aws-sdk/client-sqs";
import { startFauxqs } from "fauxqs";
import postgres from "postgres";
import type { CommandName } from "../../src/config/commands.ts";
import { type ConfigFor, type FlagValues, resolveConfig } from "../../src/config/resolve.ts";
import { loadPgConnection, type PgConnection } from "../../src/db/connection.ts";
import { resolvePgTarget } from "../../src/config/pg_target.ts";
import type { Schemas } from "../../src/db/schemas.ts";
import { SUITE_MAJOR } from "./cluster.ts";
import { TEST_SECRET, uniqueName } from "./common.ts";
import { BORROWED_URL, pgServer } from "./majors.ts";

export {
  capturingTelemetry,
  hasSample,
  onOneUtcDay,
  reportFigures,
  SAMPLE_PATH,
  TEST_SECRET,
  uniqueName,
  utcDaysSince,
} from "./common.ts";

/**
 * The suite's Postgres: waited for (or started) once per test process, when
 * this module is first imported.
 */
const suiteServer = await pgServer(SUITE_MAJOR);
if (BORROWED_URL !== undefined) await mustBeSuperuser(BORROWED_URL);

/**
 * A server a person names with DATABASE_URL must take a superuser login: the
 * tests create schemas, roles and databases of their own. Said once, in one
 * line, rather than as a permission error in every test.
 */
async function mustBeSuperuser(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ superuser: boolean }[]>`
      SELECT rolsuper AS superuser FROM pg_roles WHERE rolname = current_user`;
    if (row?.superuser !== true) {
      throw new Error(
        "DATABASE_URL must name a superuser login: the tests create schemas, roles and databases of their own (or unset it to use a throwaway cluster)",
      );
    }
  } finally {
    await sql.end();
  }
}

/** A superuser URL of the suite's Postgres. */
export const DATABASE_URL: string = suiteServer.url;

/**
 * The CA of the suite server's certificate (for the name localhost only), or
 * undefined for a server a person named with DATABASE_URL: its TLS is not ours
 * to know, and the TLS cases skip.
 */
export const TEST_CA: string | undefined = suiteServer.caPath;

/** Why the TLS cases cannot run (a person's server: its TLS is unknown), or null when they can. */
export const TLS_UNKNOWN: string | null = TEST_CA === undefined
  ? "the server at DATABASE_URL is not ours, so its TLS is unknown"
  : null;

/** The test database (or the server at `url`) as a connection, read as the CLI would read DATABASE_URL. */
export function testConnection(url: string = DATABASE_URL): Promise<PgConnection> {
  return loadPgConnection(resolvePgTarget({ value: url, origin: "DATABASE_URL" }, {}));
}

/** fauxqs running in this process. */
export interface TestSqs extends AsyncDisposable {
  readonly endpoint: string;
  readonly client: SQSClient;
  readonly server: Awaited<ReturnType<typeof startFauxqs>>;
  /** Creates a fresh queue and returns its URL on 127.0.0.1. */
  createQueue(attributes?: Record<string, string>): string;
  /** Messages by state, read without receiving. */
  counts(queueUrl: string): { ready: number; inFlight: number };
}

/** Starts fauxqs on a free port. Use with `await using`. */
export async function startSqs(): Promise<TestSqs> {
  const server = await startFauxqs({ port: 0, logger: false, host: "127.0.0.1" });
  const endpoint = `http://127.0.0.1:${server.port}`;
  const client = new SQSClient({
    region: "us-east-1",
    endpoint,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  const nameOf = (url: string) => url.split("/").pop() ?? "";
  return {
    endpoint,
    client,
    server,
    createQueue(attributes = {}) {
      const name = uniqueName("q").replaceAll("_", "-");
      server.createQueue(name, { attributes });
      return `${endpoint}/000000000000/${name}`;
    },
    counts(queueUrl) {
      const q = server.inspectQueue(nameOf(queueUrl));
      if (q === undefined) throw new Error(`No queue ${queueUrl}`);
      return {
        ready: q.messages.ready.length + q.messages.delayed.length,
        inFlight: q.messages.inflight.length,
      };
    },
    async [Symbol.asyncDispose]() {
      client.destroy();
      await server.stop();
    },
  };
}

/**
 * The state schema of a test's data schema: each test has its own, so no
 * two tests (and no test and a real deployment) share `login_etl`.
 */
export function stateSchemaOf(schema: string): string {
  return `${schema}_state`;
}

/** A fresh data schema and its state schema in the test database, both dropped on dispose. */
export interface TestDb extends AsyncDisposable {
  /** The superuser URL of the server it is in (`DATABASE_URL` unless another was given). */
  readonly url: string;
  readonly schema: string;
  /** Where login-etl keeps its own tables for `schema` (created by migration 6). */
  readonly stateSchema: string;
  /** The two as a deployment's schemas, so that `db` serves where a `Deployment` is asked for. */
  readonly schemas: Schemas;
  /** The two as settings flags, to spread into a command's flags. */
  readonly flags: { readonly schema: string; readonly "state-schema": string };
  /** The two as the environment variables of a CLI run. */
  readonly env: { readonly LOGIN_ETL_SCHEMA: string; readonly LOGIN_ETL_STATE_SCHEMA: string };
  /**
   * A pool whose search_path is the data schema, then the state schema, so a
   * test's own queries find both by their plain names; `login_etl.state_schema`
   * names the state schema for migration statements run through it.
   */
  readonly sql: postgres.Sql;
}

/**
 * Creates a fresh data schema (its state schema is created by migration 6)
 * in the test database, or in the server at `server.url` (a major's, from
 * tests/helpers/majors.ts). Use with `await using`.
 */
export async function freshSchema(
  server: { readonly url: string } = { url: DATABASE_URL },
): Promise<TestDb> {
  const url = server.url;
  const schema = uniqueName("t");
  const stateSchema = stateSchemaOf(schema);
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE SCHEMA "${schema}"`);
  await admin.end();
  const sql = postgres(url, {
    max: 2,
    onnotice: () => {},
    connection: {
      search_path: `${schema}, ${stateSchema}`,
      "login_etl.state_schema": stateSchema,
    },
  });
  return {
    url,
    schema,
    stateSchema,
    schemas: { schema, stateSchema },
    flags: { schema, "state-schema": stateSchema },
    env: { LOGIN_ETL_SCHEMA: schema, LOGIN_ETL_STATE_SCHEMA: stateSchema },
    sql,
    async [Symbol.asyncDispose]() {
      await sql.unsafe(`DROP SCHEMA IF EXISTS "${stateSchema}" CASCADE`);
      await sql.unsafe(`DROP SCHEMA "${schema}" CASCADE`);
      await sql.end();
    },
  };
}

/**
 * Config for a test run, as the CLI would resolve it, with the test key. A
 * `--schema` without a `--state-schema` gets its own (`stateSchemaOf`): a
 * test must never fall back to the shared default `login_etl`.
 */
export function testConfig<C extends CommandName>(
  command: C,
  flags: FlagValues,
  env: Record<string, string> = {},
): ConfigFor<C> {
  const schema = flags.schema;
  const own = typeof schema === "string" && flags["state-schema"] === undefined &&
      env.LOGIN_ETL_STATE_SCHEMA === undefined
    ? { "state-schema": stateSchemaOf(schema) }
    : {};
  return resolveConfig(command, { ...flags, ...own }, { PII_HMAC_KEY: TEST_SECRET, ...env });
}

/** Sends bodies straight into a queue through fauxqs (fast, no SDK). */
export function enqueue(sqs: TestSqs, queueUrl: string, bodies: readonly string[]): string[] {
  const name = queueUrl.split("/").pop() ?? "";
  return bodies.map((body) => sqs.server.sendMessage(name, body).messageId);
}

/**
 * Makes every in-flight message of a fauxqs queue visible again at once, by
 * its current receipt handle, as if its visibility timeout had lapsed: for a
 * test whose point is what the next run does with a redelivery, not the wait
 * for it. A long poll that an ended run left waiting in fauxqs takes
 * messages as they come back (into the void): those are made visible again,
 * round after round, until none is in flight.
 */
export async function expireInFlight(sqs: TestSqs, queueUrl: string): Promise<void> {
  const name = queueUrl.split("/").pop() ?? "";
  const inFlight = () =>
    (sqs.server.inspectQueue(name)?.messages.inflight ?? []).map((m) => m.receiptHandle);
  // Each abandoned poll takes at most one batch; a hundred rounds is a bound, not a guess.
  for (let round = 0, handles = inFlight(); handles.length > 0; round++, handles = inFlight()) {
    if (round === 100) throw new Error(`${handles.length} messages stay in flight`);
    for (let i = 0; i < handles.length; i += 10) {
      const out = await sqs.client.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: queueUrl,
          Entries: handles.slice(i, i + 10).map((handle, j) => ({
            Id: String(j),
            ReceiptHandle: handle,
            VisibilityTimeout: 0,
          })),
        }),
      );
      if ((out.Failed ?? []).length > 0) {
        throw new Error(`ChangeMessageVisibility refused: ${out.Failed?.[0]?.Code}`);
      }
    }
  }
}
