/**
 * One batch through the stages before the write: validate each body, mask
 * its values in one concurrent pass of Web Crypto signs, and build the row or
 * reject to write.
 *
 * @module
 */

import type { Masker } from "./mask.ts";
import type { VaultCipher, VaultInput } from "./pii/vault.ts";
import { maskKey, type MaskRequest, masksWanted, redactBody } from "./redact.ts";
import { toRejectionRow, toRow, utcDate } from "./to_row.ts";
import type { Masked, ReceivedMessage, Refusal, VaultRow, WriteItem } from "./types.ts";
import { type ParsedBody, utf8Length, validateBody, type Verdict } from "./validate.ts";

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
  readonly vault?: { readonly cipher: VaultCipher; readonly known: (masked: Masked) => boolean };
}

/**
 * Turns distinct deliveries into write items. Every message yields exactly one
 * item: a row when valid, a reject with its reason otherwise.
 */
export async function prepareItems(
  messages: readonly ReceivedMessage[],
  masker: Masker,
  options: PrepareOptions,
): Promise<WriteItem[]> {
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

  // Each distinct value is encrypted once per batch, in one call (a sealing
  // key's one ephemeral key agreement for the batch); the first row holding
  // it carries the entry.
  const vault = options.vault;
  const vaultInputs: VaultInput[] = [];
  const vaultAt: number[][] = messages.map(() => []);
  if (vault !== undefined) {
    const vaulted = new Set<string>();
    const want = (at: number, field: "ip" | "device_id", masked: Masked, raw: string) => {
      if (vaulted.has(masked) || vault.known(masked)) return;
      vaulted.add(masked);
      (vaultAt[at] as number[]).push(vaultInputs.length);
      vaultInputs.push({ field, masked, raw });
    };
    verdicts.forEach((verdict, i) => {
      if (!verdict.ok) return;
      const { ip, device_id: deviceId } = verdict.event;
      want(i, "ip", maskOf.get(maskKey({ field: "ip", text: ip })) as Masked, ip);
      want(
        i,
        "device_id",
        maskOf.get(maskKey({ field: "device_id", text: deviceId })) as Masked,
        deviceId,
      );
    });
  }
  const entries = vault === undefined ? [] : await vault.cipher.encryptAll(vaultInputs);

  return messages.map((message, i): WriteItem => {
    const verdict = verdicts[i] as Verdict;
    const sentDate = message.dated ? utcDate(message.sentAtMs) : null;
    if (verdict.ok) {
      const { ip, device_id: deviceId } = verdict.event;
      const row = toRow(verdict.event, message.sentAtMs, {
        ip: maskOf.get(maskKey({ field: "ip", text: ip })) as Masked,
        deviceId: maskOf.get(maskKey({ field: "device_id", text: deviceId })) as Masked,
      });
      if (vault === undefined) return { kind: "row", id: message.id, sentDate, row };
      const own = (vaultAt[i] as number[]).map((k) => entries[k] as VaultRow);
      return { kind: "row", id: message.id, sentDate, row, vault: own };
    }
    const reject = toRejectionRow(verdict.rejection, {
      bodyBytes: utf8Length(message.body),
      bodyHmac: bodyHmacs[i] as Masked,
      sentAtMs: message.sentAtMs,
      maskedBody: redactBody(verdict.parsed, (r) => maskOf.get(maskKey(r)) ?? "[masked]"),
    });
    return { kind: "reject", id: message.id, sentDate, reject };
  });
}

/**
 * The rejects of messages Postgres refused (`WriteOutcome.refused`), built
 * from their bodies as any reject is: redacted by allowlist, with the raw
 * body's size and keyed hash, reason `db_refused` and the refusal's detail.
 */
export async function refusalItems(
  messages: readonly ReceivedMessage[],
  refusals: readonly Refusal[],
  masker: Masker,
  /** Vault entries to write with a refused message's reject (`orphanedVaultEntries`). */
  vaultById: ReadonlyMap<string, readonly VaultRow[]> = new Map(),
): Promise<WriteItem[]> {
  const byId = new Map(messages.map((m) => [m.id, m]));
  const items: WriteItem[] = [];
  for (const refusal of refusals) {
    const message = byId.get(refusal.id);
    if (message === undefined) continue;
    let parsed: ParsedBody = { kind: "unparsed" };
    try {
      parsed = { kind: "json", value: JSON.parse(message.body) };
    } catch { /* a refused row came from a valid body; keep none if it does not parse */ }
    const wanted = masksWanted(parsed);
    const masks = await masker.maskAll(wanted);
    const maskOf = new Map(wanted.map((w, i) => [maskKey(w), masks[i] as Masked]));
    const reject = toRejectionRow({ reason: "db_refused", detail: refusal.detail }, {
      bodyBytes: utf8Length(message.body),
      bodyHmac: await masker.mask("body", message.body),
      sentAtMs: message.sentAtMs,
      maskedBody: redactBody(parsed, (r) => maskOf.get(maskKey(r)) ?? "[masked]"),
    });
    const vault = vaultById.get(message.id);
    items.push({
      kind: "reject",
      id: message.id,
      sentDate: message.dated ? utcDate(message.sentAtMs) : null,
      reject,
      ...(vault === undefined ? {} : { vault }),
    });
  }
  return items;
}
