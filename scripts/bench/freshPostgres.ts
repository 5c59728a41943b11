// A throwaway Postgres database for a benchmark run: DATABASE_URL if set (kept), else a new database
// on the local server (PAYCHAN_BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test),
// dropped by `drop()`.
import { randomBytes } from "node:crypto";
import pg from "pg";

export async function freshPostgres(): Promise<{ url: string; drop: () => Promise<void> }> {
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, drop: async () => {} };
  const admin = new URL(process.env.PAYCHAN_BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test");
  const name = `paychan_bench_${randomBytes(4).toString("hex")}`;
  const run = async (sql: string) => {
    const client = new pg.Client({ connectionString: admin.toString() });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await run(`CREATE DATABASE ${name}`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
