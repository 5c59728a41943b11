// Turns accepted vouchers into on-chain claims. Each round asks the policy (settlementPolicy.ts) which
// channels to claim now, and writes those claims as claimBatch transactions into the outbox in the
// same database transaction that decided them (src/ledger/settlementStore.ts); the TxManager sends
// them. The claims reach the ledger only through the watcher's mirror of the Claimed events.
import { decodeEventLog, encodeFunctionData, parseSignature, signatureToCompactSignature, size, zeroHash, type Hex, type PublicClient } from "viem";
import type { PrismaClient } from "../generated/prisma/client.js";
import type { MirrorScope } from "../ledger/chainMirror.js";
import type { Tx } from "../ledger/postings.js";
import type { ChannelConfig } from "../protocol/Channel.js";
import { batchIdOf, decideRound, recordOutcomes, type DecidedBatch, type ItemOutcome } from "../ledger/settlementStore.js";
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
      throw new Error(`The settlement key ${settler} may not claim for ${scope.payee}: the payee must call setOperator(${settler}, true) on the escrow.`);
    }
  }

  /**
   * Decides a round and writes its batches to the outbox. `manual` claims every channel with
   * anything unclaimed, whatever the schedule (the operator's settle-now).
   */
  async decide({ manual = false }: { manual?: boolean } = {}): Promise<DecidedBatch[]> {
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
        return planBatches(candidates, { now, intervalDue, manual, gasPrice, gasPerClaim }, policy);
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

  /** A round: decide, then one pass of the transaction manager (send, follow, confirm). */
  async settleOnce(options: { manual?: boolean } = {}): Promise<SettlementRound> {
    const decided = await this.decide(options);
    const transactions = await this.options.txManager.process();
    return { decided, transactions };
  }
}

/**
 * The TxManager's `onFinal` for settlement transactions: records what the escrow did with each item
 * (Claimed, or ClaimSkipped with its reason) from the final receipt. Money is not booked here.
 */
export async function recordSettlementReceipt(tx: Tx, { purpose, receipt }: FinalTx): Promise<void> {
  const batchId = batchIdOf(purpose);
  if (!batchId) return;
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
}
