// Documents stay true to the code and to each other: the flag table of
// docs/configuration.md and sql/schema.sql are written from code; the README
// stays short; the code map of docs/design.md lists exactly the files under
// src/; and every relative link in the README and docs/ leads somewhere.

import assert from "node:assert/strict";
import { rolesSql, schemaSql } from "../../scripts/schema_sql.ts";
import { FLAGS_DOC, withGeneratedTables } from "../../scripts/flags_table.ts";

const root = new URL("../../", import.meta.url);

/** Text of a file under the repository root. */
function read(path: string): string {
  return Deno.readTextFileSync(new URL(path, root));
}

/** True when `path` (relative to the repository root) exists. */
function exists(path: string): boolean {
  try {
    Deno.statSync(new URL(path, root));
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Every file under `dir` (relative to the root) whose name ends in `suffix`, as root-relative paths. */
function walk(dir: string, suffix: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(new URL(`${dir}/`, root))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...walk(path, suffix));
    else if (entry.isFile && entry.name.endsWith(suffix)) found.push(path);
  }
  return found.sort();
}

/** The markdown documents whose links are checked: the README and docs/*.md. */
function markdownDocs(): string[] {
  return ["README.md", ...walk("docs", ".md").filter((p) => p.split("/").length === 2)];
}

/** `text` without fenced code blocks (their lines become empty, so line numbers hold). */
function withoutFences(text: string): string {
  let fenced = false;
  return text.split("\n").map((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return "";
    }
    return fenced ? "" : line;
  }).join("\n");
}

/** GitHub's anchor of each heading of `text`, with -1, -2 … for repeats. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const [, heading = ""] of withoutFences(text).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = heading.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    result.add(count === 0 ? base : `${base}-${count}`);
  }
  return result;
}

Deno.test("docs/configuration.md's flag and needs tables equal the settings and commands tables (run `make docs` after changing either)", () => {
  // deno fmt pads table cells; compare with runs of spaces and dashes collapsed.
  const normalise = (text: string) => text.replace(/-{3,}/g, "---").replace(/[ \n]+/g, " ");
  const doc = read(FLAGS_DOC);
  assert.equal(normalise(doc), normalise(withGeneratedTables(doc)));
  assert.ok(
    !read("README.md").includes("<!-- flags:start -->"),
    "the flag table lives in docs/configuration.md only",
  );
});

Deno.test("sql/schema.sql holds exactly the migrations' statements (run `make docs` after a change)", () => {
  assert.equal(read("sql/schema.sql"), schemaSql());
});

Deno.test("sql/roles.sql holds the refusal of untrusted schemas that migrate runs (run `make docs` after a change)", () => {
  const roles = read("sql/roles.sql");
  assert.equal(roles, rolesSql(roles));
  assert.match(roles, /FOR found IN EXECUTE \$query\$WITH ns AS/);
});

Deno.test("README.md is at most 16 KiB (depth goes in docs/)", () => {
  const bytes = Deno.statSync(new URL("README.md", root)).size;
  assert.ok(
    bytes <= 16_384,
    `README.md is ${bytes} bytes; move detail into docs/ to get it to 16,384 or less`,
  );
});

Deno.test("docs/design.md's code map lists exactly the files under src/", () => {
  const design = read("docs/design.md");
  const block = design.match(
    /<!-- code-map:start -->\s*```[^\n]*\n([\s\S]*?)\n```\s*<!-- code-map:end -->/,
  );
  assert.ok(
    block,
    "docs/design.md lacks the fenced code map between <!-- code-map:start --> and <!-- code-map:end -->",
  );
  const mapped: string[] = [];
  for (const line of (block[1] ?? "").split("\n")) {
    if (line.trim() === "") continue;
    const path = line.trim().split(/\s+/)[0] ?? "";
    assert.ok(
      path.startsWith("src/"),
      `code map line does not start with a path under src/: ${line}`,
    );
    mapped.push(path);
  }
  const missingFiles = mapped.filter((path) => !exists(path));
  assert.deepEqual(missingFiles, [], "paths in the code map that no longer exist");
  const unmapped = walk("src", ".ts").filter((path) => !mapped.includes(path));
  assert.deepEqual(unmapped, [], "files under src/ missing from the code map of docs/design.md");
  const repeated = mapped.filter((path, i) => mapped.indexOf(path) !== i);
  assert.deepEqual(repeated, [], "paths listed twice in the code map");
});

Deno.test("every relative link in README.md and docs/*.md leads to an existing file and heading", () => {
  const broken: string[] = [];
  for (const doc of markdownDocs()) {
    const text = withoutFences(read(doc)).replace(/`[^`\n]*`/g, "");
    const targets = [
      ...[...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1] ?? ""),
      ...[...text.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/gm)].map((m) =>
        m[1] ?? ""
      ),
    ];
    for (const target of targets) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto: …
      const [pathPart = "", anchor] = target.split("#", 2);
      const path = pathPart === ""
        ? doc
        : new URL(decodeURIComponent(pathPart), new URL(doc, root)).pathname.slice(
          new URL(root).pathname.length,
        );
      if (!exists(path)) {
        broken.push(`${doc}: ${target} (no ${path})`);
        continue;
      }
      if (
        anchor !== undefined && anchor !== "" && path.endsWith(".md") &&
        !anchors(read(path)).has(anchor)
      ) {
        broken.push(`${doc}: ${target} (no heading #${anchor} in ${path})`);
      }
    }
  }
  assert.deepEqual(broken, []);
});
