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
  assert.deepEqual(
    [...new Set(broken)],
    [],
    "imports that break a layer rule: move the shared piece down, or pass it in as a value",
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

/** The named groups of the layers block (`name = patterns`), as path tests. */
function layerGroups(): Map<string, (path: string) => boolean> {
  const groups = new Map<string, (path: string) => boolean>();
  for (const raw of fencedBlock(design, "layers")) {
    const group = raw.replace(/#.*$/, "").trim().match(/^(\w+)\s*=\s*(.+)$/);
    if (group === null) continue;
    const tests = (group[2] ?? "").split(/\s+/).map(pathPattern);
    groups.set(group[1] ?? "", (path) => tests.some((t) => t(path)));
  }
  return groups;
}

/** A file's layer: a group it belongs to (other than `stages`), else its folder under src/, else itself. */
function layerOf(path: string, groups: Map<string, (path: string) => boolean>): string {
  for (const [name, test] of groups) if (name !== "stages" && test(path)) return name;
  const rest = path.slice("src/".length);
  return rest.includes("/") ? `${rest.slice(0, rest.indexOf("/"))}/` : rest;
}

/** A cycle in a graph of layers, as the layers walked, or null. */
export function findCycle(edges: ReadonlyMap<string, ReadonlySet<string>>): string[] | null {
  const state = new Map<string, "open" | "done">();
  const walk = (node: string, path: string[]): string[] | null => {
    if (state.get(node) === "done") return null;
    if (state.get(node) === "open") return [...path.slice(path.indexOf(node)), node];
    state.set(node, "open");
    for (const next of edges.get(node) ?? []) {
      const cycle = walk(next, [...path, node]);
      if (cycle !== null) return cycle;
    }
    state.set(node, "done");
    return null;
  };
  for (const node of edges.keys()) {
    const cycle = walk(node, []);
    if (cycle !== null) return cycle;
  }
  return null;
}

Deno.test("data flows one way: no two layers of src/ import each other, directly or round about", () => {
  const groups = layerGroups();
  const edges = new Map<string, Set<string>>();
  const why = new Map<string, string>();
  for (const path of sources) {
    const from = layerOf(path, groups);
    for (const target of importsOf(path)) {
      const to = layerOf(target, groups);
      if (to === from) continue;
      edges.set(from, (edges.get(from) ?? new Set()).add(to));
      why.set(`${from} ${to}`, `${path} -> ${target}`);
    }
  }
  const cycle = findCycle(edges);
  assert.equal(
    cycle === null ? null : cycle.map((l, i) => {
      const next = cycle[i + 1];
      return next === undefined ? l : `${l} (${why.get(`${l} ${next}`)})`;
    }).join(" → "),
    null,
    "layers that import each other: move the shared piece down to the layer both may import",
  );
});

Deno.test("the cycle finder finds a cycle through three layers and none in a chain (the checker itself)", () => {
  const graph = (pairs: [string, string][]) => {
    const edges = new Map<string, Set<string>>();
    for (const [a, b] of pairs) edges.set(a, (edges.get(a) ?? new Set()).add(b));
    return edges;
  };
  assert.deepEqual(findCycle(graph([["a", "b"], ["b", "c"], ["c", "a"]])), ["a", "b", "c", "a"]);
  assert.equal(findCycle(graph([["a", "b"], ["b", "c"], ["a", "c"]])), null);
});
