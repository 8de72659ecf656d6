/**
 * The programs a few tests need beyond make and npm, and whether this
 * machine has them: psql (the DBA's path for sql/ files), openssl (CRLs
 * from a tool other than the library that reads them) and util-linux
 * `script` (a pseudo-terminal). Where one is
 * missing, the tests that need it are skipped with one line saying why
 * (`eachMajor.needing`, or `ignore` with `tellMissing`).
 *
 * @module
 */

/** A program some tests need, and why it is missing here (null: it is not). */
export interface Tool {
  readonly name: string;
  readonly missing: string | null;
}

/**
 * A tool whose absence is worked out on first use, not when a file imports
 * this: nearly every test file does (through majors.ts) and few need a tool.
 */
function tool(name: string, find: () => string | null): Tool {
  let missing: string | null | undefined;
  return {
    name,
    get missing() {
      return missing === undefined ? (missing = find()) : missing;
    },
  };
}

/** Null when `name` is an executable file in a PATH directory, else why not and what to install. */
function onPath(name: string, install: string): () => string | null {
  return () => {
    const found = (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
      try {
        const info = Deno.statSync(`${dir}/${name}`);
        return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
      } catch {
        return false;
      }
    });
    return found ? null : `${name} is not on PATH (${install})`;
  };
}

export const PSQL: Tool = tool(
  "psql",
  onPath(
    "psql",
    "the PostgreSQL client: install it to run the cases that apply sql/ files as a DBA does",
  ),
);

export const OPENSSL: Tool = tool(
  "openssl",
  onPath(
    "openssl",
    "install it to run the cases that check revocation lists made by a tool other than the one login-etl reads them with",
  ),
);

/**
 * util-linux `script`, the pseudo-terminal of the screen tests. Asked for its
 * version, not just found: BSD `script` (macOS) takes other arguments.
 */
export const SCRIPT: Tool = tool("script", () => {
  try {
    const { success } = new Deno.Command("script", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return success
      ? null
      : "the script on PATH is not util-linux's (a pseudo-terminal for the screen tests)";
  } catch {
    return "script is not on PATH (util-linux: a pseudo-terminal for the screen tests)";
  }
});

const told = new Set<string>();

/** Says once per process, on stdout, which cases are skipped and why. */
export function tellSkip(what: string, why: string): void {
  if (told.has(what)) return;
  told.add(what);
  // deno-lint-ignore no-console
  console.log(`Skipping the ${what} cases: ${why}`);
}

/** True when `tool` is missing, having said so once: for `ignore`. */
export function lacks(tool: Tool): boolean {
  if (tool.missing === null) return false;
  tellSkip(tool.name, tool.missing);
  return true;
}
