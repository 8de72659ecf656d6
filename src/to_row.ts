/**
 * Builds what gets written: a `LoginRow` from a valid event, or a `RejectRow`
 * whose stored body has every `ip`/`device_id` value replaced by its mask.
 * Pure: masks are computed by the caller and passed in.
 *
 * @module
 */

import { canonicalIp } from "./ip.ts";
import type { LoginEvent, ParsedBody } from "./validate.ts";
import type { LoginRow, Masked, Problem, RejectRow } from "./types.ts";

/** UTC calendar date of an epoch-millisecond time, `YYYY-MM-DD`. */
export function utcDate(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 10);
}

/** The `user_logins` row for a valid event. */
export function toRow(
  event: LoginEvent,
  sentAtMs: number,
  masks: { readonly ip: Masked; readonly deviceId: Masked },
): LoginRow {
  return {
    user_id: event.user_id,
    device_type: event.device_type,
    masked_ip: masks.ip,
    masked_device_id: masks.deviceId,
    locale: event.locale ?? null,
    app_version: event.app_version,
    create_date: utcDate(sentAtMs),
  };
}

/** Keys whose values are PII wherever they occur in a rejected body. */
const PII_KEYS = new Set(["ip", "device_id"]);

/** The text a PII value is masked as: canonical IP when it is one, else its JSON. */
export function piiText(key: string, value: unknown): string {
  if (typeof value === "string") {
    if (key === "ip") {
      const ip = canonicalIp(value);
      if (ip.ok) return ip.canonical;
    }
    return value;
  }
  return JSON.stringify(value) ?? "undefined";
}

/** A PII value found in a rejected body, to be masked under its field. */
export interface PiiValue {
  readonly field: "ip" | "device_id";
  readonly text: string;
}

/**
 * The JSON inside a string, when the string is a JSON object or array: a
 * producer that serialised twice, or an SNS envelope carrying the event in
 * `Message`. PII inside it is masked like PII outside.
 */
export function nestedJson(text: string): object | undefined {
  const start = text.trimStart()[0];
  if (start !== "{" && start !== "[") return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every `ip`/`device_id` value at any depth of a parsed body, including
 * inside strings that hold JSON. Iterative, so a deeply nested body cannot
 * overflow the stack.
 */
export function findPiiValues(parsed: ParsedBody): PiiValue[] {
  if (parsed.kind !== "json") return [];
  const found: PiiValue[] = [];
  const stack: unknown[] = [parsed.value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node === "string") {
      const inner = nestedJson(node);
      if (inner !== undefined) stack.push(inner);
      continue;
    }
    if (node === null || typeof node !== "object") continue;
    for (const [key, child] of Object.entries(node)) {
      if (!Array.isArray(node) && PII_KEYS.has(key)) {
        found.push({ field: key as "ip" | "device_id", text: piiText(key, child) });
      } else {
        stack.push(child);
      }
    }
  }
  return found;
}

/** Key of a PII value in the mask lookup passed to `toRejectRow`. */
export function piiKey(value: PiiValue): string {
  return `${value.field}\u0000${value.text}`;
}

/** The `login_etl_rejects` row for a refused message. */
export function toRejectRow(
  problem: Problem,
  parsed: ParsedBody,
  raw: { readonly bodyBytes: number; readonly bodyHmac: Masked; readonly sentAtMs: number },
  masks: ReadonlyMap<string, Masked>,
): RejectRow {
  let maskedBody: string | null = null;
  if (parsed.kind === "json") {
    try {
      const replacer = function (this: unknown, key: string, value: unknown): unknown {
        if (!Array.isArray(this) && PII_KEYS.has(key)) {
          const text = piiText(key, value);
          return masks.get(piiKey({ field: key as "ip" | "device_id", text })) ?? "[masked]";
        }
        if (typeof value === "string") {
          const inner = nestedJson(value);
          if (inner !== undefined) return JSON.stringify(inner, replacer);
        }
        return value;
      };
      maskedBody = JSON.stringify(parsed.value, replacer);
    } catch {
      // Too deep to serialise: keep only the length and keyed hash below.
      maskedBody = null;
    }
  }
  return {
    reason: problem.reason,
    detail: problem.detail,
    masked_body: maskedBody,
    body_bytes: raw.bodyBytes,
    body_hmac: raw.bodyHmac,
    sent_at_ms: raw.sentAtMs,
  };
}
