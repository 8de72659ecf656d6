/**
 * Shapes that cross module boundaries: what the queue hands us, what we write,
 * what a rejected message carries, the vault entries of a batch, and the
 * Queue, Store and Sink the stages meet through. Stage-local types stay in
 * their stage.
 *
 * @module
 */

/** One SQS message as the pipeline sees it; AWS SDK types stop at `src/sqs/`. */
export interface ReceivedMessage {
  /** SQS MessageId: the ledger key that makes redelivery harmless. */
  readonly id: string;
  /** Receipt handle of this delivery; only the latest one is sure to delete. */
  readonly receiptHandle: string;
  readonly body: string;
  /** `SentTimestamp` attribute, epoch milliseconds: when the login was enqueued. */
  readonly sentAtMs: number;
  /**
   * False when the endpoint sent no `SentTimestamp` (some emulators): `sentAtMs`
   * is then the time of this receipt, which differs between deliveries.
   */
  readonly dated: boolean;
  /** `ApproximateReceiveCount` attribute (1 on first delivery). */
  readonly receiveCount: number;
}

declare const maskedBrand: unique symbol;
/**
 * A keyed, key-id-prefixed mask such as `k1:…`. Branded so that raw `ip` or
 * `device_id` text cannot reach a masked column by accident: only `mask.ts`
 * makes one.
 */
export type Masked = string & { readonly [maskedBrand]: true };

/** One row of `user_logins`, column for column. */
export interface LoginRow {
  readonly "user_id": string;
  readonly "device_type": string;
  readonly "masked_ip": Masked;
  readonly "masked_device_id": Masked;
  readonly locale: string | null;
  /** `major*1_000_000 + minor*1_000 + patch`, see `app_version.ts`. */
  readonly "app_version": number;
  /** UTC date of the message's `SentTimestamp`, `YYYY-MM-DD`. */
  readonly "create_date": string;
}

/** Why a message was refused; a short fixed list, usable as a metric label. */
export type RejectReason =
  | "too_large"
  | "not_json"
  | "not_object"
  | "missing_field"
  | "wrong_type"
  | "empty"
  | "too_long"
  | "bad_char"
  | "bad_ip"
  | "bad_version"
  | "bad_locale"
  | "bad_device_type"
  | "poison"
  | "db_refused";

/** Every reason, in a stable order for summaries and metrics. */
export const REJECT_REASONS: readonly RejectReason[] = [
  "too_large",
  "not_json",
  "not_object",
  "missing_field",
  "wrong_type",
  "empty",
  "too_long",
  "bad_char",
  "bad_ip",
  "bad_version",
  "bad_locale",
  "bad_device_type",
  "poison",
  "db_refused",
];

/**
 * What is wrong with a body: a reason code and a detail naming the field and
 * the limit. The detail never quotes an `ip` or `device_id` value.
 */
export interface Rejection {
  readonly reason: RejectReason;
  readonly detail: string;
}

/** A rejected message as stored in `login_etl_rejects`, PII already masked. */
export interface RejectionRow {
  readonly reason: RejectReason;
  readonly detail: string;
  /** The parsed body re-serialised with every `ip`/`device_id` value masked; null when not JSON or too large. */
  readonly "masked_body": string | null;
  /** Size of the raw body in UTF-8 bytes. */
  readonly "body_bytes": number;
  /** Keyed hash of the raw body, so a resent body can be matched without keeping it. */
  readonly "body_hmac": Masked;
  /** `SentTimestamp` as epoch milliseconds. */
  readonly "sent_at_ms": number;
}

/** A rejected message's reason, for its raw copy on `--reject-queue-url`. */
export interface RejectNote {
  readonly id: string;
  readonly reason: RejectReason;
  readonly detail: string;
}

/** A message Postgres refused, and why, in terms that name no value. */
export interface Refusal {
  readonly id: string;
  /** SQLSTATE, e.g. `23514` for a check constraint. */
  readonly sqlstate: string;
  /** What refused it: the constraint, column or table named by the error, never the values. */
  readonly detail: string;
}

/** The login fields that hold PII: masked in rows, kept raw only in the vault. */
export type PiiField = "ip" | "device_id";

/** A raw PII value encrypted for the recovery vault, keyed by its mask. */
export interface VaultEntry {
  readonly masked: Masked;
  readonly field: PiiField;
  readonly ciphertext: Uint8Array;
  readonly iv: Uint8Array;
  readonly keyId: string;
}

/** A raw value to put in the vault, with the mask and field it belongs to. */
export interface VaultInput {
  readonly field: PiiField;
  readonly masked: Masked;
  readonly raw: string;
}

/**
 * What encrypts raw values into vault entries under its current key, all of
 * a batch in one call; `VaultCipher` in `pii/vault.ts`.
 */
export interface VaultEncrypter {
  encryptAll(inputs: readonly VaultInput[]): Promise<VaultEntry[]>;
}

/**
 * The vault entries of one batch, one per mask: every distinct value its
 * valid messages hold that is not known to be vaulted already. The write
 * vaults only those a row it inserts holds.
 */
export type VaultEntries = ReadonlyMap<Masked, VaultEntry>;

/**
 * One message ready to write: a row or a reject, keyed in the ledger by its
 * MessageId and the UTC day it was sent (`YYYY-MM-DD`; null when the queue
 * did not say), which every delivery of the message shares.
 */
export type WriteItem =
  & { readonly id: string; readonly sentDate: string | null }
  & (
    | { readonly kind: "row"; readonly row: LoginRow }
    | { readonly kind: "reject"; readonly reject: RejectionRow }
  );

/** What a store reports after a batch: which ids it newly recorded, and which it had already. */
export interface WriteOutcome {
  /** Rows inserted into `user_logins` by this batch. */
  readonly inserted: number;
  /** Rejects recorded by this batch, by reason. */
  readonly rejected: Readonly<Partial<Record<RejectReason, number>>>;
  /** The MessageIds of those rejects (not of rejects redelivered, already recorded). */
  readonly rejectedIds: readonly string[];
  /**
   * Messages whose rows Postgres refused (a constraint, a check, a trigger)
   * while the rest of the batch committed: not yet recorded; the sink records
   * each as a `db_refused` reject.
   */
  readonly refused: readonly Refusal[];
  /**
   * The rejects among this batch with their reasons: those recorded now, and
   * (when the store is asked to report them) those an earlier delivery
   * recorded, whose raw copy may not have been sent.
   */
  readonly rejectNotes: readonly RejectNote[];
  /** Messages whose MessageId the ledger already held: redeliveries, written before. */
  readonly redelivered: number;
  /** True when the batch is durable and its messages may be deleted. */
  readonly committed: boolean;
}

/** Result of a batch call on receipt handles (delete, extend): which MessageIds it succeeded for, which failed and why. */
export interface AckResult {
  readonly succeeded: readonly string[];
  readonly failed: readonly { readonly id: string; readonly code: string }[];
}

/** What the pipeline needs of a queue; implemented over SQS in `sqs/queue.ts`. */
export interface Queue {
  /** Long-polls for up to `max` messages; an aborted poll resolves to `[]`. */
  receive(
    options: { readonly max: number; readonly waitSeconds: number; readonly signal?: AbortSignal },
  ): Promise<readonly ReceivedMessage[]>;
  /** Deletes messages by their receipt handles; partial failure is a result, not a throw. */
  delete(messages: readonly ReceivedMessage[]): Promise<AckResult>;
  /** Sets messages' visibility timeout to `seconds` from now; 0 makes them visible again at once. */
  extend(messages: readonly ReceivedMessage[], seconds: number): Promise<AckResult>;
  /**
   * Sends raw copies of rejected messages, with their reasons, to the reject
   * queue; absent when none is configured. Partial failure is a result.
   */
  copyRejects?(
    copies: readonly { message: ReceivedMessage; note: RejectNote }[],
  ): Promise<AckResult>;
}

/** What the sink needs of a store; implemented over Postgres in `db/write.ts`. */
export interface Store {
  /**
   * Writes a batch atomically with its ledger entries and reports the
   * outcome; of `vault`, only the entries whose mask a row it inserts holds.
   */
  write(items: readonly WriteItem[], vault?: VaultEntries): Promise<WriteOutcome>;
}

/** What the pipeline hands distinct deliveries to; implemented in `sink/`. */
export interface Sink {
  /** Prepares and writes one batch atomically; throws `EtlError` on failure. */
  write(messages: readonly ReceivedMessage[]): Promise<WriteOutcome>;
  /** Releases what the sink holds (a worker, connections). */
  close(): Promise<void>;
}

/**
 * What one interval of `--concurrency auto` showed (`pipeline/concurrency.ts`
 * decides on it; the ConcurrencyChanged event carries it).
 */
export interface ConcurrencyObservation {
  /** Receives that came back in the interval. */
  readonly receives: number;
  /** Of those, the ones that brought as many messages as they asked for. */
  readonly full: number;
  /** Of those, the ones that waited their whole long poll for nothing. */
  readonly empty: number;
  /** Times a loop found the buffer full (or the store failing) and waited. */
  readonly blocked: number;
  /** Process CPU seconds per wall second in the interval (all threads). */
  readonly cpuPerSecond: number;
  /** Mean lateness of a periodic timer in the interval, ms: how busy the event loop is. */
  readonly lagMs: number;
  /** How long the interval was, ms: the first is shorter, and timers run late. */
  readonly intervalMs: number;
}
