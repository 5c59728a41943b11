// When a channel's accepted vouchers are worth a claim transaction: the operator's policy, as pure
// functions of the candidates and the chain's conditions. A channel is claimed for the first reason
// that holds, in this order:
//
// | reason          | holds when                                                                     |
// |-----------------|--------------------------------------------------------------------------------|
// | DEADLINE        | a withdrawal finalizes within the watchtower margin (and has not yet)          |
// | WATCHTOWER      | the payer started a withdrawal and no claim was decided since the watcher saw it, |
// |                 | or (exposure cap) its deadline is within the cap's window and it owes half the cap |
// | THRESHOLD       | unclaimed ≥ the threshold (0: off)                                              |
// | GAS_BREAK_EVEN  | native-coin channel: unclaimed ≥ multiplier × gas price × gas per claim         |
// | INTERVAL        | the settlement interval elapsed (0: off): every channel with anything unclaimed |
// | MANUAL          | an operator asked (settle-now): every channel with anything unclaimed           |
//
// The two watchtower reasons ignore every schedule: what a payer can withdraw after the deadline is
// lost to the payee. A channel past its deadline is never planned (the escrow would skip it).
import { zeroAddress, type Address } from "viem";
import type { SettlementTrigger } from "../generated/prisma/enums.js";
import { exposureLimit, type ExposureCap } from "../ledger/acceptVouchers.js";
import type { ClaimCandidate, PlannedBatch, PlannedItem } from "../ledger/settlementStore.js";

export type SettlementPolicy = {
  /** Claim everything unclaimed this often (seconds); 0 turns the schedule off. */
  intervalSeconds: number;
  /** Claim a channel once its unclaimed value reaches this (base units); 0 turns it off. */
  threshold: bigint;
  /** Claim a native-coin channel once its unclaimed value is this many times the gas to claim it. */
  gasMultiplier: number;
  /** Claim a withdrawing channel at the latest this many seconds before its deadline. */
  watchtowerMarginSeconds: number;
  /** Channels per claimBatch transaction. */
  batchSize: number;
  /** The gateway's exposure cap (RISK_EXPOSURE_*): a withdrawing channel near its deadline is claimed
   * once it owes half the cap, so the gateway seldom has to turn its payer away. */
  exposureCap?: ExposureCap;
};

export type Conditions = {
  /** The chain's clock (latest block's timestamp). */
  now: bigint;
  intervalDue: boolean;
  manual: boolean;
  gasPrice: bigint;
  gasPerClaim: bigint;
};

/** Gas per channel of a claimBatch of 100 ETH channels, the transaction's own cost included: 15,329
 * measured by scripts/bench/settlement.ts. Used until our own confirmed batches have been measured. */
export const DEFAULT_GAS_PER_CLAIM = 15_400n;

const priority: SettlementTrigger[] = ["DEADLINE", "WATCHTOWER", "THRESHOLD", "GAS_BREAK_EVEN", "INTERVAL", "MANUAL"];

export function reasonToClaim(c: ClaimCandidate, when: Conditions, policy: SettlementPolicy): SettlementTrigger | undefined {
  if (c.unclaimed <= 0n) return undefined;
  if (c.withdrawReadyAt !== null) {
    if (when.now >= c.withdrawReadyAt) return undefined;
    if (when.now + BigInt(policy.watchtowerMarginSeconds) >= c.withdrawReadyAt) return "DEADLINE";
  }
  if (c.withdrawalUnanswered) return "WATCHTOWER";
  const cap = policy.exposureCap;
  if (cap && c.withdrawReadyAt !== null && when.now + BigInt(cap.windowSeconds) >= c.withdrawReadyAt && 2n * c.unclaimed >= exposureLimit(cap, c.deposit)) return "WATCHTOWER";
  if (policy.threshold > 0n && c.unclaimed >= policy.threshold) return "THRESHOLD";
  if (c.token === zeroAddress && policy.gasMultiplier > 0 && c.unclaimed >= BigInt(policy.gasMultiplier) * when.gasPrice * when.gasPerClaim) {
    return "GAS_BREAK_EVEN";
  }
  if (when.intervalDue) return "INTERVAL";
  if (when.manual) return "MANUAL";
  return undefined;
}

/**
 * The claims to make now, grouped into claimBatch transactions of at most `batchSize` channels of one
 * token: the most urgent first (nearest deadline), then the largest.
 */
export function planBatches(candidates: ClaimCandidate[], when: Conditions, policy: SettlementPolicy): PlannedBatch[] {
  const byToken = new Map<Address, PlannedItem[]>();
  for (const candidate of candidates) {
    const reason = reasonToClaim(candidate, when, policy);
    if (!reason) continue;
    const items = byToken.get(candidate.token) ?? [];
    items.push({ candidate, reason });
    byToken.set(candidate.token, items);
  }
  const batches: PlannedBatch[] = [];
  for (const [token, items] of byToken) {
    items.sort(byUrgency);
    for (let i = 0; i < items.length; i += policy.batchSize) {
      const chunk = items.slice(i, i + policy.batchSize);
      batches.push({ token, trigger: roundTrigger(chunk, when), items: chunk });
    }
  }
  return batches;
}

function roundTrigger(items: PlannedItem[], when: Conditions): SettlementTrigger {
  if (when.manual) return "MANUAL";
  if (when.intervalDue) return "INTERVAL";
  return items.map((i) => i.reason).sort((a, b) => priority.indexOf(a) - priority.indexOf(b))[0]!;
}

function byUrgency(a: PlannedItem, b: PlannedItem): number {
  const rank = priority.indexOf(a.reason) - priority.indexOf(b.reason);
  if (rank !== 0) return rank;
  const deadlineA = a.candidate.withdrawReadyAt;
  const deadlineB = b.candidate.withdrawReadyAt;
  if (deadlineA !== null && deadlineB !== null && deadlineA !== deadlineB) return deadlineA < deadlineB ? -1 : 1;
  if (a.candidate.unclaimed !== b.candidate.unclaimed) return a.candidate.unclaimed > b.candidate.unclaimed ? -1 : 1;
  return a.candidate.channelId < b.candidate.channelId ? -1 : 1;
}
