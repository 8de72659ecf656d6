// OpenTelemetry through Deno's built-in OTLP exporter, as users turn it on:
// `drain` from the CLI (the binary's permission flags) with OTEL_DENO=true
// sends one `login_etl.batch` span per transaction, with its counts and stage
// durations, to a collector (here an OTLP/HTTP JSON receiver in the test);
// the DeleteMessageBatch calls are its children. Without OTEL_DENO nothing
// is sent.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { validateBody } from "../../src/validate.ts";
import { drainCli } from "../helpers/drain.ts";
import { enqueue, freshSchema, reportFigures, startSqs } from "../helpers/services.ts";

interface OtlpSpan {
  readonly name: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly attributes: readonly {
    readonly key: string;
    readonly value: Readonly<Record<string, unknown>>;
  }[];
}

/** A collector that keeps the spans of OTLP/HTTP JSON trace exports. */
function startCollector() {
  const spans: OtlpSpan[] = [];
  const paths: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = new URL(request.url).pathname;
    paths.push(path);
    const body = await request.text();
    if (path === "/v1/traces") {
      const parsed = JSON.parse(body) as {
        resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
      };
      for (const r of parsed.resourceSpans) for (const s of r.scopeSpans) spans.push(...s.spans);
    }
    return Response.json({});
  });
  return { spans, paths, endpoint: `http://127.0.0.1:${server.addr.port}`, server };
}

function attribute(span: OtlpSpan, key: string): number {
  const value = span.attributes.find((a) => a.key === key)?.value;
  assert.ok(value !== undefined, `${span.name} has no ${key}`);
  return Number(value["doubleValue"] ?? value["intValue"]);
}

/** Drains `count` generated bodies through the CLI with `env` added. */
async function drainWith(env: Record<string, string>, count: number) {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  const bodies = [...generateBodies(count, { badRatio: 0.1, seed: 4242 })];
  enqueue(sqs, queueUrl, bodies);
  const result = await drainCli(queueUrl, db.schema, {
    args: ["--summary-json", "--max-rows", "100"],
    env,
  });
  return { bodies, summary: JSON.parse(result.stdout) as Record<string, number> };
}

Deno.test("OTEL_DENO=true exports a login_etl.batch span per transaction with its counts", async () => {
  const collector = startCollector();
  try {
    const { bodies, summary } = await drainWith({
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_SERVICE_NAME: "login-etl",
    }, 500);
    const batches = collector.spans.filter((s) => s.name === "login_etl.batch");
    assert.ok(batches.length >= 5, `${batches.length} batch spans`);
    const sum = (key: string) => batches.reduce((n, s) => n + attribute(s, key), 0);
    const rejects = bodies.filter((b) => !validateBody(b, 65536).ok).length;
    assert.equal(sum("login_etl.messages"), bodies.length);
    assert.equal(sum("login_etl.inserted"), summary["inserted"]);
    assert.equal(sum("login_etl.inserted"), bodies.length - rejects);
    assert.equal(sum("login_etl.rejected"), rejects);
    assert.equal(sum("login_etl.redelivered"), 0);
    assert.equal(sum("login_etl.deleted"), bodies.length);
    for (const span of batches) {
      assert.ok(attribute(span, "login_etl.write_ms") >= 0);
      assert.ok(attribute(span, "login_etl.ack_ms") >= 0);
    }
    // Deno's fetch spans of the deletes nest under their batch.
    const batchIds = new Set(batches.map((s) => s.spanId));
    const children = collector.spans.filter((s) => batchIds.has(s.parentSpanId));
    assert.ok(children.length >= batches.length, `${children.length} child spans`);
    reportFigures("OTLP export of a drain", {
      messages: bodies.length,
      batch_spans: batches.length,
      child_spans: children.length,
      all_spans: collector.spans.length,
    });
  } finally {
    await collector.server.shutdown();
  }
});

Deno.test("without OTEL_DENO nothing is exported, even with an endpoint set", async () => {
  const collector = startCollector();
  try {
    await drainWith({ OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint }, 50);
    assert.deepEqual(collector.paths, []);
  } finally {
    await collector.server.shutdown();
  }
});
