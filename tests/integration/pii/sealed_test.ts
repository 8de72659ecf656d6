// A vault consumers cannot read, through the real CLI against the real
// Postgres and fauxqs: keygen's two key sets; drain with only the public set
// writes sealed entries that nothing the consumer holds opens, while recover
// with the private set prints each value; a consumer given a key that could
// read the vault warns; rekey-vault --to a pair re-seals a symmetric vault,
// whose old entries recover keeps reading until then; rekey seals what it
// moves.

import assert from "node:assert/strict";
import type { Masked } from "../../../src/types.ts";
import {
  assertRefused,
  auditAfter,
  body,
  cipherOf,
  Cli,
  cliEnv,
  drain,
  HMAC_SECRET_2,
  hmacKeySet,
  inboxRows,
  lastAuditId,
  maskerOf,
  openVault,
  PEOPLE,
  rawValuesOf,
  recoveredLines,
  recoverFile,
  tablesHoldingRaw,
  VAULT_SECRET,
  vaultRows,
} from "../../helpers/pii.ts";
import { type CliResult, runCli } from "../../helpers/cli.ts";
import { generateBodies } from "../../../src/seed/generate.ts";
import { freshSchema, reportFigures, startSqs, TEST_SECRET } from "../../helpers/services.ts";

/** Key sets made by `keygen` in a directory of their own, removed at the end. */
async function keygen(id: string): Promise<
  AsyncDisposable & {
    readonly dir: string;
    readonly privatePath: string;
    readonly publicPath: string;
    readonly result: CliResult;
  }
> {
  const base = await Deno.makeTempDir();
  const dir = `${base}/keys-${id}`;
  const result = await runCli(["keygen", "--vault-id", id, "--out", dir]);
  return {
    dir,
    privatePath: `${dir}/vault.json`,
    publicPath: `${dir}/vault.public.json`,
    result,
    [Symbol.asyncDispose]: () => Deno.remove(base, { recursive: true }),
  };
}

/** The events of a JSON log named `name`. */
function eventsNamed(stderr: string, name: string): Record<string, unknown>[] {
  return stderr.split("\n").filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e["event"] === name);
}

function assertSealed(rows: Awaited<ReturnType<typeof vaultRows>>, keyId: string): void {
  assert.ok(rows.length > 0);
  for (const row of rows) {
    assert.equal(row.key_id, keyId);
    assert.equal(row.iv.length, 49, "header: format byte, ephemeral public key, random");
    assert.equal(row.iv[0], 2, "format 2: sealed");
  }
}

Deno.test("keygen writes a private and a public key set, owner-read-only, and never overwrites one", async () => {
  await using keys = await keygen("p1");
  assert.equal(keys.result.code, 0, keys.result.stderr);
  const line = keys.result.stdout.trimEnd();
  assert.equal(line.split("\n").length, 1, "one line");
  assert.match(
    line,
    new RegExp(
      `^Wrote vault key pair p1 \\(fingerprint [A-Za-z0-9_-]{22}\\): ${keys.privatePath} for recover, rekey and rekey-vault; ${keys.publicPath} for drain and run$`,
    ),
  );
  const privateSet = JSON.parse(await Deno.readTextFile(keys.privatePath));
  const publicSet = JSON.parse(await Deno.readTextFile(keys.publicPath));
  assert.deepEqual(Object.keys(privateSet.keys.p1).sort(), ["crv", "d", "kty", "x"]);
  assert.deepEqual(publicSet, {
    current: "p1",
    keys: { p1: { kty: "OKP", crv: "X25519", x: privateSet.keys.p1.x } },
  });
  for (const path of [keys.privatePath, keys.publicPath]) {
    assert.equal(((await Deno.stat(path)).mode ?? 0) & 0o777, 0o400, `${path} is mode 0400`);
  }
  assert.equal(((await Deno.stat(keys.dir)).mode ?? 0) & 0o777, 0o700, "--out made 0700");
  assert.ok(!keys.result.stderr.includes(privateSet.keys.p1.d), "the private key is not logged");

  // Again into the same directory: refused in one line, and both files as they were.
  const again = await runCli(["keygen", "--vault-id", "p2", "--out", keys.dir]);
  assertRefused(
    again,
    2,
    /^error: Refused: .*\/vault\.json exists and keygen never overwrites a key set; give another --out or move it away$/,
  );
  assert.deepEqual(JSON.parse(await Deno.readTextFile(keys.privatePath)), privateSet);
  // Only the public file in the way: still nothing written.
  await Deno.chmod(keys.privatePath, 0o600);
  await Deno.remove(keys.privatePath);
  const halfway = await runCli(["keygen", "--vault-id", "p2", "--out", keys.dir]);
  assertRefused(halfway, 2, /vault\.public\.json exists/);
  await assert.rejects(Deno.stat(keys.privatePath), Deno.errors.NotFound);

  assertRefused(
    await runCli(["keygen", "--out", keys.dir]),
    2,
    /^error: keygen needs --vault-id ID/,
  );
});

Deno.test("drain with only the public key set writes sealed, padded entries nothing the consumer holds can open; recover with the private set prints each value", async () => {
  const started = performance.now();
  await using keys = await keygen("p1");
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const consumerEnv = { PII_VAULT_KEY: "", PII_VAULT_KEY_FILE: keys.publicPath };
  const cli = new Cli(cliEnv(db, consumerEnv));
  const k1 = await maskerOf(TEST_SECRET, "k1");

  const first = await drain(sqs, cli, PEOPLE);
  assert.equal(first.inserted, 4);
  const drainLog = cli.logs.join("\n");
  assert.deepEqual(eventsNamed(drainLog, "VaultKeyReadable"), [], "a public key set is no warning");
  // What the consumer wrote: its entries wait in the vault inbox.
  const vault = await inboxRows(db.sql);
  assert.equal(vault.length, 6, "3 ips and 3 device ids, as with a symmetric key");
  assertSealed(vault, "p1");
  assert.deepEqual(
    [...new Set(vault.map((v) => v.ciphertext.length))],
    [32],
    "IPv4, IPv6 and device ids of 7 to 11 bytes: one 16-byte bucket and the tag",
  );

  // Everything the consumer holds: the public key set and the HMAC key.
  const consumerCipher = await cipherOf(await Deno.readTextFile(keys.publicPath));
  for (const row of vault) {
    await assert.rejects(
      openVault(consumerCipher, [row]),
      /sealed to key "p1", whose private key this vault key set does not hold/,
    );
  }
  const before = await lastAuditId(db.sql);
  const ipMask = k1.mask("ip", "2001:db8::1");
  assertRefused(
    await cli.run(["recover", "--masked", ipMask, "--reason", "consumer tries"], consumerEnv, {
      revealing: true,
    }),
    2,
    /^error: Refused: recover needs the private vault key set \(vault\.json from login-etl keygen\)/,
  );
  assert.deepEqual(
    (await auditAfter(db.sql, before)).map((a) => [a.masked_value, a.outcome]),
    [[ipMask, "denied"]],
    "the refusal is audited",
  );

  const check = await cli.run(["check", "--for", "recover", "--summary-json"], consumerEnv);
  assert.equal(check.code, 1, "a failed check");
  const vaultCheck = (JSON.parse(check.stdout) as {
    checks: { check: string; status: string; detail: string }[];
  }).checks.find((c) => c.check === "vault key");
  assert.equal(vaultCheck?.status, "fail");
  assert.match(
    vaultCheck?.detail ?? "",
    /^key ids p1; current p1 \(sealed\): recover needs the private vault key set/,
  );

  // A merge with public keys only proves nothing and drops nothing: the
  // owner's vault-merge refuses such a set, and a set that can read other
  // entries keeps those sealed to a pair it holds only the public half of,
  // even with --drop-unverifiable (they are not under a foreign key).
  assertRefused(
    await cli.run(["vault-merge"], consumerEnv),
    2,
    /^error: vault-merge needs the private vault key set \(vault\.json from login-etl keygen\)/,
  );
  const publicPair = JSON.parse(await Deno.readTextFile(keys.publicPath)).keys.p1;
  const halfBlind = await cli.run(["vault-merge", "--drop-unverifiable"], {
    PII_VAULT_KEY: JSON.stringify({ current: "v1", keys: { v1: VAULT_SECRET, p1: publicPair } }),
    PII_VAULT_KEY_FILE: "",
  });
  assert.equal(halfBlind.code, 0, halfBlind.stderr);
  assert.deepEqual(
    { ...JSON.parse(halfBlind.stdout), batches: 0 },
    { claimed: 6, accepted: 0, known: 0, erased: 0, dropped: 0, kept: 6, expired: 0, batches: 0 },
  );
  assert.deepEqual(await inboxRows(db.sql), vault, "every entry still in the inbox");

  // The recoverer's private key set opens every entry, proven against its
  // mask; recover merges the masks it is asked for first.
  const recoverer = { PII_VAULT_KEY: "", PII_VAULT_KEY_FILE: keys.privatePath };
  const opened = await openVault(
    await cipherOf(await Deno.readTextFile(keys.privatePath)),
    vault,
  );
  assert.deepEqual(
    [...opened.values()].sort(),
    ["111-22-3333", "198.51.100.4", "2001:db8::1", "203.0.113.7", "444-55-6666", "777-88-9999"],
  );
  const masks = [
    ipMask,
    k1.mask("ip", "198.51.100.4"),
    k1.mask("device_id", "111-22-3333"),
    k1.mask("device_id", "777-88-9999"),
  ];
  const recovered = await recoverFile(cli, masks, ["--reason", "INC-9: review"], recoverer);
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.deepEqual(
    recoveredLines(recovered.stdout),
    [
      `${masks[0]}\tip\t2001:db8::1`,
      `${masks[1]}\tip\t198.51.100.4`,
      `${masks[2]}\tdevice_id\t111-22-3333`,
      `${masks[3]}\tdevice_id\t777-88-9999`,
    ].sort(),
  );

  // An entry re-sealed by the consumer for another value (it holds the
  // public key) opens, but does not mask back: refused, as with a secret.
  const forged = await consumerCipher.encrypt("ip", ipMask as Masked, "10.9.9.9");
  await db.sql`UPDATE login_etl_vault SET ciphertext = ${forged.ciphertext}, iv = ${forged.iv}
    WHERE masked_value = ${ipMask}`;
  assertRefused(
    await cli.run(["recover", "--masked", ipMask, "--reason", "after tamper"], recoverer, {
      revealing: true,
    }),
    1,
    /did not decrypt, did not mask back/,
  );

  const raws = rawValuesOf(PEOPLE);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
  reportFigures("sealed vault", {
    entries: vault.length,
    ms: Math.round(performance.now() - started),
  });
});

Deno.test("a consumer given a private key set or a symmetric secret warns once that it could read the vault; with the private set it still seals", async () => {
  await using keys = await keygen("p1");
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  const runs: { name: string; env: Record<string, string>; keyIds: string; sealed: boolean }[] = [
    {
      name: "private key set, in the main thread",
      env: {
        PII_VAULT_KEY: "",
        PII_VAULT_KEY_FILE: keys.privatePath,
        LOGIN_ETL_WORKER_THREADS: "0",
      },
      keyIds: "p1",
      sealed: true,
    },
    { name: "symmetric secret", env: { PII_VAULT_KEY: VAULT_SECRET }, keyIds: "v1", sealed: false },
  ];
  for (const [i, run] of runs.entries()) {
    const logsBefore = cli.logs.length;
    await drain(sqs, cli, [PEOPLE[i] as string], run.env);
    const log = cli.logs.slice(logsBefore).join("\n");
    const warnings = eventsNamed(log, "VaultKeyReadable");
    assert.equal(warnings.length, 1, `${run.name}: one warning`);
    assert.equal(warnings[0]?.["level"], "warn");
    assert.equal(warnings[0]?.["key_ids"], run.keyIds);
    assert.match(String(warnings[0]?.["msg"]), /this consumer holds vault keys that can/);
    const rows = (await inboxRows(db.sql)).filter((r) => r.key_id === (run.sealed ? "p1" : "v1"));
    assert.equal(rows.length, 2, `${run.name}: the login's ip and device id`);
    if (run.sealed) assertSealed(rows, "p1");
    else assert.ok(rows.every((r) => r.iv.length === 12), "symmetric: a 12-byte IV");
  }
  const check = await cli.run(["check", "--for", "drain", "--summary-json"], {
    PII_VAULT_KEY: "",
    PII_VAULT_KEY_FILE: keys.privatePath,
    SQS_QUEUE_URL: sqs.createQueue(),
  });
  const vaultCheck = (JSON.parse(check.stdout) as { checks: { check: string; detail: string }[] })
    .checks.find((c) => c.check === "vault key");
  assert.match(
    vaultCheck?.detail ?? "",
    /p1 can read the vault, which drain does not need: give it only the public key set/,
  );
});

Deno.test("rekey-vault --to a pair re-seals a symmetric vault; recover reads the old entries before and the sealed ones after; rekey seals what it moves", async () => {
  const started = performance.now();
  await using keys = await keygen("p1");
  await using sqs = await startSqs();
  await using db = await freshSchema();
  const cli = new Cli(cliEnv(db));
  const bodies = [...generateBodies(40, { badRatio: 0, seed: 47, repeatRatio: 0.2 })];
  await drain(sqs, cli, bodies, {}, { merge: db });
  const symmetric = await vaultRows(db.sql);
  assert.ok(symmetric.every((r) => r.key_id === "v1" && r.iv.length === 12));
  const values = await openVault(await cipherOf(VAULT_SECRET), symmetric);

  // The rotation's key set: the old secret to read, the new pair to seal to.
  const pair = JSON.parse(await Deno.readTextFile(keys.privatePath)).keys.p1;
  const both = JSON.stringify({ current: "p1", keys: { v1: VAULT_SECRET, p1: pair } });
  const [oldMask, oldValue] = [...values][0] as [string, string];
  const field = symmetric.find((r) => r.masked_value === oldMask)?.field;
  const before = await cli.run(
    ["recover", "--masked", oldMask, "--reason", "before rotation"],
    { PII_VAULT_KEY: both },
    { revealing: true },
  );
  assert.equal(before.code, 0, before.stderr);
  assert.equal(before.stdout, `${oldMask}\t${field}\t${oldValue}\n`, "a symmetric entry reads");

  // Without the target's private key, or with only public keys, refused.
  const publicOnly = JSON.stringify({
    current: "p1",
    keys: { v1: VAULT_SECRET, p1: { kty: "OKP", crv: "X25519", x: pair.x } },
  });
  const args = ["rekey-vault", "--to", "p1", "--reason", "to a key pair", "--max-rows", "7"];
  assertRefused(
    await cli.run(args, { PII_VAULT_KEY: publicOnly }),
    2,
    /^error: Cannot re-encrypt under vault key "p1": the vault key set holds only its public key/,
  );
  assertRefused(
    await cli.run(args, { PII_VAULT_KEY: "", PII_VAULT_KEY_FILE: keys.publicPath }),
    2,
    /holds only its public key/,
  );
  assert.deepEqual(await vaultRows(db.sql), symmetric, "nothing moved");

  const rotated = await cli.run(args, { PII_VAULT_KEY: both });
  assert.equal(rotated.code, 0, rotated.stderr);
  assert.deepEqual(JSON.parse(rotated.stdout), {
    "key_id": "p1",
    moved: symmetric.length,
    batches: Math.ceil(symmetric.length / 7),
    failed: 0,
  });
  const sealed = await vaultRows(db.sql);
  assertSealed(sealed, "p1");
  assert.equal(
    new Set(sealed.map((r) => r.iv.subarray(1, 33).toHex())).size,
    Math.ceil(symmetric.length / 7),
    "one ephemeral key per batch",
  );
  // v1 can go: the keygen's private set alone opens everything.
  const privateOnly = { PII_VAULT_KEY: "", PII_VAULT_KEY_FILE: keys.privatePath };
  assert.deepEqual(
    await openVault(await cipherOf(await Deno.readTextFile(keys.privatePath)), sealed),
    values,
  );
  const after = await cli.run(
    ["recover", "--masked", oldMask, "--reason", "after rotation"],
    privateOnly,
    { revealing: true },
  );
  assert.equal(after.code, 0, after.stderr);
  assert.equal(after.stdout, `${oldMask}\t${field}\t${oldValue}\n`);

  // A login drained since by a consumer with the public set waits in the
  // inbox, sealed: rekey merges it (with the private set) and moves it too.
  const late = body("late", "192.0.2.250", "950-00-0001");
  await drain(sqs, cli, [late], { PII_VAULT_KEY: "", PII_VAULT_KEY_FILE: keys.publicPath });
  assertSealed(await inboxRows(db.sql), "p1");

  // rekey to another HMAC key: it needs a set that reads, and seals the moved entries.
  const k2 = { PII_HMAC_KEY: hmacKeySet("k2") };
  assertRefused(
    await cli.run(["rekey", "--to", "k2", "--reason", "hmac rotation"], {
      ...k2,
      PII_VAULT_KEY: "",
      PII_VAULT_KEY_FILE: keys.publicPath,
    }),
    2,
    /^error: Cannot rekey: it needs the private vault key set/,
  );
  const rekeyed = await cli.run(
    ["rekey", "--to", "k2", "--reason", "hmac rotation", "--max-rows", "50"],
    { ...k2, ...privateOnly },
  );
  assert.equal(rekeyed.code, 0, rekeyed.stderr);
  const moved = await vaultRows(db.sql);
  assert.equal(moved.length, symmetric.length + 2, "the late login's ip and device id too");
  assert.ok(moved.every((r) => r.masked_value.startsWith("k2:")), "every entry moved to k2");
  assertSealed(moved, "p1");
  assert.deepEqual(await inboxRows(db.sql), [], "the inbox merged first");
  const k2Mask = (await maskerOf(HMAC_SECRET_2, "k2")).mask(field ?? "ip", oldValue);
  const recovered = await cli.run(
    ["recover", "--masked", k2Mask, "--reason", "after rekey"],
    { ...k2, ...privateOnly },
    { revealing: true },
  );
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.equal(recovered.stdout, `${k2Mask}\t${field}\t${oldValue}\n`);

  const raws = rawValuesOf([...bodies, late]);
  cli.assertNoRaw(raws);
  assert.deepEqual(await tablesHoldingRaw(db, raws), []);
  reportFigures("rekey-vault to a pair", {
    entries: symmetric.length,
    ms: Math.round(performance.now() - started),
  });
});
