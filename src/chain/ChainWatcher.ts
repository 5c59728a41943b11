// Follows the escrow into the ledger (src/ledger/chainMirror.ts does the booking). Each sync:
//
// 1. records the chain's clock (acceptance measures withdrawal margins in chain time);
// 2. undoes a reorg, if the cursor's block is no longer on the chain: it walks back through the blocks
//    it mirrored events from to one the chain still has, reverses everything mirrored after it
//    (reversing entries, never deleting; what spent money cannot give back becomes a shortfall) and
//    reads on from there;
// 3. retries the events of channels it could not book before (a poisoned channel never stops the rest);
// 4. mirrors confirmed blocks (CONFIRMATIONS on top) from its cursor, in ranges of `blockRange`, each
//    committed with the cursor in one transaction: a restart resumes where the last commit left off,
//    and a range read twice books nothing twice;
// 5. reads the head state of the channels with news above the confirmed range, or whose head state
//    differs from their confirmed state: deposits seen there are pending, withdrawals seen there stop
//    acceptance at once, and a pending deposit a reorg dropped is voided;
// 6. checks that our own recent transactions are still in the blocks their receipts named: one a
//    reorg dropped has its gas reversed and goes back to the transaction manager, which sends it again
//    at once.
//
// Only channels paying our payee are mirrored; the escrow is shared.
import { BlockNotFoundError, parseEventLogs, type Address, type Hex, type PublicClient } from "viem";
import type { PrismaClient } from "../generated/prisma/client.js";
import {
  channelsMirroredAfter,
  channelsSeenAhead,
  mirrorBlocks,
  mirroredBlocks,
  readCursor,
  recordHeadStates,
  retryFailures,
  rewindTo,
  transactionsFinalAfter,
  undoDroppedTransactions,
  type ChainLog,
  type Cursor,
  type MirrorScope,
} from "../ledger/chainMirror.js";
import { recordChainHead } from "../ledger/channels.js";
import { sqlOf } from "../ledger/sql.js";
import { escrowAbi } from "../contracts/escrowAbi.js";
import { readChannelStates } from "./escrowState.js";

export type ChainWatcherOptions = {
  prisma: PrismaClient;
  client: PublicClient;
  scope: MirrorScope;
  /** Blocks on top of a block before its events are mirrored. */
  confirmations: number;
  /** The first block to read (the escrow's deployment block); default 0. */
  fromBlock?: bigint;
  /** Blocks per eth_getLogs request (providers cap it); default 2000. */
  blockRange?: bigint;
  /** The settlement key: its transactions are checked against reorgs. */
  sender?: Address;
  /** After a range is committed: channels whose payer started a withdrawal (the watchtower's cue). */
  onWithdrawalRequested?: (channelIds: Hex[]) => void | Promise<void>;
  /** After our transactions were found dropped by a reorg (they are pending again): the settler's cue. */
  onTransactionsDropped?: (count: number) => void | Promise<void>;
  onProgress?: (progress: SyncProgress) => void;
};

export type SyncProgress = { from: bigint; to: bigint; target: bigint; events: number };

export type ReorgReport = {
  from: bigint;
  to: bigint;
  reverted: number;
  reversedEntries: number;
  channels: Hex[];
  /** Channels left with a shortfall: money they had spent that the reorg took away. */
  shortfalls: { channelId: Hex; amount: bigint }[];
};

export type SyncReport = {
  /** The cursor before and after this sync. */
  from: bigint;
  to: bigint;
  /** The newest block with enough confirmations. */
  target: bigint;
  mirrored: number;
  replayed: number;
  ignored: number;
  /** Events kept for channels the mirror could not book, and the channels that failed now. */
  quarantined: number;
  failed: { channelId: Hex; reason: string }[];
  /** Channels whose kept events were booked now. */
  recovered: Hex[];
  /** Our transactions a reorg took out of their blocks (sent again). */
  droppedTransactions: number;
  reorg?: ReorgReport;
};

const mirroredEvents = new Set(["ChannelOpened", "Deposited", "Claimed", "WithdrawalRequested", "ChannelClosed"]);

export class ChainWatcher {
  private readonly initial: Cursor;
  private readonly blockRange: bigint;

  constructor(private readonly options: ChainWatcherOptions) {
    this.initial = { blockNumber: (options.fromBlock ?? 0n) - 1n, blockHash: null };
    this.blockRange = options.blockRange ?? 2000n;
  }

  cursor(): Promise<Cursor> {
    return readCursor(this.options.prisma, this.options.scope, this.initial);
  }

  /** One pass: clock, reorg, retries, confirmed blocks, head state, our transactions. */
  async syncOnce(): Promise<SyncReport> {
    const { client, confirmations, prisma, scope } = this.options;
    const latest = await client.getBlock({ blockTag: "latest" });
    await recordChainHead(sqlOf(prisma), scope.chainId, latest.number, latest.timestamp);
    const target = latest.number - BigInt(confirmations);
    let cursor = await this.cursor();
    const reorg = await this.undoReorg(cursor);
    if (reorg) cursor = await this.cursor();
    const report: SyncReport = {
      from: cursor.blockNumber,
      to: cursor.blockNumber,
      target,
      mirrored: 0,
      replayed: 0,
      ignored: 0,
      quarantined: 0,
      failed: [],
      recovered: [],
      droppedTransactions: 0,
      reorg,
    };
    const retried = await retryFailures(prisma, scope);
    report.recovered = retried.resolved.map((r) => r.channelId);
    report.mirrored += retried.resolved.reduce((n, r) => n + r.events, 0);
    report.failed.push(...retried.stillFailing);

    while (cursor.blockNumber < target) {
      const from = cursor.blockNumber + 1n;
      const to = from + this.blockRange - 1n < target ? from + this.blockRange - 1n : target;
      const next = await this.readRange(from, to);
      const result = await mirrorBlocks(prisma, scope, cursor, next.cursor, next.logs);
      cursor = next.cursor;
      report.to = to;
      report.mirrored += result.mirrored;
      report.replayed += result.replayed;
      report.ignored += result.ignored;
      report.quarantined += result.quarantined;
      report.failed.push(...result.failed);
      if (result.withdrawals.length > 0) await this.options.onWithdrawalRequested?.(result.withdrawals);
      this.options.onProgress?.({ from, to, target, events: result.mirrored });
    }
    await this.scanHead(cursor.blockNumber, latest.number);
    report.droppedTransactions = await this.recheckTransactions(latest.number);
    if (report.droppedTransactions > 0) await this.options.onTransactionsDropped?.(report.droppedTransactions);
    return report;
  }

  /**
   * The logs of blocks from..to and the hash of block `to`, read so that they belong together: the
   * hash is read before and after the logs, and a change (a reorg while reading) fails the read.
   */
  private async readRange(from: bigint, to: bigint): Promise<{ cursor: Cursor; logs: ChainLog[] }> {
    const { client } = this.options;
    const before = await client.getBlock({ blockNumber: to });
    const logs = await this.logs(from, to);
    const after = await client.getBlock({ blockNumber: to });
    if (before.hash !== after.hash) throw new Error(`Block ${to} changed while its logs were read (a reorg); reading again.`);
    for (const log of logs) {
      if (log.blockNumber === to && log.blockHash !== after.hash) {
        throw new Error(`A log of block ${to} names another block hash (a reorg); reading again.`);
      }
    }
    return { cursor: { blockNumber: to, blockHash: after.hash }, logs };
  }

  private async logs(from: bigint, to: bigint): Promise<ChainLog[]> {
    const raw = await this.options.client.getLogs({ address: this.options.scope.escrow, fromBlock: from, toBlock: to });
    const logs: ChainLog[] = [];
    for (const log of parseEventLogs({ abi: escrowAbi, logs: raw })) {
      if (!mirroredEvents.has(log.eventName)) continue;
      if (log.blockHash === null || log.blockNumber === null || log.transactionHash === null || log.logIndex === null) continue;
      const position = { blockNumber: log.blockNumber, blockHash: log.blockHash, txHash: log.transactionHash, logIndex: log.logIndex };
      logs.push({ name: log.eventName, ...log.args, ...position } as ChainLog);
    }
    return logs;
  }

  /** Records the head state of the channels with events above `confirmedTo`, and of those whose head
   * state differs from their confirmed state. */
  private async scanHead(confirmedTo: bigint, head: bigint): Promise<void> {
    const { prisma, client, scope } = this.options;
    const ids = new Set(await channelsSeenAhead(prisma, scope));
    if (head > confirmedTo) {
      const fresh = [...new Set((await this.logs(confirmedTo + 1n, head)).map((l) => l.channelId.toLowerCase() as Hex))];
      for (const id of await ours(prisma, scope, fresh)) ids.add(id);
    }
    if (ids.size === 0) return;
    await recordHeadStates(prisma, await readChannelStates(client, scope.escrow, [...ids]));
  }

  /** If the cursor's block is no longer on the chain, rewinds to the newest mirrored block that is. */
  private async undoReorg(cursor: Cursor): Promise<ReorgReport | undefined> {
    if (cursor.blockHash === null || (await this.hashOf(cursor.blockNumber)) === cursor.blockHash) return undefined;
    const { prisma, client, scope } = this.options;
    let survivor: Cursor = this.initial;
    search: for (let below = cursor.blockNumber; ; ) {
      const blocks = await mirroredBlocks(prisma, scope, below);
      for (const block of blocks) {
        if ((await this.hashOf(block.blockNumber)) === block.blockHash) {
          survivor = block;
          break search;
        }
      }
      if (blocks.length === 0) break;
      below = blocks[blocks.length - 1]!.blockNumber - 1n;
    }
    const channels = [...new Set([...(await channelsMirroredAfter(prisma, scope, survivor.blockNumber)), ...(await channelsSeenAhead(prisma, scope))])];
    const heads = await readChannelStates(client, scope.escrow, channels);
    const result = await rewindTo(prisma, scope, cursor, survivor, heads);
    return {
      from: cursor.blockNumber,
      to: survivor.blockNumber,
      reverted: result.reverted,
      reversedEntries: result.reversedEntries,
      channels: result.channels,
      shortfalls: result.shortfalls,
    };
  }

  /** Our transactions final in recent blocks that are no longer on the chain: undone, sent again. */
  private async recheckTransactions(head: bigint): Promise<number> {
    const { prisma, scope, sender, confirmations } = this.options;
    if (!sender) return 0;
    const window = BigInt(Math.max(64, confirmations * 4));
    const recent = await transactionsFinalAfter(prisma, scope.chainId, sender, head - window);
    const hashes = new Map<bigint, Hex | undefined>();
    const dropped: string[] = [];
    for (const tx of recent) {
      if (tx.blockHash === null) continue;
      if (!hashes.has(tx.blockNumber)) hashes.set(tx.blockNumber, await this.hashOf(tx.blockNumber));
      if (hashes.get(tx.blockNumber) !== tx.blockHash) dropped.push(tx.id);
    }
    return undoDroppedTransactions(prisma, dropped);
  }

  /** The chain's hash of a block; undefined if the chain is shorter now. Other errors propagate: a
   * flaky node must not pass for a reorg. */
  private async hashOf(blockNumber: bigint): Promise<Hex | undefined> {
    if (blockNumber < 0n) return undefined;
    try {
      return (await this.options.client.getBlock({ blockNumber })).hash;
    } catch (error) {
      if (error instanceof BlockNotFoundError) return undefined;
      throw error;
    }
  }
}

/** The ones among `ids` that are channels of our payee. */
async function ours(prisma: PrismaClient, scope: MirrorScope, ids: Hex[]): Promise<Hex[]> {
  if (ids.length === 0) return [];
  const rows = await prisma.$queryRawUnsafe<{ id: string }[]>(
    `SELECT id FROM channel WHERE id = ANY($1::text[]) AND chain_id = $2 AND lower(payee) = $3`,
    ids,
    BigInt(scope.chainId),
    scope.payee.toLowerCase(),
  );
  return rows.map((r) => r.id as Hex);
}
