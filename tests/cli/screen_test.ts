// What a person sees on a 100-column terminal (issue 22): `make demo` and a
// drain run under a real pseudo-terminal (util-linux `script`), and the
// screen replayed as the terminal shows it. One demo run serves every check
// of the demo: it is the suite's costliest CLI run (an embedded Postgres).

import assert from "node:assert/strict";
import { permissionFlags } from "../helpers/cli.ts";
import { TEST_SECRET } from "../helpers/common.ts";
import { replay, runOnTerminal, type Screen } from "../helpers/screen.ts";
import { lacks, SCRIPT } from "../helpers/tools.ts";
import { DATABASE_URL, enqueue, freshSchema, startSqs } from "../helpers/services.ts";

const COLUMNS = 100;
const root = new URL("../../", import.meta.url).pathname;
const ignore = lacks(SCRIPT);

/** `drain` from source with the binary's flags and `args` on a terminal COLUMNS wide, idle after 1 s. */
function drainOnTerminal(args: readonly string[], env: Record<string, string> = {}) {
  return runOnTerminal(
    [
      Deno.execPath(),
      "run",
      ...permissionFlags(),
      `${root}src/main.ts`,
      "drain",
      ...args,
      "--idle-seconds",
      "1",
    ],
    { columns: COLUMNS, env: { PII_HMAC_KEY: TEST_SECRET, ...env } },
  );
}

/** What every screen of ours must be: no wrapped row, no JSON, no command echo, no progress left. */
function assertReadable(screen: Screen, text: string): void {
  assert.deepEqual(screen.wrapped, [], `rows wider than ${COLUMNS} columns:\n${text}`);
  for (const row of screen.rows) {
    assert.ok(row.length <= COLUMNS, `wider than ${COLUMNS}: ${row}`);
    assert.doesNotMatch(row, /^\s*\{"/, `a JSON line: ${row}`);
    assert.doesNotMatch(row, /deno run|--allow-|src\/main\.ts/, `a command echoed: ${row}`);
    // The live line ("1,000 done · 3,951 msg/s · …") is erased when the run ends.
    assert.doesNotMatch(row, /\bdone · /, `progress left on the screen: ${row}`);
  }
}

Deno.test({
  name:
    "make demo fits a 100-column terminal: at most 40 rows, nothing wrapped, ends with what next",
  ignore,
  async fn() {
    const run = await runOnTerminal(["make", "demo", `DENO=${Deno.execPath()}`], {
      columns: COLUMNS,
    });
    const screen = replay(run.raw, COLUMNS);
    const text = screen.rows.join("\n");
    assert.equal(run.code, 0, text);
    assertReadable(screen, text);
    assert.ok(screen.rows.length <= 40, `${screen.rows.length} rows:\n${text}`);
    // Start-up summed up, rejects by reason, masks shortened, and where to look next.
    assert.match(text, /^\S+ INFO {2}schema \w+ ready \(\d+ migrations applied\)$/m);
    assert.match(text, /^\S+ INFO {2}key k1 registered$/m);
    assert.equal(text.match(/ draining /g)?.length, 1, text);
    assert.doesNotMatch(text, /applied schema migration|messages rejected|message_ids/);
    assert.match(text, /^Rejected, by reason/m);
    assert.match(text, /\| k1:[\w-]{4}…[\w-]{4} +\|/);
    assert.match(screen.rows[screen.rows.length - 1] ?? "", /^Next: `login-etl report` /);
    // What it loaded, as a person reads it (cli_test's demo case checks the
    // same in JSON where this test cannot run): every seeded message
    // received, each inserted or rejected, some rejected, the table holding
    // what was inserted, and repeated values visible as repeated masks.
    const number = (pattern: RegExp) =>
      Number(text.match(pattern)?.[1]?.replaceAll(",", "") ?? NaN);
    const seeded = number(/^Seeded ([\d,]+) synthetic messages/m);
    const received = number(/^Drained in .* s: received ([\d,]+),/m);
    const inserted = number(/, inserted ([\d,]+),/);
    const rejected = number(/, rejected ([\d,]+),/);
    assert.ok(seeded > 0, text);
    assert.equal(received, seeded, text);
    assert.equal(inserted + rejected, seeded, text);
    assert.ok(rejected > 0, "the demo's malformed share is rejected");
    assert.equal(number(/^user_logins: ([\d,]+) rows/m), inserted, text);
    assert.ok(number(/^Masked IPs occurring more than once: ([\d,]+)/m) > 0, text);
  },
});

Deno.test({
  name:
    "drain on a 100-column terminal: one start line, rejects summed up by reason, no message id",
  ignore,
  async fn() {
    await using sqs = await startSqs();
    await using db = await freshSchema();
    const queueUrl = sqs.createQueue();
    const good = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify({
        "user_id": `u${i}`,
        "device_type": "ios",
        ip: "203.0.113.7",
        "device_id": `dev-${i}`,
        locale: "RU",
        "app_version": "2.3.0",
      }));
    const ids = enqueue(sqs, queueUrl, [...good, "not json", "[]", "{}"]);
    const run = await drainOnTerminal(["--queue-url", queueUrl], { DATABASE_URL, ...db.env });
    const screen = replay(run.raw, COLUMNS);
    const text = screen.rows.join("\n");
    assert.equal(run.code, 0, text);
    assertReadable(screen, text);
    assert.equal(text.match(/ draining /g)?.length, 1, text);
    assert.match(
      text,
      /finished 43 messages in [\d.]+ m?s \([\d,]+ msg\/s\): 40 inserted, 3 rejected\n.* rejected by reason: 1 \w+, 1 \w+, 1 \w+$/m,
    );
    for (const id of ids) assert.ok(!text.includes(id), `message id ${id} on the screen`);
    for (const raw of ["203.0.113.7", "dev-1"]) assert.ok(!text.includes(raw), raw);
  },
});

Deno.test({
  name:
    "drain --dry-run on a terminal: its rows each a line of their own, no progress line glued to them",
  ignore,
  async fn() {
    await using sqs = await startSqs();
    const queueUrl = sqs.createQueue();
    enqueue(sqs, queueUrl, ["not json", "[]", "{}"]);
    const run = await drainOnTerminal(["--dry-run", "--queue-url", queueUrl]);
    // Rows are JSON here (what --dry-run is for), so not assertReadable.
    const screen = replay(run.raw, 400);
    const text = screen.rows.join("\n");
    assert.equal(run.code, 0, text);
    const rows = screen.rows.filter((row) => row.includes('"message_id"'));
    assert.equal(rows.length, 3, text);
    for (const row of rows) assert.doesNotThrow(() => JSON.parse(row), row);
    assert.doesNotMatch(text, /\bdone · /, text);
  },
});
