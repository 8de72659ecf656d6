/**
 * What each command may do in the database, as one table: every privilege a
 * command needs, the group role sql/roles.sql grants it to, and why. Two
 * things read it: `make docs`, which writes sql/roles.sql's grants from it
 * (`grantsSql`), and `check`, which asks whether the current role holds what
 * the checked command needs (`privilegesFor`, probed by `privileges.ts`).
 * Pure data and text.
 *
 * The owner role (login_etl_owner) runs migrate, rekey, rekey-vault and
 * vault-merge and holds their privileges by owning the objects: those rows
 * grant nothing (`to` is empty) and are here so `check` can tell a role
 * that does not.
 *
 * @module
 */

import type { CheckTarget } from "../config/commands.ts";

/** Which of a deployment's two schemas an object is in. */
export type Home = "data" | "state";

/** The group roles sql/roles.sql creates, and PUBLIC. */
type Grantee = "login_etl_consumer" | "pii_recoverer" | "login_etl_analyst" | "PUBLIC";

/** A table (or view), some of its columns, or a function with its argument types. */
type Target =
  | { readonly table: string; readonly in: Home; readonly columns?: readonly string[] }
  | { readonly fn: string; readonly in: Home };

/** One GRANT of sql/roles.sql, or one privilege the owner holds by owning the object. */
interface Grant {
  readonly on: Target;
  /** Table privileges; a function's is EXECUTE. */
  readonly privileges?: readonly string[];
  /** Empty: the owner's, by ownership; nothing to grant. */
  readonly to: readonly Grantee[];
  /** The commands whose role needs it (`check --for`). */
  readonly usedBy: readonly CheckTarget[];
  /** Only when the command writes the vault (a vault key is configured). */
  readonly vaultOnly?: boolean;
}

/** Grants under one comment of sql/roles.sql. */
interface Section {
  /** Why these: the comment above them in sql/roles.sql. */
  readonly why: string;
  readonly grants: readonly Grant[];
}

const CONSUMERS: readonly CheckTarget[] = ["drain", "run"];
const table = (name: string, home: Home = "state") => ({ table: name, in: home });
const fn = (name: string) => ({ fn: name, in: "state" as Home });

/** The privileges of every command, by the role that holds them, in sql/roles.sql's order. */
export const GRANTS: readonly Section[] = [
  {
    why:
      "The consumer writes what its runs produce and reads only what its writes need: the ledger (redeliveries), the reasons it inserted (RETURNING), reject ages (retention), key fingerprints. The ledger's day partitions are created and dropped by login_etl_ledger_maintain, with the owner's rights.",
    grants: [
      {
        on: table("user_logins", "data"),
        privileges: ["INSERT"],
        to: ["login_etl_consumer"],
        usedBy: CONSUMERS,
      },
      {
        on: table("login_etl_ledger"),
        privileges: ["SELECT", "INSERT"],
        to: ["login_etl_consumer"],
        usedBy: CONSUMERS,
      },
      {
        on: fn("login_etl_ledger_maintain(integer,integer)"),
        to: ["login_etl_consumer"],
        usedBy: CONSUMERS,
      },
      {
        on: table("login_etl_rejects"),
        privileges: ["INSERT", "DELETE"],
        to: ["login_etl_consumer"],
        usedBy: CONSUMERS,
      },
      {
        on: { ...table("login_etl_rejects"), columns: ["message_id", "detail", "rejected_at"] },
        privileges: ["SELECT"],
        to: ["login_etl_consumer"],
        usedBy: CONSUMERS,
      },
      {
        // report counts rejects by reason.
        on: { ...table("login_etl_rejects"), columns: ["reason"] },
        privileges: ["SELECT"],
        to: ["login_etl_consumer"],
        usedBy: [...CONSUMERS, "report"],
      },
    ],
  },
  {
    why:
      "It records its key ids only through login_etl_register_key, which checks the id's shape, names the login and caps new ids a day: a consumer that could write the table could plant any id (merges and recover would then ask for a key nobody has) or rows that pass for someone else's.",
    grants: [
      {
        on: table("login_etl_keys"),
        privileges: ["SELECT"],
        to: ["login_etl_consumer"],
        usedBy: [...CONSUMERS, "rekey", "rekey-vault"],
      },
      {
        on: fn("login_etl_register_key(text,text)"),
        to: ["login_etl_consumer"],
        usedBy: [...CONSUMERS, "rekey", "rekey-vault"],
      },
      {
        on: fn("login_etl_vault_put(text[],text[],bytea[],bytea[],text[])"),
        to: ["login_etl_consumer"],
        usedBy: CONSUMERS,
        vaultOnly: true,
      },
    ],
  },
  {
    why:
      "The recoverer recovers, erases and reads the trail, each through a function. Recovery takes two: login_etl_release_request audits and issues a ticket, login_etl_release hands out the ciphertext once that has committed.",
    grants: [
      {
        on: fn("login_etl_release_request(text[],text,text)"),
        to: ["pii_recoverer"],
        usedBy: ["recover"],
      },
      { on: fn("login_etl_release(bigint)"), to: ["pii_recoverer"], usedBy: ["recover"] },
      { on: fn("login_etl_forget(text[],text,text)"), to: ["pii_recoverer"], usedBy: ["forget"] },
      {
        on: fn("login_etl_audit_list(bigint,integer)"),
        to: ["pii_recoverer"],
        usedBy: ["recover"],
      },
    ],
  },
  {
    why:
      "Before requesting, it merges the vault inbox entries of the masks it asks for (each claim audited and committed before its entries are handed out); the whole inbox only the owner merges (login_etl_inbox_claim checks).",
    grants: [
      {
        on: fn("login_etl_inbox_claim(text[],bigint,integer,text,text)"),
        to: ["pii_recoverer"],
        usedBy: ["recover", "rekey", "vault-merge"],
      },
      {
        on: fn("login_etl_inbox_claimed(bigint)"),
        to: ["pii_recoverer"],
        usedBy: ["recover", "rekey", "vault-merge"],
      },
      {
        on: fn("login_etl_inbox_settle(bigint,bigint[],bigint[],bigint[],text[])"),
        to: ["pii_recoverer"],
        usedBy: ["recover", "rekey", "vault-merge"],
      },
    ],
  },
  {
    why:
      "Merges, recoveries and erasures by value refuse a key set that lacks an HMAC key recorded in use and not retired; before a recovered value is shown, its masks under every held key are checked for tombstones.",
    grants: [
      {
        on: fn("login_etl_hmac_keys_needed()"),
        to: ["pii_recoverer"],
        usedBy: ["recover", "forget", "rekey", "vault-merge"],
      },
      {
        on: fn("login_etl_vault_drop_erased(text[],text[],text,text)"),
        to: ["pii_recoverer"],
        usedBy: ["recover"],
      },
    ],
  },
  {
    why:
      "A refused attempt is audited under the refused login, by either role; this function records only denied or failed attempts, so it cannot forge a release.",
    grants: [
      {
        on: fn("login_etl_audit_note(text,text[],text,text,text,text)"),
        to: ["login_etl_consumer", "pii_recoverer"],
        usedBy: ["recover", "forget"],
      },
    ],
  },
  {
    why:
      "Analysts read the logins (masked values only) and the duplicate views; nothing of the state schema (rejects, vault, audit trail, ledger) is theirs.",
    grants: [
      {
        on: table("user_logins", "data"),
        privileges: ["SELECT"],
        to: ["login_etl_analyst"],
        usedBy: ["report", "rekey"],
      },
      {
        on: table("user_logins_duplicate_ips", "data"),
        privileges: ["SELECT"],
        to: ["login_etl_analyst"],
        usedBy: ["report"],
      },
      {
        on: table("user_logins_duplicate_devices", "data"),
        privileges: ["SELECT"],
        to: ["login_etl_analyst"],
        usedBy: ["report"],
      },
      { on: { fn: "app_version_text(integer)", in: "data" }, to: ["PUBLIC"], usedBy: [] },
    ],
  },
  {
    why:
      "The owner's, by owning the objects (nothing to grant): rekey moves masks through the vault and its links, rekey-vault re-encrypts vault entries; both audit.",
    grants: [
      {
        on: table("user_logins", "data"),
        privileges: ["UPDATE"],
        to: [],
        usedBy: ["rekey"],
      },
      {
        on: table("login_etl_vault"),
        privileges: ["SELECT", "UPDATE"],
        to: [],
        usedBy: ["rekey", "rekey-vault"],
      },
      {
        on: table("login_etl_vault"),
        privileges: ["INSERT", "DELETE"],
        to: [],
        usedBy: ["rekey"],
      },
      {
        on: table("login_etl_vault_links"),
        privileges: ["SELECT", "INSERT", "DELETE"],
        to: [],
        usedBy: ["rekey"],
      },
      { on: table("login_etl_vault_inbox"), privileges: ["SELECT"], to: [], usedBy: ["rekey"] },
      {
        on: table("login_etl_audit"),
        privileges: ["INSERT"],
        to: [],
        usedBy: ["rekey", "rekey-vault"],
      },
      {
        on: table("login_etl_key_retirements"),
        privileges: ["SELECT", "INSERT"],
        to: [],
        usedBy: ["rekey"],
      },
    ],
  },
];

/** One privilege as Postgres' has_*_privilege functions take it. */
export type Privilege =
  | { readonly on: "table"; readonly in: Home; readonly name: string; readonly privilege: string }
  | {
    readonly on: "column";
    readonly in: Home;
    readonly name: string;
    readonly column: string;
    readonly privilege: string;
  }
  | { readonly on: "function"; readonly in: Home; readonly name: string };

/** What `command` does in the database, one privilege each; `vault`: it writes the vault. */
export function privilegesFor(command: CheckTarget, vault: boolean): Privilege[] {
  const wanted: Privilege[] = [];
  for (const grant of GRANTS.flatMap((s) => s.grants)) {
    if (!grant.usedBy.includes(command) || (grant.vaultOnly === true && !vault)) continue;
    const { on } = grant;
    if ("fn" in on) {
      wanted.push({ on: "function", in: on.in, name: on.fn });
      continue;
    }
    for (const privilege of grant.privileges ?? []) {
      if (on.columns === undefined) {
        wanted.push({ on: "table", in: on.in, name: on.table, privilege });
      } else {
        for (const column of on.columns) {
          wanted.push({ on: "column", in: on.in, name: on.table, column, privilege });
        }
      }
    }
  }
  return wanted;
}

/** `-- ` comment lines of at most 100 characters. */
function comment(text: string): string {
  const lines: string[] = [];
  let line = "--";
  for (const word of text.split(" ")) {
    if (line.length + word.length + 1 > 100) {
      lines.push(line);
      line = "--";
    }
    line += ` ${word}`;
  }
  return [...lines, line].join("\n");
}

/** A function's signature as sql/roles.sql writes it: `f(text[], bigint)`. */
function signature(fn: string): string {
  return fn.replaceAll(",", ", ");
}

/**
 * The GRANT statements of sql/roles.sql, each section under its reason. Run
 * with the state schema first in search_path, so the names are unqualified.
 */
export function grantsSql(): string {
  const blocks: string[] = [];
  for (const section of GRANTS) {
    const statements = section.grants.filter((g) => g.to.length > 0).map((g) => {
      const { on } = g;
      const what = "fn" in on
        ? `EXECUTE ON FUNCTION ${signature(on.fn)}`
        : `${(g.privileges ?? []).join(", ")}${
          on.columns === undefined ? "" : ` (${on.columns.join(", ")})`
        } ON ${on.table}`;
      return `GRANT ${what} TO ${g.to.join(", ")};`;
    });
    if (statements.length > 0) blocks.push([comment(section.why), ...statements].join("\n"));
  }
  return blocks.join("\n\n");
}
