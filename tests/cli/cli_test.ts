// The CLI contract, run as users run it: `deno run` with the binary's
// permission flags; exit codes, stdout, and one-line stderr messages.

import assert from "node:assert/strict";
import { SCRIPT } from "../helpers/tools.ts";
import { type CliResult, failureLine, permissionFlags, runCli, spawnCli } from "../helpers/cli.ts";
import { runInProcess } from "../helpers/in_process.ts";
import {
  DATABASE_URL,
  enqueue,
  freshSchema,
  hasSample,
  reportFigures,
  SAMPLE_PATH,
  startSqs,
  TEST_SECRET,
} from "../helpers/services.ts";

/**
 * Runs a case of a table: the first through the CLI (`viaCli`: the exit code
 * and stderr of the process, under the binary's flags), the others through
 * `main` in this process, which decides both the same way for each case.
 */
function runCase(
  viaCli: boolean,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  return viaCli ? runCli(args, { env }) : runInProcess(args, env);
}

/** Asserts a user-facing failure: the exit code and exactly one line on stderr, no stack. */
function assertOneLineError(
  result: { code: number; stderr: string },
  code: number,
  pattern: RegExp,
): void {
  assert.equal(result.code, code, `exit code; stderr: ${result.stderr}`);
  const last = failureLine(result);
  assert.match(last, /^error: [A-Z]/);
  assert.match(last, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
}

function event(i: number, ip: string, deviceId: string): string {
  return JSON.stringify({
    "user_id": `user-${i}`,
    "app_version": "2.3.0",
    "device_type": i % 2 === 0 ? "android" : "ios",
    ip,
    "locale": i % 3 === 0 ? null : "RU",
    "device_id": deviceId,
  });
}

Deno.test("the permission list is narrower than --allow-all", () => {
  const flags = permissionFlags();
  assert.ok(flags.length > 0);
  assert.ok(!flags.includes("-A") && !flags.includes("--allow-all"));
  // --allow-write is for --metrics-file alone (tests/repo/permissions_test.ts holds src/ to it).
  assert.ok(!flags.some((f) => f.startsWith("--allow-run") || f.startsWith("--allow-ffi")));
});

Deno.test("login-etl --help and --version exit 0 and print to stdout", async (t) => {
  await t.step("--help lists every command", async () => {
    const result = await runCli(["--help"]);
    assert.equal(result.code, 0);
    for (const command of ["drain", "run", "seed", "demo"]) {
      assert.match(result.stdout, new RegExp(`\\b${command}\\b`));
    }
  });
  await t.step("drain --help lists flags with their env vars", async () => {
    const result = await runCli(["drain", "--help"]);
    assert.equal(result.code, 0);
    // Help wraps at 100 columns: compare with line breaks and indents folded.
    const text = result.stdout.replace(/\n +(?!-)/g, " ");
    assert.match(text, /--queue-url URL .*SQS_QUEUE_URL/);
    assert.match(text, /--batch-size N .*LOGIN_ETL_BATCH_SIZE; default 10; 1-10/);
  });
  await t.step("--version", async () => {
    const result = await runCli(["--version"]);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^login-etl \d+\.\d+\.\d+\n$/);
  });
  await t.step("--version --verbose adds Deno, V8, TypeScript and the commit", async () => {
    const result = await runCli(["--version", "--verbose"]);
    assert.equal(result.code, 0, result.stderr);
    // Run from source with the binary's permissions: the commit is this
    // checkout's HEAD, read from .git (a built binary reads what make build embedded).
    const head = new TextDecoder().decode(
      new Deno.Command("git", { args: ["rev-parse", "HEAD"], stdout: "piped" }).outputSync()
        .stdout,
    ).trim();
    assert.deepEqual(result.stdout.trimEnd().split("\n"), [
      result.stdout.split("\n")[0],
      `deno ${Deno.version.deno}`,
      `v8 ${Deno.version.v8}`,
      `typescript ${Deno.version.typescript}`,
      `commit ${head} (source checkout)`,
    ]);
    assert.match(result.stdout, /^login-etl \d+\.\d+\.\d+\n/);
  });
});

Deno.test("login-etl alone prints the overview on stderr and exits 2; --help and help exit 0 on stdout", async (t) => {
  const overview = (await runCli(["--help"])).stdout;
  await t.step("no command", async () => {
    const result = await runCli([]);
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stdout, "");
    assert.ok(result.stderr.startsWith(overview), result.stderr);
    assert.match(
      failureLine(result),
      /^error: No command given: name one of the commands listed above$/,
    );
  });
  for (const args of [["--help"], ["-h"], ["help"]]) {
    await t.step(args.join(" "), async () => {
      const result = await runCli(args);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, overview);
      assert.equal(result.stderr, "");
    });
  }
});

Deno.test("an unknown command or flag exits 2 with one line naming the nearest, when one is close", async (t) => {
  const cases: { args: string[]; line: string }[] = [
    {
      args: ["drian"],
      line: 'error: Unknown command "drian": did you mean drain? See login-etl --help',
    },
    {
      args: ["drain", "--max-row", "5"],
      line:
        "error: Unknown flag --max-row for drain: did you mean --max-rows? See login-etl drain --help",
    },
    {
      args: ["run", "--max_rows=5"],
      line:
        "error: Unknown flag --max_rows for run: did you mean --max-rows? See login-etl run --help",
    },
    {
      args: ["seed", "--listen", ":9464"],
      line:
        "error: Unknown flag --listen for seed: only run take --listen; see login-etl seed --help",
    },
    {
      args: ["drain", "--bogus"],
      line: "error: Unknown flag --bogus for drain; see login-etl drain --help",
    },
  ];
  for (const [i, c] of cases.entries()) {
    await t.step(c.args.join(" "), async () => {
      const result = await runCase(i === 0, c.args);
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr.trimEnd().split("\n").length, 1, result.stderr);
      assert.equal(failureLine(result), c.line);
    });
  }
});

Deno.test("--config works for every command, and a misspelt key names its right spelling", async (t) => {
  await using sqs = await startSqs();
  const dir = await Deno.makeTempDir();
  // No AWS pair: fauxqs on loopback gets the emulators' one (src/sqs/credentials.ts),
  // and runs in this process read only what is given (tests/helpers/in_process.ts).
  const env = { AWS_EC2_METADATA_DISABLED: "true" };
  const file = async (name: string, settings: Record<string, unknown>) => {
    const path = `${dir}/${name}`;
    await Deno.writeTextFile(path, JSON.stringify(settings));
    return path;
  };
  try {
    const queueUrl = sqs.createQueue();
    await t.step("seed takes its queue and count from the file", async () => {
      const path = await file("seed.json", { "queue-url": queueUrl, count: 3, seed: 1 });
      const result = await runCli(["seed", "--config", path], { env });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(sqs.counts(queueUrl).ready, 3);
    });
    await t.step("check --for seed takes seed's file as it is", async () => {
      const path = await file("seed.json", { "queue-url": queueUrl, count: 3 });
      const result = await runInProcess(["check", "--for", "seed", "--config", path], env);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /queue/);
    });
    await t.step("check --for seed refuses a key seed does not take", async () => {
      const path = await file("drain.json", { "queue-url": queueUrl, "max-rows": 5 });
      const result = await runInProcess(["check", "--for", "seed", "--config", path], env);
      assert.equal(result.code, 2, result.stderr);
      assert.match(
        failureLine(result),
        /^error: Invalid --config ".*drain\.json": "max-rows" is a setting of drain, run, demo, rekey, rekey-vault and vault-merge, not of check/,
      );
    });
    const keys: readonly (readonly [string, string])[] = [
      ["max_rows", '"max_rows" is spelt "max-rows" here'],
      ["maxRows", '"maxRows" is spelt "max-rows" here'],
      ["max-rwos", '"max-rwos" is not a setting of drain; did you mean "max-rows"\\?'],
      ["listen", '"listen" is a setting of run, not of drain'],
    ];
    for (const [i, [key, says]] of keys.entries()) {
      await t.step(`drain refuses "${key}", naming the key to write`, async () => {
        const path = await file("bad.json", { [key]: 5 });
        const result = await runCase(i === 0, ["drain", "--config", path], {
          ...env,
          PII_HMAC_KEY: TEST_SECRET,
        });
        assert.equal(result.code, 2, result.stderr);
        assert.equal(result.stderr.trimEnd().split("\n").length, 1, result.stderr);
        assert.match(
          failureLine(result),
          new RegExp(`^error: Invalid --config ".*bad\\.json": ${says}`),
        );
      });
    }
    await t.step("every command's --help offers --config", async () => {
      for (const command of ["migrate", "report", "recover", "forget", "rekey", "demo", "check"]) {
        assert.match((await runInProcess([command, "--help"])).stdout, /--config PATH/, command);
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The last stderr line as a JSON record, after checking every line is one. */
function lastRecord(stderr: string): Record<string, unknown> {
  const records = stderr.trimEnd().split("\n").map((line) => JSON.parse(line));
  return records.at(-1) as Record<string, unknown>;
}

Deno.test("a fatal error in JSON log mode is a RunFailed record, the last line on stderr", async (t) => {
  await using sqs = await startSqs();
  // No AWS pair: as in the --config test above.
  const env = { PII_HMAC_KEY: TEST_SECRET, AWS_EC2_METADATA_DISABLED: "true" };
  const cases: {
    name: string;
    args: string[];
    env?: Record<string, string>;
    code: string;
    exit: number;
    msg: RegExp;
  }[] = [
    {
      name: "Postgres unreachable (a closed port), no retries",
      args: ["drain", "--queue-url", sqs.createQueue(), "--max-retry-seconds", "0"],
      env: {
        DATABASE_URL: "postgres://etl:s3cret-pw@127.0.0.1:1/db",
        LOGIN_ETL_LOG_FORMAT: "json",
      },
      code: "db_connect",
      exit: 1,
      msg: /^Cannot connect to Postgres at postgres:\/\/etl@127\.0\.0\.1:1\/db /,
    },
    {
      name: "a missing queue",
      args: [
        "run",
        "--queue-url",
        `${sqs.endpoint}/000000000000/missing-queue`,
        "--log-format",
        "json",
      ],
      env: { DATABASE_URL },
      code: "sqs_queue",
      exit: 1,
      msg: /^Queue .*missing-queue does not exist/,
    },
    {
      name: "a bad flag value, the format from the flag",
      args: ["drain", "--log-format", "json", "--batch-size", "11"],
      code: "config",
      exit: 2,
      msg: /^Invalid --batch-size "11": must be an integer from 1 to 10$/,
    },
    {
      name: "a bad flag value, the format from the environment",
      args: ["drain", "--max-rows", "0"],
      env: { LOGIN_ETL_LOG_FORMAT: "json" },
      code: "config",
      exit: 2,
      msg: /^Invalid --max-rows "0": must be an integer from 1 to 20000$/,
    },
    {
      name: "an unknown flag, the format read from the unparsed line",
      args: ["drain", "--log-format=json", "--max-row", "5"],
      code: "usage",
      exit: 2,
      msg: /^Unknown flag --max-row for drain: did you mean --max-rows\?/,
    },
    {
      name: "a bad log format itself, reported in the default (JSON off a terminal)",
      args: ["drain", "--log-format", "yaml"],
      code: "config",
      exit: 2,
      msg: /^Invalid --log-format "yaml": must be one of auto, json, text$/,
    },
  ];
  for (const [i, c] of cases.entries()) {
    await t.step(c.name, async () => {
      const result = await runCase(i === 0, c.args, { ...env, ...c.env });
      assert.equal(result.code, c.exit, result.stderr);
      const record = lastRecord(result.stderr);
      assert.equal(record["level"], "error");
      assert.equal(record["event"], "RunFailed");
      assert.equal(record["code"], c.code);
      assert.equal(record["exit_code"], result.code);
      assert.match(String(record["msg"]), c.msg);
      assert.ok(!result.stderr.includes("s3cret-pw"), "no password");
    });
  }
  await t.step("the config file's log format, when another of its settings is bad", async () => {
    const path = await Deno.makeTempFile({ suffix: ".json" });
    try {
      await Deno.writeTextFile(path, JSON.stringify({ "log-format": "json", "batch-size": 50 }));
      const result = await runInProcess(["drain", "--config", path], {
        ...env,
        LOGIN_ETL_LOG_FORMAT: "",
      });
      assert.equal(result.code, 2, result.stderr);
      const record = lastRecord(result.stderr);
      assert.deepEqual([record["event"], record["code"], record["exit_code"]], [
        "RunFailed",
        "config",
        2,
      ]);
      assert.match(String(record["msg"]), /^Invalid value "\w+" for "batch-size" in --config/);
    } finally {
      await Deno.remove(path);
    }
  });
  await t.step("text mode keeps the error line", async () => {
    const result = await runCli(["drain", "--log-format", "text", "--batch-size", "11"], { env });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      'error: Invalid --batch-size "11": must be an integer from 1 to 10\n',
    );
  });
});

Deno.test("usage and configuration errors exit 2 with one line saying what to fix", async (t) => {
  const cases: { name: string; args: string[]; env?: Record<string, string>; pattern: RegExp }[] = [
    { name: "unknown command", args: ["drian"], pattern: /Unknown command "drian"/ },
    { name: "unknown flag", args: ["drain", "--bogus"], pattern: /Unknown flag --bogus for drain/ },
    {
      name: "missing value",
      args: ["drain", "--batch-size"],
      pattern: /--batch-size needs a value/,
    },
    {
      name: "batch size out of range",
      args: ["drain", "--batch-size", "11"],
      env: { PII_HMAC_KEY: TEST_SECRET },
      pattern: /Invalid --batch-size "11": must be an integer from 1 to 10/,
    },
    {
      name: "no HMAC key",
      args: ["drain"],
      pattern: /No HMAC key: set PII_HMAC_KEY .*openssl rand -base64 32/,
    },
    {
      name: "short HMAC key",
      args: ["drain"],
      env: { PII_HMAC_KEY: "too short" },
      pattern: /PII_HMAC_KEY: it is 9 bytes, need at least 32/,
    },
    {
      name: "missing key file",
      args: ["drain", "--hmac-key-file", "/nonexistent/key"],
      env: { DATABASE_URL: "postgres://x@127.0.0.1:1/x" },
      pattern: /Cannot read --hmac-key-file: no such file \(is a key in the file setting's place/,
    },
  ];
  for (const [i, c] of cases.entries()) {
    await t.step(c.name, async () => {
      // A key file is read under the binary's --allow-read: that case runs the CLI too.
      const viaCli = i === 0 || c.name === "missing key file";
      assertOneLineError(await runCase(viaCli, c.args, c.env), 2, c.pattern);
    });
  }
});

Deno.test("unreachable services exit 1 with one line naming what failed, and no secret", async (t) => {
  await using sqs = await startSqs();
  const queueUrl = sqs.createQueue();
  await t.step("Postgres refuses connections", async () => {
    // No start-up retries here (tests/reliability/startup_test.ts has them).
    const result = await runCli(["drain", "--queue-url", queueUrl, "--max-retry-seconds", "0"], {
      env: { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL: "postgres://etl:s3cret-pw@127.0.0.1:1/db" },
    });
    assertOneLineError(
      result,
      1,
      /Cannot connect to Postgres at postgres:\/\/etl@127\.0\.0\.1:1\/db \(sslmode=prefer, from DATABASE_URL\)/,
    );
    assert.ok(!result.stderr.includes("s3cret-pw"));
  });
  await t.step("the SQS endpoint refuses connections", async () => {
    const result = await runCli(
      [
        "drain",
        "--queue-url",
        "http://127.0.0.1:1/000000000000/nowhere",
        "--max-retry-seconds",
        "0",
      ],
      {
        env: { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL },
      },
    );
    assertOneLineError(
      result,
      1,
      /Cannot reach queue http:\/\/127\.0\.0\.1:1\/000000000000\/nowhere/,
    );
  });
  await t.step("the queue does not exist", async () => {
    const result = await runCli([
      "drain",
      "--queue-url",
      `${sqs.endpoint}/000000000000/missing-queue`,
    ], {
      env: { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL },
    });
    assertOneLineError(result, 1, /Queue .*missing-queue does not exist/);
  });
});

Deno.test("drain from the command line: an emulator's .localhost queue URL alone reaches it; no raw PII printed", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const name = `cli-${crypto.randomUUID()}`;
  // Emulators hand out URLs such as http://sqs.us-east-1.localhost:PORT/…,
  // which ordinary DNS does not resolve (fauxqs does so when bound to all hosts).
  sqs.server.createQueue(name);
  const queueUrl = `http://sqs.us-east-1.localhost:${sqs.server.port}/000000000000/${name}`;
  const ips = ["203.0.113.77", "2001:db8::77", "198.51.100.23"];
  const devices = ["734-11-2345", "734-11-9876"];
  const bodies = Array.from(
    { length: 60 },
    (_, i) => event(i, ips[i % 3] as string, devices[i % 2] as string),
  );
  bodies.push(`{"ip":"${ips[0]}","device_id":"${devices[0]}"`); // not JSON
  bodies.push(JSON.stringify({ ip: ips[2], "device_id": devices[1], "user_id": "" })); // rejected
  enqueue(sqs, `${sqs.endpoint}/000000000000/${name}`, bodies);

  const result = await runCli([
    "drain",
    "--queue-url",
    queueUrl,
    "--summary-json",
    "--log-level",
    "debug",
  ], {
    env: { PII_HMAC_KEY: TEST_SECRET, DATABASE_URL, ...db.env },
  });
  assert.equal(result.code, 0, result.stderr);
  const summary = JSON.parse(result.stdout);
  reportFigures("cli drain", summary);
  assert.equal(summary.received, 62);
  assert.equal(summary.inserted, 60);
  assert.equal(summary.rejected, 2);
  assert.equal(summary.deleted, 62);
  for (const line of result.stderr.trimEnd().split("\n")) JSON.parse(line); // JSON lines off a terminal
  assert.doesNotMatch(result.stderr, /differs from SQSClient resolved endpoint/);
  for (const secret of [...ips, ...devices, TEST_SECRET]) {
    assert.ok(
      !result.stdout.includes(secret) && !result.stderr.includes(secret),
      "raw value in output",
    );
  }
  const [count] = await db.sql`SELECT count(*)::int AS n FROM user_logins`;
  assert.equal(count?.n, 60);
});

Deno.test("a key id recorded with another secret exits 2 and deletes nothing", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  const env = { DATABASE_URL, ...db.env };
  enqueue(sqs, queueUrl, [event(1, "10.0.0.1", "d1")]);
  assert.equal(
    (await runInProcess(["drain", "--queue-url", queueUrl], { ...env, PII_HMAC_KEY: TEST_SECRET }))
      .code,
    0,
  );
  enqueue(sqs, queueUrl, [event(2, "10.0.0.2", "d2")]);
  const result = await runCli(["drain", "--queue-url", queueUrl], {
    env: { ...env, PII_HMAC_KEY: "a different secret of at least 32 bytes" },
  });
  assertOneLineError(result, 2, /HMAC key id "k1" is recorded with a different secret/);
  assert.equal(sqs.counts(queueUrl).ready, 1);
});

Deno.test("run stops on SIGTERM after committing and deleting what it holds, exit 0", async () => {
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const queueUrl = sqs.createQueue();
  const child = spawnCli(
    ["run", "--queue-url", queueUrl, "--summary-json", "--wait-seconds", "2"],
    {
      PII_HMAC_KEY: TEST_SECRET,
      DATABASE_URL,
      ...db.env,
    },
  );
  const stderrText = new Response(child.stderr).text();
  const stdoutText = new Response(child.stdout).text();
  try {
    enqueue(
      sqs,
      queueUrl,
      Array.from({ length: 25 }, (_, i) => event(i, `10.9.0.${i}`, `dev-${i}`)),
    );
    let rows = 0;
    for (let i = 0; i < 200 && rows < 25; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const [count] = await db.sql`SELECT count(*)::int AS n FROM user_logins`.catch(
        () => [{ n: 0 }],
      );
      rows = count?.n ?? 0;
    }
    assert.equal(rows, 25);
  } finally {
    child.kill("SIGTERM");
  }
  const status = await child.status;
  const stderr = await stderrText;
  assert.equal(status.code, 0, stderr);
  assert.match(stderr, /"event":"ShutdownRequested".*"signal":"SIGTERM"/);
  const summary = JSON.parse(await stdoutText);
  assert.equal(summary.inserted, 25);
  assert.equal(summary.deleted, 25);
  assert.deepEqual(sqs.counts(queueUrl), { ready: 0, inFlight: 0 });
});

Deno.test("demo runs with nothing but Deno, and reports what it loaded", async (t) => {
  // screen_test.ts checks the same figures from `make demo` on a terminal;
  // only where it cannot run (no `script`) does this pay for a second demo.
  await t.step({
    name: "synthetic data",
    ignore: SCRIPT.missing === null,
    fn: async () => {
      const result = await runCli(["demo", "--count", "300", "--seed", "7", "--summary-json"]);
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(result.stdout);
      reportFigures("demo", { ...report.drained, repeated_ips: report.report.repeated_masked_ips });
      assert.equal(report.seeded.sent, 300);
      assert.equal(report.drained.received, 300);
      assert.equal(report.drained.inserted + report.drained.rejected, 300);
      assert.ok(report.drained.rejected > 0, "the demo's malformed share is rejected");
      assert.equal(report.report.rows_in_table, report.drained.inserted);
      assert.ok(
        report.report.repeated_masked_ips > 0,
        "repeated ips are visible as repeated masks",
      );
      assert.match(result.stderr, /Drained in .* s: received 300/);
    },
  });
  await t.step({
    name: "the exercise's sample file",
    ignore: !hasSample(),
    fn: async () => {
      const result = await runCli(["demo", "--sample", SAMPLE_PATH, "--summary-json"]);
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(result.stdout);
      assert.equal(report.drained.inserted, 100);
      assert.equal(report.drained.rejected, 0);
      assert.equal(report.report.rows_in_table, 100);
    },
  });
});
