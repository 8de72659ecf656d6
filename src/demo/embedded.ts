/**
 * The services `demo` runs in process: fauxqs as the SQS endpoint and PGlite
 * (PostgreSQL compiled to WebAssembly) served over the Postgres wire protocol,
 * so the demo runs the same SQS client and postgres.js code as production.
 *
 * @module
 */

import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { startFauxqs } from "fauxqs";

/** A started service and how to stop it. */
export interface Embedded {
  /** Endpoint URL (SQS) or connection URL (Postgres). */
  readonly url: string;
  stop(): Promise<void>;
}

/** Starts fauxqs on a free loopback port. */
export async function startEmbeddedSqs(): Promise<Embedded> {
  const server = await startFauxqs({ port: 0, logger: false, host: "127.0.0.1" });
  return {
    url: `http://127.0.0.1:${server.port}`,
    stop: () => server.stop(),
  };
}

/**
 * Starts an in-memory PGlite behind a socket server on a free loopback port.
 * PGlite has one session that every socket connection shares, so clients must
 * use a single connection.
 */
export async function startEmbeddedPostgres(): Promise<Embedded> {
  const db = await PGlite.create();
  const server = new PGLiteSocketServer({ db, port: 0, host: "127.0.0.1", maxConnections: 2 });
  await server.start();
  return {
    url: `postgres://postgres:postgres@${server.getServerConn()}/postgres`,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
