// The benches' round order (roundOrder in bench/order.ts): over the
// rounds every contender starts one, and no contender always follows the
// same one, so what a run leaves behind is not always charged to its
// successor (in make bench, drain had always followed the stock loop).

import assert from "node:assert/strict";
import { roundOrder } from "../../bench/order.ts";

/** The contenders of make bench's latency table, by id. */
const CONTENDERS = [
  "stock8",
  "stock32",
  "drain",
  "drain8",
  "drain16",
  "drain32",
  "drain64",
  "peer",
];

Deno.test("each round is a whole order of the contenders, and round r starts with contender r", () => {
  const rounds = CONTENDERS.map((_, r) => roundOrder(CONTENDERS, r));
  for (const order of rounds) assert.deepEqual([...order].sort(), [...CONTENDERS].sort());
  assert.deepEqual(rounds.map((o) => o[0]), CONTENDERS, "round r starts with contender r");
  assert.deepEqual(roundOrder(CONTENDERS, 0), CONTENDERS, "the first round is the list as given");
});

Deno.test("in three rounds (make bench's default) no contender has the same predecessor every time", () => {
  for (const who of CONTENDERS) {
    const before = new Set<string>();
    let runs = 0;
    for (let r = 0; r < 3; r++) {
      const order = roundOrder(CONTENDERS, r);
      const at = order.indexOf(who);
      if (at > 0) {
        before.add(order[at - 1]!);
        runs++;
      }
    }
    assert.ok(runs < 2 || before.size > 1, `${who} followed only ${[...before]}`);
  }
});
