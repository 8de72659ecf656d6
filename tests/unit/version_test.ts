// `--version --verbose` reads the checkout's commit from `.git` without a git
// process: what it prints is a commit id or nothing, never a file's text
// (a hostile HEAD naming another file, or holding terminal escapes), through
// a plain .git directory, a worktree's `.git` file (absolute or relative
// gitdir) and packed refs.

import assert from "node:assert/strict";
import { checkoutCommit, versionLines } from "../../src/version.ts";

const ID = "3a1eec6e7ded7c1fbc3808d0e1357c6cec010efa";

/** A checkout directory with `.git` laid out by `files` (path → text); removed after `fn`. */
async function withCheckout(files: Record<string, string>, fn: (git: URL) => void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "login-etl-git-" });
  try {
    for (const [path, text] of Object.entries(files)) {
      await Deno.mkdir(`${dir}/${path}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeTextFile(`${dir}/${path}`, text);
    }
    fn(new URL(`file://${dir}/.git`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("checkoutCommit() reads a branch's commit, loose or packed, and a detached HEAD", async () => {
  await withCheckout(
    { ".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": `${ID}\n` },
    (git) => {
      assert.equal(checkoutCommit(git), ID);
    },
  );
  await withCheckout({
    ".git/HEAD": "ref: refs/heads/main\n",
    ".git/packed-refs": `# pack-refs with: peeled\n${ID} refs/heads/main\n`,
  }, (git) => assert.equal(checkoutCommit(git), ID));
  await withCheckout({ ".git/HEAD": `${ID}\n` }, (git) => assert.equal(checkoutCommit(git), ID));
});

Deno.test("checkoutCommit() follows a worktree's .git file, its gitdir absolute or relative", async () => {
  const layout = {
    "repo/.git/worktrees/wt/HEAD": "ref: refs/heads/topic\n",
    "repo/.git/worktrees/wt/commondir": "../..\n",
    "repo/.git/refs/heads/topic": `${ID}\n`,
  };
  await withCheckout({ ...layout, ".git": "gitdir: repo/.git/worktrees/wt\n" }, (git) => {
    assert.equal(checkoutCommit(git), ID);
  });
  const dir = await Deno.makeTempDir({ prefix: "login-etl-git-" });
  try {
    for (const [path, text] of Object.entries(layout)) {
      await Deno.mkdir(`${dir}/${path}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeTextFile(`${dir}/${path}`, text);
    }
    await Deno.writeTextFile(`${dir}/.git`, `gitdir: ${dir}/repo/.git/worktrees/wt\n`);
    assert.equal(checkoutCommit(new URL(`file://${dir}/.git`)), ID);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkoutCommit() shows no file's text: a HEAD naming a file outside .git, or holding escapes, is no commit", async () => {
  const passwd = "root:x:0:0:root:/root:/bin/bash";
  await withCheckout({ ".git/HEAD": "ref: ../../secret\n", "secret": passwd }, (git) => {
    assert.equal(checkoutCommit(git), null);
  });
  await withCheckout(
    { ".git/HEAD": "ref: refs/heads/../../../secret\n", "secret": passwd },
    (git) => {
      assert.equal(checkoutCommit(git), null);
    },
  );
  await withCheckout({ ".git/HEAD": "\x1b]0;owned\x07\x1b[2J\nforged line" }, (git) => {
    assert.equal(checkoutCommit(git), null);
  });
  await withCheckout({
    ".git/HEAD": "ref: refs/heads/main\n",
    ".git/refs/heads/main": "not a commit\n",
  }, (git) => {
    assert.equal(checkoutCommit(git), null);
  });
});

Deno.test("versionLines(): the version alone, or with the runtime's versions and the commit", () => {
  assert.deepEqual(versionLines(false).length, 1);
  const verbose = versionLines(true);
  assert.match(verbose[0] ?? "", /^login-etl \d+\.\d+\.\d+$/);
  assert.match(verbose.at(-1) ?? "", /^commit ([0-9a-f]{40}( \(source checkout\))?|unknown)$/);
});
