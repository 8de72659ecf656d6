/**
 * The programs a few tests need beyond make and npm, and whether this
 * machine has them: psql (the DBA's path for sql/ files) and openssl (CRLs
 * from a tool other than the library that reads them). Where one is
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

/** Whether `name --version`-like `args` runs: null, or why not with what to install. */
async function missing(name: string, args: string[], install: string): Promise<string | null> {
  try {
    const { success } = await new Deno.Command(name, { args, stdout: "null", stderr: "null" })
      .output();
    return success ? null : `${name} ${args.join(" ")} failed`;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    return `${name} is not on PATH (${install})`;
  }
}

export const PSQL: Tool = {
  name: "psql",
  missing: await missing(
    "psql",
    ["--version"],
    "the PostgreSQL client: install it to run the cases that apply sql/ files as a DBA does",
  ),
};

export const OPENSSL: Tool = {
  name: "openssl",
  missing: await missing(
    "openssl",
    ["version"],
    "install it to run the cases that check revocation lists made by a tool other than the one login-etl reads them with",
  ),
};

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
