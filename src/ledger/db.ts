// Opens paychan's database: a real Postgres for production, or PGlite (Postgres compiled to WASM,
// in-process) for development, demos and tests. Either way the schema is migrated before the client is
// handed out, and the same Prisma Client and SQL run on both.
import { mkdirSync, readdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaPGlite } from "pglite-prisma-adapter";
import { redactUrl } from "../config.js";
import { PrismaClient } from "../generated/prisma/client.js";
import { lockDirectory } from "./directoryLock.js";
import { migrate, type MigrationConnection } from "./migrate.js";
import { pgliteSql, poolSql, type Sql } from "./sql.js";

export type DatabaseConfig = {
  /**
   * `postgres://…` (or `postgresql://…`) for Postgres; `pglite:<directory>` for a PGlite database kept
   * on disk; absent, or `pglite:memory`, for an in-memory PGlite that vanishes on close.
   */
  url?: string;
  /** Postgres: give up connecting after this long (default 10 s); a server that accepts the TCP
   * connection and never answers would otherwise hang the caller for ever. */
  connectTimeoutMs?: number;
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
  if (/^postgres(ql)?:\/\//.test(url)) return openPostgres(url, config.connectTimeoutMs ?? 10_000);
  if (url.startsWith("pglite:")) return openPGlite(url.slice("pglite:".length));
  throw new TypeError(`Unsupported database url ${JSON.stringify(url)}: use postgres://… or pglite:<dir>`);
}

async function openPostgres(connectionString: string, connectTimeoutMs: number): Promise<Database> {
  // The hot statements are prepared once per connection (named), and their parameters are arrays of
  // the batch's channels. After five runs Postgres may switch such a statement to a generic plan made
  // without the arrays' contents, which for the accept statement meant hundreds of milliseconds now and
  // then (scripts/bench/ledger.ts, batch 100: p99 546 ms, 23 ms with this). Each run is planned with
  // its parameters (the parse is still saved), set at connection start-up after any options the URL
  // gives (the driver would let the URL's replace it).
  const pool = new pg.Pool({ ...withStartupOption(connectionString, "-c plan_cache_mode=force_custom_plan"), connectionTimeoutMillis: connectTimeoutMs });
  // An idle connection that the server drops (restart, failover, pg_terminate_backend) makes the pool
  // emit 'error', which without a listener kills the process. The pool discards that connection by
  // itself and the next query opens a new one, so there is nothing to do here.
  pool.on("error", () => {});
  try {
    const client = await pool.connect().catch((error: unknown) => {
      throw connectionError(connectionString, connectTimeoutMs, error);
    });
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

function connectionError(url: string, timeoutMs: number, error: unknown): Error {
  const reason = error instanceof Error ? error.message : String(error);
  const where = `Postgres at ${redactUrl(url)} (DATABASE_URL)`;
  if (/timeout/i.test(reason)) return new Error(`${where} did not answer within ${timeoutMs} ms (DATABASE_CONNECT_TIMEOUT_MS).`, { cause: error });
  return new Error(`Cannot connect to ${where}: ${reason}`, { cause: error });
}

async function openPGlite(dir: string): Promise<Database> {
  if (dir === "memory" || dir === "") return openPGliteAt(undefined, () => {});
  const directory = resolve(dir);
  prepareDirectory(directory);
  const lock = lockDirectory(directory);
  try {
    return await openPGliteAt(directory, lock.release);
  } catch (error) {
    lock.release();
    throw error;
  }
}

/**
 * Checks a PGlite directory before PGlite sees it: PGlite reports a path it cannot use (a file, a
 * device such as /dev/null, a directory of something else) as an unhandled rejection and never settles.
 */
function prepareDirectory(directory: string): void {
  const where = `DATABASE_URL=pglite:${directory}`;
  let entries: string[] | undefined;
  try {
    if (!statSync(directory).isDirectory()) throw new Error(`${where}: ${directory} is not a directory.`);
    entries = readdirSync(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw asPathError(where, error);
  }
  if (entries && entries.length > 0 && !entries.includes("PG_VERSION")) {
    throw new Error(`${where}: ${directory} is neither empty nor a PGlite database (it has no PG_VERSION).`);
  }
  try {
    mkdirSync(entries ? directory : dirname(directory), { recursive: true });
  } catch (error) {
    throw asPathError(where, error);
  }
}

function asPathError(where: string, error: unknown): Error {
  const e = error as NodeJS.ErrnoException;
  return e.code ? new Error(`${where}: cannot use ${e.path ?? "the directory"} (${e.code}: ${e.message}).`, { cause: error }) : (error as Error);
}

async function openPGliteAt(directory: string | undefined, release: () => void): Promise<Database> {
  const pglite = new PGlite(directory);
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
      release();
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

/** The connection string without its `options` parameter, and those options followed by `option`. */
function withStartupOption(connectionString: string, option: string): { connectionString: string; options: string } {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return { connectionString, options: option };
  }
  const given = url.searchParams.get("options");
  url.searchParams.delete("options");
  return { connectionString: url.toString(), options: given ? `${given} ${option}` : option };
}
