/**
 * The group roles of sql/roles.sql under names of one test only: roles are
 * cluster-wide and test files run side by side, so each test renames the
 * groups in the SQL it applies (`rewrite`) and names its logins with the
 * same suffix. Used by the state-schema, hostile and PII role helpers.
 *
 * @module
 */

import type postgres from "postgres";
import { uniqueName } from "./common.ts";

/** The groups sql/roles.sql creates. */
const GROUP_PATTERN = /\b(login_etl_owner|login_etl_consumer|pii_recoverer|login_etl_analyst)\b/g;

/** One test's role names. */
export interface RoleNames {
  /** Appended to every role of the test: groups and logins. */
  readonly suffix: string;
  readonly groups: {
    readonly owner: string;
    readonly consumer: string;
    readonly recoverer: string;
    readonly analyst: string;
  };
  /** sql/roles.sql (or another release's) with this test's group names. */
  rewrite(text: string): string;
}

/** Names unique to this call in the whole test run. */
export function roleNames(): RoleNames {
  const suffix = uniqueName("");
  return {
    suffix,
    groups: {
      owner: `login_etl_owner${suffix}`,
      consumer: `login_etl_consumer${suffix}`,
      recoverer: `pii_recoverer${suffix}`,
      analyst: `login_etl_analyst${suffix}`,
    },
    rewrite: (text) => text.replace(GROUP_PATTERN, `$1${suffix}`),
  };
}

/**
 * Drops those of `names` that exist, with what they own or were granted:
 * what each test leaves behind of its cluster-wide roles.
 */
export async function dropRoles(sql: postgres.Sql, names: readonly string[]): Promise<void> {
  const existing = (await sql<{ rolname: string }[]>`
    SELECT rolname FROM pg_roles WHERE rolname = ANY(${names as string[]})`)
    .map((r) => `"${r.rolname}"`).join(", ");
  if (existing === "") return;
  await sql.unsafe(`REASSIGN OWNED BY ${existing} TO CURRENT_USER`);
  await sql.unsafe(`DROP OWNED BY ${existing}`);
  await sql.unsafe(`DROP ROLE ${existing}`);
}
