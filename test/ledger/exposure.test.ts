// The figures a scrape reads from the books (src/ledger/exposure.ts): the exposure is exactly what the
// CHANNEL_OWED accounts hold, the oldest unclaimed voucher is the first one above what the chain has
// paid, and on Postgres neither statement reads every channel, account or payment.
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { getAddress, type Address, type Hex } from "viem";
import { tokenAsset, type Asset } from "../../src/ledger/asset.js";
import type { Database } from "../../src/ledger/db.js";
import { exposureByAsset, oldestUnclaimed, scrapeStatements } from "../../src/ledger/exposure.js";
import { claim, deposit, voucherAccepted } from "../../src/ledger/flows.js";
import { accountsOutOfBalance, postEntry } from "../../src/ledger/postings.js";
import { describeEachDatabase, unique } from "./helpers.js";

const E12 = 1_000_000_000_000n;
const ESCROW = getAddress(`0x${"e".repeat(40)}`) as Address;
const PAYEE = getAddress(`0x${"a".repeat(40)}`) as Address;

/** A fresh ERC-20 asset, so that the figures of one test's asset are its own in a shared database. */
function freshAsset(): Asset {
  return tokenAsset(1, getAddress(`0x${randomBytes(20).toString("hex")}`));
}

/** A channel of `asset` as the gateway, booking and the chain mirror leave it: payments `ago` seconds
 * old, and `claimed` paid by the chain, each through the journal. */
async function seedChannel(db: Database, asset: Asset, claimed: bigint, payments: { cumulative: bigint; ago: number }[]): Promise<string> {
  const id = `0x${randomBytes(32).toString("hex")}` as Hex;
  const accepted = payments.at(-1)!.cumulative;
  await db.sql.query(
    `INSERT INTO channel (id, chain_id, escrow, payer, payee, token, signer, withdraw_delay, salt, asset, deposit,
                          claimed_on_chain, accepted_cumulative, latest_voucher_amount, booked_cumulative, booking_seq)
     VALUES ($1, 1, $2, $3, $3, $3, $3, 86400, $1, $4, $5, $6, $7, $7, $7, 1)`,
    [id, ESCROW, PAYEE, asset, (10n * E12).toString(), claimed.toString(), accepted.toString()],
  );
  for (const p of payments) {
    await db.sql.query(
      `INSERT INTO payment (channel_id, request_key, cumulative_amount, price, signature, created_at)
       VALUES ($1, $2, $3, 1, '0x', now() - make_interval(secs => $4))`,
      [id, randomBytes(8).toString("hex"), p.cumulative.toString(), p.ago],
    );
  }
  const money = { channelId: id, escrow: ESCROW, asset };
  await postEntry(db.prisma, { idempotencyKey: unique("deposit"), ...deposit({ ...money, amount: 10n * E12 }) });
  await postEntry(db.prisma, { idempotencyKey: unique("vouchers"), ...voucherAccepted({ ...money, amount: accepted }) });
  if (claimed > 0n) await postEntry(db.prisma, { idempotencyKey: unique("claim"), ...claim({ ...money, amount: claimed, owed: accepted, payee: PAYEE }) });
  return id;
}

describeEachDatabase("the books' figures for the metrics", (db, kind) => {
  it("sums what the owing accounts hold per asset and finds the oldest voucher not yet claimed", async () => {
    const asset = freshAsset();
    await seedChannel(db(), asset, E12, [
      { cumulative: E12, ago: 3 * 3600 },
      { cumulative: 2n * E12, ago: 2 * 3600 },
      { cumulative: 3n * E12, ago: 3600 },
    ]);
    await seedChannel(db(), asset, 0n, [{ cumulative: E12, ago: 1800 }]);
    await seedChannel(db(), asset, E12, [{ cumulative: E12, ago: 5 * 3600 }]);
    expect(await accountsOutOfBalance(db().prisma), "seeded through the journal").to.deep.equal([]);

    const exposure = (await exposureByAsset(db().sql)).find((e) => e.asset === asset);
    expect(exposure).to.deep.equal({ asset, channels: 2, owed: 3n * E12 });
    const oldest = (await oldestUnclaimed(db().sql)).find((o) => o.asset === asset);
    expect(oldest!.seconds, "the voucher of 2×10¹², two hours old: the one of 10¹² was claimed, the fully claimed channel owes nothing").to.be.within(7200, 7200 + 600);
  });

  if (kind === "postgres") {
    it("reads only the owing accounts, through the partial index, and probes indexes for their channels: no statement scans a whole table", async () => {
      const sql = db().sql;
      const asset = freshAsset();
      // Many settled channels and a few owing ones, as a live database has them (this database is the
      // suite's own: accounts straight into the table, without postings, do not disturb other tests).
      await sql.query(
        `INSERT INTO channel (id, chain_id, escrow, payer, payee, token, signer, withdraw_delay, salt, asset, claimed_on_chain, accepted_cumulative, latest_voucher_amount, booked_cumulative)
         SELECT '0x' || lpad(to_hex(i), 64, '0'), 1, '0xe', '0xp', '0xq', '0xt', '0xs', 86400, 's', $1, 1, 1, 1, 1 FROM generate_series(1, 20000) i`,
        [asset],
      );
      await sql.query(
        `INSERT INTO payment (channel_id, request_key, cumulative_amount, price, signature)
         SELECT '0x' || lpad(to_hex(i), 64, '0'), 'k' || i, 1, 1, '0x' FROM generate_series(1, 20000) i`,
        [],
      );
      await sql.query(
        `INSERT INTO ledger_account (id, asset, kind, normal_side, non_negative, debits, credits)
         SELECT 'channel:0x' || lpad(to_hex(i), 64, '0') || ':owed', $1, 'CHANNEL_OWED', 'CREDIT', true, 1, 1 FROM generate_series(1, 20000) i`,
        [asset],
      );
      for (let i = 0; i < 3; i++) await seedChannel(db(), asset, 0n, [{ cumulative: E12, ago: 60 }]);
      await sql.query("ANALYZE", []);
      const [{ owing }] = (await sql.query<{ owing: number }>(scrapeStatements.countOwing, [])) as [{ owing: number }];
      for (const [name, text, params] of [
        ["exposure", scrapeStatements.exposure, []],
        ["count", scrapeStatements.countOwing, []],
        ["oldest unclaimed", scrapeStatements.oldestUnclaimed, [owing]],
      ] as const) {
        const plan = (await sql.query<{ "QUERY PLAN": string }>(`EXPLAIN ${text}`, [...params])).map((r) => r["QUERY PLAN"]).join("\n");
        expect(plan, `${name}:\n${plan}`).not.to.match(/Seq Scan|JIT/);
        expect(plan, name).to.include("ledger_account_owing_idx");
      }
    });
  }
});
