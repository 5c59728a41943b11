// What the books say is at risk or in flight, for an operator's dashboard (the metrics read these at
// every scrape): the value accepted and not yet claimed on chain (exposure) and how old it is, the
// gas spent, the claim transactions in flight, how far the watcher has mirrored, and — when a claim
// is confirmed — how long its vouchers waited.
//
// A scrape must stay cheap on a database with millions of channels, so no statement here reads
// every channel: exposure walks only the CHANNEL_OWED accounts that hold something (a partial
// index, migration 20261201110000), i.e. the channels with unclaimed vouchers; the others read a
// handful of rows through an index (accounts by kind, transactions by status, a cursor by id, the
// items of one batch).
import type { Sql } from "./sql.js";

export type Exposure = {
  asset: string;
  /** Channels with accepted vouchers not yet claimed. */
  channels: number;
  /** Σ CHANNEL_OWED: accepted (as booked) and not yet claimed on chain, in base units. */
  owed: bigint;
  /** Seconds since the oldest of those vouchers was accepted; undefined if none is in the store. */
  oldestSeconds: number | undefined;
};

// The oldest unclaimed voucher of a channel is its first ACCEPTED payment above what the chain has
// paid: one probe of the (channel_id, cumulative_amount) index per channel with something owed.
const EXPOSURE = `
SELECT a.asset, count(*)::int AS channels, sum(a.credits - a.debits)::text AS owed,
       extract(epoch FROM now() - min(first.created_at))::float8 AS oldest_seconds
FROM ledger_account a
LEFT JOIN channel c ON c.id = split_part(a.id, ':', 2)
LEFT JOIN LATERAL (
  SELECT p.created_at FROM payment p
  WHERE p.channel_id = c.id AND p.status = 'ACCEPTED' AND p.cumulative_amount > c.claimed_on_chain
  ORDER BY p.cumulative_amount
  LIMIT 1) first ON true
WHERE a.kind = 'CHANNEL_OWED' AND a.credits <> a.debits
GROUP BY a.asset
ORDER BY a.asset`;

export async function exposureByAsset(sql: Sql): Promise<Exposure[]> {
  const rows = await sql.query<{ asset: string; channels: number; owed: string; oldest_seconds: number | null }>(EXPOSURE, []);
  return rows.map((r) => ({ asset: r.asset, channels: r.channels, owed: BigInt(r.owed), oldestSeconds: r.oldest_seconds ?? undefined }));
}

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
