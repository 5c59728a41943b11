// The hot path's way to the database: one SQL statement, positional parameters, rows back — straight to
// the driver (node-postgres or PGlite), without Prisma's query engine or an interactive transaction.
// Prisma stays for the schema, migrations and the cold paths; acceptance and booking are single
// statements, so the statement itself is the transaction.
//
// The same statement text also runs inside a Prisma transaction (`sqlOf(tx)`), so that code which
// holds one (the chain mirror, a void) can book channels in it.
import type { PGlite } from "@electric-sql/pglite";
import type pg from "pg";
import type { Db } from "./postings.js";

export interface Sql {
  /**
   * Runs one statement. With a `name`, node-postgres prepares it once per connection and reuses the
   * plan; PGlite ignores the name. Results come back as the driver decodes them: select numerics and
   * bigints `::text` to get exact strings on both drivers.
   */
  query<Row>(text: string, params: unknown[], name?: string): Promise<Row[]>;
}

export function poolSql(pool: pg.Pool): Sql {
  return {
    query: async <Row>(text: string, values: unknown[], name?: string) =>
      (await pool.query({ text, values, ...(name && { name }) })).rows as Row[],
  };
}

export function pgliteSql(pglite: PGlite): Sql {
  return {
    query: async <Row>(text: string, params: unknown[]) => (await pglite.query<Row>(text, params)).rows,
  };
}

/** Statements through a Prisma client; given a transaction client, they join its transaction. */
export function sqlOf(tx: Db): Sql {
  return { query: <Row>(text: string, params: unknown[]) => tx.$queryRawUnsafe<Row[]>(text, ...params) };
}
