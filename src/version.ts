/**
 * What --version prints: the version, and with --verbose the Deno, V8 and
 * TypeScript versions and the build's commit, for a bug report.
 *
 * @module
 */

import meta from "../deno.json" with { type: "json" };

/** The version printed by `--version`, from deno.json (the one place it is written). */
export const VERSION: string = meta.version;

/**
 * Where `make build` writes the commit it compiles (`git describe`-free: the
 * full hash, `-dirty` when the work tree had changes), embedded in the
 * binary with `--include`. A source checkout reads its `.git` instead.
 */
const BUILD_COMMIT_FILE = new URL("../dist/build_commit.txt", import.meta.url);
const GIT_DIR = new URL("../.git", import.meta.url);

function readText(url: URL): string | null {
  try {
    return Deno.readTextFileSync(url).trim();
  } catch {
    return null;
  }
}

/** A commit id as git writes it (SHA-1 or SHA-256 hex); anything else is not shown. */
const COMMIT = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;
/** A branch ref inside the git directory: no `..`, nothing but a ref's characters. */
const REF = /^refs\/(?:[\w.-]+\/)*[\w.-]+$/;

/**
 * The HEAD commit of the checkout whose `.git` is `git`, read from its files
 * (no `git` process: the binary's permissions run none): `.git` may be a
 * directory, or a file naming one (a worktree, its path absolute or relative);
 * a branch's ref may be loose or packed. Null unless what the files hold is a
 * commit id as git writes it: what is printed is a commit id or `unknown`,
 * never a file's text (a HEAD naming `../../etc/passwd`, or holding
 * terminal escapes).
 */
export function checkoutCommit(git: URL = GIT_DIR): string | null {
  const found = readHead(git);
  return found !== null && COMMIT.test(found) ? found : null;
}

function readHead(git: URL): string | null {
  let gitDir = git;
  const pointer = readText(git);
  if (pointer !== null && pointer.startsWith("gitdir: ")) {
    gitDir = new URL(pointer.slice("gitdir: ".length), git);
  }
  const dir = gitDir.href.endsWith("/") ? gitDir : new URL(`${gitDir.href}/`);
  const head = readText(new URL("HEAD", dir));
  if (head === null) return null;
  if (!head.startsWith("ref: ")) return head;
  const ref = head.slice("ref: ".length);
  if (!REF.test(ref) || ref.includes("..")) return null;
  // A worktree keeps its refs in the main repository's directory (`commondir`).
  const common = readText(new URL("commondir", dir));
  const refsDir = common === null ? dir : new URL(`${common.replace(/\/?$/, "/")}`, dir);
  const loose = readText(new URL(ref, refsDir));
  if (loose !== null) return loose;
  const packed = readText(new URL("packed-refs", refsDir)) ?? "";
  return packed.split("\n").find((l) => l.endsWith(` ${ref}`))?.split(" ")[0] ?? null;
}

/**
 * The commit this program was built from: the one `make build` embedded,
 * else (run from source) the checkout's HEAD, marked so, else `unknown`.
 */
export function buildCommit(): string {
  // A compiled binary reads only what it embedded; from source a stale
  // dist/ of an earlier build must not be taken for this checkout's commit.
  if (Deno.build.standalone) {
    const built = readText(BUILD_COMMIT_FILE);
    return built !== null && COMMIT.test(built.replace(/-dirty$/, "")) ? built : "unknown";
  }
  const commit = checkoutCommit();
  return commit === null ? "unknown" : `${commit} (source checkout)`;
}

/** The lines `--version` prints; with `verbose`, the runtime's versions and the commit too. */
export function versionLines(verbose: boolean): string[] {
  const lines = [`login-etl ${VERSION}`];
  if (!verbose) return lines;
  return [
    ...lines,
    `deno ${Deno.version.deno}`,
    `v8 ${Deno.version.v8}`,
    `typescript ${Deno.version.typescript}`,
    `commit ${buildCommit()}`,
  ];
}
