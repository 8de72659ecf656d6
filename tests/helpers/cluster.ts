// A throwaway Postgres cluster for tests that need a server configuration the
// shared one must not get (client-certificate auth, a read-only primary, a
// Unix socket we may log in on): initdb and pg_ctl from the local
// installation (`pg_config --bindir`; `make postgres` installs it), run as the
// `postgres` OS user when we are root (initdb refuses root), on a free
// loopback port, in a temporary directory removed on dispose.

const decoder = new TextDecoder();

/** A running throwaway cluster; dispose with `await using`. */
export interface Cluster extends AsyncDisposable {
  readonly port: number;
  /** The directory of its Unix socket (and its data, certificates). */
  readonly dir: string;
  /** A superuser URL over TCP: postgres:postgres@127.0.0.1:port/postgres. */
  readonly url: string;
  /** Runs SQL as the superuser over the socket, for setup; returns psql's output. */
  psql(sql: string): Promise<string>;
}

/** Options of `startCluster`. */
export interface ClusterOptions {
  /** Lines of pg_hba.conf, in order. */
  readonly hba: readonly string[];
  /** postgresql.conf settings. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Files to put in the data directory first (certificates), name → content. */
  readonly files?: Readonly<Record<string, string>>;
}

async function run(cmd: string, args: string[], asPostgres: boolean): Promise<string> {
  const [command, argv] = asPostgres ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [
    cmd,
    args,
  ];
  const out = await new Deno.Command(command as string, {
    args: argv as string[],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${decoder.decode(out.stderr).slice(-2000)}`);
  }
  return decoder.decode(out.stdout);
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Starts a cluster with password `postgres` for the `postgres` superuser. */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const bin = (await run("pg_config", ["--bindir"], false)).trim();
  const asPostgres = Deno.uid() === 0;
  const dir = await Deno.makeTempDir({ prefix: "login_etl_pg_" });
  const data = `${dir}/data`;
  const port = freePort();
  try {
    await Deno.writeTextFile(`${dir}/pw`, "postgres\n");
    if (asPostgres) await run("chown", ["-R", "postgres:postgres", dir], false);
    await run(`${bin}/initdb`, [
      "-D",
      data,
      "-U",
      "postgres",
      "--auth=scram-sha-256",
      `--pwfile=${dir}/pw`,
      "-E",
      "UTF8",
      "--no-sync",
    ], asPostgres);
    for (const [name, content] of Object.entries(options.files ?? {})) {
      await Deno.writeTextFile(`${data}/${name}`, content, { mode: 0o600 });
    }
    await Deno.writeTextFile(`${data}/pg_hba.conf`, options.hba.join("\n") + "\n");
    const settings = {
      port: String(port),
      "listen_addresses": "'127.0.0.1'",
      "unix_socket_directories": `'${dir}'`,
      fsync: "off",
      ...options.settings,
    };
    await Deno.writeTextFile(
      `${data}/postgresql.auto.conf`,
      Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join("\n") + "\n",
    );
    if (asPostgres) await run("chown", ["-R", "postgres:postgres", dir], false);
    await run(`${bin}/pg_ctl`, ["-D", data, "-w", "-l", `${dir}/log`, "start"], asPostgres);
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    port,
    dir,
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    psql: (sql) =>
      run("psql", [
        `host=${dir} port=${port} user=postgres password=postgres dbname=postgres`,
        "-Atq",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
      ], false),
    async [Symbol.asyncDispose]() {
      await run(`${bin}/pg_ctl`, ["-D", data, "-m", "immediate", "-w", "stop"], asPostgres)
        .catch(() => {});
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Certificates made with openssl: a CA, a server certificate for localhost, client certificates. */
export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  /** Makes a key and a certificate signed by the CA with this CN; the key encrypted when a passphrase is given. */
  issue(
    cn: string,
    options?: { readonly passphrase?: string; readonly san?: string; readonly file?: string },
  ): Promise<{ cert: string; key: string; certPath: string; keyPath: string }>;
}

/** A fresh CA in a temporary directory (removed with the cluster's or by the caller). */
export async function makePki(dir: string): Promise<TestPki> {
  const ssl = (args: string[]) => run("openssl", args, false);
  await ssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=login-etl throwaway CA",
    "-keyout",
    `${dir}/ca.key`,
    "-out",
    `${dir}/ca.crt`,
  ]);
  return {
    dir,
    caCert: await Deno.readTextFile(`${dir}/ca.crt`),
    caKey: await Deno.readTextFile(`${dir}/ca.key`),
    async issue(cn, options = {}) {
      const base = `${dir}/${options.file ?? cn.replace(/\W/g, "_")}`;
      await ssl([
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        `/CN=${cn}`,
        "-keyout",
        `${base}.plain.key`,
        "-out",
        `${base}.csr`,
      ]);
      await Deno.writeTextFile(`${base}.ext`, `subjectAltName=${options.san ?? `DNS:${cn}`}\n`);
      await ssl([
        "x509",
        "-req",
        "-in",
        `${base}.csr`,
        "-CA",
        `${dir}/ca.crt`,
        "-CAkey",
        `${dir}/ca.key`,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        `${base}.ext`,
        "-out",
        `${base}.crt`,
      ]);
      if (options.passphrase !== undefined) {
        await ssl([
          "pkey",
          "-in",
          `${base}.plain.key`,
          "-aes256",
          "-passout",
          `pass:${options.passphrase}`,
          "-out",
          `${base}.key`,
        ]);
      } else {
        await Deno.copyFile(`${base}.plain.key`, `${base}.key`);
      }
      await Deno.chmod(`${base}.key`, 0o600);
      return {
        cert: await Deno.readTextFile(`${base}.crt`),
        key: await Deno.readTextFile(`${base}.key`),
        certPath: `${base}.crt`,
        keyPath: `${base}.key`,
      };
    },
  };
}
