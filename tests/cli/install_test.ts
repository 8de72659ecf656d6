// scripts/install.sh against a release served on loopback by a small HTTP
// server laid out as GitHub's releases are (<base>/latest/download/<asset>,
// a redirect to <base>/download/<tag>/<asset>), run with dash, sh and
// bash --posix in a PATH that holds only the tools it may use. The "binaries"
// are shell scripts that print their version and target, so the test sees
// which asset was installed. `uname` and `id` on that PATH are stand-ins to
// choose the OS, CPU and user; the real gh cannot reach GitHub from here, so
// `gh` is a stand-in that records its arguments and the digest of the file it
// was asked about, and passes or fails as a test says. The same releases are
// served over HTTPS too, with a throwaway CA the downloaders are told to trust.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { makeTlsIdentity, type TlsIdentity } from "../helpers/tls_identity.ts";

const root = new URL("../../", import.meta.url).pathname;
const SCRIPT = `${root}scripts/install.sh`;
const REPOSITORY = "acme/login-etl";
const decoder = new TextDecoder();

const LINUX_X64 = "login-etl-x86_64-unknown-linux-gnu";

function fakeBinary(version: string, target: string): string {
  return `#!/bin/sh\necho "login-etl ${version} (${target})"\n`;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

type Release = Map<string, string>;

/** A release with an asset and its .sha256 for each of the given targets. */
function release(version: string, targets: readonly string[]): Release {
  const files: Release = new Map();
  for (const target of targets) {
    const asset = `login-etl-${target}`;
    const body = fakeBinary(version, target);
    files.set(asset, body);
    files.set(`${asset}.sha256`, `${sha256(body)}  ${asset}\n`);
  }
  return files;
}

const ALL_TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

function releases(): Map<string, Release> {
  const tampered = release("0.3.0", ["x86_64-unknown-linux-gnu"]);
  // The published checksum is the real build's; the asset was swapped after.
  tampered.set(
    LINUX_X64,
    `${tampered.get(LINUX_X64)}exit 0 # bytes the published build does not have\n`,
  );
  const broken = new Map([[
    LINUX_X64,
    '#!/bin/sh\necho "cannot execute binary file: Exec format error" >&2\nexit 126\n',
  ]]);
  broken.set(`${LINUX_X64}.sha256`, `${sha256(broken.get(LINUX_X64) ?? "")}  ${LINUX_X64}\n`);
  return new Map([
    ["v0.1.0", release("0.1.0", ALL_TARGETS)],
    ["v0.2.0", release("0.2.0", ALL_TARGETS)],
    ["v0.3.0", tampered],
    ["v0.4.0", broken],
    // An asset published without its checksum, and one whose checksum file
    // holds something else.
    ["v0.5.0", new Map([[LINUX_X64, fakeBinary("0.5.0", "x86_64-unknown-linux-gnu")]])],
    // A build of 0.1.0 published (with its own checksum) under the tag v0.7.0.
    ["v0.7.0", release("0.1.0", ["x86_64-unknown-linux-gnu"])],
    ["v0.8.0-rc.1", release("0.8.0-rc.1", ["x86_64-unknown-linux-gnu"])],
    [
      "v0.6.0",
      new Map([
        [LINUX_X64, fakeBinary("0.6.0", "x86_64-unknown-linux-gnu")],
        [`${LINUX_X64}.sha256`, "<!DOCTYPE html><title>Moved</title>\n"],
      ]),
    ],
  ]);
}
const LATEST = "v0.2.0";

interface Served {
  /** The releases over plain HTTP. */
  readonly base: string;
  /** The same releases over HTTPS (the CA is `tls.caPath`). */
  readonly httpsBase: string;
  /** An HTTPS server that answers every request with a redirect to `base` (plain HTTP). */
  readonly downgradingBase: string;
  readonly tls: TlsIdentity;
  readonly requests: string[];
  close(): Promise<void>;
}

/** Serves releases() under /acme/login-etl/releases on free loopback ports. */
function serveReleases(tls: TlsIdentity): Served {
  const all = releases();
  const requests: string[] = [];
  const prefix = `/${REPOSITORY}/releases`;
  const quiet = { hostname: "127.0.0.1", port: 0, onListen() {} };
  const handler = (request: Request) => {
    const path = new URL(request.url).pathname;
    requests.push(path);
    const latest = new RegExp(`^${prefix}/latest/download/([^/]+)$`).exec(path);
    if (latest?.[1] !== undefined) {
      // GitHub answers the latest form with a redirect to the tag's asset.
      return Response.redirect(
        new URL(`${prefix}/download/${LATEST}/${latest[1]}`, request.url),
        302,
      );
    }
    const tagged = new RegExp(`^${prefix}/download/([^/]+)/([^/]+)$`).exec(path);
    const body = tagged?.[1] !== undefined && tagged[2] !== undefined
      ? all.get(tagged[1])?.get(tagged[2])
      : undefined;
    return body === undefined
      ? new Response("Not Found", { status: 404 })
      : new Response(body, { headers: { "content-type": "application/octet-stream" } });
  };
  const server = Deno.serve(quiet, handler);
  const { port } = server.addr as Deno.NetAddr;
  const identity = { cert: tls.certPem, key: tls.keyPem };
  const secure = Deno.serve({ ...quiet, ...identity }, handler);
  const downgrading = Deno.serve({ ...quiet, ...identity }, (request) => {
    const url = new URL(request.url);
    requests.push(`downgraded ${url.pathname}`);
    return Response.redirect(`http://127.0.0.1:${port}${url.pathname}`, 302);
  });
  const httpsPort = (secure.addr as Deno.NetAddr).port;
  const downgradingPort = (downgrading.addr as Deno.NetAddr).port;
  return {
    base: `http://127.0.0.1:${port}${prefix}`,
    httpsBase: `https://127.0.0.1:${httpsPort}${prefix}`,
    downgradingBase: `https://127.0.0.1:${downgradingPort}${prefix}`,
    tls,
    requests,
    close: async () => {
      await Promise.all([server.shutdown(), secure.shutdown(), downgrading.shutdown()]);
    },
  };
}

interface Options {
  readonly shell?: readonly string[];
  readonly os?: string;
  readonly cpu?: string;
  readonly uid?: number;
  /** Real tools left off PATH, e.g. curl to make the script use wget. */
  readonly without?: readonly string[];
  /** Stand-in tools: name → the body of a sh script. */
  readonly standIns?: Record<string, string>;
  /** A stand-in gh that exits with this code; none on PATH when undefined. */
  readonly gh?: { readonly exit: number; readonly message?: string };
  readonly env?: Record<string, string>;
  /**
   * A sh command run first by the process that then execs install.sh, so
   * `$$` in it is install.sh's own pid (the old staging name held it).
   */
  readonly before?: string;
}

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** gh's arguments, then the SHA-256 of the file it was asked about; null if gh never ran. */
  readonly ghArgs: string[] | null;
}

/** One test's world: a release server and a scratch directory with a home and a target. */
interface World {
  readonly served: Served;
  readonly home: string;
  /** What LOGIN_ETL_INSTALL_DIR points at. */
  readonly dir: string;
  install(options?: Options): Promise<Run>;
}

const TOOLS = [
  "mktemp",
  "rm",
  "mkdir",
  "cat",
  "ls",
  "cp",
  "mv",
  "chmod",
  "cut",
  "head",
  "tail",
  "tr",
  "sed",
  "grep",
  "curl",
  "wget",
  "sha256sum",
  "shasum",
];

function which(tool: string): string | undefined {
  const output = new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "piped" })
    .outputSync();
  const path = decoder.decode(output.stdout).trim();
  return output.success && path.startsWith("/") ? path : undefined;
}

function writeExecutable(path: string, text: string): void {
  Deno.writeTextFileSync(path, text);
  Deno.chmodSync(path, 0o755);
}

/** Runs `fn` with a release server and a scratch directory, both gone after. */
async function withWorld(fn: (world: World) => Promise<void>): Promise<void> {
  const scratch = await Deno.makeTempDir({ prefix: "login-etl-install-" });
  const served = serveReleases(await makeTlsIdentity(scratch));
  const home = `${scratch}/home`;
  const dir = `${scratch}/install/bin`;
  Deno.mkdirSync(home);
  let runs = 0;
  const world: World = {
    served,
    home,
    dir,
    async install(options = {}) {
      // A PATH of only the tools install.sh may use, and the stand-ins.
      const bin = `${scratch}/tools-${++runs}`;
      Deno.mkdirSync(bin);
      for (const tool of TOOLS) {
        const path = options.without?.includes(tool) ? undefined : which(tool);
        if (path !== undefined) Deno.symlinkSync(path, `${bin}/${tool}`);
      }
      writeExecutable(
        `${bin}/uname`,
        `#!/bin/sh\ncase "$1" in -s) echo ${options.os ?? "Linux"} ;; ` +
          `-m) echo ${options.cpu ?? "x86_64"} ;; *) exit 1 ;; esac\n`,
      );
      for (const [name, body] of Object.entries(options.standIns ?? {})) {
        writeExecutable(`${bin}/${name}`, `#!/bin/sh\n${body}`);
      }
      writeExecutable(`${bin}/id`, `#!/bin/sh\n[ "$1" = -u ] && echo ${options.uid ?? 0}\n`);
      const ghArgs = `${bin}/../gh-args-${runs}`;
      if (options.gh !== undefined) {
        // Records its arguments, then the digest of the file named third
        // (`gh attestation verify FILE --repo R`) as it was when gh ran.
        const message = options.gh.message === undefined
          ? ""
          : `echo "${options.gh.message}" >&2\n`;
        writeExecutable(
          `${bin}/gh`,
          `#!/bin/sh\nprintf '%s\\n' "$@" > ${ghArgs}\n` +
            `${which("sha256sum")} "$3" | ${which("cut")} -d ' ' -f 1 >> ${ghArgs}\n` +
            `${message}exit ${options.gh.exit}\n`,
        );
      }
      const [shell = "sh", ...shellArgs] = options.shell ?? ["sh"];
      const line = [which(shell) ?? shell, ...shellArgs, SCRIPT];
      const [program = "sh", ...args] = options.before === undefined
        ? line
        : [which("sh") ?? "sh", "-c", `${options.before}\nexec "$@"`, "sh", ...line];
      const output = await new Deno.Command(program, {
        args,
        clearEnv: true,
        env: {
          PATH: bin,
          HOME: home,
          LOGIN_ETL_BASE_URL: served.base,
          LOGIN_ETL_REPOSITORY: REPOSITORY,
          LOGIN_ETL_INSTALL_DIR: dir,
          ...options.env,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      let recorded: string[] | null = null;
      try {
        recorded = Deno.readTextFileSync(ghArgs).trimEnd().split("\n");
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
      return {
        code: output.code,
        stdout: decoder.decode(output.stdout),
        stderr: decoder.decode(output.stderr),
        ghArgs: recorded,
      };
    },
  };
  try {
    await fn(world);
  } finally {
    await served.close();
    await Deno.remove(scratch, { recursive: true });
  }
}

/** A directory's files: name → content and permission bits; null when it does not exist. */
function listing(dir: string): Record<string, { text: string; mode: number }> | null {
  try {
    const found: Record<string, { text: string; mode: number }> = {};
    for (const entry of Deno.readDirSync(dir)) {
      const path = `${dir}/${entry.name}`;
      found[entry.name] = {
        text: Deno.readTextFileSync(path),
        mode: (Deno.statSync(path).mode ?? 0) & 0o777,
      };
    }
    return found;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** The one line install.sh ends a failure with: the last line on stderr. */
function lastLine(stderr: string): string {
  return stderr.trimEnd().split("\n").at(-1) ?? "";
}

function assertOneFailureLine(run: Run, pattern: RegExp): void {
  assert.equal(run.stdout, "", "nothing on stdout");
  const failures = run.stderr.trimEnd().split("\n").filter((l) =>
    !/^install\.sh: (downloading|checksum ok|build attestation ok|gh not found|warning: downloading over plain HTTP)/
      .test(l)
  );
  assert.equal(failures.length, 1, run.stderr);
  assert.match(failures[0] ?? "", pattern);
  assert.equal(lastLine(run.stderr), failures[0]);
}

const SHELLS = [["sh"], ["dash"], ["bash", "--posix"]] as const;

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
