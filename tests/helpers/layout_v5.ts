// The database as login-etl left it before schema version 6 moved its own
// tables to a state schema: the released migrations 1 to 5 in the data
// schema, recorded there the way that release's `migrate` recorded them,
// and (for the roles) the sql/roles.sql released with them.

import {
  MIGRATIONS,
  MIGRATIONS_TABLE_DDL,
  MIGRATIONS_TABLE_GRANT,
} from "../../src/db/migrations.ts";
import type { TestDb } from "./services.ts";

/** The last version of that layout. */
export const V5 = 5;

/** sql/roles.sql as released with version 5. */
export const ROLES_V5 = new URL("../integration/fixtures/roles_v5.sql", import.meta.url);

/**
 * Applies versions 1 to 5 in `db.schema` and records them in its own
 * `login_etl_migrations`, as login-etl at version 5 did: each migration in a
 * transaction with its record, version 4 (indexes built concurrently)
 * statement by statement.
 */
export async function migrateToV5(db: TestDb): Promise<void> {
  const data = db.sql(db.schema);
  await db.sql.unsafe(MIGRATIONS_TABLE_DDL);
  await db.sql.unsafe(MIGRATIONS_TABLE_GRANT);
  for (const m of MIGRATIONS.filter((m) => m.version <= V5)) {
    const record = (sql: TestDb["sql"]) =>
      sql`INSERT INTO ${data}.login_etl_migrations (version, name, source)
          VALUES (${m.version}, ${m.name}, 'migrate')`;
    if (m.transaction === false) {
      for (const statement of m.statements) await db.sql.unsafe(statement);
      await record(db.sql);
    } else {
      await db.sql.begin(async (tx) => {
        for (const statement of m.statements) await tx.unsafe(statement);
        await record(tx as unknown as TestDb["sql"]);
      });
    }
  }
}
