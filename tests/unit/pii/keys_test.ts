// Unit tests of src/pii/keys.ts: every command's keys loaded once, a set the
// command does not use never read, one secret for both sets refused, and what
// drain/run and the PII commands make of the sets.
import assert from "node:assert/strict";
import { KEY_ID_PATTERN, MIN_SECRET_BYTES } from "../../../src/config/options.ts";
import { type KeySource, Secret } from "../../../src/secret.ts";
import { ConfigError } from "../../../src/errors.ts";
import type { Telemetry, TelemetryEvent } from "../../../src/ops/telemetry.ts";
import { type KeySources, loadKeySets, loadPiiKeys, loadRunKeys } from "../../../src/pii/keys.ts";

const rules = { minSecretBytes: MIN_SECRET_BYTES, keyIdPattern: KEY_ID_PATTERN };
const HMAC = "hmac secret of the keys test, 32+ bytes";
const HMAC_2 = "second hmac secret of the keys test, 32+";
const VAULT = "vault secret of the keys test, 32+ bytes";

function env(text: string, origin: string): KeySource {
  return { kind: "env", secret: new Secret(new TextEncoder().encode(text), origin) };
}

/** A key file that does not exist: reading it throws. */
const BROKEN: KeySource = {
  kind: "file",
  path: "/nonexistent/login-etl-keys-test",
  origin: "--vault-key-file",
  setting: "--vault-key-file",
  pathShown: false,
  inlineEnv: "PII_VAULT_KEY",
};

function sources(hmac: KeySource, vault: KeySource): KeySources {
  return { hmacKey: hmac, hmacKeyId: "k1", vaultKey: vault, vaultKeyId: "v1" };
}

const hmacSet = env(
  JSON.stringify({ current: "k2", keys: { k1: HMAC, k2: HMAC_2 } }),
  "PII_HMAC_KEY",
);
const vaultSet = env(
  JSON.stringify({ current: "v1", keys: { v1: VAULT, v2: `${VAULT} two` } }),
  "PII_VAULT_KEY",
);

Deno.test("loadKeySets() reads only the sets the command uses", async () => {
  const keys = await loadKeySets(sources(hmacSet, BROKEN), {
    rules,
    warn: () => {},
    hmac: true,
    vault: false,
  });
  assert.deepEqual([...keys.hmac?.keys.keys() ?? []], ["k1", "k2"]);
  assert.equal(keys.vault, null);
  await assert.rejects(
    loadKeySets(sources(hmacSet, BROKEN), { rules, warn: () => {}, hmac: true, vault: true }),
    ConfigError,
  );
});

Deno.test("loadKeySets() refuses one secret for both sets", async () => {
  await assert.rejects(
    loadKeySets(sources(env(HMAC, "PII_HMAC_KEY"), env(HMAC, "PII_VAULT_KEY")), {
      rules,
      warn: () => {},
      hmac: true,
      vault: true,
    }),
    /the vault needs a secret of its own/,
  );
});

Deno.test("loadKeySets() warns once for each weak key, however the command uses it", async () => {
  const warnings: string[] = [];
  await loadPiiKeys(sources(env("a".repeat(32), "PII_HMAC_KEY"), vaultSet), {
    rules,
    warn: (w) => warnings.push(w),
    vault: true,
  });
  assert.deepEqual(warnings.length, 1, warnings.join("\n"));
  assert.match(warnings[0] ?? "", /PII_HMAC_KEY: key k1 looks low-entropy/);
});

Deno.test("loadPiiKeys() gives a masker per HMAC key and the vault cipher, its current key overridden on request", async () => {
  const keys = await loadPiiKeys(sources(hmacSet, vaultSet), {
    rules,
    warn: () => {},
    vault: true,
    vaultCurrent: "v2",
  });
  assert.deepEqual([...keys.maskers.keys()], ["k1", "k2"]);
  assert.equal(keys.maskers.get("k2")?.keyId, "k2");
  assert.equal(keys.cipher?.currentKeyId, "v2");
  await assert.rejects(
    loadPiiKeys(sources(hmacSet, vaultSet), {
      rules,
      warn: () => {},
      vault: true,
      vaultCurrent: "v9",
    }),
    /Cannot re-encrypt under vault key "v9": the vault key set holds v1, v2/,
  );
  const forget = await loadPiiKeys(sources(hmacSet, BROKEN), {
    rules,
    warn: () => {},
    vault: false,
  });
  assert.equal(forget.cipher, null);
});

Deno.test("loadRunKeys() masks under the current key, writes the vault with it, and says when the set could read the vault", async () => {
  const events: TelemetryEvent[] = [];
  const telemetry = { emit: (e: TelemetryEvent) => events.push(e) } as unknown as Telemetry;
  const keys = await loadRunKeys(sources(hmacSet, vaultSet), {
    dryRun: false,
    rules,
    telemetry,
  });
  assert.equal(keys.masker.keyId, "k2");
  assert.deepEqual(keys.maskers.map((m) => m.keyId), ["k1", "k2"]);
  assert.deepEqual([...keys.vaultKeys?.keys.keys() ?? []], ["v1"]);
  assert.equal(keys.vault?.currentKeyId, "v1");
  assert.deepEqual([...keys.vaultFingerprints.keys()], ["v1", "v2"]);
  assert.deepEqual(events.map((e) => e.type), ["VaultKeyReadable"]);

  const dry = await loadRunKeys(sources(hmacSet, BROKEN), { dryRun: true, rules, telemetry });
  assert.equal(dry.vault, undefined);
  assert.equal(dry.vaultKeys, null);
  await assert.rejects(
    loadRunKeys(sources({ kind: "none" }, vaultSet), { dryRun: false, rules, telemetry }),
    /No HMAC key/,
  );
});
