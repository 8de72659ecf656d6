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

/** Longest masked body kept for a reject, in UTF-16 units. */
export const MAX_MASKED_BODY = 16_384;

/**
 * The PII field a key of a rejected body names, whatever its spelling:
 * `ip`, `IP`, `device_id`, `Device-Id`, `deviceId` and the like.
 */
export function piiFieldOf(key: string): "ip" | "device_id" | null {
  const plain = key.toLowerCase().replace(/[^a-z0-9]/g, "");
  return plain === "ip" ? "ip" : plain === "deviceid" ? "device_id" : null;
}

/** The text a PII value is masked as: canonical IP when it is one, else its JSON. */
export function piiText(field: "ip" | "device_id", value: unknown): string {
  if (typeof value === "string") {
    if (field === "ip") {
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
  // trimStart also drops a byte-order mark, which JSON.parse would refuse.
  let inner = text.trimStart();
  for (let depth = 0; depth < 8; depth++) {
    const start = inner[0];
    if (start !== "{" && start !== "[" && start !== '"') return undefined;
    let value: unknown;
    try {
      value = JSON.parse(inner);
    } catch {
      return undefined;
    }
    if (value !== null && typeof value === "object") return value;
    // A JSON string holding JSON: serialised more than once.
    if (typeof value !== "string") return undefined;
    inner = value.trimStart();
  }
  return undefined;
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
      const field = Array.isArray(node) ? null : piiFieldOf(key);
      if (field !== null) {
        found.push({ field, text: piiText(field, child) });
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
        const field = Array.isArray(this) ? null : piiFieldOf(key);
        if (field !== null) {
          return masks.get(piiKey({ field, text: piiText(field, value) })) ?? "[masked]";
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
  if (maskedBody !== null && maskedBody.length > MAX_MASKED_BODY) {
    // Enough to see what was wrong; the size and keyed hash identify the whole body.
    maskedBody = `${maskedBody.slice(0, MAX_MASKED_BODY)}…[truncated]`;
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
