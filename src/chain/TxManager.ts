// The one owner of the settlement key's nonces. It takes the transactions others queued in the outbox
// (src/ledger/txStore.ts) and carries each to a final receipt:
//
//   QUEUED ──estimate, take a nonce, sign, RECORD──► PENDING ──broadcast──► mined ──confirmations──► CONFIRMED
//                                                       │  not mined for bumpAfterSeconds and outbid by the
//                                                       │  market: re-sign the same nonce with fees +12.5%
//                                                       │  (record, then broadcast)
//                                                       └─ nonce taken by a transaction none of ours: FAILED
//
// The signed bytes and their hash are recorded before every broadcast, so after a crash the next
// pass looks the hashes up and at most rebroadcasts the very same bytes: whatever happened, one nonce
// carries one intent. The gas of the transaction that lands is booked once (txStore.finalizeTx).
import {
  BaseError,
  ContractFunctionRevertedError,
  ExecutionRevertedError,
  TransactionNotFoundError,
  TransactionReceiptNotFoundError,
  keccak256,
  type Hex,
  type LocalAccount,
  type PublicClient,
  type TransactionReceipt,
} from "viem";
import type { PrismaClient } from "../generated/prisma/client.js";
import type { Tx } from "../ledger/postings.js";
import { longTransaction } from "../ledger/transactions.js";
import {
  assignNonce,
  enqueueTx,
  failTx,
  finalizeTx,
  openTxs,
  recordAttempt,
  type OpenTx,
  type Sender,
  type SignedAttempt,
  type TxCall,
} from "../ledger/txStore.js";

export type FinalTx = { chainTxId: string; purpose: string; receipt: TransactionReceipt };
export type FailedTx = { chainTxId: string; purpose: string; reason: string };

export type TxManagerOptions = {
  prisma: PrismaClient;
  client: PublicClient;
  /** A local account: the hash of a signed transaction must be known before it is broadcast. */
  account: LocalAccount;
  chainId: number;
  /** Blocks on top of the receipt's block before a transaction is final. */
  confirmations: number;
  /** Re-sign a transaction with higher fees when it is not mined after this long and the market's
   * fees have risen past its own (default 60). */
  bumpAfterSeconds?: number;
  /** Runs in the database transaction that records a final receipt; what it returns becomes the
   * event's detail (settlement says what the escrow did with each claim). */
  onFinal?: (tx: Tx, final: FinalTx) => Promise<string | void>;
  /** Runs in the database transaction that gives up on a transaction that never landed (it would
   * revert, or its nonce went to another): its purpose learns it will not happen. */
  onFailed?: (tx: Tx, failed: FailedTx) => Promise<void>;
  /** Seams for crash tests: a throw here stops the pass exactly at that point. */
  faults?: { beforeBroadcast?(hash: Hex): void | Promise<void>; afterBroadcast?(hash: Hex): void | Promise<void> };
};

export type TxAction = "sent" | "rebroadcast" | "bumped" | "waiting" | "mined" | "confirmed" | "failed" | "error";

export type TxEvent = {
  chainTxId: string;
  purpose: string;
  action: TxAction;
  hash?: Hex;
  nonce?: bigint;
  /** The block a mined, confirmed or reverted transaction landed in. */
  blockNumber?: bigint;
  detail?: string;
};

/** Replacement fees: +12.5%, the most any client demands, rounded up. */
const bump = (fee: bigint) => (fee * 9n + 7n) / 8n;

export class TxManager {
  readonly sender: Sender;
  private readonly bumpAfterMs: number;

  constructor(private readonly options: TxManagerOptions) {
    this.sender = { chainId: options.chainId, address: options.account.address };
    this.bumpAfterMs = (options.bumpAfterSeconds ?? 60) * 1000;
  }

  /** Writes the outbox row for a call, in the caller's database transaction. */
  enqueue(tx: Tx, call: TxCall): Promise<string> {
    return enqueueTx(tx, this.sender, call);
  }

  /** One pass over every transaction in flight, in nonce order; errors are reported, not thrown. */
  async process(): Promise<TxEvent[]> {
    const events: TxEvent[] = [];
    for (const tx of await openTxs(this.options.prisma, this.sender)) {
      try {
        events.push(tx.status === "PENDING" ? await this.follow(tx) : await this.send(tx));
      } catch (error) {
        events.push({ chainTxId: tx.id, purpose: tx.purpose, action: "error", detail: messageOf(error) });
      }
    }
    return events;
  }

  /** How many transactions are queued or pending. */
  async inFlight(): Promise<number> {
    return (await openTxs(this.options.prisma, this.sender)).length;
  }

  private async send(tx: OpenTx): Promise<TxEvent> {
    const { client, prisma } = this.options;
    const event = { chainTxId: tx.id, purpose: tx.purpose };
    let gas: bigint;
    try {
      gas = await client.estimateGas({ account: this.sender.address, to: tx.to, data: tx.data, value: tx.value });
    } catch (error) {
      if (!isRevert(error)) throw error;
      const detail = `would revert: ${messageOf(error)}`;
      await this.fail(tx, detail);
      return { ...event, action: "failed", detail };
    }
    const gasLimit = (gas * 6n) / 5n;
    const fees = await client.estimateFeesPerGas();
    const chainNonce = BigInt(await client.getTransactionCount({ address: this.sender.address, blockTag: "latest" }));
    const attempt = await assignNonce(prisma, this.sender, tx.id, chainNonce, (nonce) => this.sign(tx, nonce, gasLimit, fees));
    if (!attempt) return { ...event, action: "waiting", detail: "taken by another process" };
    const detail = await this.broadcast(attempt);
    return { ...event, action: "sent", hash: attempt.hash, nonce: attempt.nonce, detail };
  }

  private async follow(tx: OpenTx): Promise<TxEvent> {
    const { client, prisma, confirmations } = this.options;
    const nonce = tx.nonce!;
    const event = { chainTxId: tx.id, purpose: tx.purpose, nonce };
    // Read the nonce before the receipts: a transaction mined in between is then seen as mined.
    const chainNonce = BigInt(await client.getTransactionCount({ address: this.sender.address, blockTag: "latest" }));
    for (const attempt of tx.attempts) {
      const receipt = await this.receipt(attempt.hash);
      if (!receipt) continue;
      const head = await client.getBlockNumber({ cacheTime: 0 });
      const landed = { ...event, hash: attempt.hash, blockNumber: receipt.blockNumber };
      if (head - receipt.blockNumber < BigInt(confirmations)) return { ...landed, action: "mined" };
      const final = {
        hash: attempt.hash,
        blockNumber: receipt.blockNumber,
        blockHash: receipt.blockHash,
        gasUsed: receipt.gasUsed,
        effectiveGasPrice: receipt.effectiveGasPrice,
        success: receipt.status === "success",
      };
      const onFinal = this.options.onFinal;
      let outcome: string | undefined;
      await finalizeTx(
        prisma,
        this.sender,
        tx.id,
        final,
        onFinal &&
          (async (dbTx) => {
            outcome = (await onFinal(dbTx, { chainTxId: tx.id, purpose: tx.purpose, receipt })) ?? undefined;
          }),
      );
      return { ...landed, action: final.success ? "confirmed" : "failed", detail: final.success ? outcome : "reverted" };
    }
    if (chainNonce > nonce) {
      const detail = `nonce ${nonce} was used by a transaction that is none of ours`;
      await this.fail(tx, detail);
      return { ...event, action: "failed", detail };
    }
    const latest = tx.attempts[0]!;
    if (Date.now() - latest.createdAt.getTime() >= this.bumpAfterMs) {
      // Outbid only a market that moved past our bid: a transaction waiting for another reason (an
      // earlier nonce, a node that lost it) would otherwise climb 12.5% a round without end.
      const current = await client.estimateFeesPerGas();
      if (current.maxFeePerGas > latest.maxFeePerGas || current.maxPriorityFeePerGas > latest.maxPriorityFeePerGas) {
        const maxPriorityFeePerGas = max(bump(latest.maxPriorityFeePerGas), current.maxPriorityFeePerGas);
        const maxFeePerGas = max(bump(latest.maxFeePerGas), current.maxFeePerGas, maxPriorityFeePerGas);
        const replacement = { ...(await this.sign(tx, nonce, latest.gasLimit, { maxFeePerGas, maxPriorityFeePerGas })), nonce };
        await recordAttempt(prisma, tx.id, replacement);
        const detail = await this.broadcast(replacement);
        return { ...event, action: "bumped", hash: replacement.hash, detail };
      }
    }
    if (!(await this.known(latest.hash))) {
      const detail = await this.broadcast(latest);
      return { ...event, action: "rebroadcast", hash: latest.hash, detail };
    }
    return { ...event, action: "waiting", hash: latest.hash };
  }

  private async fail(tx: OpenTx, reason: string): Promise<void> {
    const { prisma, onFailed } = this.options;
    await longTransaction(prisma, async (db) => {
      if ((await failTx(db, tx.id, reason)) && onFailed) await onFailed(db, { chainTxId: tx.id, purpose: tx.purpose, reason });
    });
  }

  private async sign(
    tx: OpenTx,
    nonce: bigint,
    gasLimit: bigint,
    fees: { maxFeePerGas: bigint; maxPriorityFeePerGas: bigint },
  ): Promise<Omit<SignedAttempt, "createdAt" | "nonce">> {
    const raw = await this.options.account.signTransaction({
      type: "eip1559",
      chainId: this.sender.chainId,
      nonce: Number(nonce),
      to: tx.to,
      data: tx.data,
      value: tx.value,
      gas: gasLimit,
      maxFeePerGas: fees.maxFeePerGas,
      maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
    });
    return { hash: keccak256(raw), raw, gasLimit, ...fees };
  }

  /** Broadcasts recorded bytes. A refusal is not a verdict (the node may already have them, or the
   * answer was lost on the way): the next pass looks the hash up. Returns the refusal, if any. */
  private async broadcast(attempt: Pick<SignedAttempt, "hash" | "raw">): Promise<string | undefined> {
    const { client, faults } = this.options;
    await faults?.beforeBroadcast?.(attempt.hash);
    let refusal: string | undefined;
    try {
      await client.sendRawTransaction({ serializedTransaction: attempt.raw });
    } catch (error) {
      refusal = messageOf(error);
    }
    await faults?.afterBroadcast?.(attempt.hash);
    return refusal;
  }

  private async receipt(hash: Hex): Promise<TransactionReceipt | undefined> {
    try {
      return await this.options.client.getTransactionReceipt({ hash });
    } catch (error) {
      if (error instanceof TransactionReceiptNotFoundError) return undefined;
      throw error;
    }
  }

  private async known(hash: Hex): Promise<boolean> {
    try {
      await this.options.client.getTransaction({ hash });
      return true;
    } catch (error) {
      if (error instanceof TransactionNotFoundError) return false;
      throw error;
    }
  }
}

/**
 * A revert, as opposed to a node or transport failure (which must never be read as a refusal). Nodes
 * answer "execution reverted" (viem's ExecutionRevertedError); Hardhat's in-process EDR answers
 * "VM Exception while processing transaction: reverted …" as an unknown RPC error.
 */
export function isRevert(error: unknown): boolean {
  return (
    error instanceof BaseError &&
    error.walk(
      (e) =>
        e instanceof ExecutionRevertedError ||
        e instanceof ContractFunctionRevertedError ||
        (e instanceof BaseError && /^VM Exception while processing transaction: reverted/.test(e.details ?? "")),
    ) !== null
  );
}

function max(...values: bigint[]): bigint {
  return values.reduce((a, b) => (a > b ? a : b));
}

/** An error in one line: viem's short message, with the node's own words when it gave any. */
export function messageOf(error: unknown): string {
  if (error instanceof BaseError) {
    const details = error.details?.trim();
    return details && !error.shortMessage.includes(details) ? `${error.shortMessage} (${details})` : error.shortMessage;
  }
  return error instanceof Error ? error.message : String(error);
}
