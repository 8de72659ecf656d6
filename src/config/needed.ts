/**
 * The settings of what a command needs (`commands.ts`): the queue and its
 * AWS environment, the reject queue, Postgres and the two schemas, and the
 * key sources, each read and checked as a group. Pure, like the reader.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import { type CommandName, type Needs, SETTINGS_NEEDS } from "./commands.ts";
import type {
  DatabaseSettings,
  EnvRecord,
  KeySettings,
  NeededSettings,
  QueueSettings,
} from "./configs.ts";
import { isLoopbackHost } from "./hosts.ts";
import { resolvePgTarget } from "./pg_target.ts";
import { invalid, type Reader, specOf } from "./reader.ts";
import type { KeySource } from "../secret.ts";

const QUEUE_URL_EXAMPLE = "http://localhost:4566/000000000000/login-queue";
/**
 * Why a queue URL may not carry a user or password: SQS never reads them (it
 * takes signed requests), and the URL is logged, so they would only leak.
 */
const NO_USERINFO =
  "must not hold a user or password: SQS requests are signed with AWS credentials (AWS_* variables or a profile)";

/**
 * `url` with its user and password shown as `***`: the refusal of a user or
 * password must not echo them, whatever characters they hold (a user with
 * `@`, a password with a space: shapes the echo's pattern-based redaction
 * does not recognise).
 */
function withoutUserinfo(url: URL): string {
  const bare = new URL(url);
  bare.username = "";
  bare.password = "";
  return bare.href.replace("//", "//***@");
}

function queueSettings(read: Reader): QueueSettings {
  const { raw, source } = read.lookup("queue-url");
  const queueUrl = String(raw);
  let parsed: URL | null = null;
  try {
    parsed = new URL(queueUrl);
  } catch { /* reported below */ }
  if (parsed === null || !/^https?:$/.test(parsed.protocol)) {
    throw invalid(source, queueUrl, `must be an http(s) URL like ${QUEUE_URL_EXAMPLE}`);
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw invalid(source, withoutUserinfo(parsed), NO_USERINFO);
  }
  if (parsed.pathname.split("/").filter((s) => s !== "").length < 1) {
    throw invalid(
      source,
      queueUrl,
      `must be an http(s) URL ending in the queue name, like ${QUEUE_URL_EXAMPLE}`,
    );
  }
  return {
    queueUrl,
    region: read.string("region"),
    sqsProtocol: read.choice("sqs-protocol"),
    awsEnv: Object.freeze(pickAwsEnv(read.env)),
  };
}

/**
 * The same queue URL up to the case of scheme and host and a trailing slash.
 * Another name for the same endpoint (localhost for 127.0.0.1) is not caught.
 */
function sameQueue(a: URL, b: URL): boolean {
  const path = (u: URL) => u.pathname.replace(/\/+$/, "");
  return a.protocol === b.protocol && a.host === b.host && path(a) === path(b);
}

/**
 * --reject-queue-url, checked like --queue-url, and never the queue being
 * drained: its rejects would come back to it and be copied again forever.
 */
function rejectQueueUrl(read: Reader, queueUrl: string): string | null {
  const { raw, source } = read.lookup("reject-queue-url");
  if (typeof raw !== "string" || raw === "") return null;
  let parsed: URL | null = null;
  try {
    parsed = new URL(raw);
  } catch { /* reported below */ }
  if (parsed === null || !/^https?:$/.test(parsed.protocol) || parsed.pathname.length < 2) {
    throw invalid(source, raw, `must be an SQS queue URL like ${QUEUE_URL_EXAMPLE}`);
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw invalid(source, withoutUserinfo(parsed), NO_USERINFO);
  }
  // Its copies are raw messages, PII and all: never in clear over a network.
  if (parsed.protocol === "http:" && !isLoopbackHost(parsed.hostname)) {
    throw invalid(
      source,
      raw,
      "must be https: the copies it gets are raw messages with their PII (http only to a loopback endpoint)",
    );
  }
  if (sameQueue(parsed, new URL(queueUrl))) {
    throw invalid(
      source,
      raw,
      "is the queue being drained; its rejects would loop back into it: give another queue",
    );
  }
  return raw;
}

/**
 * A schema (or the owner role's) name from the settings. Lower case only:
 * the data schema goes unquoted into search_path, where Postgres folds case,
 * and docs and psql lines name them unquoted.
 */
function schemaName(read: Reader, flag: "schema" | "state-schema" | "owner-role"): string {
  const name = read.string(flag) ?? "";
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) {
    throw invalid(
      read.lookup(flag).source,
      name,
      "must be a plain lower-case identifier (a-z, digits, _)",
    );
  }
  if (name.startsWith("pg_")) {
    throw invalid(read.lookup(flag).source, name, "names starting pg_ are Postgres' own");
  }
  return name;
}

function databaseSettings(read: Reader): DatabaseSettings {
  const { raw, source } = read.lookup("database-url");
  const schema = schemaName(read, "schema");
  const stateSchema = schemaName(read, "state-schema");
  if (stateSchema === schema) {
    throw invalid(
      read.lookup("state-schema").source,
      stateSchema,
      `is also --schema; login-etl's own tables go in a schema apart from the analysts' data: give another`,
    );
  }
  return {
    database: resolvePgTarget(
      typeof raw === "string" && raw !== "" ? { value: raw, origin: source.name } : null,
      read.env,
    ),
    schema,
    stateSchema,
    ownerRole: schemaName(read, "owner-role"),
  };
}

/**
 * The key sources, each read only when the command needs that key (for a key
 * it does not need: none, under the table's default id). Resolution refuses a
 * missing HMAC key only where the command cannot start without one.
 */
function keySettings(read: Reader, needs: Needs): KeySettings {
  const none: KeySource = Object.freeze({ kind: "none" });
  const hmacKey = needs.hmacKey === "none"
    ? none
    : read.keySource({ fileFlag: "hmac-key-file", inlineEnv: "PII_HMAC_KEY" });
  if (hmacKey.kind === "none" && needs.hmacKey === "required") {
    throw new ConfigError(
      "No HMAC key: set PII_HMAC_KEY or --hmac-key-file to a secret of at least 32 bytes (make one with: openssl rand -base64 32)",
    );
  }
  return {
    hmacKey: Object.freeze(hmacKey),
    hmacKeyId: needs.hmacKey === "none" ? defaultOf("hmac-key-id") : read.keyId("hmac-key-id"),
    vaultKey: needs.vaultKey === "none"
      ? none
      : Object.freeze(read.keySource({ fileFlag: "vault-key-file", inlineEnv: "PII_VAULT_KEY" })),
    vaultKeyId: needs.vaultKey === "none" ? defaultOf("vault-key-id") : read.keyId("vault-key-id"),
  };
}

function defaultOf(flag: string): string {
  return specOf(flag).default as string;
}

/**
 * The settings of everything `command` needs, as `commands.ts` says: the
 * queue, the reject queue, Postgres and the keys, each read and checked.
 */
export function neededSettings<C extends CommandName>(
  command: C,
  read: Reader,
): NeededSettings<C> {
  const needs: Needs = SETTINGS_NEEDS[command];
  const queue = needs.queue ? queueSettings(read) : null;
  if (needs.rejectQueue && queue === null) {
    throw new TypeError(`${command} needs a reject queue but no queue in commands.ts`);
  }
  return {
    ...queue,
    ...(needs.rejectQueue && queue !== null
      ? { rejectQueueUrl: rejectQueueUrl(read, queue.queueUrl) }
      : {}),
    ...(needs.database ? databaseSettings(read) : {}),
    ...(needs.hmacKey !== "none" || needs.vaultKey !== "none" ? keySettings(read, needs) : {}),
  } as NeededSettings<C>;
}

/** AWS variables the SDK reads; passed through so the SDK behaves as it documents. */
function pickAwsEnv(env: EnvRecord): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith("AWS_") && value !== undefined && value !== "") picked[name] = value;
  }
  return picked;
}
