// Shared by the tests of scripts/install.sh (tests/cli/install_test.ts and
// install_checks_test.ts, split so that neither bounds a parallel run): a
// loopback server laid out as GitHub's releases, over HTTP and HTTPS, fake
// binaries, and a PATH of only the tools the script may use.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { makeTlsIdentity, type TlsIdentity } from "./pki.ts";

export const root = new URL("../../", import.meta.url).pathname;
export const SCRIPT = `${root}scripts/install.sh`;
export const REPOSITORY = "acme/login-etl";
export const decoder = new TextDecoder();

export const LINUX_X64 = "login-etl-x86_64-unknown-linux-gnu";

export function fakeBinary(version: string, target: string): string {
  return `#!/bin/sh\necho "login-etl ${version} (${target})"\n`;
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export type Release = Map<string, string>;

/** A release with an asset and its .sha256 for each of the given targets. */
export function release(version: string, targets: readonly string[]): Release {
  const files: Release = new Map();
  for (const target of targets) {
    const asset = `login-etl-${target}`;
    const body = fakeBinary(version, target);
    files.set(asset, body);
    files.set(`${asset}.sha256`, `${sha256(body)}  ${asset}\n`);
  }
  return files;
}

export const ALL_TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

export function releases(): Map<string, Release> {
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
export const LATEST = "v0.2.0";

export interface Served {
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
export function serveReleases(tls: TlsIdentity): Served {
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

export interface Options {
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

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** gh's arguments, then the SHA-256 of the file it was asked about; null if gh never ran. */
  readonly ghArgs: string[] | null;
}

/** One test's world: a release server and a scratch directory with a home and a target. */
export interface World {
  readonly served: Served;
  readonly home: string;
  /** What LOGIN_ETL_INSTALL_DIR points at. */
  readonly dir: string;
  install(options?: Options): Promise<Run>;
}

export const TOOLS = [
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

export function which(tool: string): string | undefined {
  const output = new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "piped" })
    .outputSync();
  const path = decoder.decode(output.stdout).trim();
  return output.success && path.startsWith("/") ? path : undefined;
}

export function writeExecutable(path: string, text: string): void {
  Deno.writeTextFileSync(path, text);
  Deno.chmodSync(path, 0o755);
}

let sharedPems: Promise<Omit<TlsIdentity, "caPath">> | undefined;

/**
 * The HTTPS identity of a world: one CA and server certificate for every
 * world of this process (their two RSA keys cost more CPU than a world's
 * installs, and no case depends on having a CA of its own), with the CA's
 * file written into the world's scratch directory.
 */
async function identityIn(scratch: string): Promise<TlsIdentity> {
  sharedPems ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "login-etl-install-tls-" });
    try {
      const { caPem, certPem, keyPem } = await makeTlsIdentity(dir);
      return { caPem, certPem, keyPem };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
  const pems = await sharedPems;
  const caPath = `${scratch}/ca.crt`;
  await Deno.writeTextFile(caPath, pems.caPem);
  return { caPath, ...pems };
}

/** Runs `fn` with a release server and a scratch directory, both gone after. */
export async function withWorld(fn: (world: World) => Promise<void>): Promise<void> {
  const scratch = await Deno.makeTempDir({ prefix: "login-etl-install-" });
  const served = serveReleases(await identityIn(scratch));
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
export function listing(dir: string): Record<string, { text: string; mode: number }> | null {
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
export function lastLine(stderr: string): string {
  return stderr.trimEnd().split("\n").at(-1) ?? "";
}

export function assertOneFailureLine(run: Run, pattern: RegExp): void {
  assert.equal(run.stdout, "", "nothing on stdout");
  const failures = run.stderr.trimEnd().split("\n").filter((l) =>
    !/^install\.sh: (downloading|checksum ok|build attestation ok|gh not found|warning: downloading over plain HTTP)/
      .test(l)
  );
  assert.equal(failures.length, 1, run.stderr);
  assert.match(failures[0] ?? "", pattern);
  assert.equal(lastLine(run.stderr), failures[0]);
}

export const SHELLS = [["sh"], ["dash"], ["bash", "--posix"]] as const;
