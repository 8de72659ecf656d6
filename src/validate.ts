/**
 * Body text → a `LoginEvent` with canonical ip and encoded version, or the
 * `Rejection` that rejects it. The valibot schema lives here. Pure.
 *
 * @module
 */

import * as v from "valibot";
import { encodeAppVersion } from "./app_version.ts";
import { canonicalIp } from "./ip.ts";
import { personalShapeOf } from "./personal_shapes.ts";
import { codePointLength, utf8Length } from "./text.ts";
import type { PiiField, Rejection, RejectReason } from "./types.ts";

/** Column limits of `user_logins`, in characters as Postgres counts them (code points). */
export const LIMITS = {
  user_id: 128,
  device_type: 32,
  device_id: 256,
  locale: 32,
} as const;

// valibot carries one message string per issue; we put the reason code in
// front of the detail and split it off again in `rejectionOf`.
const SEPARATOR = "\u0001";
function message(reason: RejectReason, detail: string): string {
  return `${reason}${SEPARATOR}${detail}`;
}

/** C0 and C1 control characters (tab and newline included) and DEL. */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function hasBadChar(text: string): boolean {
  // Postgres text cannot hold NUL, a lone surrogate has no UTF-8 encoding, and
  // no login field has a use for control characters, which would let a value
  // forge lines or terminal escapes wherever it is printed (recover, psql).
  return CONTROL.test(text) || !text.isWellFormed();
}

function text(field: string, max: number) {
  return v.pipe(
    v.string(message("wrong_type", `${field} must be a string`)),
    v.check(
      (s) => !hasBadChar(s),
      message("bad_char", `${field} contains a control character or a lone surrogate`),
    ),
    v.check((s) => s.length > 0, message("empty", `${field} must not be empty`)),
    v.check(
      (s) => s.length <= max || codePointLength(s) <= max,
      message("too_long", `${field} is longer than ${max} characters`),
    ),
  );
}

/**
 * Refuses a `locale` or `device_type` holding an e-mail, a MAC address, an IP
 * address or a UUID: both are stored raw in `user_logins` and kept in reject
 * bodies, so personal data put there by a mistaken producer would land in the
 * table unmasked. Only spellings tools write are refused (personal_shapes.ts);
 * the detail names the kind, never the value.
 */
function notPersonal(field: "locale" | "device_type", reason: "bad_locale" | "bad_device_type") {
  return v.rawCheck<string>(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const shape = personalShapeOf(dataset.value);
    if (shape === null) return;
    const what = shape === "email"
      ? "an e-mail address"
      : shape === "mac"
      ? "a MAC address"
      : shape === "ip"
      ? "an IP address"
      : "a UUID";
    addIssue({ message: message(reason, `${field} holds ${what}, which is personal data`) });
  });
}

const ipSchema = v.pipe(
  v.string(message("wrong_type", "ip must be a string")),
  v.check(
    (s) => !hasBadChar(s),
    message("bad_char", "ip contains a control character or a lone surrogate"),
  ),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const result = canonicalIp(dataset.value);
    if (!result.ok) {
      addIssue({ message: message("bad_ip", result.detail) });
      return NEVER;
    }
    return result.canonical;
  }),
);

const versionSchema = v.pipe(
  v.string(message("wrong_type", "app_version must be a string")),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const result = encodeAppVersion(dataset.value);
    if (!result.ok) {
      addIssue({ message: message("bad_version", result.detail) });
      return NEVER;
    }
    return result.encoded;
  }),
);

const localeSchema = v.nullish(
  v.pipe(
    v.string(message("wrong_type", "locale must be a string or null")),
    v.check(
      (s) => !hasBadChar(s),
      message("bad_char", "locale contains a control character or a lone surrogate"),
    ),
    v.check(
      (s) => s.length <= LIMITS.locale || codePointLength(s) <= LIMITS.locale,
      message("too_long", `locale is longer than ${LIMITS.locale} characters`),
    ),
    notPersonal("locale", "bad_locale"),
  ),
);

/**
 * The login event schema. Output: `ip` canonical, `app_version` encoded,
 * `locale` absent, null or a string. Unknown extra fields are dropped.
 */
export const LoginEventSchema = v.object(
  {
    user_id: text("user_id", LIMITS.user_id),
    app_version: versionSchema,
    device_type: v.pipe(
      text("device_type", LIMITS.device_type),
      notPersonal("device_type", "bad_device_type"),
    ),
    ip: ipSchema,
    locale: localeSchema,
    device_id: text("device_id", LIMITS.device_id),
  },
  (issue) => {
    const key = issue.path?.[issue.path.length - 1]?.key;
    return issue.expected?.startsWith('"') && typeof key === "string"
      ? message("missing_field", `${key} is missing`)
      : message("not_object", "body must be a JSON object");
  },
);

/**
 * Why `value` cannot be a login event's `ip` or `device_id` as `validateBody`
 * accepts one, or null: the detail names the rule, never the value. For
 * values read back from the vault, which a consumer can write (it holds the
 * HMAC and the vault's public key): merge and recover refuse what no valid
 * event could have carried, such as a device id with a newline or ESC.
 */
export function fieldValueProblem(field: PiiField, value: string): string | null {
  const result = v.safeParse(LoginEventSchema.entries[field], value);
  return result.success ? null : rejectionOf(result.issues[0]).detail;
}

/** A valid login event after canonicalisation (`app_version` already encoded). */
export type LoginEvent = v.InferOutput<typeof LoginEventSchema>;

/** The parsed JSON of a body, or why there is none. */
export type ParsedBody =
  | { readonly kind: "json"; readonly value: unknown }
  | { readonly kind: "unparsed" };

/** The outcome of validating one body. */
export type Verdict =
  | {
    readonly ok: true;
    readonly event: LoginEvent;
    /** The body as parsed, kept for a reject should Postgres refuse the row. */
    readonly parsed: ParsedBody;
  }
  | { readonly ok: false; readonly rejection: Rejection; readonly parsed: ParsedBody };

function rejectionOf(issue: v.BaseIssue<unknown>): Rejection {
  const [reason, detail] = issue.message.split(SEPARATOR);
  if (detail === undefined) {
    // Only our own messages carry a separator; anything else is a schema bug.
    return { reason: "wrong_type", detail: issue.message };
  }
  return { reason: reason as RejectReason, detail };
}

/**
 * Validates one message body: size, JSON, object shape, then every field.
 * Returns the first problem found; never throws.
 */
export function validateBody(body: string, maxBodyBytes: number): Verdict {
  // Cheap bound first: a UTF-16 unit is at most 3 UTF-8 bytes.
  if (
    body.length > maxBodyBytes ||
    (body.length * 3 > maxBodyBytes && utf8Length(body) > maxBodyBytes)
  ) {
    return {
      ok: false,
      rejection: { reason: "too_large", detail: `body is larger than ${maxBodyBytes} bytes` },
      parsed: { kind: "unparsed" },
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    // V8's message quotes the input around the error, which may hold PII:
    // keep only the position.
    const position = /position (\d+)/.exec(error instanceof Error ? error.message : "")?.[1];
    const where = position === undefined ? "" : ` (error at character ${position})`;
    return {
      ok: false,
      rejection: { reason: "not_json", detail: `body is not valid JSON${where}` },
      parsed: { kind: "unparsed" },
    };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    const got = value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`;
    return {
      ok: false,
      rejection: { reason: "not_object", detail: `body must be a JSON object, got ${got}` },
      parsed: { kind: "json", value },
    };
  }
  const result = v.safeParse(LoginEventSchema, value, { abortEarly: true });
  if (result.success) return { ok: true, event: result.output, parsed: { kind: "json", value } };
  const first = result.issues[0];
  return { ok: false, rejection: rejectionOf(first), parsed: { kind: "json", value } };
}
