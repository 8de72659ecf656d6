// Unit tests of src/log.ts: createLogger() JSON lines, text on a terminal, and level filtering.
import assert from "node:assert/strict";
import {
  createLogger,
  escapeControl,
  type Level,
  type LoggerOptions,
  quoteText,
} from "../../src/log.ts";

function collect(options: Omit<LoggerOptions, "write">) {
  const lines: string[] = [];
  const logger = createLogger({ ...options, write: (line) => lines.push(line) });
  return { logger, lines };
}

Deno.test("createLogger() in JSON format writes one parseable object per line", () => {
  const { logger, lines } = collect({ format: "json", level: "debug", isTerminal: true });
  logger.log("info", "BatchReceived", "Received a batch", {
    count: 10,
    ids: ["a", "b"],
    reasons: { bad_ip: 2 },
    ok: true,
    none: null,
    skipped: undefined,
  });
  logger.log("error", "DeleteFailed", "Line\nbreaks stay escaped", { code: "x\ny" });
  assert.equal(lines.length, 2);
  for (const line of lines) assert.ok(!line.includes("\n"), line);
  const first = JSON.parse(lines[0] ?? "");
  assert.match(first.ts, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  assert.ok(!Number.isNaN(Date.parse(first.ts)));
  assert.deepEqual({ ...first, ts: "T" }, {
    ts: "T",
    level: "info",
    event: "BatchReceived",
    msg: "Received a batch",
    count: 10,
    ids: ["a", "b"],
    reasons: { bad_ip: 2 },
    ok: true,
    none: null,
  });
  const second = JSON.parse(lines[1] ?? "");
  assert.equal(second.msg, "Line\nbreaks stay escaped");
  assert.equal(second.code, "x\ny");
});

Deno.test("createLogger() in auto format writes JSON when the sink is not a terminal", () => {
  const { logger, lines } = collect({ format: "auto", level: "info", isTerminal: false });
  logger.log("info", "RowsCommitted", "Committed rows", { rows: 3 });
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0] ?? "").rows, 3);
});

Deno.test("createLogger() writes short text on a terminal", async (t) => {
  for (const format of ["auto", "text"] as const) {
    await t.step(`createLogger() with format ${format} writes text on a terminal`, () => {
      const { logger, lines } = collect({ format, level: "info", isTerminal: true });
      logger.log("warn", "DeleteFailed", "Could not delete", {
        count: 2,
        code: "Throttled",
        note: "two words",
        skipped: undefined,
      });
      assert.equal(lines.length, 1);
      const line = lines[0] ?? "";
      assert.throws(() => JSON.parse(line));
      assert.match(line, /^\d{2}:\d{2}:\d{2} WARN {2}Could not delete /);
      assert.ok(line.includes("count=2"), line);
      assert.ok(line.includes("code=Throttled"), line);
      assert.ok(line.includes('note="two words"'), line);
      assert.ok(!line.includes("skipped"), line);
    });
  }
});

/** Every character the text format must never pass on as it is. */
const CONTROLS = [
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(i)),
  "\u007f",
  ...Array.from({ length: 0x20 }, (_, i) => String.fromCharCode(0x80 + i)),
  "\u2028",
  "\u2029",
  "\u202e",
  "\u2066",
];
// deno-lint-ignore no-control-regex -- finding control characters is the test
const RAW_CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

Deno.test("escapeControl() writes every control character as an escape, and quoteText() quotes", () => {
  for (const c of CONTROLS) {
    const escaped = escapeControl(`a${c}b`);
    assert.doesNotMatch(escaped, RAW_CONTROL, JSON.stringify(c));
    assert.match(escaped, /^a\\(n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4})b$/, JSON.stringify(c));
  }
  assert.equal(escapeControl("evil\n\u001b[31m\u2028é"), "evil\\n\\x1b[31m\\u2028é");
  assert.equal(quoteText('a "b" \\ c\n'), '"a \\"b\\" \\\\ c\\n"');
  assert.equal(quoteText("k1"), '"k1"');
});

Deno.test("createLogger() in text format lets no control character of a message or field through", () => {
  const evil = 'evil\nlevel=error msg="203.0.113.7 recovered"\u001b[31m\u2028\u0085';
  const { logger, lines } = collect({ format: "text", level: "info", isTerminal: true });
  logger.log("error", "RunFailed", `Refused: ${evil}`, {
    key: evil,
    plain: "x\u001by",
    ids: [evil, "k1"],
    counts: { [evil]: 1 },
  });
  // A whole text line keeps only its own newlines (RunFailed's stack); the
  // event escapes what it interpolates (events.ts), the logger the rest.
  logger.log("error", "RunFailed", "ignored", {}, { line: `error: x\u001b[31m\u2028\nstack` });
  assert.equal(lines.length, 2);
  assert.doesNotMatch(lines[0] ?? "", RAW_CONTROL, lines[0]);
  assert.deepEqual(lines[1]?.split("\n"), ["error: x\\x1b[31m\\u2028", "stack"]);
  assert.ok(lines[0]?.includes('key="evil\\nlevel=error msg=\\"203.0.113.7'), lines[0]);
  assert.ok(lines[0]?.includes('plain="x\\x1by"'), lines[0]);
});

Deno.test("createLogger() drops lines below its level", async (t) => {
  const levels: Level[] = ["debug", "info", "warn", "error"];
  for (const [threshold, thresholdLevel] of levels.entries()) {
    await t.step(
      `createLogger() at ${thresholdLevel} keeps ${levels.slice(threshold).join(", ")}`,
      () => {
        const { logger, lines } = collect({ format: "json", level: thresholdLevel });
        for (const level of levels) logger.log(level, "Probe", level);
        assert.deepEqual(lines.map((l) => JSON.parse(l).level), levels.slice(threshold));
      },
    );
  }
});

Deno.test("createLogger() text forms: a brief replaces message and fields, hidden and text-only lines", async (t) => {
  const fields = { count: 2, "message_ids": ["m-1", "m-2"] };
  await t.step("a brief replaces the message and fields in text, not in JSON", () => {
    const text = collect({ format: "text", level: "info" });
    const json = collect({ format: "json", level: "info" });
    for (const { logger } of [text, json]) {
      logger.log("info", "KeyRegistered", "recorded", fields, { brief: "key k1 registered" });
    }
    assert.match(text.lines[0] ?? "", /^\d{2}:\d{2}:\d{2} INFO {2}key k1 registered$/);
    assert.deepEqual(JSON.parse(json.lines[0] ?? "").message_ids, ["m-1", "m-2"]);
  });
  await t.step("hidden: no text line, the JSON record as ever", () => {
    const text = collect({ format: "text", level: "info" });
    const json = collect({ format: "json", level: "info" });
    for (const { logger } of [text, json]) {
      logger.log("warn", "MessagesRejected", "rejected", fields, { hidden: true });
    }
    assert.deepEqual(text.lines, []);
    assert.equal(JSON.parse(json.lines[0] ?? "").count, 2);
  });
  await t.step("text-only: a text line, no JSON record", () => {
    const text = collect({ format: "text", level: "info" });
    const json = collect({ format: "json", level: "info" });
    for (const { logger } of [text, json]) {
      logger.log("info", "SchemaReady", "ready", {}, { brief: "schema ready", textOnly: true });
    }
    assert.equal(text.lines.length, 1);
    assert.deepEqual(json.lines, []);
  });
});

Deno.test("createLogger() cuts info lines to the terminal's width, folds warnings whole into it, never touches errors' lines or JSON", () => {
  const long = "x".repeat(300);
  const fix = Array.from({ length: 40 }, (_, i) => `word${i}`).join(" ");
  const text = collect({ format: "text", level: "debug", columns: () => 100 });
  text.logger.log("info", "A", long);
  text.logger.log("debug", "B", "short", { field: long });
  text.logger.log("warn", "C", fix);
  text.logger.log("error", "RunFailed", "e", {}, { line: `error: ${long}` });
  assert.equal(text.lines[0]?.length, 100);
  assert.ok(text.lines[0]?.endsWith("…"));
  assert.equal(text.lines[1]?.length, 100);
  // The warning: every word kept, in order, in rows of at most 100 after the first's prefix.
  const rows = (text.lines[2] ?? "").split("\n");
  assert.ok(rows.length > 1);
  for (const row of rows) assert.ok(row.length <= 100, row);
  assert.match(rows[0] ?? "", /^\d\d:\d\d:\d\d WARN {2}word0 /);
  for (const row of rows.slice(1)) assert.match(row, /^ {15}\S/);
  assert.equal(rows.map((r, i) => i === 0 ? r.slice(15) : r.trim()).join(" "), fix);
  assert.equal(text.lines[3], `error: ${long}`);
  const json = collect({ format: "json", level: "info", columns: () => 100 });
  json.logger.log("info", "A", long);
  assert.ok((json.lines[0]?.length ?? 0) > 300);
});

Deno.test("createLogger() hides a secret in any field, quoted in text or inside a list in JSON", () => {
  const fields = {
    conn: "password=Hunter2Secret host=db",
    ssl: "sslpassword=Hunter2Secret",
    list: ["postgres://u:Hunter2Secret@h/db", "plain"],
  };
  const text = collect({ format: "text", level: "info" });
  text.logger.log("info", "A", "a", fields);
  const json = collect({ format: "json", level: "info" });
  json.logger.log("info", "A", "a", fields);
  for (const line of [...text.lines, ...json.lines]) {
    assert.doesNotMatch(line, /Hunter2Secret/, line);
    assert.match(line, /password=\*\*\*/, line);
  }
  assert.deepEqual(JSON.parse(json.lines[0] ?? "{}").list, ["postgres://u:***@h/db", "plain"]);
});
