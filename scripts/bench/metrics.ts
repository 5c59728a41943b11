// What one scrape of GET /metrics costs on a big database: CHANNELS channels (default 1,000,000), of
// which UNCLAIMED (default 10,000) hold accepted vouchers not yet claimed, each with its payments and
// its ledger accounts, seeded straight into Postgres. Times the whole scrape (every scrape-time
// collector, through paychan's own Metrics) and each statement alone, beside the statement a scrape
// would run without the partial index on owed balances (Σ over every CHANNEL_OWED account).
// Run: npm run bench:metrics   (env: CHANNELS, UNCLAIMED, SCRAPES; DATABASE_URL to reuse a database)
import { network } from "hardhat";
import pg from "pg";
import type { PublicClient } from "viem";
import { loadConfig } from "../../src/config.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { openDatabase } from "../../src/ledger/db.js";
import { claimsInFlight, exposureByAsset, gasSpentByAsset, oldestUnclaimed, scrapeStatements } from "../../src/ledger/exposure.js";
import { startPaychan } from "../../src/server.js";
import { freshPostgres } from "./freshPostgres.js";

const CHANNELS = Number(process.env.CHANNELS ?? 1_000_000);
const UNCLAIMED = Number(process.env.UNCLAIMED ?? 10_000);
const SCRAPES = Number(process.env.SCRAPES ?? 20);

const { viem } = await network.create();
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [, , payee] = await viem.getWalletClients();
const escrow = await viem.deployContract("PaychanEscrow");
const chainId = await publicClient.getChainId();
const asset = nativeAsset(chainId);
const database = await freshPostgres();
await (await openDatabase({ url: database.url })).close(); // migrated

const client = new pg.Client({ connectionString: database.url });
await client.connect();
try {
  const seeded = performance.now();
  console.log(`seeding ${CHANNELS.toLocaleString("en")} channels, ${UNCLAIMED.toLocaleString("en")} of them with unclaimed vouchers…`);
  // Channel i: one payment of 10^12 claimed on chain, and for the first UNCLAIMED a second one, an hour
  // old, not claimed yet. Ledger accounts as booking and the chain mirror leave them.
  await client.query(`
    INSERT INTO channel (id, chain_id, escrow, payer, payee, token, signer, withdraw_delay, salt, asset, deposit,
                         claimed_on_chain, accepted_cumulative, latest_voucher_amount, booked_cumulative, booking_seq)
    SELECT '0x' || lpad(to_hex(i), 64, '0'), $1, $2, $3, $3, '0x0000000000000000000000000000000000000000', $3, 86400,
           '0x' || lpad(to_hex(i), 64, '0'), $4, 1000000000000000000, 1000000000000,
           CASE WHEN i <= $5 THEN 2000000000000 ELSE 1000000000000 END,
           CASE WHEN i <= $5 THEN 2000000000000 ELSE 1000000000000 END,
           CASE WHEN i <= $5 THEN 2000000000000 ELSE 1000000000000 END, 1
    FROM generate_series(1, $6) AS i`,
    [chainId, escrow.address, payee!.account.address, asset, UNCLAIMED, CHANNELS],
  );
  await client.query(`
    INSERT INTO payment (channel_id, request_key, cumulative_amount, price, signature, created_at)
    SELECT '0x' || lpad(to_hex(i), 64, '0'), 'seed-' || i, 1000000000000, 1000000000000, '0x', now() - interval '2 hours'
    FROM generate_series(1, $1) AS i
    UNION ALL
    SELECT '0x' || lpad(to_hex(i), 64, '0'), 'seed-b-' || i, 2000000000000, 1000000000000, '0x', now() - interval '1 hour'
    FROM generate_series(1, $2) AS i`,
    [CHANNELS, UNCLAIMED],
  );
  await client.query(`
    INSERT INTO ledger_account (id, asset, kind, normal_side, non_negative, debits, credits)
    SELECT 'channel:0x' || lpad(to_hex(i), 64, '0') || ':owed', $1, 'CHANNEL_OWED'::account_kind, 'CREDIT'::side, true, 1000000000000,
           CASE WHEN i <= $2 THEN 2000000000000 ELSE 1000000000000 END
    FROM generate_series(1, $3) AS i
    UNION ALL
    SELECT 'channel:0x' || lpad(to_hex(i), 64, '0') || ':available', $1, 'CHANNEL_AVAILABLE'::account_kind, 'CREDIT'::side, true, 1000000000000, 1000000000000000000
    FROM generate_series(1, $3) AS i`,
    [asset, UNCLAIMED, CHANNELS],
  );
  await client.query("VACUUM ANALYZE");
  console.log(`seeded in ${((performance.now() - seeded) / 1000).toFixed(0)} s`);

  const paychan = await startPaychan(
    loadConfig({ DATABASE_URL: database.url, ESCROW_ADDRESS: escrow.address, PAYEE_ADDRESS: payee!.account.address, LOG_LEVEL: "warn" }),
    { publicClient },
  );

  async function time(label: string, run: () => Promise<unknown>): Promise<void> {
    await run(); // warm: plans, caches
    const ms: number[] = [];
    for (let i = 0; i < SCRAPES; i++) {
      const started = performance.now();
      await run();
      ms.push(performance.now() - started);
    }
    ms.sort((a, b) => a - b);
    const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]!.toFixed(1);
    console.log(`${label.padEnd(58)} median ${at(0.5).padStart(8)} ms   p95 ${at(0.95).padStart(8)} ms`);
  }

  const [exposure] = await exposureByAsset(paychan.db.sql);
  const [oldest] = await oldestUnclaimed(paychan.db.sql);
  console.log(`\nexposure ${exposure?.owed} over ${exposure?.channels} channels, oldest ${oldest?.seconds.toFixed(0)} s`);
  const plan = await client.query(`EXPLAIN ${scrapeStatements.exposure}`);
  console.log(`its accounts are read with: ${plan.rows.map((r: { "QUERY PLAN": string }) => r["QUERY PLAN"].trim()).find((l: string) => /Scan/.test(l))}`);
  console.log(`\n${CHANNELS.toLocaleString("en")} channels, ${UNCLAIMED.toLocaleString("en")} unclaimed, ${SCRAPES} runs each (Postgres, this machine):`);
  await time("a whole scrape (GET /metrics body)", () => paychan.metrics.render());
  await time("exposure (partial index)", () => exposureByAsset(paychan.db.sql));
  await time("oldest unclaimed (count, then 2 probes per owing channel)", () => oldestUnclaimed(paychan.db.sql));
  await time("gas spent", () => gasSpentByAsset(paychan.db.sql));
  await time("claims in flight", () => claimsInFlight(paychan.db.sql));
  await time("without the index: Σ every CHANNEL_OWED account", () =>
    client.query(`SELECT asset, sum(credits - debits)::text FROM ledger_account WHERE kind = 'CHANNEL_OWED' GROUP BY asset`),
  );

  await paychan.close();
} finally {
  await client.end();
  await database.drop();
}
