// Secrets on the command line show in process lists: secretFlagWarnings()
// warns for any flag holding a URL with a password, and a config file that
// holds one is refused.

import assert from "node:assert/strict";
import { checkConfigFile } from "../../../src/config/file.ts";
import { resolveConfig, secretFlagWarnings } from "../../../src/config/resolve.ts";
import { ConfigError } from "../../../src/errors.ts";

const KEY = { PII_HMAC_KEY: "a test secret of at least thirty-two bytes" };

Deno.test("secretFlagWarnings() warns for each flag holding a URL with a password", async (t) => {
  const cases = [
    {
      name: "database URL with a password",
      flags: { "database-url": "postgres://etl:hunter2@db:5432/x" },
      expected: [
        "--database-url holds a password and shows in process lists; set DATABASE_URL instead",
      ],
    },
    {
      name: "queue URL with credentials",
      flags: { "queue-url": "https://AKIA:secret@sqs.example/1/q" },
      expected: [
        "--queue-url holds a password and shows in process lists; set SQS_QUEUE_URL instead",
      ],
    },
    {
      name: "a flag whose variable is LOGIN_ETL_REASON",
      flags: { reason: "https://u:p@x.example/" },
      expected: [
        "--reason holds a password and shows in process lists; set LOGIN_ETL_REASON instead",
      ],
    },
    { name: "a user without a password", flags: { "database-url": "postgres://etl@db/x" } },
    { name: "no URL", flags: { "hmac-key-file": "/run/secrets/k", "dry-run": true } },
  ];
  for (const c of cases) {
    await t.step(c.name, () => assert.deepEqual(secretFlagWarnings(c.flags), c.expected ?? []));
  }
});

Deno.test("resolveConfig() carries the warnings for every command, never the password", () => {
  // A queue URL with a password is refused (see config_test.ts), so the
  // second flag is one resolution does not read for these commands.
  for (const command of ["drain", "seed", "recover"] as const) {
    const config = resolveConfig(command, {
      "database-url": "postgres://etl:hunter2@localhost:5432/x",
      reason: "http://u:pw@localhost:4566/000000000000/q",
    }, KEY);
    assert.equal(config.warnings.length, 2, command);
    assert.ok(config.warnings.every((w) => !w.includes("hunter2") && !w.includes(":pw@")));
  }
  assert.deepEqual(
    resolveConfig("drain", {}, { ...KEY, DATABASE_URL: "postgres://a:b@h/d" }).warnings,
    [],
  );
});

Deno.test("checkConfigFile() refuses any setting holding a password", async (t) => {
  for (const key of ["database-url", "queue-url"]) {
    await t.step(key, () => {
      assert.throws(
        () =>
          checkConfigFile("run", { [key]: "http://user:secret@host:1/x/q" }, '--config "c.json"'),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(
            error.message,
            new RegExp(`^Invalid --config "c.json": "${key}" holds a password`),
          );
          assert.ok(!error.message.includes("secret@"));
          return true;
        },
      );
    });
  }
});
