// Unit tests of src/main.ts's takeEnv(): configuration gets every listed
// variable, and the inline secrets are gone from the process environment
// afterwards, so a child process started later does not inherit them. (The
// CLI tests run the binary's permission flags, under which the delete must
// be allowed: every drain there sets PII_HMAC_KEY.)
import assert from "node:assert/strict";
import { SECRET_ENV_NAMES } from "../../src/config/env.ts";
import { takeEnv } from "../../src/main.ts";

const ENV_MODULE = new URL("../../src/config/env.ts", import.meta.url).href;
const MAIN_MODULE = new URL("../../src/main.ts", import.meta.url).href;
/** The project's deno.json: the script lives in a temporary directory, outside it. */
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

const SET = {
  PII_HMAC_KEY: "hmac secret of the takeEnv test, 32+ bytes",
  PII_VAULT_KEY: "vault secret of the takeEnv test, 32+ bytes",
  PII_VAULT_KEY_FILE: "/run/secrets/vault.public.json",
  LOGIN_ETL_MAX_ROWS: "17",
};

Deno.test("takeEnv() returns the listed variables and deletes PII_HMAC_KEY and PII_VAULT_KEY from the environment", async () => {
  // In a process of its own: test files run as workers of one process, and
  // setting these here would set them for every file running beside this one.
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { envNames, SECRET_ENV_NAMES } from ${JSON.stringify(ENV_MODULE)};
import { takeEnv } from ${JSON.stringify(MAIN_MODULE)};
const env = takeEnv(envNames(), SECRET_ENV_NAMES);
const child = await new Deno.Command("sh", {
  args: ["-c", 'printf "%s|%s|%s" "$PII_HMAC_KEY" "$PII_VAULT_KEY" "$PII_VAULT_KEY_FILE"'],
  stdout: "piped",
}).output();
console.log(JSON.stringify({
  env,
  secrets: [...SECRET_ENV_NAMES].sort(),
  after: Object.fromEntries(${
        JSON.stringify(Object.keys(SET))
      }.map((k) => [k, Deno.env.get(k) ?? null])),
  child: new TextDecoder().decode(child.stdout),
}));
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-check",
        `--config=${CONFIG}`,
        "--allow-env",
        "--allow-read",
        "--allow-run=sh",
        script,
      ],
      env: SET,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const seen = JSON.parse(new TextDecoder().decode(out.stdout));
    for (const [name, value] of Object.entries(SET)) assert.equal(seen.env[name], value, name);
    assert.deepEqual(seen.secrets, ["PII_HMAC_KEY", "PII_VAULT_KEY"]);
    assert.equal(seen.after.PII_HMAC_KEY, null);
    assert.equal(seen.after.PII_VAULT_KEY, null);
    assert.equal(seen.after.PII_VAULT_KEY_FILE, SET.PII_VAULT_KEY_FILE, "paths stay");
    assert.equal(seen.after.LOGIN_ETL_MAX_ROWS, "17");
    assert.equal(seen.child, `||${SET.PII_VAULT_KEY_FILE}`, "a child process inherits no secret");
  } finally {
    await Deno.remove(script);
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
