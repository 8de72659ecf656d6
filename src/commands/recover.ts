/**
 * `recover`: prints the raw values behind masks, proven and audited, or
 * (`--audit`) exports the audit trail. Values go to stdout only, one
 * `MASK<TAB>FIELD<TAB>VALUE` line each.
 *
 * @module
 */

import type { RecoverConfig } from "../config/resolve.ts";
import { EtlError } from "../errors.ts";
import { INBOX_ENTRIES_PER_MASK } from "../db/migrations.ts";
import { escapeControl } from "../log.ts";
import { requireSchema } from "../db/schema.ts";
import { listAudit } from "../pii/audit.ts";
import { loadPiiKeys } from "../pii/keys.ts";
import { recover } from "../pii/recover.ts";
import type { CommandIo } from "./_io.ts";
import { KEY_RULES, openSession, requestedMasks } from "./_pii.ts";

/** Runs `recover`. */
export async function recoverCommand(config: RecoverConfig, io: CommandIo): Promise<void> {
  await using session = await openSession(config, io);
  const { actor, warn, database, connection } = session;
  if (config.audit) {
    await requireSchema(database.sql, { connection, ...database.schemas });
    for await (const row of listAudit(database)) io.writeStdout(JSON.stringify(row));
    return;
  }
  const masks = await requestedMasks(config);
  await requireSchema(database.sql, { connection, ...database.schemas });
  const keys = await loadPiiKeys(config, { rules: KEY_RULES, warn, vault: true });
  const results = await recover(database, keys, masks, { actor, reason: config.reason });
  for (const r of results) {
    // Values passed their field's rule (recover.ts); escaping is the second
    // line of defence, so a value can never forge a line or drive a terminal.
    if (r.outcome === "success") io.writeStdout(`${r.masked}\t${r.field}\t${escapeControl(r.raw)}`);
  }
  const count = (outcome: string) => results.filter((r) => r.outcome === outcome).length;
  const [failed, missing, erased] = [count("failed"), count("not_found"), count("erased")];
  const dropped = count("dropped");
  io.telemetry.emit({
    type: "ValuesRecovered",
    recovered: count("success"),
    notFound: missing + dropped,
    erased,
    failed,
  });
  if (failed > 0) {
    throw new EtlError(
      "vault_integrity",
      `Refused ${failed} of ${results.length} vault entries: they did not decrypt, did not mask back to their masks or held a value no valid login event carries (altered, injected or swapped); see the audit trail`,
    );
  }
  if (count("success") === 0) {
    // A mask whose inbox entries a merge dropped (the inbox cap per mask and
    // login, or entries not of a vault entry's shape) was written, and may
    // have been squatted: say so, rather than "never vaulted".
    const reasons = [
      erased > 0 && `${erased === 1 ? "that mask was" : `${erased} masks were`} erased by forget`,
      dropped > 0 &&
      `${
        dropped === 1 ? "that mask's" : `${dropped} masks'`
      } inbox entries were dropped by a merge: past the inbox cap of ${INBOX_ENTRIES_PER_MASK} per mask and login, or over the size bound (see the merge rows of recover --audit)`,
      missing > 0 && `${missing === 1 ? "that mask was" : `${missing} masks were`} never vaulted`,
    ].filter((r): r is string => r !== false);
    throw new EtlError(
      "nothing_recovered",
      erased + dropped > 0
        ? `Nothing recovered: ${reasons.join("; ")}`
        : `No vault entry for ${missing === 1 ? "that mask" : "any of those masks"}: never vaulted`,
    );
  }
}
