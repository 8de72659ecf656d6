// Soak (make soak, not in CI): 100,000 messages and 20 kills.

import { runCrashScenario } from "../reliability/crash_scenario.ts";

Deno.test("soak: drain killed 20 times over 100,000 messages loses nothing and doubles nothing", async () => {
  await runCrashScenario({ messages: 100_000, kills: 20, seed: 100_000, label: "soak" });
});
