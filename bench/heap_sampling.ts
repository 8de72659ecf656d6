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

/**
 * Where an allocation came from: the innermost frame of its stack that one of
 * these names, tried in order, so code called from a timer or a stream
 * callback counts where it runs, not where the callback came from.
 */
const SITES: readonly (readonly [string, (fn: string, url: string) => boolean])[] = [
  ["mask cache", (fn) => fn === "#remember"],
  [
    "prepare: parse, validate, mask, rows",
    (_, url) => /\/src\/(transform|validate|to_row|mask|sink\/sink)\.ts/.test(url),
  ],
  ["write: SQL text, postgres.js", (_, url) => /\/src\/db\/|\/postgres\//.test(url)],
  [
    "SDK response parse (with the text of held messages)",
    (fn, url) => /@smithy|@aws-sdk/.test(url) && /deserializ|_read|^read$/.test(fn),
  ],
  ["SDK calls: commands, middleware, signing", (_, url) => /@smithy|@aws-sdk/.test(url)],
  [
    "HTTP client: requests, headers, sockets, timers",
    (_, url) => /^node:|deno_node|timers|deno_web|deno_fetch/.test(url),
  ],
  ["the pipeline, receive and delete", (_, url) => /\/src\/(pipeline|sqs|ops)\//.test(url)],
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
/** A frame's site, if one of SITES names it. */
const siteOf = (frame: ProfileNode["callFrame"]) =>
  SITES.find(([, test]) => test(frame.functionName, frame.url))?.[0];
/** The innermost named frame wins: a node's own site, else the one it was called under. */
const walk = (node: ProfileNode, outer: string) => {
  const site = siteOf(node.callFrame) ?? outer;
  if (node.selfSize > 0) bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
  for (const child of node.children) walk(child, site);
};
walk(profile.head, "other");
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
