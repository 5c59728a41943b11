// Opens paychan's database: a real Postgres for production, or PGlite (Postgres compiled to WASM,
// in-process) for development, demos and tests. Either way the schema is migrated before the client is
// handed out, and the same Prisma Client and SQL run on both.
import { PGlite } from "@electric-sql/pglite";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaPGlite } from "pglite-prisma-adapter";
import { PrismaClient } from "../generated/prisma/client.js";
import { migrate, type MigrationConnection } from "./migrate.js";
import { pgliteSql, poolSql, type Sql } from "./sql.js";

export type DatabaseConfig = {
  /**
   * `postgres://…` (or `postgresql://…`) for Postgres; `pglite:<directory>` for a PGlite database kept
   * on disk; absent, or `pglite:memory`, for an in-memory PGlite that vanishes on close.
   */
  url?: string;
};

export type Database = {
  prisma: PrismaClient;
  /** The same database, for the single statements of the hot path (src/ledger/sql.ts). */
  sql: Sql;
  kind: "pglite" | "postgres";
  close(): Promise<void>;
};

export async function openDatabase(config: DatabaseConfig = {}): Promise<Database> {
  const url = config.url ?? "pglite:memory";
  if (/^postgres(ql)?:\/\//.test(url)) return openPostgres(url);
  if (url.startsWith("pglite:")) return openPGlite(url.slice("pglite:".length));
  throw new TypeError(`Unsupported database url ${JSON.stringify(url)}: use postgres://… or pglite:<dir>`);
}

async function openPostgres(connectionString: string): Promise<Database> {
  const pool = new pg.Pool({ connectionString });
  // An idle connection that the server drops (restart, failover, pg_terminate_backend) makes the pool
  // emit 'error', which without a listener kills the process. The pool discards that connection by
  // itself and the next query opens a new one, so there is nothing to do here.
  pool.on("error", () => {});
  try {
    const client = await pool.connect();
    try {
      await migrate(pgConnection(client));
    } finally {
      client.release();
    }
  } catch (error) {
    await pool.end();
    throw error;
  }
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    prisma,
    sql: poolSql(pool),
    kind: "postgres",
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

async function openPGlite(dir: string): Promise<Database> {
  const pglite = new PGlite(dir === "memory" || dir === "" ? undefined : dir);
  try {
    await migrate(pgliteConnection(pglite));
  } catch (error) {
    await pglite.close();
    throw error;
  }
  const prisma = new PrismaClient({ adapter: new CheckedCommitPGlite(pglite) });
  return {
    prisma,
    sql: pgliteSql(pglite),
    kind: "pglite",
    async close() {
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}

/**
 * pglite-prisma-adapter 0.7.2 swallows an error raised by COMMIT: the transaction is rolled back but
 * Prisma is told it committed. The ledger's balance check is a deferred constraint trigger, which
 * fires exactly there, so before committing this adapter runs the deferred checks with
 * `SET CONSTRAINTS ALL IMMEDIATE`, where a failure is reported and the transaction rolled back.
 */
class CheckedCommitPGlite extends PrismaPGlite {
  override async connect() {
    const adapter = await super.connect();
    const startTransaction = adapter.startTransaction.bind(adapter);
    adapter.startTransaction = async (isolationLevel) => {
      const tx = await startTransaction(isolationLevel);
      const commit = tx.commit.bind(tx);
      tx.commit = async () => {
        try {
          await tx.executeRaw({ sql: "SET CONSTRAINTS ALL IMMEDIATE", args: [], argTypes: [] });
        } catch (error) {
          await tx.rollback();
          throw error;
        }
        return commit();
      };
      return tx;
    };
    return adapter;
  }
}

export function pgConnection(client: pg.ClientBase): MigrationConnection {
  return {
    exec: async (sql) => void (await client.query(sql)),
    query: async (sql, params) => (await client.query(sql, params)).rows,
  };
}

export function pgliteConnection(pglite: PGlite): MigrationConnection {
  return {
    exec: async (sql) => void (await pglite.exec(sql)),
    query: async <Row>(sql: string, params?: unknown[]) => (await pglite.query<Row>(sql, params)).rows,
  };
}
