// The drain path against three SQS implementations we did not write: fauxqs
// (JSON), local-aws-sqs (JSON and Query, LocalStack-style URLs), and
// local-aws-sqs behind a proxy that refuses JSON as LocalStack < 3.0 does.
// Each runs the sample with a malformed message: rows once, one reject, the
// protocol each speaks. Their visibility timeouts (a redelivery after a crash,
// a commit held past the timeout) are endpoints_visibility_test.ts's.

import assert from "node:assert/strict";
import { encodeAppVersion } from "../../src/app_version.ts";
import { canonicalIp } from "../../src/ip.ts";
import { consume } from "../../src/commands/_consume.ts";
import { seed } from "../../src/commands/_seed.ts";
import { Secret } from "../../src/secret.ts";
import { Masker } from "../../src/mask.ts";
import { generateBodies } from "../../src/seed/generate.ts";
import { loadSampleBodies } from "../../src/seed/sample.ts";
import {
  capturingTelemetry,
  DATABASE_URL,
  freshSchema,
  hasSample,
  reportFigures,
  SAMPLE_PATH,
  TEST_SECRET,
  testConfig,
  utcDaysSince,
} from "../helpers/services.ts";
import { ENDPOINT_KINDS, startEndpoint } from "../helpers/sqs_endpoints.ts";

const neverStop = new AbortController().signal;
const noStdout = () => {};

/** A message in another shape, like the one the exercise's own queue holds. */
const MALFORMED = JSON.stringify({ foo: "oops_wrong_msg_format", bar: "not a login" });

/** The exercise's 100 messages when the sample file is here, else 100 synthetic ones. */
async function sampleBodies(): Promise<string[]> {
  return hasSample()
    ? await loadSampleBodies(SAMPLE_PATH)
    : [...generateBodies(100, { badRatio: 0, seed: 7 })];
}

function config(queueUrl: string, schema: string, flags: Record<string, string> = {}) {
  return testConfig("drain", {
    "queue-url": queueUrl,
    "database-url": DATABASE_URL,
    schema,
    ...flags,
  });
}

function events(lines: readonly string[], name: string): Record<string, unknown>[] {
  return lines.map((l) => JSON.parse(l)).filter((l) => l.event === name);
}

for (const kind of ENDPOINT_KINDS) {
  Deno.test(`${kind}: seed then drain the sample and a malformed message: rows once, one reject, queue empty`, async () => {
    const since = Date.now();
    await using sqs = await startEndpoint(kind);
    await using db = await freshSchema();
    const queueUrl = await sqs.createQueue();
    const bodies = await sampleBodies();
    const seeding = capturingTelemetry();
    await seed(testConfig("seed", { "queue-url": queueUrl }), seeding.telemetry, [
      ...bodies,
      MALFORMED,
    ]);
    const { telemetry, lines } = capturingTelemetry();
    const summary = await consume(config(queueUrl, db.schema), {
      telemetry,
      stop: neverStop,
      writeStdout: noStdout,
    });
    reportFigures(`${kind} sample`, { ...summary, requests: sqs.requests });

    assert.equal(summary.received, 101);
    assert.equal(summary.inserted, 100);
    assert.deepEqual(summary.rejected_by_reason, { missing_field: 1 });
    assert.equal(summary.deleted, 101);
    assert.deepEqual(await sqs.counts(queueUrl), { ready: 0, inFlight: 0 });

    const masker = await Masker.create(
      new Secret(new TextEncoder().encode(TEST_SECRET), "t"),
      "k1",
    );
    // Each message as one correct row, every column (drain_test.ts checked
    // this on fauxqs alone, a duplicate of this case).
    const rows = await db.sql<Record<string, unknown>[]>`
      SELECT *, create_date::text AS day FROM user_logins`;
    assert.equal(rows.length, 100);
    // Each row dated the day its message was sent (every day of a run that crosses midnight UTC).
    const days = utcDaysSince(since);
    for (const body of bodies) {
      const event = JSON.parse(body);
      const row = rows.find((r) => r.user_id === event.user_id);
      assert.ok(row, `row for ${event.user_id}`);
      assert.equal(row.device_type, event.device_type);
      assert.equal(row.locale, event.locale);
      const version = encodeAppVersion(event.app_version);
      assert.ok(version.ok);
      assert.equal(row.app_version, version.encoded);
      // The mask is of the address's canonical spelling (synthetic bodies
      // spell some IPv6 addresses in capitals or with runs of zeros).
      const ip = canonicalIp(event.ip);
      assert.ok(ip.ok, event.ip);
      assert.equal(row.masked_ip, await masker.mask("ip", ip.canonical));
      assert.equal(row.masked_device_id, await masker.mask("device_id", event.device_id));
      assert.ok(days.includes(String(row.day)), `${row.day} is not one of ${days}`);
    }
    const [ledger] = await db.sql`SELECT count(*)::int AS n FROM login_etl_ledger`;
    assert.equal(ledger?.n, 101, "the 100 rows and the reject");
    assert.ok(summary.balanced);
    // SentTimestamp came back: asked for under both attribute names.
    assert.deepEqual(events(lines, "SentTimestampMissing"), []);
    const started = events(lines, "RunStarted")[0];
    const switched = [
      ...events(lines, "SqsProtocolSwitched"),
      ...events(seeding.lines, "SqsProtocolSwitched"),
    ];
    if (kind === "legacy-localstack") {
      // seed and drain each switched once, then spoke only Query.
      assert.equal(switched.length, 2);
      assert.match(
        String(switched[0]?.reason),
        /Operation detection failed|HTTP 500 with an XML body/,
      );
      assert.equal(started?.sqs_protocol, "query (auto)");
      assert.ok(sqs.requests.json <= 6, `JSON requests: ${sqs.requests.json}`);
    } else {
      assert.equal(switched.length, 0, "a JSON endpoint never switches");
      assert.equal(started?.sqs_protocol, "json (auto)");
    }
  });
}
