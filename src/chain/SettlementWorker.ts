// Turns accepted vouchers into on-chain claims. Each round asks the policy (settlementPolicy.ts) which
// channels to claim now, and writes those claims as claimBatch transactions into the outbox in the
// same database transaction that decided them (src/ledger/settlementStore.ts); the TxManager sends
// them. The claims reach the ledger only through the watcher's mirror of the Claimed events.
import { decodeEventLog, encodeFunctionData, parseSignature, signatureToCompactSignature, size, zeroAddress, zeroHash, type Hex, type PublicClient } from "viem";
import { StartupError } from "../config.js";
import type { PrismaClient } from "../generated/prisma/client.js";
import type { MirrorScope } from "../ledger/chainMirror.js";
import type { Tx } from "../ledger/postings.js";
import type { ChannelConfig } from "../protocol/Channel.js";
import {
  batchIdOf,
  claimCandidates,
  decideRound,
  recordOutcomes,
  type ClaimCandidate,
  type DecidedBatch,
  type ItemOutcome,
} from "../ledger/settlementStore.js";
import { escrowAbi } from "../contracts/escrowAbi.js";
import { DEFAULT_GAS_PER_CLAIM, planBatches, type SettlementPolicy } from "./settlementPolicy.js";
import type { FinalTx, TxEvent, TxManager } from "./TxManager.js";

export type SettlementWorkerOptions = {
  prisma: PrismaClient;
  client: PublicClient;
  txManager: TxManager;
  scope: MirrorScope;
  policy: SettlementPolicy;
};

export type SettlementRound = { decided: DecidedBatch[]; transactions: TxEvent[] };

const skipReasons = ["None", "UnknownChannel", "ClaimWindowClosed", "NothingNew", "InvalidSignature"] as const;

/**
 * One claimBatch entry: the channel's terms the batch does not share (payer, signer, delay, salt) and
 * the voucher, its 65-byte signature in the EIP-2098 compact form (r, vs) the batch takes. A signature
 * of any other length (a contract wallet's own format) cannot travel in a batch; it is sent as
 * r = vs = 0, which the escrow skips as InvalidSignature, and must be claimed with `claim` instead.
 */
export function batchClaimOf(
  channel: Pick<ChannelConfig, "payer" | "signer" | "withdrawDelay" | "salt">,
  voucher: { cumulativeAmount: bigint; signature: Hex },
) {
  const { payer, signer, withdrawDelay, salt } = channel;
  const compact = size(voucher.signature) === 65 ? signatureToCompactSignature(parseSignature(voucher.signature)) : undefined;
  return {
    payer,
    signer,
    withdrawDelay,
    salt,
    cumulativeAmount: voucher.cumulativeAmount,
    r: compact?.r ?? zeroHash,
    vs: compact?.yParityAndS ?? zeroHash,
  };
}

/** What each of the escrow's SkipReasons means for the payee, for log lines and reports. */
export const skipMeaning: Record<string, string> = {
  UnknownChannel: "the escrow has no such channel",
  ClaimWindowClosed: "the payer's withdrawal deadline had passed, so the unclaimed amount goes back to the payer",
  NothingNew: "already claimed up to this voucher",
  InvalidSignature: "the escrow rejected the voucher's signature",
};

/**
 * Gas of a claimBatch: a part for the transaction and a part per channel, fitted to scripts/gas.ts
 * (1 channel 55,288; 100 channels 1,638,950). Used to judge whether a claim pays for itself.
 */
export function claimBatchGas(channels: number): bigint {
  return 39_300n + BigInt(channels) * 16_000n;
}

export type Unprofitable = { candidate: ClaimCandidate; gasCost: bigint };

export class SettlementWorker {
  /** The chain time the interval schedule counts from; loaded from the last INTERVAL batch. */
  private lastIntervalRun: bigint | undefined;

  constructor(private readonly options: SettlementWorkerOptions) {}

  /**
   * Refuses to start with a key the escrow would not let claim: the settler must be the payee or an
   * operator the payee approved with setOperator.
   */
  async checkAuthorized(): Promise<void> {
    const { client, scope, txManager } = this.options;
    const settler = txManager.sender.address;
    if (settler.toLowerCase() === scope.payee.toLowerCase()) return;
    const approved = await client.readContract({ address: scope.escrow, abi: escrowAbi, functionName: "isOperator", args: [scope.payee, settler] });
    if (!approved) {
      throw new StartupError(
        `The settlement key ${settler} (SETTLER_PRIVATE_KEY) may not claim for ${scope.payee} (PAYEE_ADDRESS): use the payee's own key, ` +
          `or let the payee approve this one with \`PAYEE_PRIVATE_KEY=… paychan set-operator\` (setOperator(${settler}, true) on the escrow).`,
      );
    }
  }

  /**
   * Decides a round and writes its batches to the outbox. `manual` claims every channel with
   * anything unclaimed, whatever the schedule (the operator's settle-now).
   */
  async decide({ manual = false, exclude }: { manual?: boolean; exclude?: ReadonlySet<Hex> } = {}): Promise<DecidedBatch[]> {
    const { prisma, client, scope, policy, txManager } = this.options;
    const [block, gasPrice] = await Promise.all([client.getBlock({ blockTag: "latest" }), client.getGasPrice()]);
    const now = block.timestamp;
    let intervalDue = false;
    const decided = await decideRound(
      prisma,
      scope,
      txManager.sender,
      now,
      (candidates, context) => {
        const last = [this.lastIntervalRun, context.lastIntervalRun].reduce((a, b) => (b !== undefined && (a === undefined || b > a) ? b : a));
        this.lastIntervalRun = last ?? now;
        intervalDue = !manual && policy.intervalSeconds > 0 && now - this.lastIntervalRun >= BigInt(policy.intervalSeconds);
        const gasPerClaim = context.gasPerClaim ?? DEFAULT_GAS_PER_CLAIM;
        const chosen = exclude ? candidates.filter((c) => !exclude.has(c.channelId)) : candidates;
        return planBatches(chosen, { now, intervalDue, manual, gasPrice, gasPerClaim }, policy);
      },
      (batch) => ({
        to: scope.escrow,
        data: encodeFunctionData({
          abi: escrowAbi,
          functionName: "claimBatch",
          args: [
            scope.payee,
            batch.token,
            batch.items.map(({ candidate: c }) => batchClaimOf(c, c)),
          ],
        }),
      }),
    );
    if (intervalDue) this.lastIntervalRun = now;
    return decided;
  }

  /**
   * Native-coin channels that would cost more gas to claim now than they pay: each one's share of the
   * gas of the batch claiming every channel that does pay (claimBatchGas), at the current gas price.
   * ERC-20 channels are never listed: there is no price to weigh the token against gas.
   */
  async unprofitable(): Promise<Unprofitable[]> {
    const { prisma, client, scope, policy } = this.options;
    const gasPrice = await client.getGasPrice();
    let paying = (await claimCandidates(prisma, scope)).filter((c) => c.unclaimed > 0n && c.token === zeroAddress);
    const losing: Unprofitable[] = [];
    for (;;) {
      const batch = Math.max(1, Math.min(paying.length, policy.batchSize));
      const gasCost = (claimBatchGas(batch) * gasPrice) / BigInt(batch);
      const below = paying.filter((c) => c.unclaimed < gasCost);
      if (below.length === 0) return losing;
      losing.push(...below.map((candidate) => ({ candidate, gasCost })));
      paying = paying.filter((c) => c.unclaimed >= gasCost);
    }
  }

  /** A round: decide, then one pass of the transaction manager (send, follow, confirm). */
  async settleOnce(options: { manual?: boolean } = {}): Promise<SettlementRound> {
    const decided = await this.decide(options);
    const transactions = await this.options.txManager.process();
    return { decided, transactions };
  }
}

/**
 * The TxManager's `onFinal` for settlement transactions: records what the escrow did with each item
 * (Claimed, or ClaimSkipped with its reason) from the final receipt, and says it in a sentence: a
 * transaction whose claims were all skipped is final, but nothing was claimed. Money is not booked here.
 */
export async function recordSettlementReceipt(tx: Tx, { purpose, receipt }: FinalTx): Promise<string | undefined> {
  const batchId = batchIdOf(purpose);
  if (!batchId) return undefined;
  const outcomes = new Map<Hex, ItemOutcome>();
  for (const log of receipt.logs) {
    let decoded;
    try {
      decoded = decodeEventLog({ abi: escrowAbi, data: log.data, topics: log.topics });
    } catch {
      continue;
    }
    if (decoded.eventName === "Claimed") outcomes.set(decoded.args.channelId, { outcome: "CLAIMED" });
    if (decoded.eventName === "ClaimSkipped") {
      outcomes.set(decoded.args.channelId, { outcome: "SKIPPED", skipReason: skipReasons[decoded.args.reason] ?? String(decoded.args.reason) });
    }
  }
  await recordOutcomes(tx, batchId, outcomes);
  return describeOutcomes(outcomes);
}

function describeOutcomes(outcomes: Map<Hex, ItemOutcome>): string | undefined {
  if (outcomes.size === 0) return undefined;
  const claimed = [...outcomes.values()].filter((o) => o.outcome === "CLAIMED").length;
  const skipped = [...outcomes].filter(([, o]) => o.outcome === "SKIPPED");
  if (skipped.length === 0) return `confirmed: ${claimed} channel(s) claimed`;
  const why = skipped.map(([id, o]) => `${id} ${o.skipReason} (${skipMeaning[o.skipReason ?? ""] ?? "see the escrow's SkipReason"})`).join("; ");
  return claimed === 0
    ? `final, but nothing was claimed: the escrow skipped every channel in it: ${why}`
    : `confirmed: ${claimed} channel(s) claimed; the escrow skipped ${skipped.length}: ${why}`;
}
