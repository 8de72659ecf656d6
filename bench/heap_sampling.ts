// deno-lint-ignore-file no-console -- a measuring tool that prints its figures
// Which code made the objects that outlived the young generation: runs
// `login-etl` (src/main.ts's `main`, same arguments and environment) under
// V8's sampling heap profiler, keeping objects a full collection freed but
// not those a scavenge freed, so what it reports is what was promoted (or is
// still alive at exit). Promotion is what fills the old generation and makes
// the mark-compacts (docs/performance.md, "Where the survivors come from").
// Usage: deno run <the etl task's flags> bench/heap_sampling.ts OUT.json
//        MESSAGES <login-etl arguments ...>
// bench/threads.ts runs drain this way with THREADS_HEAP=OUT.json. Writes the
// raw profile to OUT.json and prints KiB a message by where it was allocated.

import inspector from "node:inspector";
import { envNames, SECRET_ENV_NAMES } from "../src/config/env.ts";
import { main, takeEnv } from "../src/main.ts";

/** Where an allocation came from, by the first rule its stack matches. */
const SITES: readonly (readonly [string, RegExp])[] = [
  ["mask cache", /#remember/],
  ["prepare: parse, validate, mask, rows", /transform\.ts|validate\.ts|to_row\.ts|mask\.ts/],
  ["write: SQL text, postgres.js", /db\/write\.ts|db\/pool\.ts|postgres/],
  ["SDK response parse (with the text of held messages)", /deserializeResponse|_readStruct/],
  ["HTTP client: requests, headers, sockets, timers", /_http|http\.ts|_events|stream|timers/],
  ["SDK calls: commands, middleware", /@aws-sdk|@smithy/],
];

interface ProfileNode {
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly selfSize: number;
  readonly children: readonly ProfileNode[];
}

function post<T>(session: inspector.Session, method: string, params = {}): Promise<T> {
  return new Promise((resolve, reject) =>
    session.post(method, params, (error, result) => error ? reject(error) : resolve(result as T))
  );
}

const [out, messagesText, ...args] = Deno.args;
const messages = Number(messagesText);
if (out === undefined || !(messages > 0)) {
  console.error("usage: heap_sampling.ts OUT.json MESSAGES <login-etl arguments ...>");
  Deno.exit(2);
}
const session = new inspector.Session();
session.connect();
await post(session, "HeapProfiler.enable");
await post(session, "HeapProfiler.startSampling", {
  samplingInterval: 16384,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: false,
});
const code = await main(args, takeEnv(envNames(), SECRET_ENV_NAMES));
const { profile } = await post<{ profile: { head: ProfileNode } }>(
  session,
  "HeapProfiler.stopSampling",
);
Deno.writeTextFileSync(out, JSON.stringify(profile));
const bySite = new Map<string, number>();
const walk = (node: ProfileNode, stack: string) => {
  const here = `${stack} ${node.callFrame.functionName} ${node.callFrame.url}`;
  if (node.selfSize > 0) {
    const site = SITES.find(([, pattern]) => pattern.test(here))?.[0] ?? "other";
    bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
  }
  for (const child of node.children) walk(child, here);
};
walk(profile.head, "");
const total = [...bySite.values()].reduce((a, b) => a + b, 0);
console.error(`promoted or alive at exit: ${(total / messages / 1024).toFixed(1)} KiB a message`);
for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1])) {
  console.error(
    `  ${(bytes / messages / 1024).toFixed(2).padStart(6)} KiB  ${
      (100 * bytes / total).toFixed(0).padStart(3)
    }%  ${site}`,
  );
}
Deno.exit(code);
