// Reads the repository's YAML and JSON documents (workflows, Kubernetes
// manifests, alert rules, the dashboard) into plain values, and walks them
// with checks that fail with the path that was missing or of the wrong shape.

import { parseAllDocuments } from "yaml";

/** The repository root, as a file URL ending in a slash. */
export const ROOT: URL = new URL("../../", import.meta.url);

/** Reads a file of the repository as text. */
export function readText(path: string): string {
  return Deno.readTextFileSync(new URL(path, ROOT));
}

/**
 * Parses every document of a YAML file (a `---` separated stream).
 *
 * @throws {SyntaxError} naming the file and the first parse error
 */
export function readYaml(path: string): unknown[] {
  return parseYaml(readText(path), path);
}

/**
 * Parses YAML text in the YAML 1.2 core schema (so `on:` stays a string key).
 *
 * @throws {SyntaxError} naming `name` and the first parse error or warning
 */
export function parseYaml(text: string, name: string): unknown[] {
  const documents = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  if (!Array.isArray(documents)) throw new SyntaxError(`${name}: not a YAML document stream`);
  const values: unknown[] = [];
  for (const document of documents) {
    const problem = document.errors[0] ?? document.warnings[0];
    if (problem !== undefined) throw new SyntaxError(`${name}: ${problem.message}`);
    values.push(document.toJS({ maxAliasCount: 0 }));
  }
  return values.filter((value) => value !== null && value !== undefined);
}

/** Files under `dir` (relative to the root) whose names end in one of `suffixes`, sorted. */
export function listFiles(dir: string, suffixes: readonly string[]): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(new URL(dir, ROOT))) {
    if (entry.isFile && suffixes.some((s) => entry.name.endsWith(s))) {
      found.push(`${dir.replace(/\/$/, "")}/${entry.name}`);
    }
  }
  return found.sort();
}

/** A plain object, as parsed from YAML or JSON. */
export type Tree = Record<string, unknown>;

/** Whether `value` is a plain object (not an array, not null). */
export function isTree(value: unknown): value is Tree {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The value at `path` under `value`; numbers index arrays.
 *
 * @throws {TypeError} naming the first step of the path that is missing
 */
export function at(value: unknown, ...path: readonly (string | number)[]): unknown {
  let current = value;
  const walked: string[] = [];
  for (const step of path) {
    walked.push(String(step));
    if (typeof step === "number" && Array.isArray(current) && step < current.length) {
      current = current[step];
    } else if (typeof step === "string" && isTree(current) && step in current) {
      current = current[step];
    } else {
      throw new TypeError(`No ${walked.join(".")}`);
    }
  }
  return current;
}

/** The value at `path`, or `undefined` when any step is missing. */
export function maybe(value: unknown, ...path: readonly (string | number)[]): unknown {
  try {
    return at(value, ...path);
  } catch {
    return undefined;
  }
}

/** The object at `path`. @throws {TypeError} when it is missing or not an object */
export function tree(value: unknown, ...path: readonly (string | number)[]): Tree {
  const found = at(value, ...path);
  if (!isTree(found)) throw new TypeError(`${path.join(".")} is not a mapping`);
  return found;
}

/** The array at `path`. @throws {TypeError} when it is missing or not an array */
export function list(value: unknown, ...path: readonly (string | number)[]): unknown[] {
  const found = at(value, ...path);
  if (!Array.isArray(found)) throw new TypeError(`${path.join(".")} is not a list`);
  return found;
}

/** The string at `path`. @throws {TypeError} when it is missing or not a string */
export function text(value: unknown, ...path: readonly (string | number)[]): string {
  const found = at(value, ...path);
  if (typeof found !== "string") throw new TypeError(`${path.join(".")} is not a string`);
  return found;
}

/** Every string inside `value` with the path leading to it, depth first. */
export function* strings(
  value: unknown,
  path: readonly (string | number)[] = [],
): Generator<{ path: readonly (string | number)[]; value: string }> {
  if (typeof value === "string") {
    yield { path, value };
  } else if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) yield* strings(item, [...path, i]);
  } else if (isTree(value)) {
    for (const [key, item] of Object.entries(value)) yield* strings(item, [...path, key]);
  }
}
