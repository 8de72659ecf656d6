// scripts/install.sh, continued from install_test.ts (split so that the two
// run in parallel; the set-up is tests/helpers/install.ts): the build
// attestation checked with gh, the install directory, bad settings, release
// URLs from LOGIN_ETL_REPOSITORY, pre-release tags, staging in a fresh mktemp
// file, directories others may write, and HTTPS held to HTTPS.

import assert from "node:assert/strict";
import {
  assertOneFailureLine,
  fakeBinary,
  LINUX_X64,
  listing,
  REPOSITORY,
  sha256,
  which,
  withWorld,
  type World,
} from "../helpers/install.ts";

Deno.test("install.sh verifies the build attestation with gh when gh is on PATH", async (t) => {
  await t.step(
    "gh passes: installed, gh asked about the downloaded file for this repository",
    () =>
      withWorld(async (world) => {
        const run = await world.install({ gh: { exit: 0 } });
        assert.equal(run.code, 0, run.stderr);
        const body = fakeBinary("0.2.0", "x86_64-unknown-linux-gnu");
        assert.equal(listing(world.dir)?.["login-etl"]?.text, body);
        const [attestation, verify, file, repoFlag, repo, digest] = run.ghArgs ?? [];
        assert.deepEqual([attestation, verify, repoFlag, repo], [
          "attestation",
          "verify",
          "--repo",
          REPOSITORY,
        ]);
        assert.match(file ?? "", new RegExp(`/${LINUX_X64}$`));
        assert.equal(digest, sha256(body), "gh checked the bytes that were then installed");
        assert.match(
          run.stderr,
          /^install\.sh: build attestation ok: built by acme\/login-etl's workflow/m,
        );
        assert.doesNotMatch(run.stderr, /gh not found/);
      }),
  );
  await t.step(
    "gh fails: refused, nothing installed, gh's reason in the line",
    () =>
      withWorld(async (world) => {
        const run = await world.install({
          gh: { exit: 1, message: "Error: no attestations found for subject" },
        });
        assert.equal(run.code, 1);
        assertOneFailureLine(
          run,
          /^install\.sh: refused login-etl-x86_64-unknown-linux-gnu: gh attestation verify --repo acme\/login-etl failed \(Error: no attestations found for subject\); nothing installed$/,
        );
        assert.equal(listing(world.dir), null);
      }),
  );
  await t.step(
    "gh present, repository unknown: refused as a setting to fix (exit 2)",
    () =>
      withWorld(async (world) => {
        const run = await world.install({ gh: { exit: 0 }, env: { LOGIN_ETL_REPOSITORY: "" } });
        assert.equal(run.code, 2);
        assertOneFailureLine(
          run,
          /^install\.sh: gh is on PATH but the repository .* set LOGIN_ETL_REPOSITORY=owner\/name$/,
        );
        assert.equal(run.ghArgs, null);
        assert.equal(listing(world.dir), null);
      }),
  );
});

Deno.test("install.sh installs into ~/.local/bin when not root and no directory is given", async () => {
  await withWorld(async (world) => {
    const run = await world.install({ uid: 1000, env: { LOGIN_ETL_INSTALL_DIR: "" } });
    assert.equal(run.code, 0, run.stderr);
    const dir = `${world.home}/.local/bin`;
    assert.equal(listing(dir)?.["login-etl"]?.mode, 0o755);
    assert.match(run.stdout, new RegExp(`as ${dir}/login-etl `));
    assert.match(run.stderr, new RegExp(`^install\\.sh: ${dir} is not on your PATH`, "m"));
    assert.equal(listing(world.dir), null);
  });
});

Deno.test("install.sh refuses bad settings with exit 2 and asks nothing of the server", async (t) => {
  const cases = [
    {
      name: "a version that is no tag",
      env: { LOGIN_ETL_VERSION: "banana" },
      message:
        /^install\.sh: LOGIN_ETL_VERSION=banana is not a release tag: give vX\.Y\.Z, or latest$/,
    },
    {
      name: "a version that climbs out of the release path",
      env: { LOGIN_ETL_VERSION: "v../../../../evil/releases/download/v6.6.6" },
      message: /^install\.sh: LOGIN_ETL_VERSION is not a release tag: give vX\.Y\.Z, or latest$/,
    },
    {
      name: "a version with a slash after a good tag",
      env: { LOGIN_ETL_VERSION: "v0.1.0/../../../evil" },
      message: /^install\.sh: LOGIN_ETL_VERSION is not a release tag: give vX\.Y\.Z, or latest$/,
    },
    {
      name: "a version with a second line",
      env: { LOGIN_ETL_VERSION: "v0.1.0\nv0.2.0" },
      message: /^install\.sh: LOGIN_ETL_VERSION is not a release tag: give vX\.Y\.Z, or latest$/,
    },
    {
      name: "a version of two numbers",
      env: { LOGIN_ETL_VERSION: "v1.2" },
      message:
        /^install\.sh: LOGIN_ETL_VERSION=v1\.2 is not a release tag: give vX\.Y\.Z, or latest$/,
    },
    {
      name: "a base URL that is neither https nor http",
      env: { LOGIN_ETL_BASE_URL: "ftp://127.0.0.1/acme/login-etl/releases" },
      message: /^install\.sh: LOGIN_ETL_BASE_URL=ftp:.* is not an https:\/\/ URL$/,
    },
    {
      name: "no repository and no base URL",
      env: { LOGIN_ETL_REPOSITORY: "", LOGIN_ETL_BASE_URL: "" },
      message: /^install\.sh: no repository to install from: set LOGIN_ETL_REPOSITORY=owner\/name/,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () =>
      withWorld(async (world) => {
        const run = await world.install({ env: c.env });
        assert.equal(run.code, 2);
        assertOneFailureLine(run, c.message);
        assert.deepEqual(world.served.requests, []);
      }));
  }
});

Deno.test("install.sh builds GitHub's release URLs from LOGIN_ETL_REPOSITORY when no base URL is set", async (t) => {
  // A stand-in curl records the URL it was given and fails as curl does when
  // a host cannot be resolved, so nothing leaves this machine.
  const cases = [
    { version: "", url: `https://github.com/${REPOSITORY}/releases/latest/download/${LINUX_X64}` },
    {
      version: "v0.1.0",
      url: `https://github.com/${REPOSITORY}/releases/download/v0.1.0/${LINUX_X64}`,
    },
  ];
  for (const c of cases) {
    await t.step(c.version || "latest", () =>
      withWorld(async (world) => {
        const run = await world.install({
          without: ["curl", "wget"],
          standIns: {
            curl: 'for a; do url="$a"; done\nprintf 000\n' +
              'echo "curl: (6) Could not resolve host: $url" >&2\nexit 6\n',
          },
          env: { LOGIN_ETL_BASE_URL: "", LOGIN_ETL_VERSION: c.version },
        });
        assert.equal(run.code, 1);
        assertOneFailureLine(
          run,
          new RegExp(
            `^install\\.sh: cannot download ${c.url}: curl: \\(6\\) Could not resolve host`,
          ),
        );
      }));
  }
});

Deno.test("install.sh takes a pre-release tag, vX.Y.Z-prerelease", async () => {
  await withWorld(async (world) => {
    const run = await world.install({ env: { LOGIN_ETL_VERSION: "v0.8.0-rc.1" } });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(
      listing(world.dir)?.["login-etl"]?.text,
      fakeBinary("0.8.0-rc.1", "x86_64-unknown-linux-gnu"),
    );
  });
});

/** Who may run a step as another user here: root with runuser, else nobody. */
const RUNUSER = Deno.uid() === 0 ? which("runuser") : undefined;
const NOBODY = 65534;

/**
 * A sh command line that runs `script` as `nobody` when we can, else as
 * ourselves, with `arg` as its $1: double-quoted, so the calling shell
 * expands `$$` in it to its own pid (install.sh's, after the exec).
 */
function asAnotherUser(script: string, arg: string): string {
  const sh = `${which("sh")} -c '${script}' sh "${arg}"`;
  return RUNUSER === undefined ? sh : `${RUNUSER} -u nobody -- ${sh}`;
}

/** Lets another user reach the install directory (the scratch directory is 0700). */
function openPath(world: World): void {
  const scratch = world.dir.slice(0, -"/install/bin".length);
  Deno.chmodSync(scratch, 0o755);
  Deno.chmodSync(`${scratch}/install`, 0o755);
}

Deno.test("install.sh stages in a fresh mktemp file: a file or symlink planted at a name it could guess changes nothing", async (t) => {
  // The old staging name was "$dir/.login-etl.$$.tmp": another user who may
  // write the directory (here root's sticky one, as /tmp) plants it before
  // install.sh runs. As root, the plant is made by nobody.
  await t.step(
    "a symlink to a file of ours: the file is untouched, login-etl is no link",
    () =>
      withWorld(async (world) => {
        Deno.mkdirSync(world.dir, { recursive: true });
        Deno.chmodSync(world.dir, 0o1777);
        openPath(world);
        const victim = `${world.home}/victim`;
        Deno.writeTextFileSync(victim, "not to be overwritten\n");
        const plant = `${world.dir}/.login-etl.$$.tmp`;
        const run = await world.install({
          before: asAnotherUser(`${which("ln")} -s ${victim} "$1"`, plant),
        });
        assert.equal(run.code, 0, run.stderr);
        assert.equal(Deno.readTextFileSync(victim), "not to be overwritten\n");
        const installed = Deno.lstatSync(`${world.dir}/login-etl`);
        assert.ok(installed.isFile && !installed.isSymlink, "login-etl is a file of its own");
        assert.equal(installed.uid, Deno.uid());
        assert.equal(
          Deno.readTextFileSync(`${world.dir}/login-etl`),
          fakeBinary("0.2.0", "x86_64-unknown-linux-gnu"),
        );
        // The plant is still there, still a link: install.sh never used it.
        const planted = [...Deno.readDirSync(world.dir)].filter((e) => e.name !== "login-etl");
        assert.equal(planted.length, 1, planted.map((e) => e.name).join(", "));
        assert.ok(planted[0]?.isSymlink);
      }),
  );
  await t.step(
    {
      name: "a file nobody owns and anyone may write: login-etl is root's, not nobody's",
      ignore: RUNUSER === undefined,
      fn: () =>
        withWorld(async (world) => {
          Deno.mkdirSync(world.dir, { recursive: true });
          Deno.chmodSync(world.dir, 0o1777);
          openPath(world);
          const run = await world.install({
            before: asAnotherUser('umask 000; : > "$1"', `${world.dir}/.login-etl.$$.tmp`),
          });
          assert.equal(run.code, 0, run.stderr);
          const installed = Deno.lstatSync(`${world.dir}/login-etl`);
          assert.ok(installed.isFile && !installed.isSymlink);
          assert.equal(installed.uid, 0, "owned by root: nobody cannot rewrite it");
          assert.equal((installed.mode ?? 0) & 0o777, 0o755);
          const planted = [...Deno.readDirSync(world.dir)].filter((e) => e.name !== "login-etl");
          assert.equal(planted.length, 1);
          assert.equal(Deno.statSync(`${world.dir}/${planted[0]?.name}`).uid, NOBODY);
          assert.equal(Deno.statSync(`${world.dir}/${planted[0]?.name}`).size, 0);
        }),
    },
  );
});

Deno.test("install.sh refuses a directory others may write unless it is root's and sticky", async (t) => {
  const cases = [
    { name: "mode 0777", mode: 0o777, owner: undefined },
    { name: "mode 0775 (group)", mode: 0o775, owner: undefined },
    { name: "mode 1777 owned by nobody", mode: 0o1777, owner: NOBODY },
  ];
  for (const c of cases) {
    await t.step(
      {
        name: c.name,
        ignore: c.owner !== undefined && Deno.uid() !== 0,
        fn: () =>
          withWorld(async (world) => {
            Deno.mkdirSync(world.dir, { recursive: true });
            Deno.chmodSync(world.dir, c.mode);
            if (c.owner !== undefined) Deno.chownSync(world.dir, c.owner, null);
            const run = await world.install();
            assert.equal(run.code, 1);
            assertOneFailureLine(
              run,
              new RegExp(
                `^install\\.sh: refused ${world.dir}: others may write it \\(mode d[-rwxtT]{9}, owner uid \\d+\\) and it is not root's sticky directory, so they could replace login-etl; set LOGIN_ETL_INSTALL_DIR`,
              ),
            );
            assert.deepEqual(listing(world.dir), {}, "nothing installed, nothing staged");
          }),
      },
    );
  }
});

Deno.test("install.sh holds an https base URL to HTTPS, redirects included; an http one is warned about", async (t) => {
  const downloaders = [
    { name: "curl", without: ["wget"] },
    { name: "wget", without: ["curl"] },
  ];
  for (const d of downloaders) {
    await t.step(
      `${d.name}: a redirect from HTTPS to plain HTTP is refused`,
      () =>
        withWorld(async (world) => {
          const run = await world.install({
            without: d.without,
            env: {
              LOGIN_ETL_BASE_URL: world.served.downgradingBase,
              LOGIN_ETL_VERSION: "v0.1.0",
              CURL_CA_BUNDLE: world.served.tls.caPath,
              WGETRC: trustingWgetrc(world),
            },
          });
          assert.equal(run.code, 1, run.stderr);
          assertOneFailureLine(
            run,
            new RegExp(
              `^install\\.sh: refused ${world.served.downgradingBase}/download/v0\\.1\\.0/${LINUX_X64}: the server redirected it to plain HTTP, where anyone on the way may change it; an https download stays on HTTPS; nothing installed$`,
            ),
          );
          assert.equal(listing(world.dir), null, "nothing installed");
          assert.ok(world.served.requests.some((r) => r.startsWith("downgraded ")));
          // curl does not follow the redirect; wget does (it cannot be told
          // not to), and what it fetched is thrown away.
          const plain = world.served.requests.filter((r) => !r.startsWith("downgraded "));
          if (d.name === "curl") assert.deepEqual(plain, []);
        }),
    );
    await t.step(
      `${d.name}: an HTTPS release installs, with no warning`,
      () =>
        withWorld(async (world) => {
          const run = await world.install({
            without: d.without,
            env: {
              LOGIN_ETL_BASE_URL: world.served.httpsBase,
              CURL_CA_BUNDLE: world.served.tls.caPath,
              WGETRC: trustingWgetrc(world),
            },
          });
          assert.equal(run.code, 0, run.stderr);
          assert.equal(
            listing(world.dir)?.["login-etl"]?.text,
            fakeBinary("0.2.0", "x86_64-unknown-linux-gnu"),
          );
          assert.doesNotMatch(run.stderr, /plain HTTP/);
        }),
    );
  }
});

/** A wgetrc that trusts the test CA (wget has no variable for it, as curl has CURL_CA_BUNDLE). */
function trustingWgetrc(world: World): string {
  const path = `${world.home}/wgetrc`;
  Deno.writeTextFileSync(path, `ca_certificate = ${world.served.tls.caPath}\n`);
  return path;
}
