/**
 * One batch through the stages before the write: validate each body, mask
 * its values in one concurrent pass of Web Crypto signs, build the row or
 * reject to write, and encrypt each new value for the vault once. What was
 * prepared is kept, so that a row Postgres refuses becomes its reject without
 * parsing or masking the body again.
 *
 * @module
 */

import type { Masker } from "./mask.ts";
import { maskKey, type MaskRequest, masksWanted, redactBody } from "./redact.ts";
import { utf8Length } from "./text.ts";
import { toRejectionRow, toRow, utcDate } from "./to_row.ts";
import type {
  Masked,
  PiiField,
  ReceivedMessage,
  Refusal,
  VaultEncrypter,
  VaultEntries,
  VaultEntry,
  VaultInput,
  WriteItem,
} from "./types.ts";
import { validateBody, type Verdict } from "./validate.ts";

/**
 * Bodies up to this size (UTF-16 units) are always validated, however often
 * they were received: validation is pure, cheap and cannot crash on them.
 */
export const POISON_PARSE_LIMIT = 8192;

/**
 * A message received more often than `maxReceives` may be what keeps killing
 * the consumer. A large one is rejected as poison without being parsed, so
 * whatever broke earlier runs is not tried again; a small one is validated as
 * usual, since repeated deliveries are more often the consumer's own crashes
 * or restarts than the message's fault, and a valid login must not be lost.
 */
function verdictOf(message: ReceivedMessage, options: PrepareOptions): Verdict {
  if (
    options.maxReceives !== null && message.receiveCount > options.maxReceives &&
    message.body.length > POISON_PARSE_LIMIT
  ) {
    return {
      ok: false,
      rejection: {
        reason: "poison",
        detail:
          `received ${message.receiveCount} times, more than --max-receives ${options.maxReceives}, and larger than ${POISON_PARSE_LIMIT} characters: not parsed`,
      },
      parsed: { kind: "unparsed" },
    };
  }
  return validateBody(message.body, options.maxBodyBytes);
}

/** Options of the prepare stage. */
export interface PrepareOptions {
  readonly maxBodyBytes: number;
  readonly maxReceives: number | null;
  /** With a vault: encrypt each distinct raw value not `known` to be vaulted already. */
  readonly vault?: {
    readonly cipher: VaultEncrypter;
    readonly known: (masked: Masked) => boolean;
  };
}

/** A batch ready to write, and what turns its refused rows into rejects. */
export interface Prepared {
  /** One item per message, in order: a row when valid, a reject with its reason otherwise. */
  readonly items: readonly WriteItem[];
  /**
   * One entry per distinct value of the valid messages not known to be
   * vaulted; the write vaults those a row it inserts holds.
   */
  readonly vault: VaultEntries;
  /**
   * The `db_refused` rejects of messages whose rows Postgres refused
   * (`WriteOutcome.refused`), built from what was prepared: the body as
   * parsed and the masks already made. Only what a row did not need is
   * computed now: the body's keyed hash and the masks of its other values.
   */
  refusedRejects(refusals: readonly Refusal[]): Promise<WriteItem[]>;
}

/**
 * Turns distinct deliveries into write items. Every message yields exactly one
 * item: a row when valid, a reject with its reason otherwise.
 */
export async function prepare(
  messages: readonly ReceivedMessage[],
  masker: Masker,
  options: PrepareOptions,
): Promise<Prepared> {
  const verdicts: Verdict[] = messages.map((m) => verdictOf(m, options));

  // Collect every value to mask, once each: repeated ips and device ids in a
  // batch cost one HMAC.
  const wanted = new Map<string, MaskRequest>();
  const want = (request: MaskRequest) => wanted.set(maskKey(request), request);
  verdicts.forEach((verdict) => {
    if (verdict.ok) {
      want({ field: "ip", text: verdict.event.ip });
      want({ field: "device_id", text: verdict.event.device_id });
    } else {
      masksWanted(verdict.parsed).forEach(want);
    }
  });
  const keys = [...wanted.keys()];
  const masks = await masker.maskAll([...wanted.values()]);
  const maskOf = new Map<string, Masked>(keys.map((key, i) => [key, masks[i] as Masked]));
  const pii = (field: PiiField, text: string) => maskOf.get(maskKey({ field, text })) as Masked;
  // Keyed hashes of the rejected bodies, through the same bounded runners.
  const rejectedAt = messages.flatMap((_, i) => verdicts[i]?.ok === true ? [] : [i]);
  const rejectedHmacs = await masker.maskAll(
    rejectedAt.map((i) => ({
      field: "body" as const,
      text: (messages[i] as ReceivedMessage).body,
    })),
  );
  const bodyHmacs: (Masked | null)[] = messages.map(() => null);
  rejectedAt.forEach((at, k) => (bodyHmacs[at] = rejectedHmacs[k] as Masked));

  const items = messages.map((message, i): WriteItem => {
    const verdict = verdicts[i] as Verdict;
    const sentDate = message.dated ? utcDate(message.sentAtMs) : null;
    if (verdict.ok) {
      const { ip, device_id: deviceId } = verdict.event;
      const row = toRow(verdict.event, message.sentAtMs, {
        ip: pii("ip", ip),
        deviceId: pii("device_id", deviceId),
      });
      return { kind: "row", id: message.id, sentDate, row };
    }
    const reject = toRejectionRow(verdict.rejection, {
      bodyBytes: utf8Length(message.body),
      bodyHmac: bodyHmacs[i] as Masked,
      sentAtMs: message.sentAtMs,
      maskedBody: redactBody(verdict.parsed, (r) => maskOf.get(maskKey(r)) ?? "[masked]"),
    });
    return { kind: "reject", id: message.id, sentDate, reject };
  });

  return {
    items,
    vault: options.vault === undefined
      ? new Map()
      : await vaultEntries(verdicts, pii, options.vault),
    async refusedRejects(refusals) {
      const at = new Map(messages.map((m, i) => [m.id, i]));
      const refused = refusals.flatMap((refusal) => {
        const i = at.get(refusal.id);
        const verdict = i === undefined ? undefined : verdicts[i];
        return i === undefined || verdict === undefined
          ? []
          : [{ refusal, message: messages[i] as ReceivedMessage, verdict }];
      });
      // The masks the rows did not need (other values of the bodies), once each.
      const more = new Map<string, MaskRequest>();
      for (const { verdict } of refused) {
        for (const r of masksWanted(verdict.parsed)) {
          if (!maskOf.has(maskKey(r))) more.set(maskKey(r), r);
        }
      }
      const moreMasks = await masker.maskAll([...more.values()]);
      [...more.keys()].forEach((key, k) => maskOf.set(key, moreMasks[k] as Masked));
      const hmacs = await masker.maskAll(
        refused.map(({ message }) => ({ field: "body" as const, text: message.body })),
      );
      return refused.map(({ refusal, message, verdict }, k): WriteItem => ({
        kind: "reject",
        id: message.id,
        sentDate: message.dated ? utcDate(message.sentAtMs) : null,
        reject: toRejectionRow({ reason: "db_refused", detail: refusal.detail }, {
          bodyBytes: utf8Length(message.body),
          bodyHmac: hmacs[k] as Masked,
          sentAtMs: message.sentAtMs,
          maskedBody: redactBody(verdict.parsed, (r) => maskOf.get(maskKey(r)) ?? "[masked]"),
        }),
      }));
    },
  };
}

/**
 * The batch's vault entries: each distinct value of its valid messages not
 * `known` to be vaulted, encrypted once, in one call (a sealing key's one
 * ephemeral key agreement for the batch), keyed by its mask.
 */
async function vaultEntries(
  verdicts: readonly Verdict[],
  pii: (field: PiiField, text: string) => Masked,
  vault: NonNullable<PrepareOptions["vault"]>,
): Promise<Map<Masked, VaultEntry>> {
  const inputs = new Map<Masked, VaultInput>();
  const want = (field: PiiField, raw: string) => {
    const masked = pii(field, raw);
    if (!inputs.has(masked) && !vault.known(masked)) inputs.set(masked, { field, masked, raw });
  };
  for (const verdict of verdicts) {
    if (!verdict.ok) continue;
    want("ip", verdict.event.ip);
    want("device_id", verdict.event.device_id);
  }
  const entries = await vault.cipher.encryptAll([...inputs.values()]);
  return new Map(entries.map((e) => [e.masked, e]));
}
