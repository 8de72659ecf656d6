/**
 * One OpenTelemetry span per batch (`login_etl.batch`) with its counts and
 * stage durations. Spans go through `@opentelemetry/api`: Deno registers its
 * built-in OTLP exporter with that package when `OTEL_DENO=true`, and without
 * it every call here is the API's no-op, so tracing costs nothing when off.
 *
 * @module
 */

import { context, type Span, SpanStatusCode, trace } from "@opentelemetry/api";
import meta from "../../deno.json" with { type: "json" };

const tracer = trace.getTracer("login-etl", meta.version);

/** What a batch span carries, besides its name and timing. */
export interface BatchAttributes {
  /** Deliveries in the batch. */
  readonly messages: number;
  readonly inserted: number;
  readonly redelivered: number;
  readonly rejected: number;
  readonly deleted: number;
  /** Prepare (validate, mask) and the transaction, retries included, ms. */
  readonly writeMs: number;
  /** DeleteMessageBatch calls after the commit, ms. */
  readonly ackMs: number;
}

/** Attribute keys, namespaced as OpenTelemetry's naming rules ask. */
const KEYS: Readonly<Record<keyof BatchAttributes, string>> = {
  messages: "login_etl.messages",
  inserted: "login_etl.inserted",
  redelivered: "login_etl.redelivered",
  rejected: "login_etl.rejected",
  deleted: "login_etl.deleted",
  writeMs: "login_etl.write_ms",
  ackMs: "login_etl.ack_ms",
};

/** The span of one batch, from its cut off the buffer to its delete. */
export interface BatchSpan {
  /** Sets counts and durations (durations rounded to 0.1 ms). */
  record(attributes: Readonly<Partial<BatchAttributes>>): void;
  /** Runs `fn` with this span active, so spans made inside (Deno's `fetch` spans) are its children. */
  within<T>(fn: () => Promise<T>): Promise<T>;
  /** Marks the batch failed with a bounded error code. */
  fail(code: string, message: string): void;
  /** Ends the span; call once. */
  end(): void;
}

/** Starts the span of a batch of `messages` deliveries. */
export function startBatchSpan(messages: number): BatchSpan {
  const span: Span = tracer.startSpan("login_etl.batch", {
    attributes: { [KEYS.messages]: messages },
  });
  const recording = span.isRecording();
  return {
    record(attributes) {
      if (!recording) return;
      for (const [key, value] of Object.entries(attributes)) {
        const name = KEYS[key as keyof BatchAttributes];
        span.setAttribute(name, key.endsWith("Ms") ? Math.round(value * 10) / 10 : value);
      }
    },
    within(fn) {
      return recording ? context.with(trace.setSpan(context.active(), span), fn) : fn();
    },
    fail(code, message) {
      if (!recording) return;
      span.setAttribute("error.type", code);
      span.setStatus({ code: SpanStatusCode.ERROR, message });
    },
    end() {
      span.end();
    },
  };
}
