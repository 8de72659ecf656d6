// The four groups of sql/roles.sql and a login in each, under names of one
// test only, for the state schema tests (tests/integration/state_schema*_test.ts).

import postgres from "postgres";
import { dropRoles, roleNames } from "./role_names.ts";
import type { TestDb } from "./services.ts";

/** A test's groups and logins: see `testRoles`. */
export interface TestRoles {
  readonly groups: {
    readonly owner: string;
    readonly consumer: string;
    readonly recoverer: string;
    readonly analyst: string;
  };
  readonly users: {
    readonly owner: string;
    readonly consumer: string;
    readonly recoverer: string;
    readonly analyst: string;
  };
  /** sql/roles.sql (or another release's) with this test's role names. */
  rewrite(text: string): string;
  /** The logins, once the groups exist. */
  createUsers(): Promise<void>;
  urlOf(user: string): string;
  connectAs(user: string): postgres.Sql;
  drop(): Promise<void>;
}

/**
 * The four groups of sql/roles.sql and a login in each, under names of this
 * test only (roles are cluster-wide and tests run side by side), dropped by
 * `drop`.
 */
export function testRoles(db: TestDb): TestRoles {
  const { suffix, groups, rewrite } = roleNames();
  const { owner, consumer, recoverer, analyst } = groups;
  const users = {
    owner: `etl_migrate${suffix}`,
    consumer: `etl_service${suffix}`,
    recoverer: `alice${suffix}`,
    analyst: `bob${suffix}`,
  };
  const password = crypto.randomUUID();
  const clients: postgres.Sql[] = [];
  return {
    groups,
    users,
    rewrite,
    /** The logins, once the groups exist. */
    async createUsers() {
      await db.sql.unsafe(`
        CREATE ROLE "${users.owner}" LOGIN PASSWORD '${password}' IN ROLE "${owner}";
        CREATE ROLE "${users.consumer}" LOGIN PASSWORD '${password}' IN ROLE "${consumer}";
        CREATE ROLE "${users.recoverer}" LOGIN PASSWORD '${password}' IN ROLE "${recoverer}";
        CREATE ROLE "${users.analyst}" LOGIN PASSWORD '${password}' IN ROLE "${analyst}";`)
        .simple();
    },
    urlOf(user: string): string {
      const url = new URL(db.url);
      url.hostname = "127.0.0.1";
      url.username = user;
      url.password = password;
      return url.toString();
    },
    connectAs(user: string): postgres.Sql {
      const sql = postgres(this.urlOf(user), {
        max: 1,
        onnotice: () => {},
        connection: { search_path: db.schema },
      });
      clients.push(sql);
      return sql;
    },
    async drop() {
      for (const sql of clients) await sql.end();
      await dropRoles(db.sql, [...Object.values(users), owner, consumer, recoverer, analyst]);
    },
  };
}
