/**
 * Who runs the server behind a Unix socket, for libpq's `requirepeer` and for
 * the socket found by probing when no host is given.
 *
 * libpq asks the kernel for the peer's user (getpeereid); the runtime cannot.
 * The socket file's owner stands in for it: the server created the file, and
 * where no one else can replace that directory entry, the owner is still the
 * one listening. That holds in a directory only root or the owner (or the
 * owner's group) may write, and in a sticky one such as /tmp, where only a
 * file's owner (and root, and the directory's owner) may remove or rename it.
 * It does not hold in a directory others may write without the sticky bit,
 * nor through a symbolic link, which its own owner may point elsewhere.
 *
 * @module
 */

/** The owner of a socket file, and whether that owner is a sound stand-in for the server's user. */
export interface SocketOwner {
  readonly uid: number;
  /** The user name (/etc/passwd); `null` when the uid has none there. */
  readonly name: string | null;
  /** Why the owner does not vouch for the server; `null` when it does. */
  readonly unsound: string | null;
}

/** A user of /etc/passwd. */
interface PasswdUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/** The users of /etc/passwd (local users; NSS sources such as LDAP are not read). */
async function passwd(): Promise<PasswdUser[]> {
  const text = await Deno.readTextFile("/etc/passwd").catch(() => "");
  const users: PasswdUser[] = [];
  for (const line of text.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (name && uid !== undefined && gid !== undefined && /^\d+$/.test(uid) && /^\d+$/.test(gid)) {
      users.push({ name, uid: Number(uid), gid: Number(gid) });
    }
  }
  return users;
}

/** The uid of a user name, from /etc/passwd; `null` when there is none. */
export async function uidOf(name: string): Promise<number | null> {
  return (await passwd()).find((u) => u.name === name)?.uid ?? null;
}

/** The directory part of a path (`/tmp/.s.PGSQL.5432` → `/tmp`). */
function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/**
 * The owner of the socket file at `path` and whether it vouches for the
 * server (see the module comment).
 *
 * @throws the file system's error when the file cannot be examined (`NotFound`…)
 */
export async function socketOwner(path: string): Promise<SocketOwner> {
  const info = await Deno.lstat(path);
  const users = await passwd();
  const uid = info.uid;
  if (uid === null) return { uid: -1, name: null, unsound: "this system reports no file owners" };
  const owner = users.find((u) => u.uid === uid);
  const name = owner?.name ?? null;
  if (info.isSymlink) {
    return { uid, name, unsound: `${path} is a symbolic link; give the directory it points to` };
  }
  const dir = await Deno.stat(dirOf(path));
  const mode = dir.mode ?? 0;
  const sticky = (mode & 0o1000) !== 0;
  const unsound = dir.uid !== 0 && dir.uid !== uid
    ? `its directory ${dirOf(path)} belongs to another user (uid ${dir.uid}), who may replace it`
    : !sticky && (mode & 0o002) !== 0
    ? `its directory ${dirOf(path)} is writable by anyone and not sticky, so anyone may replace it`
    : !sticky && (mode & 0o020) !== 0 && dir.gid !== 0 && dir.gid !== owner?.gid
    ? `its directory ${
      dirOf(path)
    } is writable by group ${dir.gid}, not the owner's, whose members may replace it`
    : null;
  return { uid, name, unsound };
}

/**
 * Why the socket at `path` fails `requirepeer=user` (libpq: the server must
 * run as that OS user); `null` when it passes.
 */
export async function requirePeerFailure(path: string, user: string): Promise<string | null> {
  const owner = await socketOwner(path);
  if (owner.unsound !== null) {
    return `requirepeer="${user}" cannot be checked for the socket ${path}: ${owner.unsound}`;
  }
  if (owner.name !== user) {
    return `requirepeer is "${user}", but the socket ${path} belongs to ${
      owner.name === null ? `uid ${owner.uid}` : `user "${owner.name}"`
    }: the server behind it does not run as ${user}`;
  }
  return null;
}

/**
 * Why a socket found by probing (no host given) must not be used, after
 * "Cannot use the socket …: ": in a
 * directory anyone may write (/tmp), one that belongs to a user other than
 * root, the current user, `postgres` or the owner of `packagedDir` (the
 * packaged server's socket directory) may have been put there to collect the
 * password. `null` when it may be used.
 */
export async function probedSocketFailure(
  path: string,
  packagedDir: string,
): Promise<string | null> {
  const dir = await Deno.stat(dirOf(path));
  if (((dir.mode ?? 0) & 0o002) === 0) return null;
  const owner = await socketOwner(path);
  const trusted = new Set<number>([0, Deno.uid() ?? 0]);
  const postgres = await uidOf("postgres");
  if (postgres !== null) trusted.add(postgres);
  const packaged = await Deno.stat(packagedDir).catch(() => null);
  if (packaged?.uid !== null && packaged?.uid !== undefined) trusted.add(packaged.uid);
  const who = owner.name === null ? `uid ${owner.uid}` : `user "${owner.name}"`;
  if (!trusted.has(owner.uid)) {
    return `it belongs to ${who}, not root, postgres or you, and ${
      dirOf(path)
    } lets anyone create it (it was found because no host is given): set host (with requirepeer=${
      owner.name ?? "USER"
    } if that server is meant) or PGHOST`;
  }
  if (owner.unsound !== null) {
    return `${owner.unsound} (it was found because no host is given): set host or PGHOST`;
  }
  return null;
}
