// Unit tests of src/config/commands.ts: the one table of what each command
// needs drives the settings table, resolution and check's privileges.
import assert from "node:assert/strict";
import {
  CHECK_TARGETS,
  COMMANDS,
  NEEDS,
  needsTable,
  SETTINGS_NEEDS,
} from "../../../src/config/commands.ts";
import { OPTIONS, optionsFor } from "../../../src/config/options.ts";
import { resolveConfig } from "../../../src/config/resolve.ts";
import { privilegesFor } from "../../../src/db/grants.ts";

const ENV = {
  PII_HMAC_KEY: "a-test-secret-of-at-least-32-bytes!!",
  PII_VAULT_KEY: "another-test-secret-of-32-bytes-or-more",
};

Deno.test("the settings table gives each command the settings of exactly what it needs", () => {
  for (const command of COMMANDS) {
    const needs = SETTINGS_NEEDS[command];
    const flags = new Set(optionsFor(command).map((o) => o.flag));
    assert.equal(flags.has("queue-url"), needs.queue, `${command} queue`);
    assert.equal(flags.has("reject-queue-url"), needs.rejectQueue, `${command} reject queue`);
    assert.equal(flags.has("database-url"), needs.database, `${command} database`);
    assert.equal(flags.has("hmac-key-file"), needs.hmacKey !== "none", `${command} hmac`);
    assert.equal(flags.has("vault-key-file"), needs.vaultKey !== "none", `${command} vault`);
  }
});

Deno.test("check --for takes exactly the commands the table says what they need", () => {
  const choices = OPTIONS.find((o) => o.flag === "for")?.choices;
  assert.deepEqual(choices, CHECK_TARGETS);
  assert.deepEqual([...CHECK_TARGETS].sort(), Object.keys(NEEDS).sort());
});

Deno.test("resolveConfig() reads the groups of what each command needs, and no other", () => {
  for (const command of COMMANDS) {
    const flags = command === "keygen" ? { "vault-id": "p1", out: "/tmp" } : {};
    const config = resolveConfig(command, flags, ENV) as unknown as Record<string, unknown>;
    const needs = SETTINGS_NEEDS[command];
    assert.equal("queueUrl" in config, needs.queue, `${command} queue`);
    assert.equal("rejectQueueUrl" in config, needs.rejectQueue, `${command} reject queue`);
    assert.equal("database" in config, needs.database, `${command} database`);
    const keys = needs.hmacKey !== "none" || needs.vaultKey !== "none";
    assert.equal("hmacKey" in config, keys, `${command} keys`);
    if (!keys) continue;
    const kind = (k: unknown) => (k as { kind: string }).kind;
    assert.equal(kind(config.hmacKey) === "none", needs.hmacKey === "none", `${command} hmac`);
    assert.equal(kind(config.vaultKey) === "none", needs.vaultKey === "none", `${command} vault`);
  }
});

Deno.test("drain and run configs hold only their own mode's settings", () => {
  const drain = resolveConfig("drain", {}, ENV);
  const run = resolveConfig("run", {}, ENV);
  for (const field of ["idleSeconds", "progress", "progressSeconds", "metricsFile"]) {
    assert.ok(field in drain, field);
    assert.ok(!(field in run), field);
  }
  for (const field of ["waitSeconds", "listen"]) {
    assert.ok(field in run, field);
    assert.ok(!(field in drain), field);
  }
});

Deno.test("a missing HMAC key stops resolution only where the command cannot start without one", () => {
  for (const command of CHECK_TARGETS) {
    const resolve = () => resolveConfig(command, {}, { PII_VAULT_KEY: ENV.PII_VAULT_KEY });
    if (NEEDS[command].hmacKey === "required") assert.throws(resolve, /No HMAC key/, command);
    else resolve();
  }
});

Deno.test("check's privileges: only a command that writes the vault needs login_etl_vault_put", () => {
  const put = (vault: boolean) =>
    privilegesFor("drain", vault).some((p) => p.name.startsWith("login_etl_vault_put("));
  assert.ok(put(true));
  assert.ok(!put(false));
  for (const command of CHECK_TARGETS) {
    if (!NEEDS[command].database) assert.deepEqual(privilegesFor(command, true), [], command);
  }
});

Deno.test("needsTable() has a row per command check can check", () => {
  const rows = needsTable().split("\n").slice(2);
  assert.deepEqual(rows.map((r) => r.split("|")[1]?.trim()), CHECK_TARGETS);
});
