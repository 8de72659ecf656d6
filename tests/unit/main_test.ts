// Unit tests of src/main.ts's takeEnv(): configuration gets every listed
// variable, and the inline secrets are gone from the process environment
// afterwards, so a child process started later does not inherit them. (The
// CLI tests run the binary's permission flags, under which the delete must
// be allowed: every drain there sets PII_HMAC_KEY.)
import assert from "node:assert/strict";
import { envNames, SECRET_ENV_NAMES } from "../../src/config/env.ts";
import { takeEnv } from "../../src/main.ts";

const SET = {
  PII_HMAC_KEY: "hmac secret of the takeEnv test, 32+ bytes",
  PII_VAULT_KEY: "vault secret of the takeEnv test, 32+ bytes",
  PII_VAULT_KEY_FILE: "/run/secrets/vault.public.json",
  LOGIN_ETL_MAX_ROWS: "17",
};

Deno.test("takeEnv() returns the listed variables and deletes PII_HMAC_KEY and PII_VAULT_KEY from the environment", async () => {
  const before = Object.fromEntries(Object.keys(SET).map((k) => [k, Deno.env.get(k)]));
  try {
    for (const [name, value] of Object.entries(SET)) Deno.env.set(name, value);
    const env = takeEnv(envNames(), SECRET_ENV_NAMES);
    for (const [name, value] of Object.entries(SET)) assert.equal(env[name], value, name);
    assert.deepEqual([...SECRET_ENV_NAMES].sort(), ["PII_HMAC_KEY", "PII_VAULT_KEY"]);
    assert.equal(Deno.env.get("PII_HMAC_KEY"), undefined);
    assert.equal(Deno.env.get("PII_VAULT_KEY"), undefined);
    assert.equal(Deno.env.get("PII_VAULT_KEY_FILE"), SET.PII_VAULT_KEY_FILE, "paths stay");
    assert.equal(Deno.env.get("LOGIN_ETL_MAX_ROWS"), "17");
    const child = await new Deno.Command("sh", {
      args: ["-c", 'printf "%s|%s|%s" "$PII_HMAC_KEY" "$PII_VAULT_KEY" "$PII_VAULT_KEY_FILE"'],
      stdout: "piped",
    }).output();
    assert.equal(
      new TextDecoder().decode(child.stdout),
      `||${SET.PII_VAULT_KEY_FILE}`,
      "a child process inherits no secret",
    );
  } finally {
    for (const [name, value] of Object.entries(before)) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
});

Deno.test("takeEnv() leaves unset secrets unset and reads nothing it was not given", () => {
  const hmac = Deno.env.get("PII_HMAC_KEY");
  Deno.env.delete("PII_HMAC_KEY");
  try {
    const env = takeEnv(["LOGIN_ETL_NOT_A_SETTING_OF_THIS_TEST"], SECRET_ENV_NAMES);
    assert.deepEqual(env, {});
  } finally {
    if (hmac !== undefined) Deno.env.set("PII_HMAC_KEY", hmac);
  }
});
