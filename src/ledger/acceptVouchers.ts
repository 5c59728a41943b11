// Accepting vouchers: the paid-request hot path. One SQL statement per group commit decides every
// voucher in it against its channel's row and records the accepted ones:
//
//   - compare-and-set: the channel's accepted total plus the metered usage it owes must be exactly
//     the voucher's total minus the price, and becomes the voucher's total (the debt is paid);
//   - within the deposit — the confirmed deposit, plus what was seen at the head and not yet confirmed
//     up to the pending cap —, not closed, not blocked (a reorg shortfall, an event the mirror could
//     not book), and no withdrawal (confirmed or seen at the head) that finalizes within the margin —
//     all read from the channel row as the watcher last wrote it, the margin in the chain's time
//     (chain_head);
//   - with an exposure cap, while a withdrawal deadline is within its window, what the channel would
//     owe unclaimed (the voucher's total minus what the chain has paid) stays within the cap;
//   - no standing payment already holds a voucher for that total;
//   - for a metered charge (one with a maximum), the deposit also covers the most its usage may add,
//     and no other metered request on the channel is still running: the usage a channel may owe
//     without a voucher is one request's at most;
//   - then a payment row per accepted voucher.
//
// Postgres's row lock on the channel and the WHERE clause are the serialization: a second process
// updating the same channel waits for the first, re-checks the WHERE against the committed row and
// fails the compare-and-set, so two replicas cannot accept the same total. The statement is its own
// transaction (no interactive transaction, one round trip), and it is durable when it returns.
//
// The journal is not written here: booking.ts moves accepted totals from CHANNEL_AVAILABLE to
// CHANNEL_OWED per channel in aggregate, off the hot path, with the same books as one entry per voucher.
import { randomUUID } from "node:crypto";
import type { Hex } from "viem";
import { postgresError } from "./errors.js";
import { acceptInRounds } from "./rounds.js";
import type { Sql } from "./sql.js";

export type VoucherCharge = {
  channelId: Hex;
  /** The voucher's total: the channel's accepted total before this charge plus `price`. */
  cumulativeAmount: bigint;
  price: bigint;
  signature: Hex;
  /** What identifies the paid request (the gateway hashes its method and URL): an identical retry
   * finds this payment by it. */
  requestKey: string;
  /** A metered request's most it may cost (at least `price`, which it prepays); the rest of its usage
   * is owed until the channel's next voucher. Undefined for a fixed price. */
  max?: bigint;
  /** Why the price is what it is, when the route has a pricing policy: stored with the payment. */
  pricing?: string;
};

export type AcceptRefusal =
  | "CHANNEL_NOT_FOUND"
  | "CHANNEL_CLOSED"
  /** A withdrawal finalizes within the margin (chain time): claims may not land in time. */
  | "CHANNEL_CLOSING"
  | "INVALID_PRICE"
  /** The voucher's total was accepted already (or an earlier one): a replay, or a retry. */
  | "VOUCHER_REPLAYED"
  /** The voucher's total is not the accepted total plus the usage owed plus the price. */
  | "CUMULATIVE_MISMATCH"
  /** The voucher's total is the accepted total plus the price, leaving out the metered usage owed. */
  | "USAGE_OWED"
  /** A metered charge while another metered request on the channel is still running. */
  | "METERED_BUSY"
  /** A standing payment already holds a voucher for this total: a charge before it was voided while
   * this one stood (concurrent requests on one channel). The payer must resync by hand. */
  | "TOTAL_HELD"
  /** The voucher promises more than the channel's deposit (confirmed, plus pending up to the cap). */
  | "EXCEEDS_DEPOSIT"
  /** A withdrawal deadline is within the exposure window and the channel would owe more unclaimed
   * than the exposure cap: a claim would make room. */
  | "EXPOSURE_CAPPED"
  /** Nothing is served on the channel: a reorg took away money it had spent, or the mirror could not
   * book one of its events. */
  | "CHANNEL_BLOCKED"
  /** The row changed while the statement waited for it (another process accepted on it): decide again. */
  | "CONFLICT";

/** The channel row as the statement saw it, for explaining a refusal. */
export type ChannelSnapshot = {
  acceptedCumulative: bigint;
  /** Metered usage no voucher covers yet. */
  usageOwed: bigint;
  /** What vouchers may total: the confirmed deposit plus the pending part up to the cap. */
  deposit: bigint;
  closed: boolean;
  /** The nearer of the confirmed and the seen withdrawal deadlines. */
  withdrawReadyAt: bigint | null;
  blockedReason: string | null;
  /** What the chain has paid the payee from the channel so far. */
  claimedOnChain: bigint;
};

export type AcceptOutcome =
  | { ok: true; paymentId: string; deposit: bigint }
  | { ok: false; refusal: AcceptRefusal; channel?: ChannelSnapshot; chainNow: bigint };

export type AcceptContext = {
  chainId: number;
  /** Refuse vouchers on a channel whose withdrawal finalizes within this many seconds of chain time. */
  closingMarginSeconds: number;
  /** How much of a deposit seen at the head but not yet confirmed vouchers may spend (default: all of it). */
  pendingDepositCap?: bigint;
  /** How long a metered request may run and still report its usage (default 600 seconds). */
  meteringLeaseSeconds?: number;
  /** While a withdrawal finalizes within `windowSeconds` (chain time), a voucher's total minus what
   * was claimed may not exceed `percent` of the deposit, nor `absolute`. Default: no cap. */
  exposureCap?: ExposureCap;
};

export type ExposureCap = { windowSeconds: number; percent: number; absolute?: bigint };

/** The cap on what a channel with `deposit` may owe unclaimed near its deadline. */
export function exposureLimit(cap: ExposureCap, deposit: bigint): bigint {
  const share = (deposit * BigInt(cap.percent)) / 100n;
  return cap.absolute !== undefined && cap.absolute < share ? cap.absolute : share;
}

/** Larger than any deposit (uint96): "no cap". */
const NO_CAP = 10n ** 40n;

// Chain time: the block timestamp the watcher last recorded plus the database time since, or the
// database's clock before any watcher ran. Every process computes the same.
const CHAIN_NOW = `COALESCE(
    (SELECT h.block_timestamp + floor(extract(epoch FROM statement_timestamp() - h.observed_at))::bigint
     FROM chain_head h WHERE h.chain_id = $7),
    floor(extract(epoch FROM statement_timestamp()))::bigint)`;

// What a voucher may total on channel c: the confirmed deposit plus the pending part, capped.
const SPENDABLE = `LEAST(c.deposit_seen, c.deposit + $9::numeric)`;
// The nearer withdrawal deadline, confirmed or seen at the head.
const DEADLINE = `LEAST(c.withdraw_ready_at, c.withdraw_ready_at_seen)`;
// Another metered request on the channel is still running (its usage not reported, its lease not over).
const METERING = `EXISTS (SELECT 1 FROM payment p WHERE p.channel_id = i.channel_id AND p.status = 'ACCEPTED'
    AND p.metered_max IS NOT NULL AND p.charged IS NULL AND p.metered_until > statement_timestamp())`;

const ACCEPT = `
WITH i AS (
  SELECT * FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::text[], $5::uuid[], $6::text[], $10::numeric[], $12::text[])
    WITH ORDINALITY AS i(channel_id, cumulative, price, signature, payment_id, request_key, max, pricing, ord)
), clock AS (
  SELECT ${CHAIN_NOW} AS now
), accepted AS (
  UPDATE channel c
  SET accepted_cumulative = i.cumulative, latest_voucher_amount = GREATEST(c.latest_voucher_amount, i.cumulative),
      usage_owed = 0, usage_settled = c.usage_owed
  FROM i, clock
  WHERE c.id = i.channel_id
    -- Said twice so that the planner, even on a table it has no statistics for yet, reads the batch's
    -- rows by primary key rather than comparing every channel with every voucher.
    AND c.id = ANY($1::text[])
    AND c.accepted_cumulative + c.usage_owed = i.cumulative - i.price
    AND i.cumulative + COALESCE(i.max - i.price, 0) <= ${SPENDABLE}
    AND (i.max IS NULL OR NOT ${METERING})
    AND NOT c.closed AND NOT c.closed_seen
    AND c.blocked_reason IS NULL
    AND (${DEADLINE} IS NULL OR ${DEADLINE} > clock.now + $8)
    AND ($13::bigint < 0 OR ${DEADLINE} IS NULL OR ${DEADLINE} > clock.now + $13
         OR i.cumulative + COALESCE(i.max - i.price, 0) - c.claimed_on_chain <= LEAST(floor(${SPENDABLE} * $14::numeric / 100), $15::numeric))
    AND NOT EXISTS (SELECT 1 FROM payment p WHERE p.channel_id = i.channel_id AND p.cumulative_amount = i.cumulative AND p.status = 'ACCEPTED')
  RETURNING c.id, ${SPENDABLE} AS spendable, c.usage_settled
), paid AS (
  INSERT INTO payment (id, channel_id, request_key, cumulative_amount, price, signature, owed_paid, metered_max, metered_until, pricing)
  SELECT i.payment_id, i.channel_id, i.request_key, i.cumulative, i.price + a.usage_settled, i.signature, a.usage_settled, i.max,
         CASE WHEN i.max IS NOT NULL THEN statement_timestamp() + make_interval(secs => $11) END, i.pricing
  FROM i JOIN accepted a ON a.id = i.channel_id
)
SELECT i.ord::int AS ord, a.id IS NOT NULL AS ok, clock.now::text AS chain_now, a.spendable::text AS new_deposit,
       c.id IS NOT NULL AS found, c.accepted_cumulative::text AS accepted, c.usage_owed::text AS owed, ${SPENDABLE}::text AS deposit,
       (c.closed OR c.closed_seen) AS closed, ${DEADLINE}::text AS withdraw_ready_at, c.blocked_reason,
       c.claimed_on_chain::text AS claimed,
       CASE WHEN a.id IS NULL THEN EXISTS (SELECT 1 FROM payment p WHERE p.channel_id = i.channel_id
         AND p.cumulative_amount = i.cumulative AND p.status = 'ACCEPTED') END AS held,
       CASE WHEN a.id IS NULL AND i.max IS NOT NULL THEN ${METERING} END AS metering
FROM i CROSS JOIN clock
LEFT JOIN accepted a ON a.id = i.channel_id
LEFT JOIN channel c ON c.id = i.channel_id AND c.id = ANY($1::text[])
ORDER BY i.ord`;

type Row = {
  ord: number;
  ok: boolean;
  chain_now: string;
  new_deposit: string | null;
  found: boolean;
  accepted: string | null;
  owed: string | null;
  deposit: string | null;
  closed: boolean | null;
  withdraw_ready_at: string | null;
  blocked_reason: string | null;
  claimed: string | null;
  held: boolean | null;
  metering: boolean | null;
};

/**
 * Accepts each charge whose channel stands exactly at its voucher's total minus its price. Results are
 * in input order; a refused charge does not affect the others. Charges on the same channel apply in
 * input order, one statement per position (the gateway's group commit sends one per channel).
 */
export function acceptVouchers(sql: Sql, charges: VoucherCharge[], context: AcceptContext): Promise<AcceptOutcome[]> {
  return acceptInRounds(
    charges,
    (charge) => charge.channelId.toLowerCase(),
    (charge): AcceptOutcome | undefined =>
      charge.price <= 0n || (charge.max !== undefined && charge.max < charge.price) ? { ok: false, refusal: "INVALID_PRICE", chainNow: 0n } : undefined,
    (distinct) => acceptDistinct(sql, distinct, context),
  );
}

/** One statement for charges on distinct channels. */
async function acceptDistinct(sql: Sql, charges: VoucherCharge[], context: AcceptContext): Promise<AcceptOutcome[]> {
  // Rows are locked in channel-id order, so two statements over overlapping channels cannot deadlock.
  const order = charges.map((_, i) => i).sort((a, b) => compare(charges[a]!.channelId.toLowerCase(), charges[b]!.channelId.toLowerCase()));
  const sorted = order.map((i) => charges[i]!);
  const paymentIds = sorted.map(() => randomUUID());
  let rows: Row[];
  try {
    rows = await runWithRetry(() =>
      sql.query<Row>(
        ACCEPT,
        [
          sorted.map((c) => c.channelId.toLowerCase()),
          sorted.map((c) => c.cumulativeAmount.toString()),
          sorted.map((c) => c.price.toString()),
          sorted.map((c) => c.signature),
          paymentIds,
          sorted.map((c) => c.requestKey),
          BigInt(context.chainId).toString(),
          BigInt(context.closingMarginSeconds).toString(),
          (context.pendingDepositCap ?? NO_CAP).toString(),
          sorted.map((c) => c.max?.toString() ?? null),
          context.meteringLeaseSeconds ?? 600,
          sorted.map((c) => c.pricing ?? null),
          String(context.exposureCap?.windowSeconds ?? -1),
          String(context.exposureCap?.percent ?? 100),
          (context.exposureCap?.absolute ?? NO_CAP).toString(),
        ],
        "paychan_accept_vouchers",
      ),
    );
  } catch (error) {
    // A standing payment at the same total that the statement's snapshot did not show (a concurrent
    // void and re-acceptance) fails the whole statement on the unique index: decide each alone, so
    // only that charge is refused.
    if (postgresError(error)?.code === "23505" && charges.length > 1) {
      const alone = await Promise.all(sorted.map((c) => acceptDistinct(sql, [c], context)));
      return unsort(order, alone.map((r) => r[0]!));
    }
    if (postgresError(error)?.code === "23505") {
      return [{ ok: false, refusal: "VOUCHER_REPLAYED", chainNow: 0n }];
    }
    throw error;
  }
  const results = rows.map((row, k): AcceptOutcome => {
    const charge = sorted[k]!;
    const chainNow = BigInt(row.chain_now);
    if (row.ok) return { ok: true, paymentId: paymentIds[k]!, deposit: BigInt(row.new_deposit!) };
    if (!row.found) return { ok: false, refusal: "CHANNEL_NOT_FOUND", chainNow };
    const channel: ChannelSnapshot = {
      acceptedCumulative: BigInt(row.accepted!),
      usageOwed: BigInt(row.owed!),
      deposit: BigInt(row.deposit!),
      closed: row.closed!,
      withdrawReadyAt: row.withdraw_ready_at === null ? null : BigInt(row.withdraw_ready_at),
      blockedReason: row.blocked_reason,
      claimedOnChain: BigInt(row.claimed!),
    };
    return { ok: false, refusal: explain(charge, channel, row.held === true, row.metering === true, chainNow, context), channel, chainNow };
  });
  return unsort(order, results);
}

/** Why the statement refused a charge, from the row it read (the first rule that fails). */
function explain(charge: VoucherCharge, c: ChannelSnapshot, held: boolean, metering: boolean, chainNow: bigint, context: AcceptContext): AcceptRefusal {
  if (c.closed) return "CHANNEL_CLOSED";
  if (c.blockedReason !== null) return "CHANNEL_BLOCKED";
  if (c.withdrawReadyAt !== null && c.withdrawReadyAt <= chainNow + BigInt(context.closingMarginSeconds)) return "CHANNEL_CLOSING";
  if (charge.cumulativeAmount <= c.acceptedCumulative) return "VOUCHER_REPLAYED";
  if (c.usageOwed > 0n && charge.cumulativeAmount - charge.price === c.acceptedCumulative) return "USAGE_OWED";
  if (charge.cumulativeAmount - charge.price !== c.acceptedCumulative + c.usageOwed) return "CUMULATIVE_MISMATCH";
  if (charge.cumulativeAmount + (charge.max ?? charge.price) - charge.price > c.deposit) return "EXCEEDS_DEPOSIT";
  const cap = context.exposureCap;
  if (cap && c.withdrawReadyAt !== null && c.withdrawReadyAt <= chainNow + BigInt(cap.windowSeconds) && charge.cumulativeAmount + (charge.max ?? charge.price) - charge.price - c.claimedOnChain > exposureLimit(cap, c.deposit)) {
    return "EXPOSURE_CAPPED";
  }
  if (held) return "TOTAL_HELD";
  if (metering) return "METERED_BUSY";
  // The snapshot allowed it: the row moved while the statement waited for its lock.
  return "CONFLICT";
}

/** `price` is the route's price the payment paid (without the earlier usage it paid off). */
export type RetriedPayment = { paymentId: string; price: bigint; cumulativeAmount: bigint; deposit: bigint };

/**
 * The standing payment made with exactly this voucher for exactly this request within the last
 * `withinSeconds`, if any and if it was served again fewer than `maxRetries` times (counted here, in
 * the same statement): an identical retry (the response was lost) is served again with it and charged
 * nothing more.
 */
export async function claimRetry(
  sql: Sql,
  charge: Omit<VoucherCharge, "price">,
  withinSeconds: number,
  maxRetries: number,
): Promise<RetriedPayment | undefined> {
  const [row] = await sql.query<{ id: string; price: string; cumulative_amount: string; deposit: string }>(
    `WITH p AS (
       SELECT p.id, p.price - p.owed_paid AS price, p.cumulative_amount, c.deposit_seen AS deposit
       FROM payment p JOIN channel c ON c.id = p.channel_id
       WHERE p.channel_id = $1 AND p.cumulative_amount = $2 AND p.status = 'ACCEPTED'
         AND p.signature = $3 AND p.request_key = $4 AND p.created_at > statement_timestamp() - make_interval(secs => $5)
     ), counted AS (
       INSERT INTO payment_retry (payment_id, retries) SELECT id, 1 FROM p
       ON CONFLICT (payment_id) DO UPDATE SET retries = payment_retry.retries + 1 WHERE payment_retry.retries < $6
       RETURNING payment_id
     )
     SELECT p.id, p.price::text, p.cumulative_amount::text, p.deposit::text FROM p JOIN counted ON counted.payment_id = p.id`,
    [charge.channelId.toLowerCase(), charge.cumulativeAmount.toString(), charge.signature, charge.requestKey, withinSeconds, maxRetries],
    "paychan_claim_retry",
  );
  if (!row) return undefined;
  return { paymentId: row.id, price: BigInt(row.price), cumulativeAmount: BigInt(row.cumulative_amount), deposit: BigInt(row.deposit) };
}

/** Deadlocks and serialization failures abort the statement before it did anything: run it again. */
export async function runWithRetry<T>(run: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      const code = postgresError(error)?.code;
      if (attempt >= attempts || (code !== "40P01" && code !== "40001")) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
    }
  }
}

function unsort<T>(order: number[], sorted: T[]): T[] {
  const out: T[] = new Array(sorted.length);
  order.forEach((original, k) => (out[original] = sorted[k]!));
  return out;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
