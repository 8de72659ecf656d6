// Unit tests of src/config/resolve.ts: resolveConfig() precedence, range messages, HMAC key sources, secrecy and freezing.
import assert from "node:assert/strict";
import { type CommandName, COMMANDS } from "../../../src/config/commands.ts";
import { OPTIONS, type OptionSpec } from "../../../src/config/options.ts";
import type { CommandConfig, FileLayer } from "../../../src/config/configs.ts";
import { checkConfigFile } from "../../../src/config/file.ts";
import { fallbackLogFormat, resolveConfig } from "../../../src/config/resolve.ts";
import { ConfigError, UsageError } from "../../../src/errors.ts";

const KEY = "a-test-secret-of-at-least-32-bytes!!"; // 36 bytes
const WITH_KEY = { PII_HMAC_KEY: KEY } as const;

type Env = Readonly<Record<string, string | undefined>>;
type Flags = Readonly<Record<string, string | boolean | undefined>>;

/** The error resolveConfig throws, or a failed assertion when it does not throw. */
function configError(command: CommandName, flags: Flags, env: Env, file?: FileLayer): ConfigError {
  try {
    resolveConfig(command, flags, env, file);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    assert.equal(error.exitCode, 2);
    assert.ok(!error.message.includes("\n"), "message is not one line");
    return error;
  }
  assert.fail("expected resolveConfig() to throw a ConfigError");
}

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const field = (config: CommandConfig, flag: string) =>
  (config as unknown as Record<string, unknown>)[camel(flag)];

const INTEGER_OPTIONS = OPTIONS.filter((o) => o.kind === "integer") as (OptionSpec & {
  env: string;
  min: number;
  max: number;
})[];

Deno.test("resolveConfig() table declares an env var and a range for every integer option", () => {
  assert.ok(INTEGER_OPTIONS.length >= 10);
  for (const spec of INTEGER_OPTIONS) {
    assert.equal(typeof spec.env, "string", spec.flag);
    assert.equal(typeof spec.min, "number", spec.flag);
    assert.equal(typeof spec.max, "number", spec.flag);
  }
});

/** Two in-range values that differ from each other and from the default. */
function twoValues(spec: { min: number; max: number; default?: string }): [number, number] {
  const def = spec.default === undefined ? null : Number(spec.default);
  const picks = [spec.max, spec.min, spec.max - 1, spec.min + 1].filter((v) => v !== def);
  const [a, b] = [...new Set(picks)];
  assert.ok(a !== undefined && b !== undefined);
  return [a, b];
}

Deno.test("resolveConfig() takes flags over env over defaults for every integer option", async (t) => {
  for (const spec of INTEGER_OPTIONS) {
    const command = spec.commands[0] as CommandName;
    const [flagValue, envValue] = twoValues(spec);
    const expectedDefault = spec.default === undefined
      ? null
      : spec.words?.includes(spec.default)
      ? spec.default
      : Number(spec.default);
    await t.step(`resolveConfig() takes --${spec.flag} over ${spec.env}`, () => {
      const config = resolveConfig(command, { [spec.flag]: String(flagValue) }, {
        ...WITH_KEY,
        [spec.env]: String(envValue),
      });
      assert.equal(field(config, spec.flag), flagValue);
    });
    await t.step(`resolveConfig() takes ${spec.env} over the default of --${spec.flag}`, () => {
      const config = resolveConfig(command, {}, { ...WITH_KEY, [spec.env]: String(envValue) });
      assert.equal(field(config, spec.flag), envValue);
    });
    await t.step(`resolveConfig() defaults --${spec.flag} to ${expectedDefault}`, () => {
      assert.equal(field(resolveConfig(command, {}, WITH_KEY), spec.flag), expectedDefault);
    });
    await t.step(`resolveConfig() treats an empty ${spec.env} as unset`, () => {
      const config = resolveConfig(command, {}, { ...WITH_KEY, [spec.env]: "" });
      assert.equal(field(config, spec.flag), expectedDefault);
    });
  }
});

Deno.test("resolveConfig() takes flags over env over defaults for strings, choices and booleans", async (t) => {
  const cases = [
    { flag: "queue-url", env: "SQS_QUEUE_URL", f: "http://h:1/0/fq", e: "http://h:2/0/eq" },
    { flag: "region", env: "AWS_REGION", f: "eu-west-1", e: "ap-south-1" },
    { flag: "schema", env: "LOGIN_ETL_SCHEMA", f: "from_flag", e: "from_env" },
    { flag: "state-schema", env: "LOGIN_ETL_STATE_SCHEMA", f: "state_flag", e: "state_env" },
    { flag: "hmac-key-id", env: "PII_HMAC_KEY_ID", f: "k2", e: "k3" },
    { flag: "log-level", env: "LOGIN_ETL_LOG_LEVEL", f: "debug", e: "error" },
    { flag: "log-format", env: "LOGIN_ETL_LOG_FORMAT", f: "json", e: "text" },
  ];
  for (const c of cases) {
    await t.step(`resolveConfig() takes --${c.flag} over ${c.env} over the default`, () => {
      const key = camel(c.flag) === "queueUrl" ? "queueUrl" : camel(c.flag);
      const get = (config: CommandConfig) => (config as unknown as Record<string, unknown>)[key];
      const both = resolveConfig("drain", { [c.flag]: c.f }, { ...WITH_KEY, [c.env]: c.e });
      assert.equal(get(both), c.f);
      assert.equal(get(resolveConfig("drain", {}, { ...WITH_KEY, [c.env]: c.e })), c.e);
      // --region has no default (null): the SDK's chain or the queue URL decides (sqs/region.ts).
      const spec = OPTIONS.find((o) => o.flag === c.flag);
      assert.equal(get(resolveConfig("drain", {}, WITH_KEY)), spec?.default ?? null);
    });
  }
  await t.step("resolveConfig() takes a boolean flag over its env var", () => {
    assert.equal(resolveConfig("drain", { "dry-run": true }, { ...WITH_KEY }).dryRun, true);
    assert.equal(
      resolveConfig("drain", {}, { ...WITH_KEY, LOGIN_ETL_DRY_RUN: "yes" }).dryRun,
      true,
    );
    assert.equal(
      resolveConfig("drain", {}, { ...WITH_KEY, LOGIN_ETL_DRY_RUN: "false" }).dryRun,
      false,
    );
    assert.equal(resolveConfig("drain", {}, WITH_KEY).dryRun, false);
  });
  await t.step(
    "resolveConfig() takes --bad-ratio over its env var, with demo's own default",
    () => {
      const env = { LOGIN_ETL_SEED_BAD_RATIO: "0.25" };
      assert.equal(resolveConfig("seed", { "bad-ratio": "0.5" }, env).badRatio, 0.5);
      assert.equal(resolveConfig("seed", {}, env).badRatio, 0.25);
      assert.equal(resolveConfig("seed", {}, {}).badRatio, 0);
      assert.equal(resolveConfig("demo", {}, {}).badRatio, 0.05);
      assert.equal(resolveConfig("demo", { "bad-ratio": "0" }, {}).badRatio, 0);
    },
  );
});

Deno.test("resolveConfig() names the flag or env var in each integer range error", async (t) => {
  for (const spec of INTEGER_OPTIONS) {
    const command = spec.commands[0] as CommandName;
    const words = (spec.words ?? []).map((w) => `, or ${w}`).join("");
    const range = `must be an integer from ${spec.min} to ${spec.max}${words}`;
    const bad = [
      { source: "flag", raw: String(spec.max + 1) },
      { source: "flag", raw: String(spec.min - 1) },
      { source: "flag", raw: "1e3" },
      { source: "flag", raw: "" },
      { source: "env", raw: "abc" },
      { source: "env", raw: "1.5" },
      { source: "env", raw: String(spec.max + 1) },
    ] as const;
    for (const b of bad) {
      const name = b.source === "flag" ? `--${spec.flag}` : spec.env;
      await t.step(`resolveConfig() refuses ${name} "${b.raw}"`, () => {
        const error = b.source === "flag"
          ? configError(command, { [spec.flag]: b.raw }, WITH_KEY)
          : configError(command, {}, { ...WITH_KEY, [spec.env]: b.raw });
        assert.equal(error.message, `Invalid ${name} "${b.raw}": ${range}`);
      });
    }
  }
});

Deno.test("resolveConfig() takes --concurrency auto (the default) or a number; seed's auto is 8 sends", () => {
  assert.equal(resolveConfig("drain", {}, WITH_KEY).concurrency, "auto");
  assert.equal(resolveConfig("run", { concurrency: "AUTO" }, WITH_KEY).concurrency, "auto");
  assert.equal(resolveConfig("drain", { concurrency: "16" }, WITH_KEY).concurrency, 16);
  assert.equal(
    resolveConfig("drain", {}, { ...WITH_KEY, LOGIN_ETL_CONCURRENCY: "auto" }).concurrency,
    "auto",
  );
  assert.equal(resolveConfig("seed", {}, {}).concurrency, 8);
  assert.equal(resolveConfig("seed", { concurrency: "3" }, {}).concurrency, 3);
  assert.equal(
    configError("drain", { concurrency: "automatic" }, WITH_KEY).message,
    'Invalid --concurrency "automatic": must be an integer from 1 to 256, or auto',
  );
});

Deno.test("resolveConfig() quotes the examples of the brief exactly", () => {
  assert.equal(
    configError("drain", { "batch-size": "11" }, WITH_KEY).message,
    'Invalid --batch-size "11": must be an integer from 1 to 10',
  );
  assert.equal(
    configError("drain", {}, { ...WITH_KEY, LOGIN_ETL_BATCH_SIZE: "abc" }).message,
    'Invalid LOGIN_ETL_BATCH_SIZE "abc": must be an integer from 1 to 10',
  );
});

Deno.test("resolveConfig() names the source of other invalid settings", async (t) => {
  const cases = [
    { flags: { "bad-ratio": "1.5" }, env: {}, names: "--bad-ratio" },
    { flags: {}, env: { LOGIN_ETL_SEED_BAD_RATIO: "-0.1" }, names: "LOGIN_ETL_SEED_BAD_RATIO" },
    { flags: { "log-level": "loud" }, env: {}, names: "--log-level" },
    { flags: {}, env: { LOGIN_ETL_LOG_FORMAT: "xml" }, names: "LOGIN_ETL_LOG_FORMAT" },
    { flags: {}, env: { LOGIN_ETL_SUMMARY_JSON: "maybe" }, names: "LOGIN_ETL_SUMMARY_JSON" },
  ];
  for (const c of cases) {
    await t.step(`resolveConfig() names ${c.names}`, () => {
      const error = configError("seed", c.flags, c.env);
      assert.ok(error.message.startsWith(`Invalid ${c.names} `), error.message);
    });
  }
  await t.step("resolveConfig() names --schema for a schema that is not an identifier", () => {
    const error = configError("drain", { schema: "a;drop" }, WITH_KEY);
    assert.ok(error.message.startsWith("Invalid --schema "), error.message);
  });
  const stateCases = [
    {
      flags: { "state-schema": "Login_ETL" },
      env: {},
      message:
        'Invalid --state-schema "Login_ETL": must be a plain lower-case identifier (a-z, digits, _)',
    },
    {
      flags: {},
      env: { LOGIN_ETL_STATE_SCHEMA: "pg_etl" },
      message: `Invalid LOGIN_ETL_STATE_SCHEMA "pg_etl": names starting pg_ are Postgres' own`,
    },
    {
      flags: { schema: "analytics", "state-schema": "analytics" },
      env: {},
      message:
        `Invalid --state-schema "analytics": is also --schema; login-etl's own tables go in a schema apart from the analysts' data: give another`,
    },
    {
      flags: { schema: "login_etl" },
      env: {},
      message:
        `Invalid --state-schema "login_etl": is also --schema; login-etl's own tables go in a schema apart from the analysts' data: give another`,
    },
  ];
  for (const c of stateCases) {
    await t.step(`resolveConfig() refuses ${JSON.stringify({ ...c.flags, ...c.env })}`, () => {
      for (const command of ["drain", "migrate", "check", "recover", "report"] as const) {
        assert.equal(configError(command, c.flags, { ...WITH_KEY, ...c.env }).message, c.message);
      }
    });
  }
  await t.step("resolveConfig() gives every command that uses the database both schemas", () => {
    for (
      const command of ["drain", "run", "migrate", "check", "recover", "forget", "report"] as const
    ) {
      const config = resolveConfig(command, {}, WITH_KEY) as {
        schema: string;
        stateSchema: string;
      };
      assert.deepEqual([config.schema, config.stateSchema], ["public", "login_etl"], command);
    }
  });
  await t.step("resolveConfig() names PII_HMAC_KEY_ID for a bad key id", () => {
    const error = configError("drain", {}, { ...WITH_KEY, PII_HMAC_KEY_ID: "k:1" });
    assert.ok(error.message.startsWith("Invalid PII_HMAC_KEY_ID "), error.message);
  });
});

// ---- HMAC key ---------------------------------------------------------------

Deno.test("resolveConfig() refuses drain and run without an HMAC key, with the openssl hint", async (t) => {
  for (const command of ["drain", "run"] as const) {
    await t.step(`resolveConfig() refuses ${command} without a key`, () => {
      const error = configError(command, {}, {});
      assert.match(error.message, /openssl rand -base64 32/);
      assert.match(error.message, /PII_HMAC_KEY/);
      assert.match(error.message, /--hmac-key-file/);
    });
    await t.step(`resolveConfig() refuses ${command} with an empty PII_HMAC_KEY`, () => {
      assert.match(configError(command, {}, { PII_HMAC_KEY: "" }).message, /openssl rand/);
    });
  }
});

Deno.test("resolveConfig() refuses a PII_HMAC_KEY under 32 bytes without echoing it", async (t) => {
  for (
    const key of [
      "short-key",
      "x".repeat(31),
      `${"\u00e9".repeat(15)}a`, // 31 bytes in 16 characters
    ]
  ) {
    await t.step(
      `resolveConfig() refuses a ${new TextEncoder().encode(key).length}-byte key`,
      () => {
        const error = configError("drain", {}, { PII_HMAC_KEY: key });
        assert.match(error.message, /PII_HMAC_KEY/);
        assert.match(error.message, /\b32\b/);
        assert.ok(!error.message.includes(key), error.message);
      },
    );
  }
});

Deno.test("resolveConfig() accepts a PII_HMAC_KEY of 32 bytes or more", async (t) => {
  for (const key of ["x".repeat(32), "\u00e9".repeat(16), KEY]) {
    await t.step(`resolveConfig() accepts a key of ${key.length} characters`, () => {
      const { hmacKey } = resolveConfig("drain", {}, { PII_HMAC_KEY: key });
      assert.equal(hmacKey.kind, "env");
      if (hmacKey.kind === "env") {
        assert.deepEqual(hmacKey.secret.reveal(), new TextEncoder().encode(key));
      }
    });
  }
});

Deno.test("resolveConfig() takes --hmac-key-file, then PII_HMAC_KEY_FILE, over PII_HMAC_KEY", () => {
  const both = resolveConfig("run", { "hmac-key-file": "/k/flag.key" }, {
    ...WITH_KEY,
    PII_HMAC_KEY_FILE: "/k/env.key",
  });
  assert.deepEqual(both.hmacKey, {
    kind: "file",
    path: "/k/flag.key",
    origin: '--hmac-key-file "/k/flag.key"',
    setting: "--hmac-key-file",
    pathShown: true,
    inlineEnv: "PII_HMAC_KEY",
  });
  const env = resolveConfig("run", {}, { ...WITH_KEY, PII_HMAC_KEY_FILE: "/k/env.key" });
  assert.deepEqual(env.hmacKey, {
    kind: "file",
    path: "/k/env.key",
    origin: 'PII_HMAC_KEY_FILE "/k/env.key"',
    setting: "PII_HMAC_KEY_FILE",
    pathShown: true,
    inlineEnv: "PII_HMAC_KEY",
  });
});

Deno.test("resolveConfig() lets demo and seed run without a key, and recover without one (it refuses, audited)", () => {
  assert.equal(resolveConfig("demo", {}, {}).command, "demo");
  assert.equal(resolveConfig("seed", {}, {}).command, "seed");
  assert.equal(resolveConfig("recover", {}, {}).hmacKey.kind, "none");
  assert.throws(() => resolveConfig("drain", {}, {}), /No HMAC key/);
  assert.throws(() => resolveConfig("rekey", {}, {}), /No HMAC key/);
});

Deno.test("resolveConfig() never shows the secret in JSON or inspection", () => {
  const secret = "Zm9vYmFyLXRoaXMtaXMtdGhlLXNlY3JldC1rZXk="; // 40 bytes
  const config = resolveConfig("drain", {}, { PII_HMAC_KEY: secret, AWS_REGION: "eu-west-1" });
  assert.equal(config.hmacKey.kind, "env");
  const bytes = new TextEncoder().encode(secret);
  const byteList = Array.from(bytes.slice(0, 6)).join(", ");
  for (
    const out of [
      JSON.stringify(config),
      JSON.stringify(config, null, 2),
      Deno.inspect(config),
      Deno.inspect(config, { depth: Infinity, showHidden: true, iterableLimit: Infinity }),
      String(config.hmacKey.kind === "env" ? config.hmacKey.secret : ""),
      `${config.hmacKey.kind === "env" ? config.hmacKey.secret : ""}`,
    ]
  ) {
    assert.ok(!out.includes(secret), out);
    assert.ok(!out.includes(secret.slice(0, 12)), out);
    assert.ok(!out.includes(byteList), out);
  }
  assert.ok(!JSON.stringify(config.awsEnv).includes(secret));
});

Deno.test("resolveConfig() passes only AWS_* variables to the SDK", () => {
  const config = resolveConfig("drain", {}, {
    ...WITH_KEY,
    AWS_REGION: "eu-west-1",
    AWS_ACCESS_KEY_ID: "AKIA",
    AWS_EMPTY: "",
    DATABASE_URL: "postgres://u:p@h/d",
    HOME: "/root",
  });
  assert.deepEqual({ ...config.awsEnv }, { AWS_REGION: "eu-west-1", AWS_ACCESS_KEY_ID: "AKIA" });
});

Deno.test("resolveConfig() returns a frozen config", async (t) => {
  const config = resolveConfig("drain", {}, { ...WITH_KEY, AWS_REGION: "eu-west-1" });
  await t.step("resolveConfig() freezes the config itself", () => {
    assert.ok(Object.isFrozen(config));
    assert.throws(() => {
      (config as { batchSize: number }).batchSize = 1;
    }, TypeError);
    assert.equal(config.batchSize, 10);
  });
  await t.step("resolveConfig() freezes every nested object of the config", () => {
    for (const [key, value] of Object.entries(config)) {
      if (value !== null && typeof value === "object") {
        assert.ok(Object.isFrozen(value), `config.${key} is not frozen`);
      }
    }
  });
});

// ---- URLs -------------------------------------------------------------------

Deno.test("resolveConfig() refuses an invalid queue URL, naming its source", async (t) => {
  for (const url of ["nope", "ftp://host/000000000000/q", "http://localhost:4566", "http://h/"]) {
    await t.step(`resolveConfig() refuses --queue-url ${JSON.stringify(url)}`, () => {
      const error = configError("seed", { "queue-url": url }, {});
      assert.ok(error.message.startsWith(`Invalid --queue-url "${url}": `), error.message);
    });
    await t.step(`resolveConfig() refuses SQS_QUEUE_URL ${JSON.stringify(url)}`, () => {
      const error = configError("drain", {}, { ...WITH_KEY, SQS_QUEUE_URL: url });
      assert.ok(error.message.startsWith(`Invalid SQS_QUEUE_URL "${url}": `), error.message);
    });
  }
  await t.step("resolveConfig() accepts an AWS queue URL", () => {
    const url = "https://sqs.us-east-1.amazonaws.com/123456789012/login-queue";
    assert.equal(resolveConfig("seed", { "queue-url": url }, {}).queueUrl, url);
  });
});

Deno.test("resolveConfig() echoes a refused queue URL with its password redacted", async (t) => {
  const secret = "Hunter2Secret";
  const cases: { name: string; flags: Flags; env: Env; shows: string }[] = [
    {
      name: "SQS_QUEUE_URL holding a Postgres URL",
      flags: {},
      env: { SQS_QUEUE_URL: `postgres://u:${secret}@db.example/prod` },
      shows: 'Invalid SQS_QUEUE_URL "postgres://u:***@db.example/prod": must be an http(s) URL',
    },
    {
      name: "--queue-url holding keyword/value pairs",
      flags: { "queue-url": `host=db password=${secret} sslmode=require` },
      env: {},
      shows: 'Invalid --queue-url "host=db password=*** sslmode=require": must be',
    },
    {
      name: "a URL cut at 60 characters before its @",
      flags: {},
      env: { SQS_QUEUE_URL: `postgres://${"u".repeat(40)}:${secret}@db.example/prod` },
      shows: `Invalid SQS_QUEUE_URL "postgres://${"u".repeat(40)}:***@d...": must be`,
    },
    {
      name: "an http(s) queue URL with a user and password",
      flags: { "queue-url": `https://AKIA:${secret}@sqs.eu-west-1.amazonaws.com/1/q` },
      env: {},
      shows:
        'Invalid --queue-url "https://***@sqs.eu-west-1.amazonaws.com/1/q": must not hold a user or password',
    },
    {
      // Shapes the echo's pattern does not know: the user and password are
      // left out of the URL before it is shown, whatever they hold.
      name: "a queue URL whose user holds @",
      flags: { "queue-url": `http://a@b:${secret}@127.0.0.1:9/0/q` },
      env: {},
      shows: 'Invalid --queue-url "http://***@127.0.0.1:9/0/q": must not hold a user or password',
    },
    {
      name: "a queue URL whose password holds a space",
      flags: { "queue-url": `http://u:${secret} x@127.0.0.1:9/0/q` },
      env: {},
      shows: 'Invalid --queue-url "http://***@127.0.0.1:9/0/q": must not hold a user or password',
    },
    {
      name: "--reject-queue-url with a user and password",
      flags: { "reject-queue-url": `http://u:${secret}@localhost:4566/0/rejects` },
      env: { SQS_QUEUE_URL: "http://localhost:4566/0/q" },
      shows:
        'Invalid --reject-queue-url "http://***@localhost:4566/0/rejects": must not hold a user or password',
    },
    {
      name: "LOGIN_ETL_REJECT_QUEUE_URL that is no http(s) URL",
      flags: {},
      env: {
        SQS_QUEUE_URL: "http://localhost:4566/0/q",
        LOGIN_ETL_REJECT_QUEUE_URL: `postgres://u:${secret}@db/prod`,
      },
      shows: 'Invalid LOGIN_ETL_REJECT_QUEUE_URL "postgres://u:***@db/prod": must be',
    },
  ];
  for (const c of cases) {
    await t.step(`resolveConfig() refuses ${c.name}`, () => {
      const error = configError("drain", c.flags, { ...WITH_KEY, ...c.env });
      assert.ok(error.message.startsWith(c.shows), error.message);
      assert.ok(!error.message.includes("Hunter2"), error.message);
    });
  }
  await t.step("resolveConfig() echoes a config file's value redacted too", () => {
    const file = {
      values: { "log-level": `postgres://u:${secret}@db/prod` },
      origin: "--config f",
    };
    const error = configError("drain", {}, WITH_KEY, file);
    assert.ok(
      error.message.startsWith('Invalid value "postgres://u:***@db/prod" for "log-level"'),
      error.message,
    );
  });
});

Deno.test("resolveConfig() leaves a key-file path that looks like a key out of every message", async (t) => {
  const key = "q8Jv3kZ0aTq1YbW5pL7sN2xR4mC6dE9fH0gI1jK2lM3=";
  const cases: { name: string; flags: Flags; env: Env; file?: FileLayer; setting: string }[] = [
    {
      name: "PII_HMAC_KEY_FILE",
      flags: {},
      env: { PII_HMAC_KEY_FILE: key },
      setting: "PII_HMAC_KEY_FILE",
    },
    {
      name: "--hmac-key-file",
      flags: { "hmac-key-file": key },
      env: {},
      setting: "--hmac-key-file",
    },
    {
      name: "a config file's hmac-key-file",
      flags: {},
      env: {},
      file: { values: { "hmac-key-file": key }, origin: '--config "c.json"' },
      setting: '"hmac-key-file" in --config "c.json"',
    },
    {
      name: "a hex key",
      flags: { "hmac-key-file": "0123456789abcdef0123" },
      env: {},
      setting: "--hmac-key-file",
    },
  ];
  for (const c of cases) {
    await t.step(`resolveConfig() keeps ${c.name} out of the key's origin`, () => {
      const config = resolveConfig("drain", c.flags, { ...WITH_KEY, ...c.env }, c.file);
      const source = config.hmacKey;
      assert.equal(source.kind, "file");
      if (source.kind !== "file") return;
      assert.equal(source.origin, c.setting);
      assert.equal(source.setting, c.setting);
      assert.equal(source.pathShown, false);
    });
  }
  await t.step("resolveConfig() keeps a vault key file's key out of its origin", () => {
    const source = resolveConfig("recover", {}, { PII_VAULT_KEY_FILE: key }).vaultKey;
    assert.deepEqual(source, {
      kind: "file",
      path: key,
      origin: "PII_VAULT_KEY_FILE",
      setting: "PII_VAULT_KEY_FILE",
      pathShown: false,
      inlineEnv: "PII_VAULT_KEY",
    });
  });
  await t.step("resolveConfig() shows a path: a slash, a dot or under 16 characters", () => {
    for (const path of ["/run/secrets/hmac", "hmac.key", "hmackey"]) {
      const source = resolveConfig("drain", { "hmac-key-file": path }, {}).hmacKey;
      assert.ok(source.kind === "file" && source.origin === `--hmac-key-file "${path}"`, path);
    }
  });
});

Deno.test("resolveConfig() refuses an invalid database URL without echoing its password", async (t) => {
  const password = "hunter2-Pa55word";
  const urls = [
    `mysql://app:${password}@db:3306/logins`,
    `http://app:${password}@db/logins`,
    `postgres://app:${password}@[::1/logins`,
    `app:${password}@db/logins`,
    password,
  ];
  for (const url of urls) {
    await t.step(`resolveConfig() refuses --database-url ${url.replace(password, "***")}`, () => {
      const error = configError("drain", { "database-url": url }, WITH_KEY);
      assert.ok(error.message.startsWith("Invalid --database-url"), error.message);
      assert.ok(!error.message.includes(password), error.message);
    });
    await t.step(`resolveConfig() refuses DATABASE_URL ${url.replace(password, "***")}`, () => {
      const error = configError("run", {}, { ...WITH_KEY, DATABASE_URL: url });
      assert.ok(error.message.startsWith("Invalid DATABASE_URL"), error.message);
      assert.ok(!error.message.includes(password), error.message);
    });
  }
  await t.step("resolveConfig() accepts postgres:// and postgresql:// URLs", () => {
    for (const url of [`postgres://app:${password}@db/x`, "postgresql://db/x"]) {
      const target = resolveConfig("drain", {}, { ...WITH_KEY, DATABASE_URL: url }).database;
      assert.deepEqual(target.hosts, [{ host: "db", hostaddr: null, port: 5432 }]);
      assert.equal(target.source, "DATABASE_URL");
    }
  });
});

Deno.test("a libpq keyword=value string or URL parameter holding a secret is warned about as a flag and refused in a config file", async (t) => {
  const secrets = [
    "host=db user=app password=kv-Secret-1",
    "host=db sslcert=c.crt sslkey=k.key sslpassword='kv Secret 2'",
    "postgres://app@db/x?password=q-Secret-3",
  ];
  for (const value of secrets) {
    const secret = /Secret[- ]\d/.exec(value)?.[0] ?? "";
    await t.step(value.replace(/\S*Secret[- ]\d'?/, "***"), () => {
      const { warnings } = resolveConfig("drain", { "database-url": value }, WITH_KEY);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0] ?? "", /--database-url holds a password/);
      assert.ok(!warnings[0]?.includes(secret));
      assert.throws(
        () => checkConfigFile("drain", { "database-url": value }, "f.json"),
        /"database-url" holds a password/,
      );
    });
  }
  await t.step("a string without a secret is not warned about", () => {
    assert.deepEqual(
      resolveConfig("drain", { "database-url": "host=db sslmode=require" }, WITH_KEY).warnings,
      [],
    );
  });
});

Deno.test("resolveConfig() warns, without the password, when --database-url holds one", () => {
  const password = "hunter2-Pa55word";
  const url = `postgres://app:${password}@db/x`;
  const flagged = resolveConfig("drain", { "database-url": url }, WITH_KEY);
  assert.equal(flagged.warnings.length, 1);
  assert.match(flagged.warnings[0] ?? "", /DATABASE_URL/);
  assert.ok(!flagged.warnings.some((w) => w.includes(password)));
  assert.deepEqual(resolveConfig("drain", {}, { ...WITH_KEY, DATABASE_URL: url }).warnings, []);
});

Deno.test("resolveConfig() never echoes a secret put where a key id belongs", () => {
  const secret = "Zm9vYmFyYmF6cXV4c2VjcmV0a2V5bWF0ZXJpYWwxMjM0NTY=";
  for (
    const [flags, env] of [[{ "hmac-key-id": secret }, {}], [{}, {
      PII_VAULT_KEY_ID: secret,
    }]] as const
  ) {
    let message = "";
    try {
      resolveConfig("drain", flags, { ...WITH_KEY, ...env });
    } catch (error) {
      message = error instanceof Error ? error.message : String(error);
    }
    assert.match(
      message,
      /\(48 characters\): must be 1 to 16 letters, digits, _ or -; is a secret in the id's place\?/,
    );
    assert.ok(!message.includes(secret.slice(0, 8)), message);
  }
});

Deno.test("a connection string given to the wrong flag, variable or key is not echoed", () => {
  const url = "postgres://app:Hunter2Secret@db/prod";
  const cases: [Parameters<typeof configError>[1], Parameters<typeof configError>[2], RegExp][] = [
    [
      { "log-level": url },
      WITH_KEY,
      /^Invalid --log-level "postgres:\/\/app:\*\*\*@db\/prod": must be one of/,
    ],
    [
      { schema: "host=db password=Hunter2Secret" },
      WITH_KEY,
      /^Invalid --schema "host=db password=\*\*\*": must be/,
    ],
    [
      {},
      { ...WITH_KEY, LOGIN_ETL_BATCH_SIZE: "postgres://app:12/Hunter2Secret@db/prod" },
      /^Invalid LOGIN_ETL_BATCH_SIZE "postgres:\/\/app:\*\*\*@db\/prod": must be/,
    ],
  ];
  for (const [flags, env, expected] of cases) {
    const error = configError("drain", flags, env);
    assert.match(error.message, expected);
    assert.ok(!error.message.includes("Hunter2Secret"), error.message);
  }
});

Deno.test("a bad value from the config file names the file and its key", () => {
  const file = checkConfigFile(
    "drain",
    { "batch-size": 50 },
    '--config "c.json"',
  );
  const error = configError("drain", {}, WITH_KEY, file);
  assert.equal(
    error.message,
    'Invalid value "50" for "batch-size" in --config "c.json": must be an integer from 1 to 10',
  );
  // Flags and env still win over the file.
  assert.equal(resolveConfig("drain", { "batch-size": "3" }, WITH_KEY, file).batchSize, 3);
  assert.equal(
    resolveConfig(
      "drain",
      {},
      { ...WITH_KEY, LOGIN_ETL_BATCH_SIZE: "4" },
      checkConfigFile("drain", { "batch-size": 5 }, "f"),
    ).batchSize,
    4,
  );
  assert.equal(
    resolveConfig("drain", {}, WITH_KEY, checkConfigFile("drain", { "batch-size": 5 }, "f"))
      .batchSize,
    5,
  );
});

Deno.test("each command's config holds only its own settings", () => {
  const keysOf = (config: object) => Object.keys(config);
  const recover = keysOf(resolveConfig("recover", {}, WITH_KEY));
  for (const absent of ["concurrency", "summaryJson", "batchSize", "queueUrl"]) {
    assert.ok(!recover.includes(absent), `recover has no ${absent}`);
  }
  assert.ok(!keysOf(resolveConfig("seed", {}, {})).includes("database"));
  assert.ok(!keysOf(resolveConfig("migrate", {}, {})).includes("hmacKey"));
});

Deno.test("resolveConfig() refuses a --reject-queue-url that is the queue being drained, in another case or with a trailing slash", async (t) => {
  const queue = "http://127.0.0.1:4566/000000000000/login-queue";
  for (const same of [queue, `${queue}/`, "HTTP://127.0.0.1:4566/000000000000/login-queue"]) {
    await t.step(`refuses ${same}`, () => {
      const error = configError(
        "drain",
        { "queue-url": queue, "reject-queue-url": same },
        WITH_KEY,
      );
      assert.match(error.message, /^Invalid --reject-queue-url ".*": is the queue being drained/);
    });
  }
  await t.step("accepts another queue on the same endpoint", () => {
    const other = "http://127.0.0.1:4566/000000000000/login-rejects";
    const config = resolveConfig(
      "drain",
      { "queue-url": queue, "reject-queue-url": other },
      WITH_KEY,
    );
    assert.equal(config.rejectQueueUrl, other);
  });
});

Deno.test("resolveConfig() takes a --reject-queue-url over http only on loopback: its copies carry raw PII", async (t) => {
  const refused = [
    "http://sqs.eu-west-1.amazonaws.com/123456789012/rejects",
    "http://localstack:4566/000000000000/rejects",
    "http://10.0.0.5:9324/queue/rejects",
    "http://127.evil.example/000000000000/rejects",
  ];
  for (const url of refused) {
    await t.step(`refuses ${url}`, () => {
      const error = configError("drain", { "reject-queue-url": url }, WITH_KEY);
      assert.match(
        error.message,
        /^Invalid --reject-queue-url ".*": must be https: the copies it gets are raw messages with their PII \(http only to a loopback endpoint\)$/,
      );
    });
  }
  const accepted = [
    "https://sqs.eu-west-1.amazonaws.com/123456789012/rejects",
    "https://localstack:4566/000000000000/rejects",
    "http://127.0.0.1:4566/000000000000/rejects",
    "http://127.0.0.2:4566/000000000000/rejects",
    "http://[::1]:4566/000000000000/rejects",
    "http://localhost:4566/000000000000/rejects",
    "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/rejects",
  ];
  for (const url of accepted) {
    await t.step(`accepts ${url}`, () => {
      assert.equal(
        resolveConfig("drain", { "reject-queue-url": url }, WITH_KEY).rejectQueueUrl,
        url,
      );
    });
  }
  await t.step("check takes it too, for drain and run", () => {
    const url = "http://127.0.0.1:4566/000000000000/rejects";
    assert.equal(resolveConfig("check", { "reject-queue-url": url }, {}).rejectQueueUrl, url);
  });
});

/** Config-file keys a command does not take, and what the refusal says after the file's name. */
const KEY_CASES: readonly {
  readonly command: CommandName;
  readonly key: string;
  readonly says: string;
  readonly checked?: CommandName;
}[] = [
  {
    command: "drain",
    key: "max_rows",
    says: '"max_rows" is spelt "max-rows" here (keys are flag names without the leading --)',
  },
  {
    command: "drain",
    key: "maxRows",
    says: '"maxRows" is spelt "max-rows" here (keys are flag names without the leading --)',
  },
  {
    command: "run",
    key: "--max-rows",
    says: '"--max-rows" is spelt "max-rows" here (keys are flag names without the leading --)',
  },
  {
    command: "drain",
    key: "LOGIN_ETL_MAX_ROWS",
    says:
      '"LOGIN_ETL_MAX_ROWS" is spelt "max-rows" here (keys are flag names without the leading --)',
  },
  {
    command: "seed",
    key: "SQS_QUEUE_URL",
    says: '"SQS_QUEUE_URL" is spelt "queue-url" here (keys are flag names without the leading --)',
  },
  {
    command: "drain",
    key: "max-rwos",
    says: '"max-rwos" is not a setting of drain; did you mean "max-rows"?',
  },
  {
    command: "report",
    key: "databse-url",
    says: '"databse-url" is not a setting of report; did you mean "database-url"?',
  },
  {
    command: "drain",
    key: "listen",
    says: '"listen" is a setting of run, not of drain; remove it or run one of those',
  },
  {
    command: "migrate",
    key: "batch_size",
    says:
      '"batch_size" ("batch-size") is a setting of drain, run and demo, not of migrate; remove it or run one of those',
  },
  {
    command: "drain",
    key: "LOGIN_ETL_LISTEN",
    says:
      '"LOGIN_ETL_LISTEN" ("listen") is a setting of run, not of drain; remove it or run one of those',
  },
  {
    command: "check",
    checked: "seed",
    key: "max-rows",
    says:
      '"max-rows" is a setting of drain, run, demo, rekey, rekey-vault and vault-merge, not of check; remove it or run one of those',
  },
  { command: "drain", key: "config", says: '"config": a config file cannot name another' },
  {
    command: "seed",
    key: "LOGIN_ETL_CONFIG",
    says: '"LOGIN_ETL_CONFIG": a config file cannot name another',
  },
  {
    command: "migrate",
    key: "postgres://app:Hunter2Secret@db/prod",
    says:
      "a key that is not a setting name (36 characters) is not a setting of migrate; keys are flag names without the leading -- (see login-etl migrate --help), and secrets belong in the environment",
  },
  {
    command: "drain",
    key: "q8Jv3kZ0aTq1YbW5pL7sN2xR4mC6dE9fH0gI1jK2lM3=",
    says:
      "a key that is not a setting name (44 characters) is not a setting of drain; keys are flag names without the leading -- (see login-etl drain --help), and secrets belong in the environment",
  },
  {
    command: "drain",
    key: "frobnicate",
    says:
      '"frobnicate" is not a setting of drain; keys are flag names without the leading -- (see login-etl drain --help)',
  },
];

Deno.test("checkConfigFile() names the key a refused one should be", async (t) => {
  for (const c of KEY_CASES) {
    await t.step(`checkConfigFile() for ${c.command}: ${c.key}`, () => {
      try {
        checkConfigFile(c.command, { [c.key]: "5" }, '--config "c.json"', { checked: c.checked });
      } catch (error) {
        assert.ok(error instanceof ConfigError, String(error));
        assert.equal(error.message, `Invalid --config "c.json": ${c.says}`);
        assert.equal(error.exitCode, 2);
        return;
      }
      assert.fail(`${c.key} was accepted`);
    });
  }
});

Deno.test("checkConfigFile() takes every command's own settings, config aside", async (t) => {
  for (const command of COMMANDS) {
    await t.step(`checkConfigFile() for ${command}`, () => {
      const own = OPTIONS.filter((o) => o.commands.includes(command) && o.flag !== "config");
      const file = checkConfigFile(
        command,
        Object.fromEntries(own.map((o) => [o.flag, o.kind === "boolean" ? true : "1"])),
        "f",
      );
      assert.deepEqual(Object.keys(file.values).sort(), own.map((o) => o.flag).sort());
    });
  }
});

Deno.test("checkConfigFile() for check takes the checked command's settings and passes on only its own", () => {
  const file = checkConfigFile(
    "check",
    { "queue-url": "http://127.0.0.1:1/000000000000/q", "batch-size": 5, "listen": ":9464" },
    "f",
    { checked: "run" },
  );
  assert.deepEqual(file.values, { "queue-url": "http://127.0.0.1:1/000000000000/q" });
  const config = resolveConfig("check", { for: "run" }, {}, file);
  assert.equal(config.queueUrl, "http://127.0.0.1:1/000000000000/q");
});

Deno.test("fallbackLogFormat() takes the first valid log format among flag, env and file", async (t) => {
  const file = (format: string): FileLayer => ({ values: { "log-format": format }, origin: "f" });
  const cases: {
    name: string;
    flags: Flags;
    env: Env;
    file?: FileLayer;
    expected: string;
  }[] = [
    { name: "the default", flags: {}, env: {}, expected: "auto" },
    { name: "the flag", flags: { "log-format": "json" }, env: {}, expected: "json" },
    {
      name: "the flag over env",
      flags: { "log-format": "text" },
      env: { LOGIN_ETL_LOG_FORMAT: "json" },
      expected: "text",
    },
    { name: "env", flags: {}, env: { LOGIN_ETL_LOG_FORMAT: "json" }, expected: "json" },
    { name: "the file", flags: {}, env: {}, file: file("json"), expected: "json" },
    {
      name: "env over the file",
      flags: {},
      env: { LOGIN_ETL_LOG_FORMAT: "text" },
      file: file("json"),
      expected: "text",
    },
    {
      name: "env past an invalid flag",
      flags: { "log-format": "yaml" },
      env: { LOGIN_ETL_LOG_FORMAT: "json" },
      expected: "json",
    },
    {
      name: "the default past invalid values",
      flags: { "log-format": "x" },
      env: {},
      expected: "auto",
    },
  ];
  for (const c of cases) {
    await t.step(`fallbackLogFormat() takes ${c.name}`, () => {
      assert.equal(fallbackLogFormat(c.flags, c.env, c.file), c.expected);
    });
  }
});

Deno.test("resolveConfig() reads --max-duration as seconds from a flag, LOGIN_ETL_MAX_DURATION or the config file", async (t) => {
  const cases: {
    name: string;
    flags: Flags;
    env: Env;
    file?: FileLayer;
    expected: number | null;
  }[] = [
    { name: "unset: no bound", flags: {}, env: {}, expected: null },
    { name: "flag 1h30m", flags: { "max-duration": "1h30m" }, env: {}, expected: 5400 },
    { name: "flag in plain seconds", flags: { "max-duration": "90" }, env: {}, expected: 90 },
    { name: "env 40m", flags: {}, env: { LOGIN_ETL_MAX_DURATION: "40m" }, expected: 2400 },
    {
      name: "flag over env",
      flags: { "max-duration": "90s" },
      env: { LOGIN_ETL_MAX_DURATION: "40m" },
      expected: 90,
    },
    {
      name: "config file number as seconds",
      flags: {},
      env: {},
      file: checkConfigFile("run", { "max-duration": 600 }, "f"),
      expected: 600,
    },
    { name: "the top of the range", flags: { "max-duration": "168h" }, env: {}, expected: 604_800 },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      for (const command of ["drain", "run"] as const) {
        const config = resolveConfig(command, c.flags, { ...WITH_KEY, ...c.env }, c.file);
        assert.equal(config.maxDurationSeconds, c.expected);
      }
    });
  }
});

Deno.test("resolveConfig() refuses a bad --max-duration in one line naming where it came from", async (t) => {
  const must = "must be a duration like 90s, 40m or 1h30m (or whole seconds), from 1s to 168h";
  const cases: { name: string; flags: Flags; env: Env; expected: string }[] = [
    {
      name: "an unknown unit",
      flags: { "max-duration": "40x" },
      env: {},
      expected: `Invalid --max-duration "40x": ${must}`,
    },
    {
      name: "trailing text",
      flags: { "max-duration": "1h30mx" },
      env: {},
      expected: `Invalid --max-duration "1h30mx": ${must}`,
    },
    {
      name: "zero",
      flags: { "max-duration": "0s" },
      env: {},
      expected: `Invalid --max-duration "0s": ${must}`,
    },
    {
      name: "past the range",
      flags: { "max-duration": "169h" },
      env: {},
      expected: `Invalid --max-duration "169h": ${must}`,
    },
    {
      name: "from the environment",
      flags: {},
      env: { LOGIN_ETL_MAX_DURATION: "-5m" },
      expected: `Invalid LOGIN_ETL_MAX_DURATION "-5m": ${must}`,
    },
    {
      name: "a fraction",
      flags: { "max-messages": "1.5" },
      env: {},
      expected: 'Invalid --max-messages "1.5": must be an integer from 1 to 1000000000',
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.equal(configError("drain", c.flags, { ...WITH_KEY, ...c.env }).message, c.expected);
    });
  }
});

Deno.test("resolveConfig() reads keygen's --vault-id and --out from flags or env, and refuses either missing or a bad id", async (t) => {
  await t.step("flags", () => {
    const config = resolveConfig("keygen", { "vault-id": "p1", out: "/keys/p1" }, {});
    assert.deepEqual([config.vaultId, config.out], ["p1", "/keys/p1"]);
  });
  await t.step("env", () => {
    const config = resolveConfig("keygen", {}, {
      LOGIN_ETL_KEYGEN_VAULT_ID: "p2",
      LOGIN_ETL_KEYGEN_OUT: "/keys/p2",
    });
    assert.deepEqual([config.vaultId, config.out], ["p2", "/keys/p2"]);
  });
  const refusals: { name: string; flags: Flags; expected: string }[] = [
    {
      name: "neither",
      flags: {},
      expected:
        "keygen needs --vault-id ID (the new key pair's id, e.g. p1) and --out DIR (where to write its two key set files); see login-etl keygen --help",
    },
    {
      name: "no --out",
      flags: { "vault-id": "p1" },
      expected:
        "keygen needs --out DIR (where to write its two key set files); see login-etl keygen --help",
    },
    {
      name: "no --vault-id",
      flags: { out: "d" },
      expected:
        "keygen needs --vault-id ID (the new key pair's id, e.g. p1); see login-etl keygen --help",
    },
  ];
  for (const c of refusals) {
    await t.step(c.name, () => {
      assert.throws(() => resolveConfig("keygen", c.flags, {}), (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.equal(error.exitCode, 2);
        assert.equal(error.message, c.expected);
        return true;
      });
    });
  }
  await t.step("an id that is not a key id, not echoed", () => {
    const secret = "a secret pasted where the id belongs";
    assert.throws(
      () => resolveConfig("keygen", { "vault-id": secret, out: "d" }, {}),
      (error: unknown) =>
        error instanceof ConfigError &&
        /^Invalid --vault-id \(36 characters\)/.test(error.message) &&
        !error.message.includes(secret),
    );
  });
});
