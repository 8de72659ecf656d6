/**
 * Builds what gets written: a `LoginRow` from a valid event, or a `RejectionRow`
 * for a refused one. Pure: masks and the redacted body come from the caller.
 *
 * @module
 */

import type { LoginEvent } from "./validate.ts";
import type { LoginRow, Masked, Rejection, RejectionRow } from "./types.ts";

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

/** The `login_etl_rejects` row for a refused message, its body already redacted (`redact.ts`). */
export function toRejectionRow(
  rejection: Rejection,
  raw: {
    readonly bodyBytes: number;
    readonly bodyHmac: Masked;
    readonly sentAtMs: number;
    readonly maskedBody: string | null;
  },
): RejectionRow {
  return {
    reason: rejection.reason,
    detail: rejection.detail,
    masked_body: raw.maskedBody,
    body_bytes: raw.bodyBytes,
    body_hmac: raw.bodyHmac,
    sent_at_ms: raw.sentAtMs,
  };
}
