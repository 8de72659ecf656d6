// Secrets put where a setting's value, a config-file key or a key file's path
// belongs never reach the CLI's output: each mistake is made as a user would
// make it, and the whole of stdout and stderr is searched for the secret, in
// both log formats, with --verbose (which adds each error's causes). Each
// mistake runs the CLI in one format and `main` in this process in the other.

import assert from "node:assert/strict";
import { type CliResult, failureLine, runCli } from "../helpers/cli.ts";
import { runInProcess } from "../helpers/in_process.ts";
import { TEST_SECRET } from "../helpers/services.ts";

const PASSWORD = "Hunter2Secret";
const KEY = "q8Jv3kZ0aTq1YbW5pL7sN2xR4mC6dE9fH0gI1jK2lM3=";
/** Closed local ports: every service a run reaches is refused at once. */
const NOWHERE = {
  DATABASE_URL: "postgres://etl@127.0.0.1:1/x",
  SQS_QUEUE_URL: "http://127.0.0.1:1/000000000000/q",
  AWS_ACCESS_KEY_ID: "test",
  AWS_SECRET_ACCESS_KEY: "test",
  AWS_REGION: "us-east-1",
  AWS_EC2_METADATA_DISABLED: "true",
  // A run that gets past its settings (as one did before the fix) fails fast.
  LOGIN_ETL_MAX_RETRY_SECONDS: "0",
};

/**
 * Runs a mistake through the CLI (`viaCli`: all the process prints, the
 * runtime's own lines too) or through `main` in this process, as each
 * mistake does in one log format each (tests/helpers/in_process.ts). In
 * process the AWS pair and region are left out: the SDK would read them from
 * this process's environment, and the closed endpoint, not AWS, is signed
 * for with the emulators' pair anyway.
 */
function runMistake(
  viaCli: boolean,
  args: readonly string[],
  env: Record<string, string>,
): Promise<CliResult> {
  if (viaCli) return runCli(args, { env });
  return runInProcess(
    args,
    Object.fromEntries(
      Object.entries(env).filter(([n]) =>
        !n.startsWith("AWS_") || n === "AWS_EC2_METADATA_DISABLED"
      ),
    ),
  );
}

interface Case {
  readonly name: string;
  readonly args: readonly string[];
  readonly env?: Record<string, string>;
  /** A config file's text, passed with --config. */
  readonly config?: string;
  /** The line that shows the run reached the mistake (so the search is not vacuous). */
  readonly says: RegExp;
}

const CASES: readonly Case[] = [
  {
    name: "an unquoted keyword/value connection string the shell split",
    args: ["check", "--database-url", "host=127.0.0.1", `password=${PASSWORD}`, "sslmode=require"],
    says: /Unexpected argument 4 for check \(not shown.*quote the value of --database-url/,
  },
  {
    name: "a connection string in the command's place",
    args: [`postgres://app:${PASSWORD}@db/prod`, "migrate"],
    says: /Unknown command \(argument 1, not shown/,
  },
  {
    name: "a Postgres URL in SQS_QUEUE_URL",
    args: ["seed"],
    env: { SQS_QUEUE_URL: `postgres://u:${PASSWORD}@db.example/prod` },
    says: /Invalid SQS_QUEUE_URL "postgres:\/\/u:\*\*\*@db\.example\/prod"/,
  },
  {
    name: "a queue URL with a user and password",
    args: ["seed", "--queue-url", `https://u:${PASSWORD}@sqs.eu-west-1.amazonaws.com/1/q`],
    says: /must not hold a user or password/,
  },
  {
    name: "--reject-queue-url with a password",
    args: ["drain", "--reject-queue-url", `http://u:${PASSWORD}@127.0.0.1:1/0/rejects`],
    env: { PII_HMAC_KEY: TEST_SECRET },
    says: /Invalid --reject-queue-url "http:\/\/\*\*\*@127\.0\.0\.1:1\/0\/rejects"/,
  },
  {
    name: "a Postgres URL in LOGIN_ETL_REJECT_QUEUE_URL",
    args: ["drain"],
    env: { PII_HMAC_KEY: TEST_SECRET, LOGIN_ETL_REJECT_QUEUE_URL: `host=db password=${PASSWORD}` },
    says: /Invalid LOGIN_ETL_REJECT_QUEUE_URL "host=db password=\*\*\*"/,
  },
  {
    name: "a connection string as a config-file key",
    args: ["migrate"],
    config: JSON.stringify({ [`postgres://app:${PASSWORD}@db/prod`]: 1 }),
    says: /a key that is not a setting name \(36 characters\)/,
  },
  {
    name: "a password unquoted in a config file (not JSON)",
    args: ["migrate"],
    // V8's parse error quotes the text around the fault: here, the password.
    config: `{"log-level": "info", "password": ${PASSWORD}}`,
    says: /not valid JSON/,
  },
  {
    name: "a URL with a password in a variable that takes no URL",
    args: ["migrate"],
    env: { LOGIN_ETL_LOG_LEVEL: `postgres://app:${PASSWORD}@db/prod` },
    says: /Invalid LOGIN_ETL_LOG_LEVEL "postgres:\/\/app:\*\*\*@db\/prod"/,
  },
  {
    name: "a key in PII_HMAC_KEY_FILE",
    args: ["drain"],
    env: { PII_HMAC_KEY_FILE: KEY },
    says: /Cannot read PII_HMAC_KEY_FILE: no such file \(.*put keys in PII_HMAC_KEY\)/,
  },
  {
    name: "a key in --hmac-key-file",
    args: ["drain", "--hmac-key-file", KEY],
    says: /Cannot read --hmac-key-file: no such file/,
  },
  {
    name: "a key in a config file's hmac-key-file",
    args: ["drain"],
    config: JSON.stringify({ "hmac-key-file": KEY }),
    says: /Cannot read "hmac-key-file" in --config ".*": no such file/,
  },
  {
    name: "keys in PII_VAULT_KEY_FILE and --hmac-key-file, checked",
    args: ["check", "--hmac-key-file", KEY],
    env: { PII_VAULT_KEY_FILE: KEY },
    says: /checks failed/,
  },
];

Deno.test("no planted secret reaches stdout or stderr, in either log format", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "login-etl-secrets-" });
  try {
    for (const [i, c] of CASES.entries()) {
      for (const [f, format] of ["json", "text"].entries()) {
        await t.step(`${c.name} (${format})`, async () => {
          const configArgs: string[] = [];
          if (c.config !== undefined) {
            const path = `${dir}/config.json`;
            await Deno.writeTextFile(path, c.config);
            configArgs.push("--config", path);
          }
          const result = await runMistake(
            (i + f) % 2 === 0,
            [...c.args, ...configArgs, "--log-format", format, "--verbose"],
            { ...NOWHERE, ...c.env },
          );
          const output = result.stdout + result.stderr;
          assert.notEqual(result.code, 0, output);
          assert.match(format === "json" ? failureLine(result) : output, c.says);
          for (const secret of [PASSWORD, KEY, KEY.slice(0, 12), "Hunter2"]) {
            assert.ok(!output.includes(secret), `${secret} in:\n${output}`);
          }
        });
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a queue URL's AWS signing values reach neither stdout nor stderr when its endpoint is closed", async (t) => {
  const token = "FwoGZXIvYXdzEJr//QueueSessionToken";
  const signature = "f00dfeedQueueSignatureValue";
  const accessKey = "AKIAQUEUEACCESSKEYID";
  const queueUrl = `http://127.0.0.1:1/000000000000/q?X-Amz-Algorithm=AWS4-HMAC-SHA256` +
    `&X-Amz-Credential=${accessKey}%2F20261207%2Fus-east-1%2Fsqs%2Faws4_request` +
    `&X-Amz-Security-Token=${encodeURIComponent(token)}&x-amz-signature=${signature}` +
    `&AWSAccessKeyId=${accessKey}&Signature=${signature}&SECURITYTOKEN=${token}`;
  const secrets = [token, encodeURIComponent(token), "QueueSessionToken", signature, accessKey];
  const commands: readonly (readonly string[])[] = [
    ["drain"],
    ["run", "--listen", "127.0.0.1:0"],
    ["check", "--for", "drain"],
    ["seed", "--count", "1"],
  ];
  for (const [i, command] of commands.entries()) {
    for (const [f, format] of ["json", "text"].entries()) {
      await t.step(`${command[0]} (${format})`, async () => {
        const result = await runMistake(
          (i + f) % 2 === 0,
          [...command, "--log-format", format, "--verbose"],
          { ...NOWHERE, PII_HMAC_KEY: TEST_SECRET, SQS_QUEUE_URL: queueUrl },
        );
        const output = result.stdout + result.stderr;
        assert.notEqual(result.code, 0, output);
        // The run reached the queue and echoed its URL, with the values hidden.
        assert.match(output, /Cannot reach queue http:\/\/127\.0\.0\.1:1\/000000000000\/q\?/);
        assert.match(output, /X-Amz-Security-Token=\*\*\*/);
        for (const secret of secrets) {
          assert.ok(!output.includes(secret), `${secret} in:\n${output}`);
        }
      });
    }
  }
});
