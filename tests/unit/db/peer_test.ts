// Unit tests of src/db/peer.ts and its two users: requirepeer in openSocket
// and the socket found by probing in loadPgConnection. Another user's socket
// is a real listener run as `nobody` (runuser, perl's IO::Socket::UNIX) in a
// sticky, world-writable directory, as a local attacker would plant it.
import assert from "node:assert/strict";
import net from "node:net";
import { loadPgConnection } from "../../../src/db/connection.ts";
import { resolvePgTarget } from "../../../src/config/pg_target.ts";
import { checkConnection, connect } from "../../../src/db/pool.ts";
import { openSocket, type PgTls } from "../../../src/db/socket.ts";
import { ConfigError, DatabaseError } from "../../../src/errors.ts";

const asRoot = Deno.uid() === 0;

/** Listens on `path`, prints what each connection sends; exits when its stdin closes. */
const LISTENER = `
use IO::Socket::UNIX; use IO::Select; $|=1;
my $s = IO::Socket::UNIX->new(Type=>SOCK_STREAM(), Local=>$ARGV[0], Listen=>5) or die "listen: $!";
print "listening\\n";
my $sel = IO::Select->new($s, \\*STDIN);
while (my @ready = $sel->can_read) {
  for my $h (@ready) {
    if ($h == $s) { my $c = $s->accept; print "accepted\\n"; $sel->add($c); }
    elsif ($h == \\*STDIN) { exit 0 if !sysread(STDIN, my $x, 1); }
    else { if (sysread($h, my $buf, 4096)) { print "data ", unpack("H*", $buf), "\\n"; }
           else { $sel->remove($h); close $h; } }
  }
}`;

/** A Unix-socket listener run as `user`; `lines` is what it printed. */
async function listenAs(
  user: string,
  path: string,
): Promise<AsyncDisposable & { lines: string[] }> {
  const child = new Deno.Command("runuser", {
    args: ["-u", user, "--", "perl", "-e", LISTENER, path],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let listening: () => void = () => {};
  const ready = new Promise<void>((resolve) => (listening = resolve));
  const reading = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const parts = rest.split("\n");
      rest = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        if (line === "listening") listening();
      }
    }
  })();
  const stderr = new Response(child.stderr).text();
  const exited = child.status.then(async (s) => {
    listening();
    return s.success ? "" : await stderr;
  });
  await ready;
  const failed = await Promise.race([exited, Promise.resolve(null)]);
  assert.ok(failed === null || failed === "", `listener failed: ${failed}`);
  return {
    lines,
    async [Symbol.asyncDispose]() {
      await child.stdin.close();
      await exited;
      await reading;
      await stderr;
    },
  };
}

/** A listener of our own (the current user's). */
async function listenHere(path: string): Promise<AsyncDisposable> {
  const server = net.createServer((s) => s.on("error", () => {}).destroy());
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const plain: PgTls = { sslmode: "disable", negotiation: "postgres", sni: true };

async function openFailure(dir: string, requirePeer: string) {
  try {
    (await openSocket({ host: dir, hostaddr: null, port: 5432 }, plain, {
      timeoutMs: 3000,
      requirePeer,
    })).destroy();
    return null;
  } catch (error) {
    return error as Error & { code?: string };
  }
}

Deno.test({
  name: "openSocket() applies requirepeer: the socket's owner must be that user",
  ignore: !asRoot,
  async fn(t) {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.chmod(dir, 0o1777); // sticky and world-writable, as /tmp
      await using listener = await listenAs("nobody", `${dir}/.s.PGSQL.5432`);
      await t.step("another user's socket: refused before dialling", async () => {
        const error = await openFailure(dir, "postgres");
        assert.equal(error?.code, "REQUIREPEER_FAILED", String(error));
        assert.match(
          error?.message ?? "",
          /^requirepeer is "postgres", but the socket .*\/\.s\.PGSQL\.5432 belongs to user "nobody"/,
        );
        await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual(listener.lines, ["listening"], "no connection reached it");
      });
      await t.step("the owner's name: the connection opens", async () => {
        const socket = await openSocket({ host: dir, hostaddr: null, port: 5432 }, plain, {
          timeoutMs: 3000,
          requirePeer: "nobody",
        });
        socket.write(new Uint8Array([0, 0, 0, 4]));
        await new Promise((r) => setTimeout(r, 200));
        socket.destroy();
        assert.deepEqual(listener.lines.slice(1), ["accepted", "data 00000004"]);
      });
      await t.step(
        "a directory others may write without the sticky bit: not checkable",
        async () => {
          await Deno.chmod(dir, 0o777);
          try {
            const error = await openFailure(dir, "nobody");
            assert.equal(error?.code, "REQUIREPEER_FAILED");
            assert.match(
              error?.message ?? "",
              /cannot be checked .*writable by anyone and not sticky/,
            );
          } finally {
            await Deno.chmod(dir, 0o1777);
          }
        },
      );
      await t.step("a symbolic link in place of the socket: not checkable", async () => {
        const other = await Deno.makeTempDir();
        try {
          await Deno.symlink(`${dir}/.s.PGSQL.5432`, `${other}/.s.PGSQL.5432`);
          const error = await openFailure(other, "nobody");
          assert.equal(error?.code, "REQUIREPEER_FAILED");
          assert.match(error?.message ?? "", /is a symbolic link/);
        } finally {
          await Deno.remove(other, { recursive: true });
        }
      });
      await t.step("no socket there: ENOENT, as the dial's (transient)", async () => {
        const empty = await Deno.makeTempDir();
        try {
          assert.equal((await openFailure(empty, "nobody"))?.code, "ENOENT");
        } finally {
          await Deno.remove(empty);
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "with no host, a socket another user planted in /tmp is not used; requirepeer refuses it at connect",
  ignore: !asRoot,
  async fn(t) {
    const home = await Deno.makeTempDir();
    // A port no server here uses; its socket name in /tmp is ours to plant.
    let port = 40000 + Math.floor(Math.random() * 20000);
    while (
      await Deno.lstat(`/tmp/.s.PGSQL.${port}`).then(() => true, () => false) ||
      await Deno.lstat(`/var/run/postgresql/.s.PGSQL.${port}`).then(() => true, () => false)
    ) port++;
    const path = `/tmp/.s.PGSQL.${port}`;
    const env = { PGPORT: String(port), PGUSER: "etl", PGPASSWORD: "S3cret-pw", HOME: home };
    try {
      {
        await using listener = await listenAs("nobody", path);
        await t.step("probing refuses it in one line naming the fix", async () => {
          const error = await loadPgConnection(resolvePgTarget(null, env)).catch((e) => e);
          assert.ok(error instanceof ConfigError, String(error));
          assert.equal(
            error.message,
            `Cannot use the socket ${path}: it belongs to user "nobody", not root, postgres or you, and /tmp lets anyone create it (it was found because no host is given): set host (with requirepeer=nobody if that server is meant) or PGHOST`,
          );
        });
        await t.step("requirepeer=postgres: refused at connect, nothing sent", async () => {
          const connection = await loadPgConnection(
            resolvePgTarget(null, { ...env, PGREQUIREPEER: "postgres" }),
          );
          assert.equal(connection.endpoints[0]?.host, "/tmp");
          const sql = connect({ connection, schema: "public", stateSchema: "login_etl", max: 1 });
          try {
            const error = await checkConnection(sql, connection).catch((e) => e);
            assert.ok(error instanceof DatabaseError, String(error));
            assert.match(
              error.message,
              /requirepeer is "postgres", but the socket \/tmp\/\.s\.PGSQL\.\d+ belongs to user "nobody": the server behind it does not run as postgres; nothing was sent$/,
            );
            assert.ok(!error.message.includes("S3cret-pw"));
          } finally {
            await sql.end({ timeout: 1 });
          }
          assert.deepEqual(listener.lines, ["listening"], "no connection reached it");
        });
      }
      await Deno.remove(path);
      await t.step("a socket of the current user's is used", async () => {
        await using _ = await listenHere(path);
        const connection = await loadPgConnection(resolvePgTarget(null, env));
        assert.equal(connection.endpoints[0]?.host, "/tmp");
      });
    } finally {
      await Deno.remove(path).catch(() => {});
      await Deno.remove(home, { recursive: true });
    }
  },
});
