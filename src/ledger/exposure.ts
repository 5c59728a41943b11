// What the books say is at risk or in flight, for an operator's dashboard (the metrics read these at
// every scrape): the value accepted and not yet claimed on chain (exposure) and how old it is, the
// gas spent, the claim transactions in flight, how far the watcher has mirrored, and — when a claim
// is confirmed — how long its vouchers waited.
//
// A scrape must stay cheap on a database with millions of channels, so no statement here reads
// every channel: exposure walks only the CHANNEL_OWED accounts that hold something (`owing`, with a
// partial index: migration 20261201110000), i.e. the channels with unclaimed vouchers, and probes
// two indexes for each of those; the others read a handful of rows through an index (accounts by kind,
// transactions by status, a cursor by id, the items of one batch).
import type { Sql } from "./sql.js";

export type Exposure = {
  asset: string;
  /** Channels with accepted vouchers not yet claimed. */
  channels: number;
  /** Σ CHANNEL_OWED: accepted (as booked) and not yet claimed on chain, in base units. */
  owed: bigint;
};

const OWING = `WHERE owing`;
const EXPOSURE = `SELECT asset, count(*)::int AS channels, sum(credits - debits)::text AS owed FROM ledger_account ${OWING} GROUP BY asset ORDER BY asset`;
const COUNT_OWING = `SELECT count(*)::int AS owing FROM ledger_account ${OWING}`;

/** What is owed per asset: an index-only scan of the owing accounts. */
export async function exposureByAsset(sql: Sql): Promise<Exposure[]> {
  const rows = await sql.query<{ asset: string; channels: number; owed: string }>(EXPOSURE, []);
  return rows.map((r) => ({ asset: r.asset, channels: r.channels, owed: BigInt(r.owed) }));
}

// The oldest unclaimed voucher of a channel is its first ACCEPTED payment above what the chain has
// paid: a probe of the channel's row and one of the (channel_id, cumulative_amount) index per
// channel that owes.
const OLDEST_UNCLAIMED = `
SELECT o.asset, extract(epoch FROM now() - min(first.created_at))::float8 AS oldest_seconds
FROM (SELECT asset, split_part(id, ':', 2) AS channel_id FROM ledger_account ${OWING} LIMIT $1) o
CROSS JOIN LATERAL (SELECT claimed_on_chain FROM channel WHERE id = o.channel_id) c
CROSS JOIN LATERAL (
  SELECT p.created_at FROM payment p
  WHERE p.channel_id = o.channel_id AND p.status = 'ACCEPTED' AND p.cumulative_amount > c.claimed_on_chain
  ORDER BY p.cumulative_amount
  LIMIT 1) first
GROUP BY o.asset
ORDER BY o.asset`;

/**
 * Per asset, seconds since the oldest accepted voucher not yet claimed was accepted: the settlement
 * lag so far. It costs two index probes per channel that owes, so it looks at `limit` of them at most
 * (default 50,000); with more owing than that (settlement is far behind, and the exposure says so)
 * the age is a lower bound.
 */
export async function oldestUnclaimed(sql: Sql, limit = 50_000): Promise<{ asset: string; seconds: number }[]> {
  const [{ owing }] = (await sql.query<{ owing: number }>(COUNT_OWING, [])) as [{ owing: number }];
  if (owing === 0) return [];
  const rows = await sql.query<{ asset: string; oldest_seconds: number }>(OLDEST_UNCLAIMED, [Math.min(owing, limit)]);
  return rows.map((r) => ({ asset: r.asset, seconds: Math.max(0, r.oldest_seconds) }));
}

/** The statements a scrape runs over the owing accounts, for the test that checks their plans. */
export const scrapeStatements = { exposure: EXPOSURE, countOwing: COUNT_OWING, oldestUnclaimed: OLDEST_UNCLAIMED };

/** Native coin spent on transaction fees (Σ GAS_EXPENSE), per asset, in base units. */
export async function gasSpentByAsset(sql: Sql): Promise<{ asset: string; spent: bigint }[]> {
  const rows = await sql.query<{ asset: string; spent: string }>(
    `SELECT asset, sum(debits - credits)::text AS spent FROM ledger_account WHERE kind = 'GAS_EXPENSE' GROUP BY asset ORDER BY asset`,
    [],
  );
  return rows.map((r) => ({ asset: r.asset, spent: BigInt(r.spent) }));
}

/** Transactions queued or sent and not yet final, and the age of the oldest. */
export async function claimsInFlight(sql: Sql): Promise<{ count: number; oldestSeconds: number | undefined }> {
  const [row] = await sql.query<{ count: number; oldest_seconds: number | null }>(
    `SELECT count(*)::int AS count, extract(epoch FROM now() - min(created_at))::float8 AS oldest_seconds
     FROM chain_tx WHERE status IN ('QUEUED', 'PENDING')`,
    [],
  );
  return { count: row?.count ?? 0, oldestSeconds: row?.oldest_seconds ?? undefined };
}

/** The newest block the watcher has mirrored for this cursor; undefined before its first sync. */
export async function mirroredBlock(sql: Sql, cursorId: string): Promise<bigint | undefined> {
  const [row] = await sql.query<{ block_number: string }>(`SELECT block_number::text FROM chain_cursor WHERE id = $1`, [cursorId]);
  return row ? BigInt(row.block_number) : undefined;
}

/**
 * For each channel a settlement batch claimed: seconds from the acceptance of the oldest voucher the
 * claim covered (the first accepted payment above what the chain had paid before) until now. Call
 * it when the batch's transaction is confirmed.
 */
export async function settlementLags(sql: Sql, batchId: string): Promise<number[]> {
  const rows = await sql.query<{ seconds: number }>(
    `SELECT extract(epoch FROM now() - first.created_at)::float8 AS seconds
     FROM settlement_item i
     CROSS JOIN LATERAL (
       SELECT p.created_at FROM payment p
       WHERE p.channel_id = i.channel_id AND p.status = 'ACCEPTED'
         AND p.cumulative_amount > i.claimed_before AND p.cumulative_amount <= i.cumulative_amount
       ORDER BY p.cumulative_amount
       LIMIT 1) first
     WHERE i.batch_id = $1::uuid AND i.outcome = 'CLAIMED'`,
    [batchId],
  );
  return rows.map((r) => Math.max(0, r.seconds));
}
