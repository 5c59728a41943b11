// Durable state of the transactions paychan sends (src/chain/TxManager.ts drives them): a QUEUED row
// is the outbox entry, written in the caller's transaction; signing assigns the nonce and records the
// signed bytes and their hash BEFORE anything is broadcast, so a crash at any point leaves either
// nothing sent or a known hash to look up — never a second transaction for the same intent. The gas a
// final transaction spent is booked here, as a GAS_FEE entry keyed `gas:<txHash>:<blockHash>`: from
// the receipt of the block that holds it, reversed if a reorg drops that block (chainMirror.ts), and
// booked again from the new receipt when it is mined again.
import type { Address, Hex } from "viem";
import type { PrismaClient } from "../generated/prisma/client.js";
import type { ChainTxStatus } from "../generated/prisma/enums.js";
import { toBigInt } from "./amount.js";
import { nativeAsset } from "./asset.js";
import * as flows from "./flows.js";
import { postEntry, type Db, type Tx } from "./postings.js";
import { longTransaction } from "./transactions.js";

export type TxCall = { to: Address; data: Hex; value?: bigint; purpose: string };

export type SignedAttempt = {
  hash: Hex;
  raw: Hex;
  nonce: bigint;
  gasLimit: bigint;
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
  createdAt: Date;
};

export type OpenTx = {
  id: string;
  status: Extract<ChainTxStatus, "QUEUED" | "PENDING">;
  to: Address;
  data: Hex;
  value: bigint;
  purpose: string;
  nonce: bigint | null;
  /** Newest first. */
  attempts: SignedAttempt[];
};

export type Sender = { chainId: number; address: Address };

/** Writes the outbox row for a transaction, in the caller's database transaction; returns its id. */
export async function enqueueTx(tx: Tx, sender: Sender, call: TxCall): Promise<string> {
  const [row] = await tx.$queryRaw<{ id: string }[]>`
    INSERT INTO chain_tx (chain_id, sender, to_address, data, value, purpose)
    VALUES (${BigInt(sender.chainId)}, ${sender.address.toLowerCase()}, ${call.to.toLowerCase()}, ${call.data},
            ${(call.value ?? 0n).toString()}::numeric, ${call.purpose})
    RETURNING id`;
  return row!.id;
}

/** The sender's transactions still in flight: signed ones in nonce order, then queued ones in order. */
export async function openTxs(db: Db, sender: Sender): Promise<OpenTx[]> {
  const rows = await db.chainTx.findMany({
    where: { chainId: BigInt(sender.chainId), sender: sender.address.toLowerCase(), status: { in: ["QUEUED", "PENDING"] } },
    include: { attempts: { orderBy: { createdAt: "desc" } } },
    orderBy: [{ nonce: { sort: "asc", nulls: "last" } }, { createdAt: "asc" }],
  });
  return rows.map((r) => ({
    id: r.id,
    status: r.status as OpenTx["status"],
    to: r.toAddress as Address,
    data: r.data as Hex,
    value: toBigInt(r.value),
    purpose: r.purpose,
    nonce: r.nonce,
    attempts: r.attempts.map((a) => ({
      hash: a.txHash as Hex,
      raw: a.raw as Hex,
      nonce: a.nonce,
      gasLimit: a.gasLimit,
      maxFeePerGas: toBigInt(a.maxFeePerGas),
      maxPriorityFeePerGas: toBigInt(a.maxPriorityFeePerGas),
      createdAt: a.createdAt,
    })),
  }));
}

/**
 * Gives a queued transaction its nonce and records its first signed attempt, in one transaction that
 * holds the sender's nonce lock: the nonce is the chain's next one (`chainNonce`, the account's
 * transaction count) unless our own pending transactions already hold it. `sign` must not do I/O.
 * Returns undefined if the transaction is no longer queued (another process took it).
 */
export async function assignNonce(
  prisma: PrismaClient,
  sender: Sender,
  chainTxId: string,
  chainNonce: bigint,
  sign: (nonce: bigint) => Promise<Omit<SignedAttempt, "createdAt" | "nonce">>,
): Promise<SignedAttempt | undefined> {
  const address = sender.address.toLowerCase();
  return longTransaction(prisma, async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`paychan:nonce:${sender.chainId}:${address}`}))`;
    const [queued] = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM chain_tx WHERE id = ${chainTxId}::uuid AND status = 'QUEUED' FOR UPDATE`;
    if (!queued) return undefined;
    const [held] = await tx.$queryRaw<{ max: bigint | null }[]>`
      SELECT max(nonce) AS max FROM chain_tx WHERE chain_id = ${BigInt(sender.chainId)} AND sender = ${address} AND status = 'PENDING'`;
    const afterOurs = held?.max === null || held?.max === undefined ? 0n : BigInt(held.max) + 1n;
    const nonce = chainNonce > afterOurs ? chainNonce : afterOurs;
    const attempt = { ...(await sign(nonce)), nonce };
    await insertAttempt(tx, chainTxId, attempt);
    await tx.$executeRaw`UPDATE chain_tx SET status = 'PENDING', nonce = ${nonce}, updated_at = now() WHERE id = ${chainTxId}::uuid`;
    return { ...attempt, createdAt: new Date() };
  });
}

/** Records a replacement (same nonce, higher fees) before it is broadcast. */
export async function recordAttempt(db: Db, chainTxId: string, attempt: Omit<SignedAttempt, "createdAt">): Promise<void> {
  await insertAttempt(db, chainTxId, attempt);
}

async function insertAttempt(db: Db, chainTxId: string, a: Omit<SignedAttempt, "createdAt">): Promise<void> {
  await db.$executeRaw`
    INSERT INTO chain_tx_attempt (tx_hash, chain_tx_id, nonce, gas_limit, max_fee_per_gas, max_priority_fee_per_gas, raw)
    VALUES (${a.hash.toLowerCase()}, ${chainTxId}::uuid, ${a.nonce}, ${a.gasLimit}, ${a.maxFeePerGas.toString()}::numeric,
            ${a.maxPriorityFeePerGas.toString()}::numeric, ${a.raw})`;
}

export type FinalReceipt = {
  hash: Hex;
  blockNumber: bigint;
  /** The block the receipt came from: the gas booked is that block's, undone if a reorg drops it. */
  blockHash: Hex;
  gasUsed: bigint;
  effectiveGasPrice: bigint;
  success: boolean;
};

/**
 * Settles a pending transaction once its receipt is final: CONFIRMED (or FAILED if it reverted), and
 * the gas it cost booked as GAS_FEE to the sender's wallet. `onFinal` runs in the same database
 * transaction (the settlement worker records its items' outcomes there). Returns false if the
 * transaction was no longer pending.
 */
export async function finalizeTx(
  prisma: PrismaClient,
  sender: Sender,
  chainTxId: string,
  receipt: FinalReceipt,
  onFinal?: (tx: Tx) => Promise<void>,
): Promise<boolean> {
  return longTransaction(prisma, async (tx) => {
    const [pending] = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM chain_tx WHERE id = ${chainTxId}::uuid AND status = 'PENDING' FOR UPDATE`;
    if (!pending) return false;
    const fee = receipt.gasUsed * receipt.effectiveGasPrice;
    let feeEntryId: string | null = null;
    if (fee > 0n) {
      const { entry } = await postEntry(tx, {
        idempotencyKey: `gas:${receipt.hash.toLowerCase()}:${receipt.blockHash.toLowerCase()}`,
        ...flows.gasFee({ wallet: sender.address, asset: nativeAsset(sender.chainId), amount: fee }),
        metadata: {
          chainTxId,
          txHash: receipt.hash.toLowerCase(),
          blockNumber: receipt.blockNumber.toString(),
          blockHash: receipt.blockHash.toLowerCase(),
          gasUsed: receipt.gasUsed.toString(),
          effectiveGasPrice: receipt.effectiveGasPrice.toString(),
        },
      });
      feeEntryId = entry.id;
    }
    const status: ChainTxStatus = receipt.success ? "CONFIRMED" : "FAILED";
    await tx.$executeRaw`
      UPDATE chain_tx SET status = ${status}::chain_tx_status, tx_hash = ${receipt.hash.toLowerCase()}, block_number = ${receipt.blockNumber},
             block_hash = ${receipt.blockHash.toLowerCase()},
             gas_used = ${receipt.gasUsed}, effective_gas_price = ${receipt.effectiveGasPrice.toString()}::numeric,
             fee = ${fee.toString()}::numeric, fee_entry_id = ${feeEntryId}::uuid,
             error = ${receipt.success ? null : "reverted on chain"}, updated_at = now()
      WHERE id = ${chainTxId}::uuid`;
    await onFinal?.(tx);
    return true;
  });
}

/** Gives up on a transaction that never landed (it could not be sent, or its nonce went to another).
 * False if it was no longer in flight. */
export async function failTx(db: Db, chainTxId: string, error: string): Promise<boolean> {
  const changed = await db.$executeRaw`
    UPDATE chain_tx SET status = 'FAILED', error = ${error}, updated_at = now()
    WHERE id = ${chainTxId}::uuid AND status IN ('QUEUED', 'PENDING')`;
  return changed > 0;
}
