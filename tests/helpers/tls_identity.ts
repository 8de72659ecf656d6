// A throwaway CA and a server certificate it signed, for loopback HTTPS
// servers in tests, made with openssl. A leaf apart from its CA, because
// rustls (Deno's TLS) refuses a CA certificate presented as a server's.

/** PEM texts and the CA's file, for clients told to trust it. */
export interface TlsIdentity {
  /** The CA certificate's path: for NODE_EXTRA_CA_CERTS, DENO_CERT, CURL_CA_BUNDLE. */
  readonly caPath: string;
  readonly caPem: string;
  /** The server certificate, for localhost, 127.0.0.1 and ::1. */
  readonly certPem: string;
  readonly keyPem: string;
}

async function openssl(args: readonly string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args: [...args],
    stdout: "null",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Makes a CA and a server certificate in `dir` (which the caller removes). */
export async function makeTlsIdentity(dir: string): Promise<TlsIdentity> {
  const ca = `${dir}/ca`;
  const leaf = `${dir}/server`;
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=login-etl test CA",
    "-keyout",
    `${ca}.key`,
    "-out",
    `${ca}.crt`,
  ]); // deno-fmt-ignore
  await openssl([
    "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
    "-keyout", `${leaf}.key`, "-out", `${leaf}.csr`,
  ]); // deno-fmt-ignore
  await Deno.writeTextFile(
    `${leaf}.ext`,
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n" +
      "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n",
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    `${leaf}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    `${leaf}.ext`,
    "-out",
    `${leaf}.crt`,
  ]); // deno-fmt-ignore
  return {
    caPath: `${ca}.crt`,
    caPem: await Deno.readTextFile(`${ca}.crt`),
    certPem: await Deno.readTextFile(`${leaf}.crt`),
    keyPem: await Deno.readTextFile(`${leaf}.key`),
  };
}
