// The ledger's mirror of the escrow: confirmed events of our channels become journal entries, the
// gateway's channel view follows them, and a cursor records how far the mirror reaches. The chain
// watcher (src/chain/ChainWatcher.ts) reads the chain; everything it writes goes through here, one
// database transaction per range of blocks, so the cursor and what was mirrored never disagree.
//
// | event               | entry (key `chain:<txHash>:<logIndex>`)             | channel view                  |
// |---------------------|-----------------------------------------------------|-------------------------------|
// | ChannelOpened       | DEPOSIT of what the ledger has not booked yet        | created; deposit              |
// | Deposited           | DEPOSIT of what the ledger has not booked yet        | deposit                       |
// | Claimed             | CLAIM (flows.claim)                                  | claimed_on_chain              |
// | WithdrawalRequested | —                                                    | withdraw_ready_at             |
// | ChannelClosed       | REFUND (flows.refund)                                | closed, deposit = claimed     |
//
// Deposits have two writers: the gateway books a deposit as soon as it reads it (saveChannel, so a
// payer can pay right after opening), and the mirror books it once confirmed. Both raise the same
// level, the channel's booked deposit, under the channel's row lock; the mirror books only the part
// the ledger does not hold yet, so a deposit is never booked twice whoever sees it first.
//
// A reorg is undone by reversing the entries of the events whose blocks left the chain (never by
// deleting them) and marking those events reverted; a log that comes back in a new block is booked
// again under `chain:<txHash>:<logIndex>:<blockHash>`.
import type { Address, Hex } from "viem";
import type { PrismaClient } from "../generated/prisma/client.js";
import { accountId } from "./accounts.js";
import { tokenAsset, type Asset } from "./asset.js";
import * as flows from "./flows.js";
import { balances, postEntry, reverseEntry, type Db, type Json, type Tx } from "./postings.js";
import { bookAccepted } from "./booking.js";
import { sqlOf } from "./sql.js";
import { longTransaction } from "./transactions.js";
import { saveChannel, type ChannelChainState } from "./channels.js";

/** Whose events are mirrored: one escrow deployment, one payee (the escrow is shared). */
export type MirrorScope = { chainId: number; escrow: Address; payee: Address };

export function cursorIdOf({ chainId, escrow, payee }: MirrorScope): string {
  return `${chainId}:${escrow.toLowerCase()}:${payee.toLowerCase()}`;
}

/** The last block mirrored, with its hash as read then (null before the first block). */
export type Cursor = { blockNumber: bigint; blockHash: Hex | null };

/** The escrow events that concern a payee's books, as plain values. */
export type EscrowEvent =
  | {
      name: "ChannelOpened";
      channelId: Hex;
      payer: Address;
      payee: Address;
      token: Address;
      signer: Address;
      withdrawDelay: number;
      salt: Hex;
      deposit: bigint;
    }
  | { name: "Deposited"; channelId: Hex; amount: bigint; newDeposit: bigint }
  | { name: "Claimed"; channelId: Hex; payee: Address; amount: bigint; totalClaimed: bigint }
  | { name: "WithdrawalRequested"; channelId: Hex; readyAt: bigint }
  | { name: "ChannelClosed"; channelId: Hex; totalClaimed: bigint; refunded: bigint };

export type ChainLog = EscrowEvent & { blockNumber: bigint; blockHash: Hex; txHash: Hex; logIndex: number };

export type MirrorResult = {
  /** Events of our channels booked now. */
  mirrored: number;
  /** Events already mirrored earlier (a range read twice): nothing was booked. */
  replayed: number;
  /** Events of channels that do not pay our payee. */
  ignored: number;
  /** Channels whose payer started a withdrawal: the watchtower must claim them. */
  withdrawals: Hex[];
};

export class CursorMovedError extends Error {
  override readonly name = "CursorMovedError";
}

export async function readCursor(db: Db, scope: MirrorScope, initial: Cursor): Promise<Cursor> {
  const row = await db.chainCursor.findUnique({ where: { id: cursorIdOf(scope) } });
  return row ? { blockNumber: row.blockNumber, blockHash: row.blockHash as Hex | null } : initial;
}

/**
 * Mirrors the events of the blocks after `from` up to `to` and moves the cursor there, in one
 * transaction. Refuses (CursorMovedError) if the cursor is no longer at `from`: another watcher
 * got there first, and this range must be read again from the new cursor.
 */
export async function mirrorBlocks(prisma: PrismaClient, scope: MirrorScope, from: Cursor, to: Cursor, logs: ChainLog[]): Promise<MirrorResult> {
  return longTransaction(prisma, async (tx) => {
    await moveCursor(tx, scope, from, to);
    return mirrorLogs(tx, scope, logs);
  });
}

async function moveCursor(tx: Tx, scope: MirrorScope, from: Cursor, to: Cursor): Promise<void> {
  const id = cursorIdOf(scope);
  const [row] = await tx.$queryRaw<{ block_number: bigint; block_hash: string | null }[]>`
    SELECT block_number, block_hash FROM chain_cursor WHERE id = ${id} FOR UPDATE`;
  const moved = () => new CursorMovedError(`The chain cursor ${id} moved while this watcher was reading blocks after ${from.blockNumber}.`);
  if (!row) {
    const inserted = await tx.$executeRaw`
      INSERT INTO chain_cursor (id, block_number, block_hash) VALUES (${id}, ${to.blockNumber}, ${to.blockHash})
      ON CONFLICT (id) DO NOTHING`;
    if (inserted !== 1 || from.blockHash !== null) throw moved();
    return;
  }
  if (BigInt(row.block_number) !== from.blockNumber || row.block_hash !== from.blockHash) throw moved();
  await tx.$executeRaw`
    UPDATE chain_cursor SET block_number = ${to.blockNumber}, block_hash = ${to.blockHash}, updated_at = now() WHERE id = ${id}`;
}

type ChannelRow = { id: string; escrow: string; asset: string; payee: string };

async function mirrorLogs(tx: Tx, scope: MirrorScope, logs: ChainLog[]): Promise<MirrorResult> {
  const result: MirrorResult = { mirrored: 0, replayed: 0, ignored: 0, withdrawals: [] };
  if (logs.length === 0) return result;
  const ordered = logs
    .map((log) => ({ ...log, channelId: log.channelId.toLowerCase() as Hex }))
    .sort((a, b) => (a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1));
  const cursor = cursorIdOf(scope);

  // Lock our channels' rows in id order, as the gateway's accept path does, so the two never deadlock.
  const ids = [...new Set(ordered.map((l) => l.channelId))].sort();
  const rows = await tx.$queryRaw<ChannelRow[]>`
    SELECT c.id, c.escrow, c.asset, c.payee
    FROM jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb) AS w(id)
    JOIN channel c ON c.id = w.id
    WHERE c.chain_id = ${BigInt(scope.chainId)} AND lower(c.payee) = ${scope.payee.toLowerCase()}
    ORDER BY c.id
    FOR UPDATE OF c`;
  const ours = new Map(rows.map((r) => [r.id, r]));
  // A claim or a refund is split between owed and available: every accepted voucher must be booked first.
  await bookAccepted(sqlOf(tx), [...ours.keys()], { isolate: false });

  const seen = await tx.$queryRaw<{ tx_hash: string; log_index: number; live: boolean }[]>`
    SELECT e.tx_hash, e.log_index, bool_or(e.reverted_at IS NULL) AS live
    FROM jsonb_to_recordset(${JSON.stringify(ordered.map((l) => ({ tx_hash: l.txHash.toLowerCase(), log_index: l.logIndex })))}::jsonb)
         AS w(tx_hash text, log_index int)
    JOIN chain_event e ON e.cursor_id = ${cursor} AND e.tx_hash = w.tx_hash AND e.log_index = w.log_index
    GROUP BY e.tx_hash, e.log_index`;
  const history = new Map(seen.map((s) => [`${s.tx_hash}:${s.log_index}`, s.live]));

  for (const log of ordered) {
    const txHash = log.txHash.toLowerCase() as Hex;
    if (log.name === "ChannelOpened" && !ours.has(log.channelId) && log.payee.toLowerCase() === scope.payee.toLowerCase()) {
      ours.set(log.channelId, await createChannel(tx, scope, log));
    }
    const channel = ours.get(log.channelId);
    if (!channel) {
      result.ignored++;
      continue;
    }
    const earlier = history.get(`${txHash}:${log.logIndex}`);
    if (earlier === true) {
      result.replayed++;
      continue;
    }
    // A log mirrored before and reverted by a reorg is back in a new block: a new key books it again.
    const key = `chain:${txHash}:${log.logIndex}${earlier === false ? `:${log.blockHash.toLowerCase()}` : ""}`;
    const entryId = await book(tx, channel, log, key);
    await tx.$executeRaw`
      INSERT INTO chain_event (cursor_id, block_number, block_hash, tx_hash, log_index, name, channel_id, args, entry_id)
      VALUES (${cursor}, ${log.blockNumber}, ${log.blockHash.toLowerCase()}, ${txHash}, ${log.logIndex}, ${log.name},
              ${log.channelId}, ${JSON.stringify(argsOf(log))}::jsonb, ${entryId}::uuid)`;
    history.set(`${txHash}:${log.logIndex}`, true);
    result.mirrored++;
    if (log.name === "WithdrawalRequested") result.withdrawals.push(log.channelId);
  }
  return result;
}

async function createChannel(tx: Tx, scope: MirrorScope, log: Extract<ChainLog, { name: "ChannelOpened" }>): Promise<ChannelRow> {
  const location = { chainId: scope.chainId, escrow: scope.escrow };
  const config = { payer: log.payer, payee: log.payee, token: log.token, signer: log.signer, withdrawDelay: log.withdrawDelay, salt: log.salt };
  const id = await saveChannel(tx, { ...config, ...location });
  if (id !== log.channelId) {
    throw new Error(`ChannelOpened ${log.channelId} does not hash to its own terms (got ${id}): is the watcher reading another escrow?`);
  }
  return { id, escrow: scope.escrow, asset: tokenAsset(scope.chainId, log.token), payee: log.payee };
}

/** Books one event of one of our channels and updates its view; returns the entry it posted, if any. */
async function book(tx: Tx, channel: ChannelRow, log: ChainLog & { channelId: Hex }, key: string): Promise<string | null> {
  const id = log.channelId;
  const escrow = channel.escrow as Address;
  const asset = channel.asset as Asset;
  const metadata = { txHash: log.txHash.toLowerCase(), logIndex: log.logIndex, blockNumber: log.blockNumber.toString(), event: log.name };
  switch (log.name) {
    case "ChannelOpened":
    case "Deposited": {
      const total = log.name === "ChannelOpened" ? log.deposit : log.newDeposit;
      const growth = total - (await bookedDeposit(tx, id));
      await tx.$executeRaw`UPDATE channel SET deposit = GREATEST(deposit, ${total.toString()}::numeric), updated_at = now() WHERE id = ${id}`;
      if (growth <= 0n) return null;
      const { entry } = await postEntry(tx, {
        idempotencyKey: key,
        ...flows.deposit({ channelId: id, escrow, asset, amount: growth }),
        metadata: { ...metadata, depositTotal: total.toString() },
      });
      return entry.id;
    }
    case "Claimed": {
      const { owed, available } = await channelBalances(tx, id);
      await tx.$executeRaw`
        UPDATE channel SET claimed_on_chain = GREATEST(claimed_on_chain, ${log.totalClaimed.toString()}::numeric), updated_at = now() WHERE id = ${id}`;
      // The chain paid it whatever the books say; if they cannot absorb it the event stays unbooked
      // (entry null) for reconciliation to report, rather than stopping the watcher for every channel.
      if (log.amount > owed + available) return null;
      const { entry } = await postEntry(tx, {
        idempotencyKey: key,
        ...flows.claim({ channelId: id, escrow, asset, amount: log.amount, owed, payee: channel.payee as Address }),
        metadata: { ...metadata, totalClaimed: log.totalClaimed.toString() },
      });
      return entry.id;
    }
    case "WithdrawalRequested":
      await tx.$executeRaw`UPDATE channel SET withdraw_ready_at = ${log.readyAt}, updated_at = now() WHERE id = ${id} AND NOT closed`;
      return null;
    case "ChannelClosed": {
      const { owed, available } = await channelBalances(tx, id);
      // The escrow keeps deposit = claimed for a closed channel; the view says what getChannel says.
      await tx.$executeRaw`
        UPDATE channel SET closed = true, withdraw_ready_at = NULL, claimed_on_chain = ${log.totalClaimed.toString()}::numeric,
               deposit = ${log.totalClaimed.toString()}::numeric, updated_at = now()
        WHERE id = ${id}`;
      if (log.refunded === 0n || log.refunded > owed + available) return null;
      const { entry } = await postEntry(tx, {
        idempotencyKey: key,
        ...flows.refund({ channelId: id, escrow, asset, amount: log.refunded, available }),
        metadata: { ...metadata, totalClaimed: log.totalClaimed.toString() },
      });
      return entry.id;
    }
  }
}

async function channelBalances(tx: Tx, id: Hex): Promise<{ owed: bigint; available: bigint }> {
  const owedId = accountId.channelOwed(id);
  const availableId = accountId.channelAvailable(id);
  const found = await balances(tx, { accounts: [owedId, availableId] });
  return { owed: found.get(owedId)?.balance ?? 0n, available: found.get(availableId)?.balance ?? 0n };
}

/** What the ledger holds as deposited into a channel: its DEPOSIT entries net of their reversals. */
export async function bookedDeposit(db: Db, channelId: Hex): Promise<bigint> {
  const [row] = await db.$queryRaw<{ total: string }[]>`
    SELECT COALESCE(SUM(CASE p.side WHEN 'CREDIT' THEN p.amount ELSE -p.amount END), 0)::text AS total
    FROM posting p
    JOIN journal_entry e ON e.id = p.entry_id
    LEFT JOIN journal_entry r ON r.id = e.reverses_entry_id
    WHERE p.account_id = ${accountId.channelAvailable(channelId.toLowerCase() as Hex)}
      AND COALESCE(r.kind, e.kind) = 'DEPOSIT'`;
  return BigInt(row?.total ?? "0");
}

function argsOf(log: ChainLog): Record<string, Json> {
  const { blockNumber, blockHash, txHash, logIndex, ...event } = log;
  return Object.fromEntries(Object.entries(event).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : (v as Json)]));
}

/** Blocks holding live mirrored events at or below `atOrBelow`, newest first: where to look for the
 * last block a reorg did not replace. */
export async function mirroredBlocks(db: Db, scope: MirrorScope, atOrBelow: bigint, limit = 64): Promise<Cursor[]> {
  const rows = await db.$queryRaw<{ block_number: bigint; block_hash: string }[]>`
    SELECT DISTINCT block_number, block_hash FROM chain_event
    WHERE cursor_id = ${cursorIdOf(scope)} AND reverted_at IS NULL AND block_number <= ${atOrBelow}
    ORDER BY block_number DESC LIMIT ${limit}`;
  return rows.map((r) => ({ blockNumber: BigInt(r.block_number), blockHash: r.block_hash as Hex }));
}

/** The channels with live mirrored events after `blockNumber` (those a rewind to it touches). */
export async function channelsMirroredAfter(db: Db, scope: MirrorScope, blockNumber: bigint): Promise<Hex[]> {
  const rows = await db.$queryRaw<{ channel_id: string }[]>`
    SELECT DISTINCT channel_id FROM chain_event
    WHERE cursor_id = ${cursorIdOf(scope)} AND reverted_at IS NULL AND block_number > ${blockNumber}
    ORDER BY channel_id`;
  return rows.map((r) => r.channel_id as Hex);
}

export type RewindResult = { reverted: number; reversedEntries: number; channels: Hex[] };

/**
 * Undoes a reorg: every live event mirrored after `to` (the last block still on the chain) is marked
 * reverted and its entry reversed (key `reorg:<eventId>`), newest first; the channels' views take
 * `chainStates` (read from the chain now) with the deposit the ledger still books; the cursor moves
 * back from `from` to `to`.
 */
export async function rewindTo(
  prisma: PrismaClient,
  scope: MirrorScope,
  from: Cursor,
  to: Cursor,
  chainStates: Map<Hex, ChannelChainState>,
): Promise<RewindResult> {
  return longTransaction(prisma, async (tx) => {
    await moveCursor(tx, scope, from, to);
    const events = await tx.$queryRaw<{ id: bigint; channel_id: string; entry_id: string | null; block_hash: string }[]>`
      SELECT id, channel_id, entry_id, block_hash FROM chain_event
      WHERE cursor_id = ${cursorIdOf(scope)} AND reverted_at IS NULL AND block_number > ${to.blockNumber}
      ORDER BY block_number DESC, log_index DESC
      FOR UPDATE`;
    const channels = [...new Set(events.map((e) => e.channel_id as Hex))].sort();
    await tx.$queryRaw`
      SELECT 1 FROM jsonb_array_elements_text(${JSON.stringify(channels)}::jsonb) AS w(id)
      JOIN channel c ON c.id = w.id ORDER BY c.id FOR UPDATE OF c`;
    await bookAccepted(sqlOf(tx), channels, { isolate: false });
    let reversedEntries = 0;
    for (const event of events) {
      let reversal: string | null = null;
      if (event.entry_id) {
        const { entry } = await reverseEntry(tx, event.entry_id, `reorg:${event.id}`, {
          metadata: { reason: "reorg", droppedBlockHash: event.block_hash, survivingBlock: to.blockNumber.toString() },
        });
        reversal = entry.id;
        reversedEntries++;
      }
      await tx.$executeRaw`UPDATE chain_event SET reverted_at = now(), reversal_entry_id = ${reversal}::uuid WHERE id = ${event.id}`;
    }
    for (const id of channels) {
      const state = chainStates.get(id);
      if (!state) throw new Error(`rewindTo needs the chain state of channel ${id}`);
      const deposit = state.closed ? state.deposit : await bookedDeposit(tx, id);
      await tx.$executeRaw`
        UPDATE channel SET deposit = ${deposit.toString()}::numeric, claimed_on_chain = ${state.claimedOnChain.toString()}::numeric,
               withdraw_ready_at = ${state.withdrawReadyAt}, closed = ${state.closed}, updated_at = now()
        WHERE id = ${id}`;
    }
    return { reverted: events.length, reversedEntries, channels };
  });
}
