// The code map and the layers of docs/design.md stay true to src/: every file
// opens with a JSDoc @module header saying what it owns, its code-map line and
// that header describe the same thing, and no import breaks a "never" rule of
// the layers block (which this test reads, so the rules have one home).

import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url);

/** Text of a file under the repository root. */
function read(path: string): string {
  return Deno.readTextFileSync(new URL(path, root));
}

/** Every `.ts` file under `dir` (relative to the root), as root-relative paths. */
function walk(dir: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(new URL(`${dir}/`, root))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) found.push(...walk(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) found.push(path);
  }
  return found.sort();
}

/** The lines of the fenced block between `<!-- NAME:start -->` and `<!-- NAME:end -->`. */
function fencedBlock(text: string, name: string): string[] {
  const block = text.match(
    new RegExp(
      `<!-- ${name}:start -->\\s*\`\`\`[^\\n]*\\n([\\s\\S]*?)\\n\`\`\`\\s*<!-- ${name}:end -->`,
    ),
  );
  assert.ok(block, `docs/design.md lacks the fenced block between <!-- ${name}:start/end -->`);
  return (block[1] ?? "").split("\n").filter((line) => line.trim() !== "");
}

const design = read("docs/design.md");
const sources = walk("src");

/** The `@module` header a file opens with (its text without the comment stars), or null. */
function moduleHeader(text: string): string | null {
  const match = text.match(/^\/\*\*([\s\S]*?)\*\//);
  if (match === null || !/^\s*\*?\s*@module\b/m.test(match[1] ?? "")) return null;
  return (match[1] ?? "").replace(/^\s*\* ?/gm, "").trim();
}

// Words too common to show that two descriptions are about the same thing.
const COMMON = new Set(
  ("that this with from what each every their where which when than into only over under after " +
    "before there these those them they then also does done have none once same such were been " +
    "being about other very more most some one")
    .split(" "),
);

/** The distinct content words of a description, plurals and tenses folded. */
function contentWords(text: string): Set<string> {
  const words = text.toLowerCase().match(/[a-z][a-z0-9_]{3,}/g) ?? [];
  return new Set(
    words.filter((w) => !COMMON.has(w)).map((w) => w.replace(/(ies|es|s|ed|ing)$/, "")),
  );
}

Deno.test("every file under src/ opens with a JSDoc @module header", () => {
  const missing = sources.filter((path) => moduleHeader(read(path)) === null);
  assert.deepEqual(missing, [], "files without a leading /** … @module */ header");
});

Deno.test("each code-map line of docs/design.md and its file's @module header describe the same thing", () => {
  const disagree: string[] = [];
  for (const line of fencedBlock(design, "code-map")) {
    const [path = "", ...rest] = line.trim().split(/\s+/);
    const header = sources.includes(path) ? moduleHeader(read(path)) : null;
    if (header === null) continue; // a missing file or header fails the tests above and in docs_test.ts
    const said = contentWords(header);
    const shared = [...contentWords(rest.join(" "))].filter((w) => said.has(w));
    // Two shared words: loose enough for a one-line summary of a paragraph,
    // tight enough that a line left behind by a rename or a move fails.
    if (shared.length < 2) disagree.push(`${path}: "${rest.join(" ")}"`);
  }
  assert.deepEqual(
    disagree,
    [],
    "code-map lines sharing fewer than two words with their file's @module header: rewrite the line or the header",
  );
});

/** A pattern of the layers block as a test of a root-relative path. */
function pathPattern(pattern: string): (path: string) => boolean {
  const full = `src/${pattern}`;
  if (full.endsWith("/")) return (path) => path.startsWith(full);
  const regexp = new RegExp(
    `^${full.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replaceAll("*", "[^/]*")}$`,
  );
  return (path) => regexp.test(path);
}

interface Rule {
  readonly line: string;
  readonly from: (path: string) => boolean;
  readonly never: (path: string) => boolean;
}

/** The rules of the layers block: groups (`name = patterns`) and `X never imports Y [except Z]`. */
function layerRules(): Rule[] {
  const groups = new Map<string, string[]>();
  const rules: Rule[] = [];
  const expand = (words: string[]) => words.flatMap((w) => groups.get(w) ?? [w]);
  const anyOf = (patterns: string[]) => {
    const tests = patterns.map(pathPattern);
    return (path: string) => tests.some((t) => t(path));
  };
  for (const raw of fencedBlock(design, "layers")) {
    const line = raw.replace(/#.*$/, "").trim();
    const group = line.match(/^(\w+)\s*=\s*(.+)$/);
    if (group !== null) {
      groups.set(group[1] ?? "", expand((group[2] ?? "").split(/\s+/)));
      continue;
    }
    const rule = line.match(/^(\S+)\s+never imports\s+(.+?)(?:\s+except\s+(.+))?$/);
    assert.ok(rule, `layers block line is neither a group nor a rule: ${raw}`);
    const never = anyOf(expand((rule[2] ?? "").split(/\s+/)));
    const except = anyOf(expand((rule[3] ?? "").split(/\s+/).filter((w) => w !== "")));
    rules.push({
      line: raw.trim(),
      from: anyOf(expand([rule[1] ?? ""])),
      never: (path) => never(path) && !except(path),
    });
  }
  return rules;
}

/** The files under src/ a file imports (static, re-exported or dynamic; type-only too). */
function importsOf(path: string): string[] {
  const text = read(path);
  const specifiers = [
    ...text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm),
    ...text.matchAll(/^\s*import\s*["']([^"']+)["']/gm),
    ...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
  ].map((m) => m[1] ?? "");
  return specifiers
    .filter((s) => s.startsWith("."))
    .map((s) => new URL(s, new URL(path, root)).pathname.slice(new URL(root).pathname.length))
    .filter((target) => target.startsWith("src/"));
}

/**
 * Imports that break a rule today, each with who is fixing it (issue 20).
 * Listed here so the rest stays enforced meanwhile; an entry that no longer
 * happens fails the test, so the list only shrinks.
 */
const KNOWN: readonly string[] = [];

Deno.test("no import under src/ breaks a never-rule of docs/design.md's layers", () => {
  const rules = layerRules();
  assert.ok(rules.length > 0, "the layers block holds no rule");
  const broken: string[] = [];
  for (const path of sources) {
    for (const target of importsOf(path)) {
      for (const rule of rules) {
        if (rule.from(path) && rule.never(target)) {
          const name = rule.line.replace(/\s*#.*$/, "").replace(/\s+/g, " ").replace(
            / except .*$/,
            "",
          );
          broken.push(`${path} -> ${target} (${name})`);
        }
      }
    }
  }
  const unique = [...new Set(broken)];
  assert.deepEqual(
    unique.filter((b) => !KNOWN.includes(b)),
    [],
    "imports that break a layer rule: move the shared piece down, or pass it in as a value",
  );
  assert.deepEqual(
    KNOWN.filter((k) => !unique.includes(k)),
    [],
    "KNOWN violations that no longer happen: remove them from KNOWN",
  );
});

Deno.test("the layer rules catch what they should (the checker itself)", () => {
  const rules = layerRules();
  const breaks = (from: string, to: string) => rules.some((r) => r.from(from) && r.never(to));
  assert.ok(breaks("src/config/resolve.ts", "src/db/pool.ts"), "config → db");
  assert.ok(breaks("src/ops/metrics.ts", "src/pipeline/buffer.ts"), "ground → pipeline");
  assert.ok(breaks("src/types.ts", "src/sqs/queue.ts"), "ground → sqs");
  assert.ok(breaks("src/commands/demo.ts", "src/commands/seed.ts"), "command → command");
  assert.ok(!breaks("src/commands/demo.ts", "src/commands/_setup.ts"), "command → _shared wiring");
  assert.ok(!breaks("src/sink/sink.ts", "src/db/write.ts"), "sink → db is allowed");
  assert.ok(!breaks("src/db/pool.ts", "src/errors.ts"), "anything → ground is allowed");
});
