/**
 * Entry point of the sink worker thread: builds a masker and a Postgres
 * store from the init message, then prepares and writes each batch it is
 * sent, answering with the outcome or a serialisable error.
 *
 * @module
 */

import { Secret } from "../secret.ts";
import { Database } from "../db/pool.ts";
import { EtlError } from "../errors.ts";
import { Masker } from "../mask.ts";
import type { VaultKey } from "../pii/keyring.ts";
import { VaultCipher } from "../pii/vault.ts";
import { postgresStore } from "../db/write.ts";
import type { Sink } from "../types.ts";
import { localSink } from "./sink.ts";
import type { WorkerReply, WorkerRequest } from "./threads.ts";

// deno-lint-ignore no-explicit-any
const scope = self as any;
let sink: Sink | null = null;
let database: Database | null = null;

function reply(message: WorkerReply): void {
  scope.postMessage(message);
}

scope.onmessage = async (event: MessageEvent<WorkerRequest>) => {
  const request = event.data;
  switch (request.type) {
    case "init": {
      const { init } = request;
      database = new Database({
        connection: init.connection,
        schema: init.schema,
        stateSchema: init.stateSchema,
        max: init.poolMax,
      });
      const masker = await Masker.create(new Secret(init.secret, "worker"), init.keyId);
      const vault = init.vault === null ? undefined : await VaultCipher.create({
        current: init.vault.current,
        keys: new Map(
          init.vault.keys.map(([id, key]): [string, VaultKey] => [
            id,
            key.kind === "secret"
              ? { kind: "secret", secret: new Secret(key.secret, `vault key ${id}`) }
              : key,
          ]),
        ),
      });
      const store = postgresStore(database, {
        writeTimeoutMs: init.writeTimeoutMs,
        systemicIsTransient: init.systemicIsTransient,
        reportEarlierRejects: init.reportEarlierRejects,
      });
      sink = localSink(masker, store, {
        ...init.prepare,
        ...(vault === undefined ? {} : { vault }),
      });
      reply({ type: "ready" });
      return;
    }
    case "write": {
      try {
        if (sink === null) throw new EtlError("internal", "Sink worker got a batch before init");
        reply({ type: "written", seq: request.seq, outcome: await sink.write(request.messages) });
      } catch (error) {
        const etl = error instanceof EtlError ? error : null;
        reply({
          type: "failed",
          seq: request.seq,
          error: {
            code: etl?.code ?? "internal",
            message: etl?.message ?? (error instanceof Error ? error.message : String(error)),
            transient: etl?.transient ?? false,
            messageIds: etl?.messageIds ?? request.messages.map((m) => m.id),
          },
        });
      }
      return;
    }
    case "close":
      await database?.end().catch(() => {});
      reply({ type: "closed" });
      return;
  }
};
