// Is this checkout's write path slower than another's (say, one pinned to
// another postgres.js)? Runs bench/ingest.ts in both, in interleaved rounds
// (the order alternating, so machine noise falls on both alike), over TLS
// (sslmode=prefer against a server with TLS, the default) and plain
// (sslmode=disable), and prints each round and the medians as JSON.
//
//   deno run -A bench/pg_versions.ts --other /path/to/other/checkout [--rounds 6]
//
// The other checkout needs bench/ingest.ts (copy it in) and its own deno.json.

import { parseArgs } from "node:util";
import { DATABASE_URL } from "./_postgres.ts";

const { values } = parseArgs({
  options: { other: { type: "string" }, rounds: { type: "string", default: "6" } },
});
if (values.other === undefined) throw new Error("--other <checkout> is required");
const here = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const checkouts = { this: here, other: values.other.replace(/\/$/, "") };
const base = DATABASE_URL;
const modes = {
  tls: base,
  plain: `${base}${base.includes("?") ? "&" : "?"}sslmode=disable`,
};

async function pin(dir: string): Promise<string> {
  const json = JSON.parse(await Deno.readTextFile(`${dir}/deno.json`));
  return String(json.imports?.postgres ?? "?");
}

async function ingest(
  dir: string,
  url: string,
): Promise<{ rows_per_s: number; cpu_ms_per_10k: number }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", `${dir}/deno.json`, `${dir}/bench/ingest.ts`, url],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`${dir}: ${new TextDecoder().decode(out.stderr).slice(-1000)}`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "{}");
}

const encoder = new TextEncoder();
const write = (stream: typeof Deno.stdout, line: string) =>
  stream.writeSync(encoder.encode(`${line}\n`));

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const rounds = Number(values.rounds);
const results: Record<string, Record<string, { rows_per_s: number[]; cpu_ms_per_10k: number[] }>> =
  {};
for (let r = 0; r < rounds; r++) {
  for (const [mode, url] of Object.entries(modes)) {
    const order = r % 2 === 0 ? ["this", "other"] as const : ["other", "this"] as const;
    for (const who of order) {
      const result = await ingest(checkouts[who], url);
      const slot = ((results[mode] ??= {})[who] ??= { rows_per_s: [], cpu_ms_per_10k: [] });
      slot.rows_per_s.push(result.rows_per_s);
      slot.cpu_ms_per_10k.push(result.cpu_ms_per_10k);
      write(Deno.stderr, `round ${r + 1} ${mode} ${who}: ${JSON.stringify(result)}`);
    }
  }
}
const summary: Record<string, unknown> = {
  this: await pin(checkouts.this),
  other: await pin(checkouts.other),
  rounds,
};
for (const [mode, byWho] of Object.entries(results)) {
  summary[mode] = Object.fromEntries(
    Object.entries(byWho).map(([who, r]) => [who, {
      rows_per_s: r.rows_per_s,
      median_rows_per_s: median(r.rows_per_s),
      median_cpu_ms_per_10k: median(r.cpu_ms_per_10k),
    }]),
  );
}
write(Deno.stdout, JSON.stringify(summary));
