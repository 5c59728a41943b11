// Follows the escrow's events into the ledger (src/ledger/chainMirror.ts does the booking). Each sync
// reads from the stored cursor up to the newest block with CONFIRMATIONS blocks on top, in ranges of
// `blockRange` blocks, each range committed with the cursor in one transaction: a restart resumes
// where the last commit left off, and a range read twice books nothing twice.
//
// Reorgs: before reading on, the cursor's block hash is compared with the chain's. If it changed, the
// watcher walks back through the blocks it mirrored events from until it finds one the chain still
// has, reverses everything mirrored after it (reversing entries, never deleting) and reads on from
// there. Only channels paying our payee are mirrored; the escrow is shared.
import { BlockNotFoundError, parseEventLogs, type Hex, type PublicClient } from "viem";
import type { PrismaClient } from "../generated/prisma/client.js";
import {
  channelsMirroredAfter,
  mirrorBlocks,
  mirroredBlocks,
  readCursor,
  rewindTo,
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
  /** After a range is committed: channels whose payer started a withdrawal (the watchtower's cue). */
  onWithdrawalRequested?: (channelIds: Hex[]) => void | Promise<void>;
  onProgress?: (progress: SyncProgress) => void;
};

export type SyncProgress = { from: bigint; to: bigint; target: bigint; events: number };

export type ReorgReport = { from: bigint; to: bigint; reverted: number; reversedEntries: number; channels: Hex[] };

export type SyncReport = {
  /** The cursor before and after this sync. */
  from: bigint;
  to: bigint;
  /** The newest block with enough confirmations. */
  target: bigint;
  mirrored: number;
  replayed: number;
  ignored: number;
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

  /** Mirrors every confirmed block not mirrored yet (after undoing a reorg, if there was one). */
  async syncOnce(): Promise<SyncReport> {
    const { client, confirmations } = this.options;
    const latest = await client.getBlock({ blockTag: "latest" });
    // Acceptance measures withdrawal margins in chain time: every process reads this clock.
    await recordChainHead(sqlOf(this.options.prisma), this.options.scope.chainId, latest.number, latest.timestamp);
    const target = latest.number - BigInt(confirmations);
    let cursor = await this.cursor();
    const reorg = await this.undoReorg(cursor);
    if (reorg) cursor = await this.cursor();
    const report: SyncReport = { from: cursor.blockNumber, to: cursor.blockNumber, target, mirrored: 0, replayed: 0, ignored: 0, reorg };
    while (cursor.blockNumber < target) {
      const from = cursor.blockNumber + 1n;
      const to = from + this.blockRange - 1n < target ? from + this.blockRange - 1n : target;
      const next = await this.readRange(from, to);
      const result = await mirrorBlocks(this.options.prisma, this.options.scope, cursor, next.cursor, next.logs);
      cursor = next.cursor;
      report.to = to;
      report.mirrored += result.mirrored;
      report.replayed += result.replayed;
      report.ignored += result.ignored;
      if (result.withdrawals.length > 0) await this.options.onWithdrawalRequested?.(result.withdrawals);
      this.options.onProgress?.({ from, to, target, events: result.mirrored });
    }
    return report;
  }

  /**
   * The logs of blocks from..to and the hash of block `to`, read so that they belong together: the
   * hash is read before and after the logs, and a change (a reorg while reading) fails the read.
   */
  private async readRange(from: bigint, to: bigint): Promise<{ cursor: Cursor; logs: ChainLog[] }> {
    const { client, scope } = this.options;
    const before = await client.getBlock({ blockNumber: to });
    const raw = await client.getLogs({ address: scope.escrow, fromBlock: from, toBlock: to });
    const after = await client.getBlock({ blockNumber: to });
    if (before.hash !== after.hash) throw new Error(`Block ${to} changed while its logs were read (a reorg); reading again.`);
    const logs: ChainLog[] = [];
    for (const log of parseEventLogs({ abi: escrowAbi, logs: raw })) {
      if (!mirroredEvents.has(log.eventName)) continue;
      if (log.blockHash === null || log.blockNumber === null || log.transactionHash === null || log.logIndex === null) continue;
      if (log.blockNumber === to && log.blockHash !== after.hash) {
        throw new Error(`A log of block ${to} names another block hash (a reorg); reading again.`);
      }
      const position = { blockNumber: log.blockNumber, blockHash: log.blockHash, txHash: log.transactionHash, logIndex: log.logIndex };
      logs.push({ name: log.eventName, ...log.args, ...position } as ChainLog);
    }
    return { cursor: { blockNumber: to, blockHash: after.hash }, logs };
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
    const channels = await channelsMirroredAfter(prisma, scope, survivor.blockNumber);
    const states = await readChannelStates(client, scope.escrow, channels);
    const result = await rewindTo(prisma, scope, cursor, survivor, states);
    return { from: cursor.blockNumber, to: survivor.blockNumber, reverted: result.reverted, reversedEntries: result.reversedEntries, channels };
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
