// Test helpers for the ledger. Every suite runs against both databases paychan supports: the
// machine's Postgres (a fresh database per suite, dropped afterwards) and an in-memory PGlite.
// Postgres is reached through PAYCHAN_TEST_POSTGRES_URL (default:
// postgres://postgres@127.0.0.1:5432/test), whose user must be allowed to create databases.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { openDatabase, type Database } from "../../src/ledger/db.js";

export const adminUrl = process.env.PAYCHAN_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";

export type DatabaseKind = Database["kind"];

/** A new, empty Postgres database; `drop` removes it, even with connections still open. */
export async function createPostgresDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `paychan_test_${randomBytes(6).toString("hex")}`;
  await withAdmin((admin) => admin.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

/** Runs `fn` on a short-lived connection to the admin database. */
export async function withAdmin<T>(fn: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect().catch((error) => {
    throw new Error(`Cannot reach the test Postgres at ${adminUrl} (set PAYCHAN_TEST_POSTGRES_URL): ${error}`);
  });
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

// Starting a PGlite costs a second or more, so every PGlite suite shares one in-memory database;
// tests never collide because they use fresh ids (`unique`). It is closed after the whole run.
let sharedPGlite: Promise<Database> | undefined;
after(async () => {
  await (await sharedPGlite)?.close();
});

/** Opens a migrated database of the given kind; closing it drops a Postgres database. */
export async function openTestDatabase(kind: DatabaseKind): Promise<Database> {
  if (kind === "pglite") {
    const db = await (sharedPGlite ??= openDatabase());
    return { ...db, close: async () => {} };
  }
  const created = await createPostgresDatabase();
  const db = await openDatabase({ url: created.url });
  return {
    ...db,
    async close() {
      await db.close();
      await created.drop();
    },
  };
}

/**
 * `describe` once per database kind, handing the suite a database opened before and closed after it.
 * Suites share one in-memory PGlite unless `own` is set: a suite whose assertions cover the whole
 * ledger (reconciliation against a processor's records, say) gets a PGlite of its own.
 */
export function describeEachDatabase(title: string, suite: (db: () => Database, kind: DatabaseKind) => void, options: { own?: boolean } = {}): void {
  for (const kind of ["postgres", "pglite"] as const) {
    describe(`${title} [${kind}]`, function () {
      let db: Database | undefined;
      before(async function () {
        db = options.own && kind === "pglite" ? await openDatabase() : await openTestDatabase(kind);
      });
      after(async function () {
        await db?.close();
      });
      suite(() => db!, kind);
    });
  }
}

/** A fresh random value, so tests sharing one database never collide. */
export function unique(prefix: string): string {
  return `${prefix}-${randomBytes(8).toString("hex")}`;
}

/** Awaits a rejection and checks its stable code; returns the error for further checks. */
export async function rejectsWith(promise: Promise<unknown>, code: string): Promise<Error & { code?: string }> {
  const outcome = await promise.then(
    () => undefined,
    (error: unknown) => error as Error & { code?: string },
  );
  if (!outcome) throw new Error(`expected a rejection with code ${code}, but it resolved`);
  if (outcome.code !== code) throw new Error(`expected code ${code}, got ${outcome.code}: ${outcome.message}`);
  return outcome;
}
