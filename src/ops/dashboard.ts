// What an operator watches, read from the database: the value accepted but not yet claimed on each
// channel (exposure) sorted by risk, revenue and paid requests over time, the settlement history with
// its gas, the chain watcher's lag and the settlement queue. Plain functions over SQL, shared by the
// console's JSON endpoints (src/ops/console/) and the CLI (`paychan dashboard`); amounts are decimal
// strings of base units, times unix seconds.
//
// Nothing here reads the chain: "now" on chain is the clock the watcher last wrote (chain_head), as
// acceptance measures it, so the console costs the RPC nothing however often it refreshes.
import type { Address, Hex } from "viem";
import { cursorIdOf, type MirrorScope } from "../ledger/chainMirror.js";
import type { ReconcileReport, Severity } from "../ledger/reconcile.js";
import type { Sql } from "../ledger/sql.js";

/** Why a channel's unclaimed value is at risk, most urgent first. */
export type Risk =
  /** The payer's withdrawal deadline passed with value unclaimed: the escrow refuses the claim. */
  | "lost"
  /** The payer is withdrawing: the value must be claimed before the deadline. */
  | "withdrawing"
  /** Open with value unclaimed: safe while the settlement worker runs. */
  | "unclaimed"
  | "none";

const RISK_ORDER: Risk[] = ["lost", "withdrawing", "unclaimed", "none"];

export type ChannelExposure = {
  channelId: Hex;
  payer: Address;
  asset: string;
  deposit: string;
  accepted: string;
  claimed: string;
  /** Accepted, within the deposit, and not claimed on chain. */
  unclaimed: string;
  /** What the payer can still spend: deposit − max(accepted, claimed). */
  depositLeft: string;
  requests: number;
  lastPaidAt: number | null;
  /** Unix seconds (chain time) when the payer may finalize a requested withdrawal; null if none. */
  withdrawReadyAt: number | null;
  /** Seconds of chain time until then (negative once past). */
  secondsLeft: number | null;
  risk: Risk;
};

export type AssetExposure = {
  asset: string;
  channels: number;
  deposits: string;
  /** Lost if the settlement worker stopped now and every payer withdrew: Σ unclaimed. */
  atRisk: string;
  /** Of which on channels whose payer is already withdrawing. */
  withdrawing: string;
};

export type Exposure = {
  /** The chain's clock as the watcher last read it, advanced by the time since (or wall time before the first read). */
  chainTime: number;
  totals: AssetExposure[];
  /** Every open channel, most at risk first. */
  channels: ChannelExposure[];
};

type ExposureRow = {
  id: string;
  payer: string;
  asset: string;
  deposit: string;
  accepted: string;
  claimed: string;
  withdraw_ready_at: string | null;
  requests: number;
  last_paid: string | null;
  chain_now: string;
};

const SCOPE = `c.chain_id = $1::bigint AND lower(c.escrow) = $2 AND lower(c.payee) = $3`;
const CHAIN_NOW = `coalesce((SELECT h.block_timestamp + floor(extract(epoch FROM statement_timestamp() - h.observed_at))::bigint
                             FROM chain_head h WHERE h.chain_id = $1::bigint), floor(extract(epoch FROM statement_timestamp()))::bigint)`;

function scopeParams(scope: MirrorScope): string[] {
  return [String(scope.chainId), scope.escrow.toLowerCase(), scope.payee.toLowerCase()];
}

export async function exposure(sql: Sql, scope: MirrorScope): Promise<Exposure> {
  const rows = await sql.query<ExposureRow>(
    `SELECT c.id, c.payer, c.asset, GREATEST(c.deposit, c.deposit_seen)::text AS deposit, c.accepted_cumulative::text AS accepted,
            c.claimed_on_chain::text AS claimed, LEAST(c.withdraw_ready_at, c.withdraw_ready_at_seen)::text AS withdraw_ready_at,
            p.requests, p.last_paid, (${CHAIN_NOW})::text AS chain_now
     FROM channel c
     CROSS JOIN LATERAL (SELECT count(*)::int AS requests, extract(epoch FROM max(created_at))::bigint::text AS last_paid
                         FROM payment WHERE channel_id = c.id AND status = 'ACCEPTED') p
     WHERE ${SCOPE} AND NOT c.closed AND NOT c.closed_seen`,
    scopeParams(scope),
  );
  const chainTime = rows[0] ? Number(rows[0].chain_now) : Math.floor(Date.now() / 1000);
  const channels = rows.map((r): ChannelExposure => {
    const [deposit, accepted, claimed] = [BigInt(r.deposit), BigInt(r.accepted), BigInt(r.claimed)];
    const payable = accepted < deposit ? accepted : deposit;
    const unclaimed = payable > claimed ? payable - claimed : 0n;
    const spent = accepted > claimed ? accepted : claimed;
    const readyAt = r.withdraw_ready_at === null ? null : Number(r.withdraw_ready_at);
    const secondsLeft = readyAt === null ? null : readyAt - chainTime;
    const risk: Risk = unclaimed === 0n ? "none" : secondsLeft === null ? "unclaimed" : secondsLeft <= 0 ? "lost" : "withdrawing";
    return {
      channelId: r.id as Hex,
      payer: r.payer as Address,
      asset: r.asset,
      deposit: deposit.toString(),
      accepted: accepted.toString(),
      claimed: claimed.toString(),
      unclaimed: unclaimed.toString(),
      depositLeft: (deposit > spent ? deposit - spent : 0n).toString(),
      requests: r.requests,
      lastPaidAt: r.last_paid === null ? null : Number(r.last_paid),
      withdrawReadyAt: readyAt,
      secondsLeft,
      risk,
    };
  });
  channels.sort(byRisk);
  const totals = new Map<string, { channels: number; deposits: bigint; atRisk: bigint; withdrawing: bigint }>();
  for (const c of channels) {
    const t = totals.get(c.asset) ?? { channels: 0, deposits: 0n, atRisk: 0n, withdrawing: 0n };
    t.channels++;
    t.deposits += BigInt(c.deposit);
    t.atRisk += BigInt(c.unclaimed);
    if (c.withdrawReadyAt !== null) t.withdrawing += BigInt(c.unclaimed);
    totals.set(c.asset, t);
  }
  return {
    chainTime,
    totals: [...totals].map(([asset, t]) => ({
      asset,
      channels: t.channels,
      deposits: t.deposits.toString(),
      atRisk: t.atRisk.toString(),
      withdrawing: t.withdrawing.toString(),
    })),
    channels,
  };
}

/** Most urgent first: a passed deadline, then the nearest deadline, then the most unclaimed. */
function byRisk(a: ChannelExposure, b: ChannelExposure): number {
  const rank = RISK_ORDER.indexOf(a.risk) - RISK_ORDER.indexOf(b.risk);
  if (rank !== 0) return rank;
  if (a.secondsLeft !== null && b.secondsLeft !== null && a.secondsLeft !== b.secondsLeft) return a.secondsLeft - b.secondsLeft;
  const [x, y] = [BigInt(a.unclaimed), BigInt(b.unclaimed)];
  return x === y ? a.channelId.localeCompare(b.channelId) : x > y ? -1 : 1;
}

export type RevenuePoint = {
  /** Start of the bucket, unix seconds. */
  t: number;
  asset: string;
  requests: number;
  /** Σ prices of the accepted (not voided) payments made in the bucket. */
  accepted: string;
  /** Σ amounts of the Claimed events mirrored in the bucket. */
  claimed: string;
};

export type Revenue = {
  bucketSeconds: number;
  from: number;
  to: number;
  /** Per asset, what was accepted and claimed before `from`, so that a cumulative curve starts right. */
  before: { asset: string; accepted: string; claimed: string }[];
  points: RevenuePoint[];
  /** Paid requests in the last 60 seconds. */
  requestsLastMinute: number;
};

export type RevenueOptions = { windowSeconds?: number; bucketSeconds?: number };

/** Accepted and claimed value and paid requests per bucket (default: per minute over the last hour). */
export async function revenue(sql: Sql, scope: MirrorScope, { windowSeconds = 3_600, bucketSeconds = 60 }: RevenueOptions = {}): Promise<Revenue> {
  const params = [...scopeParams(scope), cursorIdOf(scope), String(windowSeconds), String(bucketSeconds)];
  // Buckets are aligned to multiples of bucketSeconds since the epoch, so every refresh draws the same ones.
  const rows = await sql.query<{ t: string; asset: string; requests: number; accepted: string; claimed: string; now: string }>(
    `WITH win AS (SELECT extract(epoch FROM statement_timestamp())::bigint AS now),
     bounds AS (SELECT now, (now - $5::bigint) / $6::bigint * $6::bigint AS from_t FROM win),
     paid AS (
       SELECT (extract(epoch FROM p.created_at)::bigint / $6::bigint * $6::bigint) AS t, c.asset, count(*)::int AS requests,
              sum(p.price) AS accepted, 0::numeric AS claimed
       FROM payment p JOIN channel c ON c.id = p.channel_id, bounds
       WHERE ${SCOPE} AND p.status = 'ACCEPTED' AND p.created_at >= to_timestamp(bounds.from_t)
       GROUP BY 1, 2),
     claims AS (
       SELECT (extract(epoch FROM e.created_at)::bigint / $6::bigint * $6::bigint) AS t, c.asset, 0 AS requests,
              0::numeric AS accepted, sum((e.args->>'amount')::numeric) AS claimed
       FROM chain_event e JOIN channel c ON c.id = e.channel_id, bounds
       WHERE e.cursor_id = $4 AND e.name = 'Claimed' AND e.reverted_at IS NULL AND e.created_at >= to_timestamp(bounds.from_t)
       GROUP BY 1, 2)
     SELECT u.t::text, u.asset, sum(u.requests)::int AS requests, sum(u.accepted)::text AS accepted, sum(u.claimed)::text AS claimed,
            (SELECT now FROM win)::text AS now
     FROM (SELECT * FROM paid UNION ALL SELECT * FROM claims) u
     GROUP BY u.t, u.asset ORDER BY u.t, u.asset`,
    params,
  );
  const before = await sql.query<{ asset: string; accepted: string; claimed: string }>(
    `WITH from_t AS (SELECT (extract(epoch FROM statement_timestamp())::bigint - $5::bigint) / $6::bigint * $6::bigint AS t)
     SELECT asset, sum(accepted)::text AS accepted, sum(claimed)::text AS claimed FROM (
       SELECT c.asset, p.price AS accepted, 0::numeric AS claimed FROM payment p JOIN channel c ON c.id = p.channel_id, from_t
       WHERE ${SCOPE} AND p.status = 'ACCEPTED' AND p.created_at < to_timestamp(from_t.t)
       UNION ALL
       SELECT c.asset, 0, (e.args->>'amount')::numeric FROM chain_event e JOIN channel c ON c.id = e.channel_id, from_t
       WHERE e.cursor_id = $4 AND e.name = 'Claimed' AND e.reverted_at IS NULL AND e.created_at < to_timestamp(from_t.t)) x
     GROUP BY asset ORDER BY asset`,
    params,
  );
  const [lastMinute] = await sql.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM payment p JOIN channel c ON c.id = p.channel_id
     WHERE ${SCOPE} AND p.status = 'ACCEPTED' AND p.created_at >= statement_timestamp() - interval '60 seconds'`,
    scopeParams(scope),
  );
  const to = rows[0] ? Number(rows[0].now) : Math.floor(Date.now() / 1000);
  return {
    bucketSeconds,
    from: Math.floor((to - windowSeconds) / bucketSeconds) * bucketSeconds,
    to,
    before,
    points: rows.map((r) => ({ t: Number(r.t), asset: r.asset, requests: r.requests, accepted: r.accepted, claimed: r.claimed })),
    requestsLastMinute: lastMinute?.n ?? 0,
  };
}

export type SettlementRecord = {
  batchId: string;
  createdAt: number;
  trigger: string;
  token: Address;
  /** What the batch set out to claim. */
  total: string;
  /** What the mirrored Claimed events of its transaction say was paid; null until mirrored. */
  claimed: string | null;
  items: number;
  claimedItems: number;
  skippedItems: number;
  status: "QUEUED" | "PENDING" | "CONFIRMED" | "FAILED";
  txHash: Hex | null;
  blockNumber: string | null;
  gasUsed: string | null;
  /** gasUsed × effective gas price, in the chain's native asset. */
  fee: string | null;
  error: string | null;
};

/** The latest settlement batches, newest first. */
export async function settlementHistory(sql: Sql, scope: MirrorScope, limit = 50): Promise<SettlementRecord[]> {
  const rows = await sql.query<{
    id: string;
    created: string;
    trigger: string;
    token: string;
    total: string;
    claimed: string | null;
    items: number;
    claimed_items: number;
    skipped_items: number;
    status: SettlementRecord["status"];
    tx_hash: string | null;
    block_number: string | null;
    gas_used: string | null;
    fee: string | null;
    error: string | null;
  }>(
    `SELECT b.id::text, extract(epoch FROM b.created_at)::bigint::text AS created, b.trigger::text, b.token, b.total::text,
            (SELECT sum((e.args->>'amount')::numeric)::text FROM chain_event e
             WHERE e.cursor_id = $4 AND e.name = 'Claimed' AND e.reverted_at IS NULL AND t.tx_hash IS NOT NULL AND lower(e.tx_hash) = t.tx_hash) AS claimed,
            i.items, i.claimed_items, i.skipped_items, t.status::text, t.tx_hash, t.block_number::text, t.gas_used::text, t.fee::text, t.error
     FROM settlement_batch b
     JOIN chain_tx t ON t.id = b.chain_tx_id
     CROSS JOIN LATERAL (SELECT count(*)::int AS items, (count(*) FILTER (WHERE outcome = 'CLAIMED'))::int AS claimed_items,
                                (count(*) FILTER (WHERE outcome = 'SKIPPED'))::int AS skipped_items
                         FROM settlement_item WHERE batch_id = b.id) i
     WHERE t.chain_id = $1::bigint AND b.escrow = $2 AND b.payee = $3
     ORDER BY b.created_at DESC, b.id LIMIT $5`,
    [...scopeParams(scope), cursorIdOf(scope), String(limit)],
  );
  return rows.map((r) => ({
    batchId: r.id,
    createdAt: Number(r.created),
    trigger: r.trigger,
    token: r.token as Address,
    total: r.total,
    claimed: r.claimed,
    items: r.items,
    claimedItems: r.claimed_items,
    skippedItems: r.skipped_items,
    status: r.status,
    txHash: r.tx_hash as Hex | null,
    blockNumber: r.block_number,
    gasUsed: r.gas_used,
    fee: r.fee,
    error: r.error,
  }));
}

export type GasVsRevenue = {
  /** Native asset spent on settlement transactions that landed (confirmed or reverted). */
  gasFees: string;
  gasUsed: string;
  transactions: number;
  /** Per asset: accepted (not voided) and claimed on chain (mirrored Claimed events). */
  revenue: { asset: string; accepted: string; claimed: string }[];
};

export async function gasVsRevenue(sql: Sql, scope: MirrorScope): Promise<GasVsRevenue> {
  const [gas] = await sql.query<{ fees: string; gas: string; n: number }>(
    `SELECT coalesce(sum(t.fee), 0)::text AS fees, coalesce(sum(t.gas_used), 0)::text AS gas, count(t.fee)::int AS n
     FROM settlement_batch b JOIN chain_tx t ON t.id = b.chain_tx_id
     WHERE t.chain_id = $1::bigint AND b.escrow = $2 AND b.payee = $3 AND t.fee IS NOT NULL`,
    scopeParams(scope),
  );
  const revenue = await sql.query<{ asset: string; accepted: string; claimed: string }>(
    `SELECT c.asset, sum(c.accepted_cumulative)::text AS accepted,
            coalesce(sum((SELECT sum((e.args->>'amount')::numeric) FROM chain_event e
                           WHERE e.channel_id = c.id AND e.cursor_id = $4 AND e.name = 'Claimed' AND e.reverted_at IS NULL)), 0)::text AS claimed
     FROM channel c WHERE ${SCOPE} GROUP BY c.asset ORDER BY c.asset`,
    [...scopeParams(scope), cursorIdOf(scope)],
  );
  return { gasFees: gas!.fees, gasUsed: gas!.gas, transactions: gas!.n, revenue };
}

export type WatcherStatus = {
  /** The last block mirrored into the ledger; null before the first. */
  mirroredBlock: string | null;
  mirroredAt: number | null;
  /** The chain's head when the watcher last read it. */
  headBlock: string | null;
  headObservedAt: number | null;
  /** headBlock − mirroredBlock; the watcher keeps `confirmations` blocks back on purpose. */
  lagBlocks: number | null;
  confirmations: number;
  /** Seconds since the watcher last read the chain's head. */
  secondsSinceObserved: number | null;
};

export async function watcherStatus(sql: Sql, scope: MirrorScope, confirmations: number): Promise<WatcherStatus> {
  const [row] = await sql.query<{ mirrored: string | null; mirrored_at: string | null; head: string | null; observed_at: string | null; age: string | null }>(
    `SELECT (SELECT block_number::text FROM chain_cursor WHERE id = $2) AS mirrored,
            (SELECT extract(epoch FROM updated_at)::bigint::text FROM chain_cursor WHERE id = $2) AS mirrored_at,
            h.block_number::text AS head, extract(epoch FROM h.observed_at)::bigint::text AS observed_at,
            extract(epoch FROM statement_timestamp() - h.observed_at)::bigint::text AS age
     FROM (SELECT 1) one LEFT JOIN chain_head h ON h.chain_id = $1::bigint`,
    [String(scope.chainId), cursorIdOf(scope)],
  );
  const mirrored = row?.mirrored ?? null;
  const head = row?.head ?? null;
  return {
    mirroredBlock: mirrored,
    mirroredAt: row?.mirrored_at ? Number(row.mirrored_at) : null,
    headBlock: head,
    headObservedAt: row?.observed_at ? Number(row.observed_at) : null,
    lagBlocks: mirrored !== null && head !== null ? Number(BigInt(head) - BigInt(mirrored)) : null,
    confirmations,
    secondsSinceObserved: row?.age ? Number(row.age) : null,
  };
}

export type SettlementQueue = {
  queued: number;
  pending: number;
  /** Value the queued and pending batches set out to claim, per token. */
  inFlight: { token: Address; total: string }[];
  /** Age in seconds of the oldest queued or pending transaction. */
  oldestSeconds: number | null;
  failedLastDay: number;
};

export async function settlementQueue(sql: Sql, scope: MirrorScope): Promise<SettlementQueue> {
  const rows = await sql.query<{ token: string | null; queued: number; pending: number; total: string; oldest: string | null; failed: number }>(
    `SELECT b.token, (count(*) FILTER (WHERE t.status = 'QUEUED'))::int AS queued, (count(*) FILTER (WHERE t.status = 'PENDING'))::int AS pending,
            coalesce(sum(b.total) FILTER (WHERE t.status IN ('QUEUED', 'PENDING')), 0)::text AS total,
            extract(epoch FROM statement_timestamp() - min(t.created_at) FILTER (WHERE t.status IN ('QUEUED', 'PENDING')))::bigint::text AS oldest,
            (count(*) FILTER (WHERE t.status = 'FAILED' AND t.updated_at > statement_timestamp() - interval '1 day'))::int AS failed
     FROM settlement_batch b JOIN chain_tx t ON t.id = b.chain_tx_id
     WHERE t.chain_id = $1::bigint AND b.escrow = $2 AND b.payee = $3
     GROUP BY b.token ORDER BY b.token`,
    scopeParams(scope),
  );
  const oldest = rows.map((r) => r.oldest).filter((o): o is string => o !== null).map(Number);
  return {
    queued: rows.reduce((n, r) => n + r.queued, 0),
    pending: rows.reduce((n, r) => n + r.pending, 0),
    inFlight: rows.filter((r) => r.queued + r.pending > 0).map((r) => ({ token: r.token as Address, total: r.total })),
    oldestSeconds: oldest.length > 0 ? Math.max(...oldest) : null,
    failedLastDay: rows.reduce((n, r) => n + r.failed, 0),
  };
}

export type ReconciliationStatus = {
  ok: boolean;
  generatedAt: string;
  counts: Record<Severity, number>;
  differences: ReconcileReport["differences"];
};

/** What the console shows of a reconciliation report. */
export function reconciliationStatus(report: ReconcileReport): ReconciliationStatus {
  const counts: Record<Severity, number> = { missing: 0, loss: 0, lag: 0, warning: 0 };
  for (const d of report.differences) counts[d.severity]++;
  return { ok: report.ok, generatedAt: report.generatedAt, counts, differences: report.differences };
}

export type Dashboard = {
  generatedAt: string;
  scope: MirrorScope;
  exposure: Exposure;
  revenue: Revenue;
  settlements: SettlementRecord[];
  gasVsRevenue: GasVsRevenue;
  watcher: WatcherStatus;
  queue: SettlementQueue;
};

/** Everything above in one read, for the CLI. */
export async function dashboard(sql: Sql, scope: MirrorScope, options: { confirmations: number } & RevenueOptions): Promise<Dashboard> {
  const [exp, rev, settlements, gas, watcher, queue] = await Promise.all([
    exposure(sql, scope),
    revenue(sql, scope, options),
    settlementHistory(sql, scope, 10),
    gasVsRevenue(sql, scope),
    watcherStatus(sql, scope, options.confirmations),
    settlementQueue(sql, scope),
  ]);
  return { generatedAt: new Date().toISOString(), scope, exposure: exp, revenue: rev, settlements, gasVsRevenue: gas, watcher, queue };
}

/** The dashboard as text, for a terminal. */
export function formatDashboard(d: Dashboard): string {
  const lines: string[] = [];
  lines.push(`paychan on eip155:${d.scope.chainId}, escrow ${d.scope.escrow}, payee ${d.scope.payee} — ${d.generatedAt}`);
  lines.push("", "exposure (accepted, not yet claimed):");
  if (d.exposure.totals.length === 0) lines.push("  no open channels");
  for (const t of d.exposure.totals) {
    lines.push(`  ${t.asset}: ${t.atRisk} at risk on ${t.channels} channel(s) (${t.withdrawing} on withdrawing ones), ${t.deposits} deposited`);
  }
  for (const c of d.exposure.channels.filter((c) => c.risk !== "none").slice(0, 10)) {
    const deadline = c.secondsLeft === null ? "" : c.secondsLeft > 0 ? `, deadline in ${c.secondsLeft} s` : ", deadline passed";
    lines.push(`  ${c.risk.padEnd(11)} ${c.channelId} unclaimed ${c.unclaimed}, deposit left ${c.depositLeft}${deadline}`);
  }
  lines.push("", `revenue (last ${Math.round((d.revenue.to - d.revenue.from) / 60)} min): ${d.revenue.requestsLastMinute} paid request(s) in the last minute`);
  for (const r of d.gasVsRevenue.revenue) lines.push(`  ${r.asset}: accepted ${r.accepted}, claimed ${r.claimed}`);
  lines.push(`  gas: ${d.gasVsRevenue.gasFees} (native) for ${d.gasVsRevenue.gasUsed} gas in ${d.gasVsRevenue.transactions} settlement transaction(s)`);
  lines.push("", "settlements (newest first):");
  if (d.settlements.length === 0) lines.push("  none yet");
  for (const s of d.settlements) {
    lines.push(
      `  ${new Date(s.createdAt * 1000).toISOString()} ${s.status.padEnd(9)} ${s.trigger.padEnd(14)} ${s.claimedItems}/${s.items} claimed, ` +
        `${s.claimed ?? "—"} of ${s.total}, gas ${s.gasUsed ?? "—"}, fee ${s.fee ?? "—"}${s.txHash ? `, tx ${s.txHash}` : ""}${s.error ? ` (${s.error})` : ""}`,
    );
  }
  const w = d.watcher;
  lines.push(
    "",
    w.mirroredBlock === null
      ? "watcher: has not mirrored any block yet"
      : `watcher: mirrored block ${w.mirroredBlock} of head ${w.headBlock ?? "?"} (${w.lagBlocks ?? "?"} behind, ${w.confirmations} confirmations kept), head read ${w.secondsSinceObserved ?? "?"} s ago`,
  );
  const q = d.queue;
  lines.push(
    `settlement queue: ${q.queued} queued, ${q.pending} pending${q.oldestSeconds !== null ? `, oldest ${q.oldestSeconds} s` : ""}; ${q.failedLastDay} failed in the last day`,
  );
  return lines.join("\n");
}
