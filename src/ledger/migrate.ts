// Applies prisma/migrations at start-up, without Prisma's schema engine (a native binary that cannot be
// downloaded everywhere paychan runs). It keeps Prisma's bookkeeping exactly, so `prisma migrate
// deploy` and `prisma migrate status` agree with it wherever the engine is installed:
// - the same `_prisma_migrations` table, one row per applied migration, checksum = sha256 of the file;
// - the same advisory lock (72707369), so two starting processes, or this runner and
//   `prisma migrate deploy`, never apply a migration twice.
// Unlike Prisma, each migration runs in one transaction with its row, so a failure leaves nothing
// half-applied; a migration must therefore not contain statements that refuse to run in a
// transaction (CREATE INDEX CONCURRENTLY).
import { createHash, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LedgerError } from "./errors.js";

/** One database session: the lock is per session, so both calls must reach the same connection. */
export interface MigrationConnection {
  /** Runs a script of one or more statements, without parameters. */
  exec(sql: string): Promise<void>;
  query<Row>(sql: string, params?: unknown[]): Promise<Row[]>;
}

// Two levels up from this module both in the repository (src/ledger) and in the installed package
// (dist/ledger), which ships prisma/migrations: the package applies its own migrations.
export const defaultMigrationsDir = fileURLToPath(new URL("../../prisma/migrations", import.meta.url));

/** The key `prisma migrate` locks with; sharing it serializes us with Prisma's own tooling. */
const PRISMA_MIGRATE_LOCK = 72707369;

const migrationsTable = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

type Migration = { name: string; sql: string; checksum: string };
type AppliedRow = { migration_name: string; checksum: string; finished_at: Date | null; rolled_back_at: Date | null };

export function checksumOf(sql: string): string {
  return createHash("sha256").update(sql).digest("hex");
}

/** Matches Prisma, which accepts a script whose line endings git converted after it was applied. */
function matchesChecksum(sql: string, checksum: string): boolean {
  return [sql, sql.replaceAll("\r\n", "\n"), sql.replaceAll(/\r?\n/g, "\r\n")].some((s) => checksumOf(s) === checksum);
}

export async function readMigrations(dir: string = defaultMigrationsDir): Promise<Migration[]> {
  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, "migration.sql")))
    .map((d) => d.name)
    .sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(join(dir, name, "migration.sql"), "utf8");
      return { name, sql, checksum: checksumOf(sql) };
    }),
  );
}

/** Applies the pending migrations in name order; returns the names it applied. Safe to run again. */
export async function migrate(db: MigrationConnection, dir: string = defaultMigrationsDir): Promise<string[]> {
  const migrations = await readMigrations(dir);
  await db.query(`SELECT pg_advisory_lock(${PRISMA_MIGRATE_LOCK})`);
  try {
    await db.exec(migrationsTable);
    const rows = await db.query<AppliedRow>(
      `SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations"`,
    );
    const failed = rows.find((r) => r.finished_at === null && r.rolled_back_at === null);
    if (failed) {
      throw new LedgerError(
        "MIGRATION_FAILED",
        `Migration ${failed.migration_name} failed earlier and was never resolved; fix the database, then mark it with \`prisma migrate resolve\`.`,
      );
    }
    const applied = new Map(rows.filter((r) => r.rolled_back_at === null).map((r) => [r.migration_name, r]));
    const pending: Migration[] = [];
    for (const migration of migrations) {
      const row = applied.get(migration.name);
      if (!row) pending.push(migration);
      else if (!matchesChecksum(migration.sql, row.checksum)) {
        throw new LedgerError(
          "MIGRATION_FAILED",
          `Migration ${migration.name} was modified after it was applied; restore the file, and add a new migration for the change.`,
        );
      }
    }
    for (const migration of pending) await apply(db, migration);
    return pending.map((m) => m.name);
  } finally {
    await db.query(`SELECT pg_advisory_unlock(${PRISMA_MIGRATE_LOCK})`);
  }
}

async function apply(db: MigrationConnection, migration: Migration): Promise<void> {
  await db.exec("BEGIN");
  try {
    const [{ started_at }] = (await db.query<{ started_at: Date }>("SELECT clock_timestamp() AS started_at")) as [
      { started_at: Date },
    ];
    await db.exec(migration.sql);
    await db.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
       VALUES ($1, $2, clock_timestamp(), $3, NULL, NULL, $4, 1)`,
      [randomUUID(), migration.checksum, migration.name, started_at],
    );
    await db.exec("COMMIT");
  } catch (error) {
    await db.exec("ROLLBACK");
    throw new LedgerError("MIGRATION_FAILED", `Migration ${migration.name} failed and was rolled back: ${String(error)}`, {
      cause: error,
    });
  }
}
