// The claim outbox. A settlement round reads the channels worth claiming, lets the caller's policy
// pick and group them, and writes each batch — its items and the QUEUED transaction that will carry
// them — in the same database transaction, under a lock that serializes rounds. Sending is another
// loop's job (src/chain/TxManager.ts), and the ledger books claims only from the chain's Claimed
// events (src/ledger/chainMirror.ts), so a crash anywhere neither loses a claim nor books one twice.
//
// What a channel claims: the voucher of its highest ACCEPTED payment that the accepted total covers
// (normally the one whose cumulative amount equals accepted_cumulative) — never the voucher of a
// voided charge, which may exceed what the payer owes.
import { randomUUID } from "node:crypto";
import type { Address, Hex } from "viem";
import type { PrismaClient } from "../generated/prisma/client.js";
import type { ClaimOutcome, SettlementTrigger } from "../generated/prisma/enums.js";
import { cursorIdOf, type MirrorScope } from "./chainMirror.js";
import type { Db, Tx } from "./postings.js";
import { longTransaction } from "./transactions.js";
import { enqueueTx, type Sender, type TxCall } from "./txStore.js";

export type ClaimCandidate = {
  channelId: Hex;
  payer: Address;
  signer: Address;
  token: Address;
  withdrawDelay: number;
  salt: Hex;
  deposit: bigint;
  claimedOnChain: bigint;
  acceptedCumulative: bigint;
  /** The voucher to claim with. */
  cumulativeAmount: bigint;
  signature: Hex;
  /** What claiming it now would pay. */
  unclaimed: bigint;
  /** Unix seconds; null while no withdrawal is requested. */
  withdrawReadyAt: bigint | null;
  /** The payer started a withdrawal and no claim was decided since the watcher saw it. */
  withdrawalUnanswered: boolean;
};

export type PlannedItem = { candidate: ClaimCandidate; reason: SettlementTrigger };
export type PlannedBatch = { token: Address; trigger: SettlementTrigger; items: PlannedItem[] };
export type DecidedBatch = PlannedBatch & { batchId: string; chainTxId: string; total: bigint };

export type RoundContext = {
  /** Gas per claimed channel measured on our recent confirmed batches; undefined before the first. */
  gasPerClaim: bigint | undefined;
  /** The chain's clock when the last INTERVAL round was decided; undefined if never. */
  lastIntervalRun: bigint | undefined;
};

type CandidateRow = {
  id: string;
  payer: string;
  signer: string;
  token: string;
  withdraw_delay: number;
  salt: string;
  deposit: string;
  claimed: string;
  accepted: string;
  withdraw_ready_at: bigint | null;
  voucher_amount: string;
  voucher_signature: string;
  withdrawal_unanswered: boolean;
};

/**
 * Channels of our payee with an accepted voucher above what the chain has paid, none of them already
 * in flight: not in a batch that is queued or pending, nor in a confirmed one the watcher has not
 * mirrored yet, nor skipped by the escrow for a reason a retry with the same voucher cannot change.
 */
export async function claimCandidates(db: Db, scope: MirrorScope): Promise<ClaimCandidate[]> {
  const rows = await db.$queryRaw<CandidateRow[]>`
    SELECT c.id, c.payer, c.signer, c.token, c.withdraw_delay, c.salt, c.deposit::text, c.claimed_on_chain::text AS claimed,
           c.accepted_cumulative::text AS accepted, c.withdraw_ready_at,
           v.cumulative_amount::text AS voucher_amount, v.signature AS voucher_signature,
           (w.seen_at IS NOT NULL AND NOT EXISTS (
              SELECT 1 FROM settlement_item i
              JOIN settlement_batch b ON b.id = i.batch_id
              JOIN chain_tx t ON t.id = b.chain_tx_id
              WHERE i.channel_id = c.id AND t.status <> 'FAILED' AND b.created_at >= w.seen_at)) AS withdrawal_unanswered
    FROM channel c
    CROSS JOIN LATERAL (
      SELECT p.cumulative_amount, p.signature FROM payment p
      WHERE p.channel_id = c.id AND p.status = 'ACCEPTED' AND p.cumulative_amount <= c.accepted_cumulative
      ORDER BY p.cumulative_amount DESC LIMIT 1) v
    LEFT JOIN LATERAL (
      SELECT max(e.created_at) AS seen_at FROM chain_event e
      WHERE e.channel_id = c.id AND e.name = 'WithdrawalRequested' AND e.reverted_at IS NULL) w ON true
    LEFT JOIN chain_cursor k ON k.id = ${cursorIdOf(scope)}
    WHERE c.chain_id = ${BigInt(scope.chainId)} AND lower(c.escrow) = ${scope.escrow.toLowerCase()}
      AND lower(c.payee) = ${scope.payee.toLowerCase()} AND NOT c.closed
      AND v.cumulative_amount > c.claimed_on_chain
      AND NOT EXISTS (
        SELECT 1 FROM settlement_item i
        JOIN settlement_batch b ON b.id = i.batch_id
        JOIN chain_tx t ON t.id = b.chain_tx_id
        WHERE i.channel_id = c.id AND i.cumulative_amount >= v.cumulative_amount
          AND (t.status IN ('QUEUED', 'PENDING')
               OR (t.status = 'CONFIRMED' AND (k.block_number IS NULL OR t.block_number > k.block_number))
               OR (i.outcome = 'SKIPPED' AND i.skip_reason <> 'NothingNew')))
    ORDER BY c.id`;
  return rows.map((r) => {
    const deposit = BigInt(r.deposit);
    const claimed = BigInt(r.claimed);
    const cumulativeAmount = BigInt(r.voucher_amount);
    const payable = cumulativeAmount < deposit ? cumulativeAmount : deposit;
    return {
      channelId: r.id as Hex,
      payer: r.payer as Address,
      signer: r.signer as Address,
      token: r.token as Address,
      withdrawDelay: r.withdraw_delay,
      salt: r.salt as Hex,
      deposit,
      claimedOnChain: claimed,
      acceptedCumulative: BigInt(r.accepted),
      cumulativeAmount,
      signature: r.voucher_signature as Hex,
      unclaimed: payable > claimed ? payable - claimed : 0n,
      withdrawReadyAt: r.withdraw_ready_at === null ? null : BigInt(r.withdraw_ready_at),
      withdrawalUnanswered: r.withdrawal_unanswered,
    };
  });
}

/**
 * One settlement round: under a lock that serializes rounds, reads the candidates, asks `plan` which
 * to claim and how to batch them, and writes every planned batch with its items and its QUEUED
 * transaction (`toCall` encodes it) — all in one database transaction.
 */
export async function decideRound(
  prisma: PrismaClient,
  scope: MirrorScope,
  sender: Sender,
  chainTime: bigint,
  plan: (candidates: ClaimCandidate[], context: RoundContext) => PlannedBatch[],
  toCall: (batch: PlannedBatch) => Omit<TxCall, "purpose">,
): Promise<DecidedBatch[]> {
  return longTransaction(prisma, async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`paychan:settle:${cursorIdOf(scope)}`}))`;
    const candidates = await claimCandidates(tx, scope);
    const context = { gasPerClaim: await gasPerClaim(tx, scope), lastIntervalRun: await lastIntervalRun(tx, scope) };
    const decided: DecidedBatch[] = [];
    for (const batch of plan(candidates, context)) {
      if (batch.items.length === 0) continue;
      decided.push(await writeBatch(tx, scope, sender, chainTime, batch, toCall(batch)));
    }
    return decided;
  });
}

async function writeBatch(
  tx: Tx,
  scope: MirrorScope,
  sender: Sender,
  chainTime: bigint,
  batch: PlannedBatch,
  call: Omit<TxCall, "purpose">,
): Promise<DecidedBatch> {
  const total = batch.items.reduce((sum, i) => sum + i.candidate.unclaimed, 0n);
  const batchId = randomUUID();
  // The purpose names the batch, so that the transaction's final receipt finds its items.
  const chainTxId = await enqueueTx(tx, sender, { ...call, purpose: `settlement:${batchId}` });
  await tx.$executeRaw`
    INSERT INTO settlement_batch (id, chain_tx_id, escrow, payee, token, trigger, chain_time, total)
    VALUES (${batchId}::uuid, ${chainTxId}::uuid, ${scope.escrow.toLowerCase()}, ${scope.payee.toLowerCase()}, ${batch.token.toLowerCase()},
            ${batch.trigger}::settlement_trigger, ${chainTime}, ${total.toString()}::numeric)`;
  await tx.$executeRaw`
    INSERT INTO settlement_item (batch_id, channel_id, cumulative_amount, signature, claimed_before, reason)
    SELECT ${batchId}::uuid, i.channel_id, i.cumulative_amount, i.signature, i.claimed_before, i.reason::settlement_trigger
    FROM jsonb_to_recordset(${JSON.stringify(
      batch.items.map(({ candidate: c, reason }) => ({
        channel_id: c.channelId,
        cumulative_amount: c.cumulativeAmount.toString(),
        signature: c.signature,
        claimed_before: c.claimedOnChain.toString(),
        reason,
      })),
    )}::jsonb) AS i(channel_id text, cumulative_amount numeric, signature text, claimed_before numeric, reason text)`;
  return { ...batch, batchId, chainTxId, total };
}

/** Average gas per claimed channel over our last ten confirmed batches. */
async function gasPerClaim(db: Db, scope: MirrorScope): Promise<bigint | undefined> {
  const [row] = await db.$queryRaw<{ per_claim: string | null }[]>`
    SELECT (sum(gas_used) / NULLIF(sum(items), 0))::bigint::text AS per_claim FROM (
      SELECT t.gas_used, (SELECT count(*) FROM settlement_item i WHERE i.batch_id = b.id) AS items
      FROM settlement_batch b JOIN chain_tx t ON t.id = b.chain_tx_id
      WHERE t.status = 'CONFIRMED' AND b.escrow = ${scope.escrow.toLowerCase()} AND b.payee = ${scope.payee.toLowerCase()}
      ORDER BY b.created_at DESC LIMIT 10) recent`;
  return row?.per_claim ? BigInt(row.per_claim) : undefined;
}

async function lastIntervalRun(db: Db, scope: MirrorScope): Promise<bigint | undefined> {
  const [row] = await db.$queryRaw<{ at: bigint | null }[]>`
    SELECT max(chain_time) AS at FROM settlement_batch
    WHERE trigger = 'INTERVAL' AND escrow = ${scope.escrow.toLowerCase()} AND payee = ${scope.payee.toLowerCase()}`;
  return row?.at === null || row?.at === undefined ? undefined : BigInt(row.at);
}

export type ItemOutcome = { outcome: ClaimOutcome; skipReason?: string };

/** Records what the escrow did with each item of a batch, from its final receipt. */
export async function recordOutcomes(tx: Tx, batchId: string, outcomes: Map<Hex, ItemOutcome>): Promise<void> {
  if (outcomes.size === 0) return;
  await tx.$executeRaw`
    UPDATE settlement_item i SET outcome = o.outcome::claim_outcome, skip_reason = o.skip_reason
    FROM jsonb_to_recordset(${JSON.stringify(
      [...outcomes].map(([channelId, o]) => ({ channel_id: channelId.toLowerCase(), outcome: o.outcome, skip_reason: o.skipReason ?? null })),
    )}::jsonb) AS o(channel_id text, outcome text, skip_reason text)
    WHERE i.batch_id = ${batchId}::uuid AND i.channel_id = o.channel_id`;
}

/** The batch a settlement transaction carries, from its purpose (`settlement:<batchId>`). */
export function batchIdOf(purpose: string): string | undefined {
  return purpose.startsWith("settlement:") ? purpose.slice("settlement:".length) : undefined;
}
