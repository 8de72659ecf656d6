// Unit tests of src/sink/dry_run.ts: dryRunStore() prints each prepared item
// as one JSON line, masked, and commits nothing.

import assert from "node:assert/strict";
import { dryRunStore } from "../../../src/sink/dry_run.ts";
import { prepare } from "../../../src/transform.ts";
import type { WriteItem } from "../../../src/types.ts";
import { testMasker } from "../../helpers/drain.ts";

/** An outcome with its reject notes as sorted "id reason" lines, for deepEqual. */
function noted<T extends { rejectNotes: readonly { id: string; reason: string }[] }>(o: T) {
  return { ...o, rejectNotes: o.rejectNotes.map((n) => `${n.id} ${n.reason}`).sort() };
}

function login(user: string, ip: string, deviceId: string): string {
  return JSON.stringify({
    "user_id": user,
    "app_version": "1.2.3",
    "device_type": "android",
    ip,
    locale: null,
    "device_id": deviceId,
  });
}

/** Write items made the way the pipeline makes them: prepare() with the test key. */
async function itemsOf(bodies: Record<string, string>): Promise<readonly WriteItem[]> {
  const messages = Object.entries(bodies).map(([id, body]) => ({
    id,
    receiptHandle: `r-${id}`,
    body,
    sentAtMs: Date.UTC(2024, 4, 1, 12, 0, 0),
    dated: true,
    receiveCount: 1,
  }));
  return (await prepare(messages, await testMasker(), { maxBodyBytes: 65536, maxReceives: null }))
    .items;
}

Deno.test("dryRunStore() prints each item as one JSON line and commits nothing", async () => {
  const lines: string[] = [];
  const items = await itemsOf({
    m1: login("u1", "10.0.0.1", "d-1"),
    m2: "not json",
    m3: login("u3", "10.0.0.3", "d-3"),
  });
  assert.deepEqual(noted(await dryRunStore((line) => lines.push(line)).write(items)), {
    rejectNotes: ["m2 not_json"],
    inserted: 2,
    rejected: { "not_json": 1 },
    rejectedIds: ["m2"],
    redelivered: 0,
    refused: [],
    committed: false,
  });
  const printed = lines.map((line) => JSON.parse(line));
  const [row, reject] = [items[0], items[1]];
  assert.ok(row?.kind === "row" && reject?.kind === "reject");
  assert.deepEqual(printed[0], { "message_id": "m1", ...row.row });
  assert.deepEqual(printed[1], {
    "message_id": "m2",
    rejected: "not_json",
    detail: reject.reject.detail,
  });
  assert.equal(printed.length, 3);
  assert.ok(!lines.join("\n").includes("10.0.0."), "no raw address printed");
});
