// The binary's V8 flags (the `etl` task of deno.json, which `make build`
// compiles in): each one a flag this V8 knows. V8 ignores a flag it does not
// know without a word, so a misspelt heap cap would ship the default heap.

import assert from "node:assert/strict";
import { permissionFlags, unknownV8Flags } from "../helpers/cli.ts";

Deno.test("every V8 flag the binary runs with is one this V8 knows", () => {
  const v8 = permissionFlags().find((f) => f.startsWith("--v8-flags="));
  assert.ok(v8 !== undefined, "the etl task sets --v8-flags");
  assert.deepEqual(unknownV8Flags(v8), []);
});

Deno.test("a flag V8 does not know is found, and a known one negated is not", () => {
  assert.deepEqual(
    unknownV8Flags("--v8-flags=--max-semi-space-size=4,--max-semi-space=4,--no-memory-pool"),
    ["--max-semi-space=4"],
  );
});
