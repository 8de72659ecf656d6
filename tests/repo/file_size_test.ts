// A file under src/ stays under 500 lines, or its @module header says why
// it is whole: one table (a list read and changed as one) or one history
// (migrations, in order). Past that size a file usually holds two reasons to
// change; the header makes the exception a decision instead of drift.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const LIMIT = 500;
const ROOT = new URL("../../", import.meta.url).pathname;

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) return sourceFiles(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

/** The file's opening JSDoc block, where its @module header lives. */
function header(text: string): string {
  const end = text.indexOf("*/");
  return text.startsWith("/**") && end > 0 ? text.slice(0, end) : "";
}

/** Files over the limit whose header does not say "over 500 lines because it is one table/history". */
export function oversized(files: readonly { path: string; text: string }[]): string[] {
  return files.flatMap(({ path, text }) => {
    const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
    if (lines <= LIMIT) return [];
    const why = /Over 500 lines because it is one (table|history)/.test(
      header(text).replace(/\n \* ?/g, " "),
    );
    return why ? [] : [`${path}: ${lines} lines, and its header does not say why it is one file`];
  });
}

Deno.test("no file under src/ is over 500 lines unless its header says it is one table or one history", () => {
  const files = sourceFiles("src").map((path) => ({
    path,
    text: readFileSync(join(ROOT, path), "utf8"),
  }));
  assert.deepEqual(oversized(files), []);
});

Deno.test("the size rule catches a long file without a reason, and accepts the stated exceptions", () => {
  const body = "const x = 1;\n".repeat(LIMIT + 1);
  const plain = "/**\n * Something.\n *\n * @module\n */\n" + body;
  const table =
    "/**\n * Something.\n *\n * Over 500 lines because it is one table: the reason.\n *\n * @module\n */\n" +
    body;
  const wrapped =
    "/**\n * Something.\n *\n * Over 500 lines because it is\n * one history: the reason.\n *\n * @module\n */\n" +
    body;
  assert.equal(oversized([{ path: "a.ts", text: plain }]).length, 1);
  assert.deepEqual(oversized([{ path: "b.ts", text: table }]), []);
  assert.deepEqual(oversized([{ path: "c.ts", text: wrapped }]), []);
  assert.deepEqual(oversized([{ path: "d.ts", text: "/** Short. @module */\n" }]), []);
});
