/**
 * Realistic synthetic login events, shaped like the exercise's sample: UUID
 * user ids, IPv4 and some IPv6, device ids like `593-47-5928`, about 30% null
 * locales, versions like `2.3.0`, `0.96`, `7.31`, a small share of repeated
 * ip/device_id values, and optionally a share of malformed messages.
 *
 * @module
 */

import { REJECT_REASONS, type RejectReason } from "../types.ts";
import { Random } from "./random.ts";

const LOCALES = [
  "ID",
  "CN",
  "RU",
  "FR",
  "PT",
  "PH",
  "BR",
  "KR",
  "PA",
  "US",
  "DE",
  "JP",
  "NG",
  "MX",
  "SE",
];
const DEVICE_TYPES = ["android", "ios"];

/** Options of a synthetic data set. */
export interface GenerateOptions {
  /** Share of malformed messages, 0-1. */
  readonly badRatio: number;
  readonly seed: number;
  /** Share of messages reusing an earlier ip or device id (default 0.05). */
  readonly repeatRatio?: number;
}

function ipv4(r: Random): string {
  return `${r.int(1, 254)}.${r.int(0, 255)}.${r.int(0, 255)}.${r.int(1, 254)}`;
}

function ipv6(r: Random): string {
  const groups = Array.from(
    { length: 8 },
    (_, i) => (i < 2 ? r.pick(["2001", "2a02", "2600", "fd00"]) : r.int(0, 0xffff).toString(16)),
  );
  groups[1] = r.int(0, 0xffff).toString(16);
  // Some real-world spellings: runs of zeros, upper case.
  if (r.chance(0.3)) groups.splice(3, 3, "0", "0", "0");
  const text = groups.join(":");
  return r.chance(0.2) ? text.toUpperCase() : text;
}

function deviceId(r: Random): string {
  const d = (n: number) => Array.from({ length: n }, () => r.int(0, 9)).join("");
  return `${d(3)}-${d(2)}-${d(4)}`;
}

function appVersion(r: Random): string {
  switch (r.int(0, 2)) {
    case 0:
      return `${r.int(0, 9)}.${r.int(0, 9)}.${r.int(0, 9)}`;
    case 1:
      return `${r.int(0, 9)}.${String(r.int(0, 99)).padStart(r.chance(0.5) ? 2 : 1, "0")}`;
    default:
      return `${r.int(0, 9)}.${r.int(0, 9)}`;
  }
}

/** One valid event as an object, before serialisation. */
export function validEvent(
  r: Random,
  pools: { ips: string[]; devices: string[] },
  repeatRatio: number,
): Record<string, unknown> {
  const reuse = (pool: string[], make: () => string) => {
    if (pool.length > 0 && r.chance(repeatRatio)) return r.pick(pool);
    const value = make();
    if (pool.length < 500) pool.push(value);
    else pool[r.int(0, pool.length - 1)] = value;
    return value;
  };
  return {
    user_id: r.uuid(),
    app_version: appVersion(r),
    device_type: r.pick(DEVICE_TYPES),
    ip: reuse(pools.ips, () => (r.chance(0.1) ? ipv6(r) : ipv4(r))),
    locale: r.chance(0.3) ? null : r.pick(LOCALES),
    device_id: reuse(pools.devices, () => deviceId(r)),
  };
}

/**
 * Reasons a generated body can be rejected for: all of them but too_large
 * (SQS limits bodies too), poison (a matter of receive counts, not bodies)
 * and db_refused (a matter of the table's constraints).
 */
type BadKind = Exclude<RejectReason, "too_large" | "poison" | "db_refused">;

/** One kind of malformed message per reject reason it exercises. */
const BAD_KINDS: readonly BadKind[] = REJECT_REASONS.filter((r): r is BadKind =>
  r !== "too_large" && r !== "poison" && r !== "db_refused"
);

/** A malformed body of the given kind, built from a valid event. */
export function badBody(
  r: Random,
  event: Record<string, unknown>,
  kind: BadKind,
): string {
  const e = { ...event };
  switch (kind) {
    case "not_json":
      return JSON.stringify(e).slice(0, -r.int(1, 10));
    case "not_object":
      return JSON.stringify([e]);
    case "missing_field":
      delete e[r.pick(["user_id", "app_version", "device_type", "ip", "device_id"])];
      return JSON.stringify(e);
    case "wrong_type":
      e["app_version"] = Number(String(e["app_version"]).split(".")[0]);
      return JSON.stringify(e);
    case "empty":
      e["user_id"] = "";
      return JSON.stringify(e);
    case "too_long":
      e["device_type"] = "x".repeat(33);
      return JSON.stringify(e);
    case "bad_char":
      e["locale"] = "R\u0000U";
      return JSON.stringify(e);
    case "bad_ip":
      e["ip"] = r.pick(["999.1.1.1", "1.2.3", "01.2.3.4", "not-an-ip", "1:2:3:4:5:6:7:8:9"]);
      return JSON.stringify(e);
    case "bad_version":
      e["app_version"] = r.pick(["v2", "1.2.3.4", "1..2", "1000.0", ""]);
      return JSON.stringify(e);
    case "bad_locale":
      // Documentation addresses (RFC 5737, RFC 2606): personal-looking, nobody's.
      e["locale"] = r.pick(["user@example.com", "192.0.2.1", "00-00-5e-00-53-01"]);
      return JSON.stringify(e);
    case "bad_device_type":
      e["device_type"] = r.pick(["00:00:5e:00:53:01", "198.51.100.7", r.uuid()]);
      return JSON.stringify(e);
  }
}

/**
 * Yields `count` message bodies. Lazy, so a large seed streams.
 */
export function* generateBodies(count: number, options: GenerateOptions): Generator<string> {
  const r = new Random(options.seed);
  const pools = { ips: [] as string[], devices: [] as string[] };
  const repeatRatio = options.repeatRatio ?? 0.05;
  for (let i = 0; i < count; i++) {
    const event = validEvent(r, pools, repeatRatio);
    yield r.chance(options.badRatio) ? badBody(r, event, r.pick(BAD_KINDS)) : JSON.stringify(event);
  }
}
