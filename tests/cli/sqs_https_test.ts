// A drain over HTTPS from an SQS endpoint whose certificate a CA in
// NODE_EXTRA_CA_CERTS (or DENO_CERT) vouches for, through the CLI with the
// binary's permission flags: fauxqs behind a TLS-terminating proxy on
// loopback. With NODE_EXTRA_CA_CERTS set (as on many machines, for every
// Node program), Deno asks for sys access "ca" when it builds a TLS client;
// without it in --allow-sys every HTTPS call to SQS failed.

import assert from "node:assert/strict";
import { generateBodies } from "../../src/seed/generate.ts";
import { drainCli } from "../helpers/drain.ts";
import { enqueue, freshSchema, reportFigures, startSqs } from "../helpers/services.ts";
import { TcpProxy } from "../helpers/tcp_proxy.ts";
import { makeTlsIdentity } from "../helpers/pki.ts";

/** The CA bundle of this machine, where Debian keeps it (empty elsewhere: the test CA alone). */
const SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

Deno.test("drain over HTTPS from a loopback SQS endpoint, its CA in NODE_EXTRA_CA_CERTS or DENO_CERT", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "login_etl_https_" });
  await using sqs = await startSqs();
  const tls = await makeTlsIdentity(dir);
  await using proxy = TcpProxy.startTls(
    { hostname: "127.0.0.1", port: Number(new URL(sqs.endpoint).port) },
    { cert: tls.certPem, key: tls.keyPem },
  );
  // A bundle as a company hands out: the system's CAs and its own.
  const bundle = `${dir}/bundle.crt`;
  const system = await Deno.readTextFile(SYSTEM_BUNDLE).catch(() => "");
  await Deno.writeTextFile(bundle, `${system}\n${tls.caPem}`);
  const cases = [
    { name: "NODE_EXTRA_CA_CERTS names the test CA", env: { NODE_EXTRA_CA_CERTS: tls.caPath } },
    {
      name: "NODE_EXTRA_CA_CERTS names a bundle of the system's CAs and the test CA",
      env: { NODE_EXTRA_CA_CERTS: bundle },
    },
    // Deno's own variable, without NODE_EXTRA_CA_CERTS (with it, node:https
    // trusts the bundled roots and that file only: docs/operations.md).
    { name: "DENO_CERT names the test CA", env: { DENO_CERT: tls.caPath } },
  ];
  try {
    for (const c of cases) {
      await t.step({
        name: c.name,
        fn: async () => {
          await using db = await freshSchema();
          const plainUrl = sqs.createQueue();
          const queueUrl = plainUrl.replace(sqs.endpoint, `https://127.0.0.1:${proxy.port}`);
          enqueue(sqs, plainUrl, [...generateBodies(40, { badRatio: 0, seed: 4 })]);
          const accepted = proxy.accepted;
          const result = await drainCli(queueUrl, db.schema, {
            env: {
              ...c.env,
              AWS_ACCESS_KEY_ID: "test",
              AWS_SECRET_ACCESS_KEY: "test",
              AWS_REGION: "us-east-1",
              AWS_EC2_METADATA_DISABLED: "true",
              // A failing TLS client (as before the fix) fails in seconds, not minutes.
              LOGIN_ETL_MAX_RETRY_SECONDS: "5",
            },
          });
          assert.doesNotMatch(result.stderr, /NotCapable|Requires sys access/);
          const [rows] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM user_logins`;
          assert.equal(rows?.n, 40, "every login written");
          assert.deepEqual(sqs.counts(plainUrl), { ready: 0, inFlight: 0 });
          assert.ok(proxy.accepted > accepted, "the drain went through the TLS endpoint");
          reportFigures("https drain", {
            case: c.name,
            tls_connections: proxy.accepted - accepted,
          });
        },
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
