// What analysts get in the database, against the real Postgres after a real
// drain: the duplicate views count one address written two ways once (the
// pipeline canonicalises before masking), app_version_text() inverts the
// stored encoding, the indexes serve a look-up of one masked value, and
// `login-etl report` prints what the views say.

import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeAppVersion, encodeAppVersion } from "../../src/app_version.ts";
import { failureLine, runCli } from "../helpers/cli.ts";
import { runInProcess } from "../helpers/in_process.ts";
import { drainInProcess, testMasker } from "../helpers/drain.ts";
import { hostileDb, STATE } from "../helpers/hostile.ts";
import { DATABASE_URL, enqueue, freshSchema, startSqs, utcDaysSince } from "../helpers/services.ts";

const login = (user: string, ip: string, device: string, version = "2.3.0") =>
  JSON.stringify({
    user_id: user,
    app_version: version,
    device_type: "android",
    ip,
    locale: "RU",
    device_id: device,
  });

Deno.test("the duplicate views count an address in two spellings once, per masked value, with users and dates", async () => {
  const since = Date.now();
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  enqueue(sqs, queueUrl, [
    login("u1", "1.2.3.4", "dev-a"),
    login("u2", "::ffff:1.2.3.4", "dev-a"), // the same address, IPv4-mapped
    login("u2", "2001:DB8::1", "dev-b"),
    login("u3", "2001:0db8:0000:0000:0000:0000:0000:0001", "dev-c"), // the same, unabbreviated
    login("u3", "2001:db8::1", "dev-c"),
    login("u4", "10.0.0.9", "dev-d"), // seen once: in neither view
  ]);
  const { summary } = await drainInProcess(queueUrl, db.schema);
  assert.equal(summary.inserted, 6);
  const masker = await testMasker();
  const ips = await db.sql<
    { masked_ip: string; logins: number; users: number; first_date: string }[]
  >`
    SELECT masked_ip, logins::int, users::int, first_date::text FROM user_logins_duplicate_ips
    ORDER BY logins DESC, masked_ip`;
  // The first date is the day the first of them was sent: today, or yesterday
  // in a run that crosses midnight UTC.
  const days = utcDaysSince(since);
  for (const { first_date } of ips) assert.ok(days.includes(first_date), first_date);
  assert.deepEqual(
    ips.map(({ first_date: _, ...r }) => r),
    [
      { masked_ip: await masker.mask("ip", "2001:db8::1"), logins: 3, users: 2 },
      { masked_ip: await masker.mask("ip", "1.2.3.4"), logins: 2, users: 2 },
    ].sort((a, b) => b.logins - a.logins || (a.masked_ip < b.masked_ip ? -1 : 1)),
  );
  const devices = await db.sql<{ masked_device_id: string; logins: number; users: number }[]>`
    SELECT masked_device_id, logins::int, users::int FROM user_logins_duplicate_devices
    ORDER BY masked_device_id`;
  assert.deepEqual(
    devices.map((r) => ({ ...r })),
    [
      { masked_device_id: await masker.mask("device_id", "dev-a"), logins: 2, users: 2 },
      { masked_device_id: await masker.mask("device_id", "dev-c"), logins: 2, users: 1 },
    ].sort((a, b) => (a.masked_device_id < b.masked_device_id ? -1 : 1)),
  );

  // `report` prints the same counts, and the same object with --summary-json.
  const env = { DATABASE_URL, ...db.env };
  const text = await runCli(["report"], { env });
  assert.equal(text.code, 0, text.stderr);
  assert.match(
    text.stdout,
    /^user_logins: 6 rows, \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d\. A few of them:$/m,
  );
  assert.match(
    text.stdout,
    /^Masked IPs occurring more than once: 2 \(view user_logins_duplicate_ips\)$/m,
  );
  assert.match(text.stdout, /^Masked device ids occurring more than once: 2 /m);
  assert.match(text.stdout, /\| 2\.3\.0 /, "app_version shown as text");
  assert.ok(!/1\.2\.3\.4|2001:db8|dev-a/i.test(text.stdout), "no raw value");
  const json = await runInProcess(["report", "--summary-json"], env);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as Record<string, unknown>;
  assert.equal(report.rows_in_table, 6);
  assert.equal(report.repeated_masked_ips, 2);
  assert.equal(report.repeated_masked_device_ids, 2);
  assert.deepEqual(report.rejects_by_reason, {});

  // A --state-schema that is not the deployment's: report says where the tables are.
  const moved = await runInProcess(["report"], {
    ...env,
    LOGIN_ETL_STATE_SCHEMA: `${db.stateSchema}_x`,
  });
  assert.equal(moved.code, 2, moved.stderr);
  assert.match(failureLine(moved), /are in state schema .*: give --state-schema /);
  // A --schema with nothing of login-etl's: report says what to check.
  const wrong = await runInProcess(["report"], {
    DATABASE_URL,
    LOGIN_ETL_SCHEMA: `${db.schema}_x`,
    LOGIN_ETL_STATE_SCHEMA: `${db.schema}_x_state`,
  });
  assert.equal(wrong.code, 1, wrong.stderr);
  assert.equal(
    failureLine(wrong),
    `error: Schema ${db.schema}_x with state schema ${db.schema}_x_state holds none of login-etl's tables: check --schema and --state-schema (LOGIN_ETL_SCHEMA, LOGIN_ETL_STATE_SCHEMA), or run \`login-etl migrate\` as the owner role`,
  );
});

Deno.test("report escapes what a consumer wrote to user_logins and the rejects: no forged line, no raw ESC", async () => {
  // A consumer may INSERT into both tables, so every cell and reason is data
  // from a possibly hostile writer (issue 19, F5).
  await using db = await freshSchema();
  const env = { DATABASE_URL, ...db.env };
  const migrated = await runInProcess(["migrate"], env);
  assert.equal(migrated.code, 0, migrated.stderr);
  const forged = "Rejected: none\u001b[2J\u001b[31mRED\u001b[0m";
  const evilUser = `u1\n${forged}`;
  const evilIp = `k1:x\r\n  forged-mask  99 logins, 99 users\u001b]0;title\u0007`;
  await db.sql`
    INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, locale, app_version, create_date)
    VALUES (${evilUser}, 'android', ${evilIp}, 'k1:d', 'RU', 1, CURRENT_DATE),
           ('u2', 'ios\u2028x', ${evilIp}, 'k1:d', 'RU', 1, CURRENT_DATE)`;
  await db.sql`
    INSERT INTO ${db.sql(db.stateSchema)}.login_etl_rejects
      (message_id, reason, detail, body_bytes, body_hmac, sent_at)
    VALUES ('m1', ${`not_json 1\n${forged}`}, 'x', 1, 'h', now())`;
  const text = await runInProcess(["report"], env);
  assert.equal(text.code, 0, text.stderr);
  for (const c of ["\u001b", "\u0007", "\r", "\u2028"]) {
    assert.ok(!text.stdout.includes(c), `no raw ${JSON.stringify(c)}: ${text.stdout}`);
  }
  const lines = text.stdout.trimEnd().split("\n");
  // The reasons go under their heading when the one line would pass 100 columns.
  const heading = lines.findIndex((l) => /^Rejected/.test(l));
  assert.deepEqual(lines.filter((l) => /^Rejected/.test(l)).length, 1);
  assert.equal(
    lines.slice(heading, heading + 2).join(" ").replace(/: {3}/, ": "),
    `Rejected, by reason (table ${db.stateSchema}.login_etl_rejects): not_json 1\\nRejected: none\\x1b[2J\\x1b[31mRED\\x1b[0m 1`,
  );
  assert.ok(lines.every((l) => !/^\s*forged-mask/.test(l)), text.stdout);
  assert.ok(
    lines.some((l) =>
      // Shortened in the middle, then escaped: the ends of the forged mask.
      l.includes("k1:x\\r\\n …tle\\x07  2 logins")
    ),
    text.stdout,
  );
  assert.ok(lines.some((l) => /^ {2}u1\\nRejec…\\x1b\[0m /.test(l)), text.stdout);
  assert.ok(lines.some((l) => l.includes("ios\\u2028x")), text.stdout);
});

Deno.test("app_version_text() inverts the stored encoding, for every version the pipeline accepts", async () => {
  await using db = await freshSchema();
  await runInProcess(["migrate"], { DATABASE_URL, ...db.env });
  const [examples] = await db.sql<{ a: string; b: string; n: string | null; neg: string | null }[]>`
    SELECT app_version_text(2003000) AS a, app_version_text(96000) AS b,
           app_version_text(NULL) AS n, app_version_text(-1) AS neg`;
  assert.deepEqual(examples, { a: "2.3.0", b: "0.96.0", n: null, neg: null });
  const part = fc.integer({ min: 0, max: 999 });
  const versions = fc.sample(
    fc.oneof(
      part.map((a) => `${a}`),
      fc.tuple(part, part).map(([a, b]) => `${a}.${b}`),
      fc.tuple(part, part, part).map(([a, b, c]) => `${a}.${b}.${c}`),
    ),
    { numRuns: 2000, seed: 42 },
  );
  const encoded = versions.map((v) => {
    const result = encodeAppVersion(v);
    assert.ok(result.ok, v);
    return result.encoded;
  });
  const rows = await db.sql<{ text: string }[]>`
    SELECT app_version_text(v) AS text FROM unnest(${encoded}::int[]) WITH ORDINALITY AS u(v, n) ORDER BY n`;
  rows.forEach((r, i) => {
    const version = versions[i] ?? "";
    assert.equal(r.text, decodeAppVersion(encoded[i] ?? -1), version);
    const reencoded = encodeAppVersion(r.text);
    assert.ok(reencoded.ok && reencoded.encoded === encoded[i], `${version} → ${r.text}`);
  });
});

Deno.test("a look-up of one masked value reads the index, and the views can be answered from the index alone", async () => {
  // A database of its own: VACUUM marks pages all-visible (what lets an
  // index-only scan skip the heap) only up to the oldest snapshot open in the
  // database, and other test files' transactions on the shared one held it
  // back in parallel runs, so the planner read the heap.
  await using own = await hostileDb(DATABASE_URL);
  const migrated = await runInProcess(["migrate"], {
    DATABASE_URL: own.urlOf(),
    LOGIN_ETL_SCHEMA: "public",
    LOGIN_ETL_STATE_SCHEMA: STATE,
  });
  assert.equal(migrated.code, 0, migrated.stderr);
  const db = { sql: own.admin };
  await db.sql.unsafe("SET search_path = public");
  await db.sql`INSERT INTO user_logins
    SELECT 'u' || (i % 5000), 'ios', 'k1:ip' || (i % 20000), 'k1:dev' || (i % 30000), 'DE', 2003000,
           DATE '2026-01-01' + (i % 60)
    FROM generate_series(1, 100000) AS i`;
  await db.sql`VACUUM ANALYZE user_logins`;
  const plan = async (query: string) =>
    (await db.sql.unsafe(`EXPLAIN ${query}`)).map((r) => String(r["QUERY PLAN"])).join("\n");
  assert.match(
    await plan("SELECT * FROM user_logins WHERE masked_ip = 'k1:ip42'"),
    /Index Scan using user_logins_masked_ip|Bitmap Index Scan on user_logins_masked_ip/,
  );
  assert.match(
    await plan("SELECT user_id, create_date FROM user_logins WHERE masked_device_id = 'k1:dev7'"),
    /Index Only Scan using user_logins_masked_device_id/,
  );
  await db.sql.unsafe("SET enable_seqscan = off"); // what the planner picks at scale, forced here
  assert.match(
    await plan("SELECT * FROM user_logins_duplicate_ips"),
    /Index Only Scan using user_logins_masked_ip/,
  );
});
