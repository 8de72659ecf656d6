// `make build` where the Deno runtime base cannot be had: it fails with one
// line saying what to do, and keeps the compiler's own output in a log file.

import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url).pathname;

Deno.test("make build fails with one line naming denort when the runtime base is unavailable", async () => {
  const output = await new Deno.Command("make", {
    args: ["-s", "build", `DENO=${Deno.execPath()}`],
    cwd: root,
    env: { DENORT_BIN: "/nonexistent/denort" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.notEqual(output.code, 0);
  const ours = stderr.split("\n").filter((l) => l.startsWith("make build:"));
  assert.equal(ours.length, 1, stderr);
  assert.match(
    ours[0] ?? "",
    /deno compile failed .*denort.*DENORT_BIN.*details in dist\/compile\.log/,
  );
  assert.doesNotMatch(stderr, /\n\s+at |0x[0-9a-f]{8,}/, "no stack trace or crash dump on stderr");
});
