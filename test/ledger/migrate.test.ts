import { PGlite } from "@electric-sql/pglite";
import { expect } from "chai";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { pgConnection, pgliteConnection } from "../../src/ledger/db.js";
import { checksumOf, defaultMigrationsDir, migrate, readMigrations, type MigrationConnection } from "../../src/ledger/migrate.js";
import { createPostgresDatabase, rejectsWith, type DatabaseKind } from "./helpers.js";

type Session = { connection: MigrationConnection; close(): Promise<void> };

// Starting a PGlite costs about a second, so the PGlite suite reuses one and empties it between tests.
let sharedPGlite: PGlite | undefined;
after(async () => {
  await sharedPGlite?.close();
});

/** An empty database of `kind`, and a way to open sessions on it. */
async function emptyDatabase(kind: DatabaseKind): Promise<{ session(): Promise<Session>; drop(): Promise<void> }> {
  if (kind === "pglite") {
    const pglite = (sharedPGlite ??= new PGlite());
    return {
      session: async () => ({ connection: pgliteConnection(pglite), close: async () => {} }),
      drop: async () => void (await pglite.exec(`DROP SCHEMA public CASCADE; CREATE SCHEMA public;`)),
    };
  }
  const database = await createPostgresDatabase();
  const clients: pg.Client[] = [];
  return {
    async session() {
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      clients.push(client);
      return { connection: pgConnection(client), close: () => client.end() };
    },
    async drop() {
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      await database.drop();
    },
  };
}

type MigrationRow = {
  id: string;
  checksum: string;
  finished_at: Date | null;
  migration_name: string;
  logs: string | null;
  rolled_back_at: Date | null;
  started_at: Date;
  applied_steps_count: number;
};

for (const kind of ["postgres", "pglite"] as const) {
  describe(`migrate [${kind}]`, function () {
    let db: Awaited<ReturnType<typeof emptyDatabase>>;
    let session: Session;
    beforeEach(async function () {
      db = await emptyDatabase(kind);
      session = await db.session();
    });
    afterEach(async function () {
      await db.drop();
    });

    it("applies every migration to an empty database, recording rows shaped like Prisma's", async () => {
      const migrations = await readMigrations();
      expect(await migrate(session.connection)).to.deep.equal(migrations.map((m) => m.name));
      const rows = await session.connection.query<MigrationRow>(`SELECT * FROM "_prisma_migrations" ORDER BY migration_name`);
      expect(rows.map((r) => r.migration_name)).to.deep.equal(migrations.map((m) => m.name));
      for (const [i, row] of rows.entries()) {
        const file = await readFile(join(defaultMigrationsDir, row.migration_name, "migration.sql"), "utf8");
        expect(row.id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        expect(row.checksum).to.equal(checksumOf(file)).and.to.equal(migrations[i]!.checksum).and.to.match(/^[0-9a-f]{64}$/);
        expect(row).to.include({ logs: null, rolled_back_at: null, applied_steps_count: 1 });
        expect(row.finished_at!.getTime()).to.be.at.least(row.started_at.getTime());
      }
      const columns = await session.connection.query<{ column_name: string; data_type: string }>(
        `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position`,
      );
      expect(columns.map((c) => `${c.column_name} ${c.data_type}`)).to.deep.equal([
        "id character varying",
        "checksum character varying",
        "finished_at timestamp with time zone",
        "migration_name character varying",
        "logs text",
        "rolled_back_at timestamp with time zone",
        "started_at timestamp with time zone",
        "applied_steps_count integer",
      ]);
    });

    it("applies nothing when run again", async () => {
      await migrate(session.connection);
      expect(await migrate(session.connection)).to.deep.equal([]);
      const [{ count }] = (await session.connection.query<{ count: number }>(`SELECT count(*)::int AS count FROM "_prisma_migrations"`)) as [
        { count: number },
      ];
      expect(count).to.equal((await readMigrations()).length);
    });

    it("applies only the new migration when a later one is added", async () => {
      const dir = await mkdtemp(join(tmpdir(), "paychan-migrations-"));
      try {
        await cp(defaultMigrationsDir, dir, { recursive: true });
        await migrate(session.connection, dir);
        await mkdir(join(dir, "99990101000000_chain_mirror"));
        await writeFile(join(dir, "99990101000000_chain_mirror", "migration.sql"), `CREATE TABLE "later_migration_probe" ("id" BIGINT PRIMARY KEY);\n`);
        expect(await migrate(session.connection, dir)).to.deep.equal(["99990101000000_chain_mirror"]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("upgrades a database already holding entries, counting their postings", async () => {
      const dir = await mkdtemp(join(tmpdir(), "paychan-migrations-"));
      try {
        const [first, ...later] = await readMigrations();
        await cp(join(defaultMigrationsDir, first!.name), join(dir, first!.name), { recursive: true });
        await migrate(session.connection, dir);
        await session.connection.exec(`
          INSERT INTO ledger_account (id, asset, kind, normal_side) VALUES
            ('cash:s:fiat:USD', 'fiat:USD', 'FIAT_CASH', 'DEBIT'), ('payable:a:fiat:USD', 'fiat:USD', 'FIAT_PAYABLE', 'CREDIT');
          BEGIN;
          INSERT INTO journal_entry (id, idempotency_key, kind) VALUES ('00000000-0000-4000-8000-000000000001', 'card:1', 'FIAT_TOPUP');
          INSERT INTO posting (entry_id, account_id, asset, side, amount) VALUES
            ('00000000-0000-4000-8000-000000000001', 'cash:s:fiat:USD', 'fiat:USD', 'DEBIT', 5),
            ('00000000-0000-4000-8000-000000000001', 'payable:a:fiat:USD', 'fiat:USD', 'CREDIT', 5);
          COMMIT;`);
        expect(await migrate(session.connection)).to.deep.equal(later.map((m) => m.name));
        const [entry] = await session.connection.query<{ posting_count: number }>(`SELECT posting_count FROM journal_entry`);
        expect(entry).to.deep.equal({ posting_count: 2 });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("refuses to run when an applied migration's file was modified", async () => {
      const dir = await mkdtemp(join(tmpdir(), "paychan-migrations-"));
      try {
        await cp(defaultMigrationsDir, dir, { recursive: true });
        await migrate(session.connection, dir);
        const [first] = await readMigrations(dir);
        await writeFile(join(dir, first!.name, "migration.sql"), `${first!.sql}\n-- edited\n`);
        await rejectsWith(migrate(session.connection, dir), "MIGRATION_FAILED");
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("rolls a failing migration back whole and records nothing for it", async () => {
      const dir = await mkdtemp(join(tmpdir(), "paychan-migrations-"));
      try {
        await mkdir(join(dir, "00000000000000_broken"));
        await writeFile(join(dir, "00000000000000_broken", "migration.sql"), `CREATE TABLE "half" (id INT);\nSELECT no_such_function();\n`);
        await rejectsWith(migrate(session.connection, dir), "MIGRATION_FAILED");
        const tables = await session.connection.query(`SELECT 1 FROM information_schema.tables WHERE table_name = 'half'`);
        expect(tables).to.have.length(0);
        expect(await session.connection.query(`SELECT 1 FROM "_prisma_migrations"`)).to.have.length(0);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    if (kind === "postgres") {
      it("lets two migrators started together apply each migration once", async () => {
        const other = await db.session();
        const results = await Promise.all([migrate(session.connection), migrate(other.connection)]);
        const names = (await readMigrations()).map((m) => m.name);
        expect(results.flat().sort()).to.deep.equal(names);
        const rows = await session.connection.query<MigrationRow>(`SELECT * FROM "_prisma_migrations"`);
        expect(rows.map((r) => r.migration_name).sort()).to.deep.equal(names);
      });
    }
  });
}
