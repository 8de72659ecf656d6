// Unit tests of src/db/refusal.ts over a fake statement (no database):
// isolate() splits a refused batch down to the messages refused and commits
// the rest; probes the table only when no row committed, failing the batch as
// the table's fault when the probe is refused; fails when a reject is
// refused; tries each refused message once more. isDataError() and
// refusalDetail() name what refused a row and never quote a value.

import assert from "node:assert/strict";
import { isDataError, isolate, refusalDetail, type Written } from "../../../src/db/refusal.ts";
import { DatabaseError } from "../../../src/errors.ts";
import type { Masked, WriteItem } from "../../../src/types.ts";

function row(id: string): WriteItem {
  return {
    kind: "row",
    id,
    sentDate: "2024-05-01",
    row: {
      "user_id": id,
      "device_type": "ios",
      "masked_ip": "k1:ip" as Masked,
      "masked_device_id": "k1:dev" as Masked,
      locale: null,
      "app_version": 1,
      "create_date": "2024-05-01",
    },
  };
}

function reject(id: string): WriteItem {
  return {
    kind: "reject",
    id,
    sentDate: "2024-05-01",
    reject: {
      reason: "not_json",
      detail: "body is not valid JSON",
      "masked_body": null,
      "body_bytes": 1,
      "body_hmac": "k1:hmac" as Masked,
      "sent_at_ms": 0,
    },
  };
}

/** A CHECK violation as postgres.js reports it, quoting the value in its message. */
function checkViolation(): Error {
  return Object.assign(new Error("new row violates check constraint; Key (user_id)=(secret)"), {
    code: "23514",
    constraint_name: "no_bad",
    table_name: "user_logins",
  });
}

/** A fake store: refuses any statement holding one of `refused`; records each statement's ids. */
function fakeStore(refused: Set<string>, probe: unknown = null) {
  const statements: string[][] = [];
  let probes = 0;
  return {
    statements,
    get probes() {
      return probes;
    },
    statement(part: readonly WriteItem[]): Promise<Written> {
      statements.push(part.map((i) => i.id));
      if (part.some((i) => refused.has(i.id))) return Promise.reject(checkViolation());
      const rows = part.filter((i) => i.kind === "row").length;
      return Promise.resolve({
        inserted: rows,
        rejected: part.length - rows === 0 ? {} : { "not_json": part.length - rows },
        rejectedIds: part.filter((i) => i.kind === "reject").map((i) => i.id),
        redelivered: 0,
        rejectNotes: [],
      });
    },
    probe() {
      probes++;
      return Promise.resolve(probe);
    },
    failure: (_: readonly WriteItem[], error: unknown) => error as Error,
    systemicIsTransient: false,
  };
}

Deno.test("isolate() commits all but the refused messages, and names what refused each", async () => {
  const items = ["a", "b", "c", "d", "e", "f", "g"].map(row);
  const store = fakeStore(new Set(["c", "f"]));
  const written = await isolate(items, store);
  assert.equal(written.inserted, 5);
  assert.deepEqual(written.refused.map((r) => r.id).sort(), ["c", "f"]);
  for (const r of written.refused) {
    assert.equal(r.sqlstate, "23514");
    assert.match(r.detail, /constraint no_bad, table user_logins/);
    assert.ok(!r.detail.includes("secret"), "never the error's message, which quotes values");
  }
  assert.equal(store.probes, 0, "a committed row shows the table takes rows");
  assert.deepEqual(
    store.statements.filter((s) => s.length === 1 && s[0] === "c").length,
    2,
    "a refused message is tried once more on its own",
  );
});

Deno.test("isolate() probes when no row committed: a refused probe fails the batch as the table's fault, a taken one keeps the refusals", async () => {
  const items = [row("a"), reject("b")];
  await assert.rejects(
    isolate(items, fakeStore(new Set(["a"]), checkViolation())),
    (error: unknown) => {
      assert.ok(error instanceof DatabaseError, String(error));
      assert.equal(error.code, "db_write");
      assert.equal(error.transient, false, "final for drain");
      assert.deepEqual(error.messageIds, ["a", "b"]);
      assert.match(error.message, /refuses every row: SQLSTATE 23514, constraint no_bad/);
      assert.match(error.message, /none is rejected and all stay queued/);
      return true;
    },
  );
  const store = fakeStore(new Set(["a"]));
  const written = await isolate(items, store);
  assert.equal(store.probes, 1, "a committed reject proves nothing of the table");
  assert.deepEqual(written.refused.map((r) => r.id), ["a"]);
  assert.deepEqual(written.rejectedIds, ["b"]);
});

Deno.test("isolate() fails the batch when a reject is refused: the rejects table is at fault", async () => {
  await assert.rejects(
    isolate([row("a"), reject("b")], { ...fakeStore(new Set(["b"])), systemicIsTransient: true }),
    (error: unknown) => {
      assert.ok(error instanceof DatabaseError, String(error));
      assert.equal(error.transient, true, "retried with backoff under run");
      assert.match(error.message, /refuses the reject of a message/);
      return true;
    },
  );
});

Deno.test("isDataError() holds for classes 22 and 23 and P0001 only", () => {
  for (const code of ["22001", "22003", "23502", "23505", "23514", "P0001"]) {
    assert.equal(isDataError({ code }), true, code);
  }
  for (const code of ["42501", "40001", "57014", "08006", undefined]) {
    assert.equal(isDataError({ code }), false, String(code));
  }
  assert.equal(isDataError(null), false);
  assert.match(refusalDetail({ code: "P0001" }).detail, /raised by a trigger or function/);
});
