// Pure helpers of src/db/pool.ts: the array literal encoder and error classification.

import assert from "node:assert/strict";
import { isTransientDbError, pgArray } from "../../../src/db/pool.ts";

Deno.test("pgArray() quotes every string, escapes quotes and backslashes, writes NULL and numbers bare", () => {
  assert.equal(pgArray(['a"b', "c\\d", null, 1, "", "{,}"]), '{"a\\"b","c\\\\d",NULL,1,"","{,}"}');
  assert.equal(pgArray([]), "{}");
});

Deno.test("pgArray() stays flat and small for bodies made of quotes", () => {
  const hostile = '"'.repeat(65_536);
  const literal = pgArray(Array.from({ length: 50 }, () => hostile));
  assert.equal(literal.length, 2 + 50 * (2 + 2 * 65_536) + 49);
});

Deno.test("isTransientDbError() retries connection failures and killed backends, not SQL errors", () => {
  assert.ok(isTransientDbError(Object.assign(new Error("x"), { code: "ECONNREFUSED" })));
  assert.ok(isTransientDbError(Object.assign(new Error("x"), { code: "57P01" })));
  assert.ok(isTransientDbError(Object.assign(new Error("x"), { code: "40P01" })));
  // A proxy closing new connections, and a Unix socket not there yet (the Auth Proxy starting).
  assert.ok(isTransientDbError(Object.assign(new Error("x"), { code: "SERVER_CLOSED" })));
  assert.ok(isTransientDbError(Object.assign(new Error("x"), { code: "ENOENT" })));
  assert.ok(!isTransientDbError(Object.assign(new Error("x"), { code: "42501" })));
  assert.ok(!isTransientDbError(Object.assign(new Error("x"), { code: "22P02" })));
});
