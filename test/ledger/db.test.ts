import { expect } from "chai";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { accountId } from "../../src/ledger/accounts.js";
import { fiatAsset } from "../../src/ledger/asset.js";
import { openDatabase } from "../../src/ledger/db.js";
import * as flows from "../../src/ledger/flows.js";
import { balanceOf, postEntry } from "../../src/ledger/postings.js";
import { createPostgresDatabase, withAdmin } from "./helpers.js";

const USD = fiatAsset("USD");
const topUp = flows.fiatTopUp({ processor: "stripe", party: "alice", asset: USD, amount: 2500n });

describe("openDatabase", () => {
  it("keeps a PGlite database on disk across a close and reopen", async () => {
    const dir = await mkdtemp(join(tmpdir(), "paychan-pglite-"));
    try {
      const first = await openDatabase({ url: `pglite:${dir}` });
      await postEntry(first.prisma, { idempotencyKey: "card:ch_1", ...topUp });
      await first.close();

      const second = await openDatabase({ url: `pglite:${dir}` });
      try {
        expect(second.kind).to.equal("pglite");
        expect(await balanceOf(second.prisma, accountId.payable("alice", USD))).to.equal(2500n);
        expect(await postEntry(second.prisma, { idempotencyKey: "card:ch_1", ...topUp })).to.deep.include({ replayed: true });
      } finally {
        await second.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reopens a Postgres database with its data, migrating nothing twice", async () => {
    const database = await createPostgresDatabase();
    try {
      const first = await openDatabase({ url: database.url });
      expect(first.kind).to.equal("postgres");
      await postEntry(first.prisma, { idempotencyKey: "card:ch_1", ...topUp });
      await first.close();
      const second = await openDatabase({ url: database.url });
      expect(await balanceOf(second.prisma, accountId.cash("stripe", USD))).to.equal(2500n);
      await second.close();
    } finally {
      await database.drop();
    }
  });

  it("survives Postgres terminating its idle connections", async () => {
    const database = await createPostgresDatabase();
    try {
      const db = await openDatabase({ url: database.url });
      await db.prisma.$queryRaw`SELECT 1`;
      const name = new URL(database.url).pathname.slice(1);
      await withAdmin((admin) => admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [name]));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await balanceOf(db.prisma, accountId.cash("stripe", USD))).to.equal(0n);
      await db.close();
    } finally {
      await database.drop();
    }
  });

  it("plans the hot statements with their parameters on every Postgres connection, never with a generic plan", async () => {
    // A generic plan for the accept statement (made without its arrays' contents) took hundreds of
    // milliseconds now and then; see db.ts.
    const database = await createPostgresDatabase();
    try {
      const db = await openDatabase({ url: database.url });
      try {
        const modes = await Promise.all(
          Array.from({ length: 4 }, () => db.sql.query<{ plan_cache_mode: string }>("SELECT current_setting('plan_cache_mode') AS plan_cache_mode, pg_sleep(0.05)", [])),
        );
        expect(modes.map(([row]) => row!.plan_cache_mode)).to.deep.equal(Array(4).fill("force_custom_plan"));
      } finally {
        await db.close();
      }
    } finally {
      await database.drop();
    }
  });

  it("refuses a url it cannot serve", async () => {
    const error = await openDatabase({ url: "mysql://localhost/paychan" }).then(() => undefined, (e: Error) => e);
    expect(error).to.be.instanceOf(TypeError);
  });
});
