// Crash safety: 20,000 messages, the consumer SIGKILLed at least 5 times at
// different points, restarted; at the end nothing is lost or doubled.

import { runCrashScenario } from "./crash_scenario.ts";

Deno.test("drain killed 6 times over 20,000 messages loses nothing and doubles nothing", async () => {
  await runCrashScenario({ messages: 20_000, kills: 6, seed: 20261125, label: "crash" });
});
