// scripts/install.sh against a release served on loopback by a small HTTP
// server laid out as GitHub's releases are (<base>/latest/download/<asset>,
// a redirect to <base>/download/<tag>/<asset>), run with dash, sh and
// bash --posix in a PATH that holds only the tools it may use. The "binaries"
// are shell scripts that print their version and target, so the test sees
// which asset was installed. `uname` and `id` on that PATH are stand-ins to
// choose the OS, CPU and user; the real gh cannot reach GitHub from here, so
// `gh` is a stand-in that records its arguments and the digest of the file it
// was asked about, and passes or fails as a test says. The same releases are
// served over HTTPS too, with a throwaway CA the downloaders are told to trust. The set-up
// is tests/helpers/install.ts; the attestation, settings, staging and HTTPS
// cases are in install_checks_test.ts.

import assert from "node:assert/strict";
import {
  assertOneFailureLine,
  fakeBinary,
  LINUX_X64,
  listing,
  REPOSITORY,
  SHELLS,
  withWorld,
  writeExecutable,
} from "../helpers/install.ts";

Deno.test("install.sh installs the latest release for Linux x86_64 as login-etl, mode 0755, with dash, sh and bash --posix", async (t) => {
  for (const shell of SHELLS) {
    await t.step(shell.join(" "), () =>
      withWorld(async (world) => {
        const run = await world.install({ shell });
        assert.equal(run.code, 0, run.stderr);
        const body = fakeBinary("0.2.0", "x86_64-unknown-linux-gnu");
        assert.deepEqual(listing(world.dir), { "login-etl": { text: body, mode: 0o755 } });
        assert.equal(
          run.stdout,
          `Installed ${LINUX_X64} as ${world.dir}/login-etl (login-etl 0.2.0 (x86_64-unknown-linux-gnu))\n`,
        );
        assert.match(run.stderr, /^install\.sh: checksum ok: sha256 [0-9a-f]{64}$/m);
        assert.match(
          run.stderr,
          /^install\.sh: warning: downloading over plain HTTP: only the checksum from the same server protects this download$/m,
        );
        assert.match(
          run.stderr,
          /^install\.sh: gh not found: skipped the build attestation check \(the checksum was verified\)/m,
        );
        assert.deepEqual(
          world.served.requests.filter((r) => r.includes("/latest/")),
          [
            `/${REPOSITORY}/releases/latest/download/${LINUX_X64}`,
            `/${REPOSITORY}/releases/latest/download/${LINUX_X64}.sha256`,
          ],
        );
      }));
  }
});

Deno.test("install.sh installs a pinned version, and the asset of the machine's OS and CPU", async (t) => {
  const cases = [
    {
      name: "v0.1.0 on Linux aarch64",
      version: "v0.1.0",
      os: "Linux",
      cpu: "aarch64",
      target: "aarch64-unknown-linux-gnu",
    },
    {
      name: "0.1.0 (no v) on macOS arm64",
      version: "0.1.0",
      os: "Darwin",
      cpu: "arm64",
      target: "aarch64-apple-darwin",
    },
    {
      name: "v0.1.0 on macOS x86_64",
      version: "v0.1.0",
      os: "Darwin",
      cpu: "x86_64",
      target: "x86_64-apple-darwin",
    },
    {
      name: "v0.1.0 on Linux amd64",
      version: "v0.1.0",
      os: "Linux",
      cpu: "amd64",
      target: "x86_64-unknown-linux-gnu",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () =>
      withWorld(async (world) => {
        const run = await world.install({
          os: c.os,
          cpu: c.cpu,
          env: { LOGIN_ETL_VERSION: c.version },
        });
        assert.equal(run.code, 0, run.stderr);
        const installed = listing(world.dir)?.["login-etl"];
        assert.equal(installed?.text, fakeBinary("0.1.0", c.target));
        assert.equal(installed?.mode, 0o755);
        assert.ok(
          world.served.requests.includes(
            `/${REPOSITORY}/releases/download/v0.1.0/login-etl-${c.target}.sha256`,
          ),
          world.served.requests.join("\n"),
        );
        assert.ok(!world.served.requests.some((r) => r.includes("/latest/")));
      }));
  }
});

Deno.test("install.sh works with wget and shasum when curl and sha256sum are missing", async (t) => {
  const cases = [
    { name: "wget and shasum", without: ["curl", "sha256sum"] },
    { name: "wget and sha256sum", without: ["curl", "shasum"] },
    { name: "curl and shasum", without: ["wget", "sha256sum"] },
  ];
  for (const c of cases) {
    await t.step(c.name, () =>
      withWorld(async (world) => {
        const latest = await world.install({ without: c.without, shell: ["dash"] });
        assert.equal(latest.code, 0, latest.stderr);
        assert.equal(
          listing(world.dir)?.["login-etl"]?.text,
          fakeBinary("0.2.0", "x86_64-unknown-linux-gnu"),
        );
        const pinned = await world.install({
          without: c.without,
          env: { LOGIN_ETL_VERSION: "v0.1.0" },
        });
        assert.equal(pinned.code, 0, pinned.stderr);
        assert.equal(
          listing(world.dir)?.["login-etl"]?.text,
          fakeBinary("0.1.0", "x86_64-unknown-linux-gnu"),
        );
        const tampered = await world.install({
          without: c.without,
          env: { LOGIN_ETL_VERSION: "v0.3.0" },
        });
        assert.equal(tampered.code, 1);
        assert.equal(
          listing(world.dir)?.["login-etl"]?.text,
          fakeBinary("0.1.0", "x86_64-unknown-linux-gnu"),
        );
      }));
  }
  await t.step("neither curl nor wget", () =>
    withWorld(async (world) => {
      const run = await world.install({ without: ["curl", "wget"] });
      assert.equal(run.code, 1);
      assertOneFailureLine(run, /^install\.sh: need curl or wget to download login-etl$/);
      assert.deepEqual(world.served.requests, []);
    }));
});

Deno.test("install.sh refuses an OS or CPU without a release, asking nothing of the server", async (t) => {
  const cases = [
    {
      os: "FreeBSD",
      cpu: "x86_64",
      message:
        /^install\.sh: no login-etl release for the OS FreeBSD: builds exist for Linux and macOS/,
    },
    {
      os: "MINGW64_NT-10.0",
      cpu: "x86_64",
      message:
        /^install\.sh: no login-etl release for the OS MINGW64_NT-10\.0: .*windows-msvc\.exe/,
    },
    {
      os: "Linux",
      cpu: "riscv64",
      message:
        /^install\.sh: no login-etl release for the CPU riscv64: builds exist for x86_64 and aarch64/,
    },
    { os: "Darwin", cpu: "i386", message: /^install\.sh: no login-etl release for the CPU i386/ },
  ];
  for (const c of cases) {
    await t.step(`${c.os} ${c.cpu}`, () =>
      withWorld(async (world) => {
        const run = await world.install({ os: c.os, cpu: c.cpu });
        assert.equal(run.code, 1);
        assertOneFailureLine(run, c.message);
        assert.equal(listing(world.dir), null, "nothing installed");
        assert.deepEqual(world.served.requests, []);
      }));
  }
});

Deno.test("install.sh refuses a tampered asset: nothing installed, the older login-etl untouched", async (t) => {
  for (const shell of SHELLS) {
    await t.step(shell.join(" "), () =>
      withWorld(async (world) => {
        Deno.mkdirSync(world.dir, { recursive: true });
        const older = fakeBinary("0.0.9", "x86_64-unknown-linux-gnu");
        writeExecutable(`${world.dir}/login-etl`, older);
        const run = await world.install({ shell, env: { LOGIN_ETL_VERSION: "v0.3.0" } });
        assert.equal(run.code, 1);
        assertOneFailureLine(
          run,
          /^install\.sh: refused login-etl-x86_64-unknown-linux-gnu: its SHA-256 is [0-9a-f]{64} but the release says [0-9a-f]{64}; nothing installed$/,
        );
        assert.deepEqual(listing(world.dir), { "login-etl": { text: older, mode: 0o755 } });
      }));
  }
});

Deno.test("install.sh refuses a .sha256 that holds no digest, a binary that does not run here, and one of another version", async () => {
  await withWorld(async (world) => {
    const broken = await world.install({ env: { LOGIN_ETL_VERSION: "v0.4.0" } });
    assert.equal(broken.code, 1);
    assertOneFailureLine(
      broken,
      /^install\.sh: refused login-etl-x86_64-unknown-linux-gnu: it does not run on this machine \(cannot execute binary file: Exec format error\); nothing installed$/,
    );
    assert.equal(listing(world.dir), null);
    const other = await world.install({ env: { LOGIN_ETL_VERSION: "v0.7.0" } });
    assert.equal(other.code, 1);
    assertOneFailureLine(
      other,
      /^install\.sh: refused login-etl-x86_64-unknown-linux-gnu: it reports login-etl 0\.1\.0 \(x86_64-unknown-linux-gnu\), not v0\.7\.0; nothing installed$/,
    );
    assert.equal(listing(world.dir), null);
    const garbage = await world.install({ env: { LOGIN_ETL_VERSION: "v0.6.0" } });
    assert.equal(garbage.code, 1);
    assertOneFailureLine(
      garbage,
      /^install\.sh: refused login-etl-x86_64-unknown-linux-gnu: .*\/v0\.6\.0\/login-etl-x86_64-unknown-linux-gnu\.sha256 holds no SHA-256; nothing installed$/,
    );
    assert.equal(listing(world.dir), null);
  });
});

Deno.test("install.sh says which URL was not found (404) and installs nothing", async (t) => {
  for (const without of [["wget"], ["curl"]]) {
    await t.step(
      `with ${without[0] === "wget" ? "curl" : "wget"}`,
      () =>
        withWorld(async (world) => {
          const run = await world.install({ without, env: { LOGIN_ETL_VERSION: "v9.9.9" } });
          assert.equal(run.code, 1);
          assertOneFailureLine(
            run,
            new RegExp(
              `^install\\.sh: not found \\(HTTP 404\\): ${world.served.base}/download/v9\\.9\\.9/${LINUX_X64}: no such release or asset; check LOGIN_ETL_VERSION`,
            ),
          );
          assert.equal(listing(world.dir), null);
        }),
    );
  }
  await t.step("the .sha256 missing beside the asset", () =>
    withWorld(async (world) => {
      const run = await world.install({ env: { LOGIN_ETL_VERSION: "v0.5.0" } });
      assert.equal(run.code, 1);
      assertOneFailureLine(
        run,
        /^install\.sh: not found \(HTTP 404\): .*\/download\/v0\.5\.0\/login-etl-x86_64-unknown-linux-gnu\.sha256:/,
      );
      assert.equal(listing(world.dir), null);
    }));
});

Deno.test("install.sh says so in one line when the server cannot be reached", async () => {
  // A port that was free a moment ago: nothing listens there.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  await withWorld(async (world) => {
    const base = `http://127.0.0.1:${port}/${REPOSITORY}/releases`;
    const run = await world.install({ env: { LOGIN_ETL_BASE_URL: base } });
    assert.equal(run.code, 1);
    assertOneFailureLine(
      run,
      new RegExp(
        `^install\\.sh: cannot download ${base}/latest/download/${LINUX_X64}: .*(refused|connect)`,
        "i",
      ),
    );
    assert.equal(listing(world.dir), null);
  });
});
