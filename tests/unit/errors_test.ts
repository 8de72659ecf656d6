// Unit tests of src/errors.ts: redactSecrets() over the values a message may echo.
import assert from "node:assert/strict";
import { redactSecrets } from "../../src/errors.ts";

const SECRET = "Hunter2Secret";

Deno.test("redactSecrets() hides the passwords of URLs and of libpq's secret keywords", async (t) => {
  const cases: { name: string; input: string; expected: string }[] = [
    {
      name: "a Postgres URL",
      input: `postgres://u:${SECRET}@db.example/prod`,
      expected: "postgres://u:***@db.example/prod",
    },
    {
      name: "an https URL",
      input: `https://AKIA:${SECRET}@sqs.example/1/q`,
      expected: "https://AKIA:***@sqs.example/1/q",
    },
    {
      name: "a password with an unencoded @ and /",
      input: `postgres://u:${SECRET}@a/b@db/prod`,
      expected: "postgres://u:***@db/prod",
    },
    { name: "an empty user", input: `redis://:${SECRET}@h`, expected: "redis://:***@h" },
    {
      name: "a URL that does not parse",
      input: `postgres://u:${SECRET}\\q@db/prod`,
      expected: "postgres://u:***@db/prod",
    },
    {
      name: "a conninfo a message quotes",
      input: `Invalid value "password=${SECRET} host=db" for x`,
      expected: 'Invalid value "password=*** host=db" for x',
    },
    {
      name: "a password in a URL's query",
      input: `postgres://db/prod?sslmode=require&password=${SECRET}`,
      expected: "postgres://db/prod?sslmode=require&password=***",
    },
    {
      name: "keyword/value, bare",
      input: `host=db password=${SECRET}\tsslmode=require`,
      expected: "host=db password=***\tsslmode=require",
    },
    {
      name: "keyword/value, spaces around =",
      input: `host=db password = ${SECRET} port=5432`,
      expected: "host=db password = *** port=5432",
    },
    {
      name: "keyword/value, quoted with a space and an escaped quote",
      input: `host=db password='Hunter2 \\'Secret' port=5432`,
      expected: "host=db password=*** port=5432",
    },
    {
      name: "keyword/value, bare with an escaped space",
      input: `password=Hunter2\\ Secret host=db`,
      expected: "password=*** host=db",
    },
    {
      name: "sslpassword and oauth_client_secret",
      input: `sslpassword=${SECRET} oauth_client_secret=${SECRET}`,
      expected: "sslpassword=*** oauth_client_secret=***",
    },
    {
      name: "a presigned queue URL's AWS signing values",
      input:
        `https://sqs.us-east-1.amazonaws.com/1/q?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA${SECRET}%2F20261207%2Fus-east-1%2Fsqs%2Faws4_request&X-Amz-Security-Token=FwoG${SECRET}%2F%2F&X-Amz-Signature=ab${SECRET}#frag`,
      expected:
        "https://sqs.us-east-1.amazonaws.com/1/q?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***&X-Amz-Security-Token=***&X-Amz-Signature=***#frag",
    },
    {
      name: "SigV2 query values in any case, in a quoted URL",
      input:
        `Cannot reach queue "http://127.0.0.1:1/0/q?awsaccesskeyid=${SECRET}&SIGNATURE=${SECRET}&SecurityToken=${SECRET}": refused`,
      expected:
        'Cannot reach queue "http://127.0.0.1:1/0/q?awsaccesskeyid=***&SIGNATURE=***&SecurityToken=***": refused',
    },
    {
      name: "signing values percent-encoded inside another URL's query",
      input: `https://x.example/?next=https%3A%2F%2Fq%3FX-Amz-Signature%3D${SECRET}%26a%3D1`,
      expected: "https://x.example/?next=https%3A%2F%2Fq%3FX-Amz-Signature%3D***%26a%3D1",
    },
    {
      name: "a query parameter that only ends like one",
      input: "http://127.0.0.1:1/0/q?MySignatureSize=4&Action=ReceiveMessage",
      expected: "",
    },
    { name: "a URL without a password", input: "postgres://u@db:5432/x", expected: "" },
    { name: "a host and port", input: "http://localhost:4566/000000000000/q", expected: "" },
    { name: "plain text", input: "lots", expected: "" },
  ];
  for (const c of cases) {
    await t.step(`redactSecrets() ${c.name}`, () => {
      const out = redactSecrets(c.input);
      assert.equal(out, c.expected === "" ? c.input : c.expected);
      // Messages are redacted where built and again where written.
      assert.equal(redactSecrets(`"${out}"`), `"${out}"`, "idempotent, quotes kept");
      assert.ok(!out.includes(SECRET) && !out.includes("Secret"), out);
    });
  }
});
