/**
 * One batch through the pure stages: validate each body, mask its PII in one
 * concurrent pass, and build the row or reject to write.
 *
 * @module
 */

import type { Masker } from "./mask.ts";
import { findPiiValues, piiKey, type PiiValue, toRejectRow, toRow } from "./to_row.ts";
import type { Masked, ReceivedMessage, WriteItem } from "./types.ts";
import { utf8Length, validateBody, type Verdict } from "./validate.ts";

/**
 * A message received more often than `maxReceives` is poison: something kept
 * it from being committed before. It is rejected unparsed, so whatever broke
 * earlier runs is not tried again.
 */
function verdictOf(
  message: ReceivedMessage,
  options: { readonly maxBodyBytes: number; readonly maxReceives: number | null },
): Verdict {
  if (options.maxReceives !== null && message.receiveCount > options.maxReceives) {
    return {
      ok: false,
      problem: {
        reason: "poison",
        detail:
          `received ${message.receiveCount} times, more than --max-receives ${options.maxReceives}`,
      },
      parsed: { kind: "unparsed" },
    };
  }
  return validateBody(message.body, options.maxBodyBytes);
}

/**
 * Turns distinct deliveries into write items. Every message yields exactly one
 * item: a row when valid, a reject with its reason otherwise.
 */
export function prepareItems(
  messages: readonly ReceivedMessage[],
  masker: Masker,
  options: { readonly maxBodyBytes: number; readonly maxReceives: number | null },
): WriteItem[] {
  const verdicts: Verdict[] = messages.map((m) => verdictOf(m, options));

  // Collect every value to mask, once each: repeated ips and device ids in a
  // batch cost one HMAC.
  const wanted = new Map<string, PiiValue>();
  const want = (value: PiiValue) => wanted.set(piiKey(value), value);
  verdicts.forEach((verdict) => {
    if (verdict.ok) {
      want({ field: "ip", text: verdict.event.ip });
      want({ field: "device_id", text: verdict.event.device_id });
    } else {
      findPiiValues(verdict.parsed).forEach(want);
    }
  });
  const maskOf = new Map<string, Masked>();
  for (const [key, value] of wanted) maskOf.set(key, masker.mask(value.field, value.text));

  return messages.map((message, i): WriteItem => {
    const verdict = verdicts[i] as Verdict;
    if (verdict.ok) {
      const { ip, device_id: deviceId } = verdict.event;
      const row = toRow(verdict.event, message.sentAtMs, {
        ip: maskOf.get(piiKey({ field: "ip", text: ip })) as Masked,
        deviceId: maskOf.get(piiKey({ field: "device_id", text: deviceId })) as Masked,
      });
      return { kind: "row", id: message.id, row };
    }
    const reject = toRejectRow(verdict.problem, verdict.parsed, {
      bodyBytes: utf8Length(message.body),
      bodyHmac: masker.mask("body", message.body),
      sentAtMs: message.sentAtMs,
    }, maskOf);
    return { kind: "reject", id: message.id, reject };
  });
}
