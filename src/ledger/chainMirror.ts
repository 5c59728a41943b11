// The ledger's mirror of the escrow: confirmed events of our channels become journal entries and the
// channels' confirmed state, the chain's head state is recorded beside it, and a cursor records how
// far the mirror reaches. The chain watcher (src/chain/ChainWatcher.ts) reads the chain; everything it
// writes goes through here. What each fact does to the books is src/ledger/channelBooks.ts.
//
// | event               | entry (key `chain:<txHash>:<logIndex>`)                        | confirmed state     |
// |---------------------|----------------------------------------------------------------|---------------------|
// | ChannelOpened       | DEPOSIT: the growth, from ESCROW_PENDING as far as it was seen | created; deposit    |
// | Deposited           | DEPOSIT, likewise                                              | deposit             |
// | Claimed             | CLAIM                                                          | claimed_on_chain    |
// | WithdrawalRequested | —                                                              | withdraw_ready_at   |
// | ChannelClosed       | REFUND                                                         | closed              |
//
// A range of blocks is mirrored in one transaction with the cursor, its entries and rows written in a
// few statements whatever its size. If the range cannot be booked as a whole, it is booked channel by
// channel: a channel whose events fail (a poisoned channel) has them kept in chain_event_failure, is
// blocked, and is retried every poll, while the cursor moves on for every other channel.
//
// A reorg is undone by reversing the entries of the events whose blocks left the chain (never by
// deleting them; what spent money cannot give back becomes a shortfall) and marking those events
// reverted; a log that comes back in a new block is booked again under
// `chain:<txHash>:<logIndex>:<blockHash>`. Transactions of ours whose blocks left the chain have their
// gas reversed and go back to the transaction manager, which sends them again at once.
import { randomUUID } from "node:crypto";
import type { Address, Hex } from "viem";
import type { PrismaClient } from "../generated/prisma/client.js";
import { tokenAsset } from "./asset.js";
import { BLOCKED, BookingError, ChannelBooks, entryLines, writeEntries, type ChannelBook } from "./channelBooks.js";
import { createChannelAccounts, type ChannelChainState } from "./channels.js";
import { postgresError } from "./errors.js";
import type { Db, Json, Tx } from "./postings.js";
import { longTransaction } from "./transactions.js";
import { channelId as channelIdOf } from "../protocol/Channel.js";

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
  /** Events kept for a channel the mirror could not book (retried every poll). */
  quarantined: number;
  /** Channels whose payer started a withdrawal: the watchtower must claim them. */
  withdrawals: Hex[];
  /** Channels whose events could not be booked now, with why. */
  failed: { channelId: Hex; reason: string }[];
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
 * transaction. Refuses (CursorMovedError) if the cursor is no longer at `from`: another watcher got
 * there first, and this range must be read again from the new cursor.
 */
export async function mirrorBlocks(prisma: PrismaClient, scope: MirrorScope, from: Cursor, to: Cursor, logs: ChainLog[]): Promise<MirrorResult> {
  try {
    return await longTransaction(prisma, async (tx) => {
      await moveCursor(tx, scope, from, to);
      return mirrorLogs(tx, scope, logs, false);
    });
  } catch (error) {
    if (!isBookingFailure(error)) throw error;
    // Something in the range cannot be booked: book it channel by channel, keeping the failures.
    return longTransaction(prisma, async (tx) => {
      await moveCursor(tx, scope, from, to);
      return mirrorLogs(tx, scope, logs, true);
    });
  }
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

type Live = Map<string, boolean>;

async function mirrorLogs(tx: Tx, scope: MirrorScope, logs: ChainLog[], isolate: boolean): Promise<MirrorResult> {
  const result: MirrorResult = { mirrored: 0, replayed: 0, ignored: 0, quarantined: 0, withdrawals: [], failed: [] };
  if (logs.length === 0) return result;
  const ordered = logs
    .map((log) => ({ ...log, channelId: log.channelId.toLowerCase() as Hex, txHash: log.txHash.toLowerCase() as Hex }))
    .sort((a, b) => (a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1));
  await createOpenedChannels(tx, scope, ordered);
  const ours = await ourChannels(tx, scope, [...new Set(ordered.map((l) => l.channelId))]);
  const history = await mirroredHistory(tx, scope, ordered);
  const quarantined = await quarantinedChannels(tx, scope);

  const byChannel = new Map<Hex, ChainLog[]>();
  for (const log of ordered) {
    if (!ours.has(log.channelId)) {
      result.ignored++;
      continue;
    }
    if (history.get(`${log.txHash}:${log.logIndex}`) === true) {
      result.replayed++;
      continue;
    }
    byChannel.set(log.channelId, [...(byChannel.get(log.channelId) ?? []), log]);
  }
  // A channel with events waiting in chain_event_failure keeps its order: new events queue behind them.
  for (const id of [...byChannel.keys()].filter((id) => quarantined.has(id))) {
    result.quarantined += await quarantine(tx, scope, id, byChannel.get(id)!, "waiting behind earlier events that could not be booked");
    byChannel.delete(id);
  }

  if (!isolate) {
    const counts = await bookChannels(tx, scope, byChannel, history);
    result.mirrored += counts.mirrored;
    result.withdrawals.push(...counts.withdrawals);
    return result;
  }
  for (const [id, channelLogs] of [...byChannel].sort(([a], [b]) => (a < b ? -1 : 1))) {
    await tx.$executeRawUnsafe("SAVEPOINT mirror_channel");
    try {
      const counts = await bookChannels(tx, scope, new Map([[id, channelLogs]]), history);
      // Checks deferred to commit (balanced entries) run now, while this channel can still be set aside.
      await tx.$executeRawUnsafe("SET CONSTRAINTS ALL IMMEDIATE");
      await tx.$executeRawUnsafe("SET CONSTRAINTS ALL DEFERRED");
      await tx.$executeRawUnsafe("RELEASE SAVEPOINT mirror_channel");
      result.mirrored += counts.mirrored;
      result.withdrawals.push(...counts.withdrawals);
    } catch (error) {
      if (!isBookingFailure(error)) throw error;
      await tx.$executeRawUnsafe("ROLLBACK TO SAVEPOINT mirror_channel");
      const reason = reasonOf(error);
      result.quarantined += await quarantine(tx, scope, id, channelLogs, reason);
      result.failed.push({ channelId: id, reason });
    }
  }
  return result;
}

/** Books the events of some channels (in order per channel) and records them as mirrored. */
async function bookChannels(
  tx: Tx,
  scope: MirrorScope,
  byChannel: Map<Hex, ChainLog[]>,
  history: Live,
): Promise<{ mirrored: number; withdrawals: Hex[] }> {
  const books = await ChannelBooks.load(tx, [...byChannel.keys()]);
  const events: { log: ChainLog; key: string; entryId: string | null }[] = [];
  const withdrawals: Hex[] = [];
  for (const [id, logs] of byChannel) {
    const book = books.get(id)!;
    for (const log of logs) {
      const earlier = history.get(`${log.txHash}:${log.logIndex}`);
      // A log mirrored before and reverted by a reorg is back in a new block: a new key books it again.
      const key = `chain:${log.txHash}:${log.logIndex}${earlier === false ? `:${log.blockHash.toLowerCase()}` : ""}`;
      events.push({ log, key, entryId: apply(books, book, log, key) });
      if (log.name === "WithdrawalRequested") withdrawals.push(id);
    }
  }
  await books.write(tx);
  await recordEvents(tx, scope, events);
  for (const e of events) history.set(`${e.log.txHash}:${e.log.logIndex}`, true);
  return { mirrored: events.length, withdrawals };
}

function apply(books: ChannelBooks, book: ChannelBook, log: ChainLog, key: string): string | null {
  const metadata = { txHash: log.txHash, logIndex: log.logIndex, blockNumber: log.blockNumber.toString(), event: log.name };
  switch (log.name) {
    case "ChannelOpened":
      return books.confirmDeposit(book, log.deposit, key, metadata);
    case "Deposited":
      return books.confirmDeposit(book, log.newDeposit, key, metadata);
    case "Claimed":
      return books.claim(book, log.amount, log.totalClaimed, key, metadata);
    case "WithdrawalRequested":
      books.withdrawalRequested(book, log.readyAt);
      return null;
    case "ChannelClosed":
      return books.close(book, log.totalClaimed, log.refunded, key, metadata);
  }
}

async function recordEvents(tx: Tx, scope: MirrorScope, events: { log: ChainLog; entryId: string | null }[]): Promise<void> {
  if (events.length === 0) return;
  await tx.$executeRawUnsafe(
    `INSERT INTO chain_event (cursor_id, block_number, block_hash, tx_hash, log_index, name, channel_id, args, entry_id)
     SELECT $1, e.block_number, e.block_hash, e.tx_hash, e.log_index, e.name, e.channel_id, e.args, e.entry_id
     FROM jsonb_to_recordset($2::jsonb) AS e(block_number bigint, block_hash text, tx_hash text, log_index int, name text,
          channel_id text, args jsonb, entry_id uuid)`,
    cursorIdOf(scope),
    JSON.stringify(
      events.map(({ log, entryId }) => ({
        block_number: log.blockNumber.toString(),
        block_hash: log.blockHash.toLowerCase(),
        tx_hash: log.txHash,
        log_index: log.logIndex,
        name: log.name,
        channel_id: log.channelId,
        args: argsOf(log),
        entry_id: entryId,
      })),
    ),
  );
}

/** Channels opened to our payee in these logs and not yet known: their rows and ledger accounts. */
async function createOpenedChannels(tx: Tx, scope: MirrorScope, logs: ChainLog[]): Promise<void> {
  const payee = scope.payee.toLowerCase();
  const opened = logs.filter((l): l is Extract<ChainLog, { name: "ChannelOpened" }> & { channelId: Hex } => l.name === "ChannelOpened" && l.payee.toLowerCase() === payee);
  if (opened.length === 0) return;
  const location = { chainId: scope.chainId, escrow: scope.escrow };
  const rows = opened.map((log) => {
    const config = { payer: log.payer, payee: log.payee, token: log.token, signer: log.signer, withdrawDelay: log.withdrawDelay, salt: log.salt };
    const id = channelIdOf(config, location).toLowerCase();
    if (id !== log.channelId) {
      throw new Error(`ChannelOpened ${log.channelId} does not hash to its own terms (got ${id}): is the watcher reading another escrow?`);
    }
    return { id, ...config, asset: tokenAsset(scope.chainId, log.token) };
  });
  await tx.$executeRawUnsafe(
    `INSERT INTO channel (id, chain_id, escrow, payer, payee, token, signer, withdraw_delay, salt, asset)
     SELECT r.id, $1, $2, r.payer, r.payee, r.token, r.signer, r.withdraw_delay, r.salt, r.asset
     FROM jsonb_to_recordset($3::jsonb) AS r(id text, payer text, payee text, token text, signer text, withdraw_delay int, salt text, asset text)
     ORDER BY r.id
     ON CONFLICT (id) DO NOTHING`,
    BigInt(scope.chainId),
    scope.escrow,
    JSON.stringify(rows.map((r) => ({ ...r, withdraw_delay: r.withdrawDelay }))),
  );
  await createChannelAccounts(tx, rows);
}

async function ourChannels(tx: Tx, scope: MirrorScope, ids: Hex[]): Promise<Set<Hex>> {
  const rows = await tx.$queryRawUnsafe<{ id: string }[]>(
    `SELECT id FROM channel WHERE id = ANY($1::text[]) AND chain_id = $2 AND lower(payee) = $3`,
    ids,
    BigInt(scope.chainId),
    scope.payee.toLowerCase(),
  );
  return new Set(rows.map((r) => r.id as Hex));
}

/** For each log: true if mirrored and live, false if mirrored and reverted since, absent if never. */
async function mirroredHistory(tx: Tx, scope: MirrorScope, logs: ChainLog[]): Promise<Live> {
  const seen = await tx.$queryRawUnsafe<{ tx_hash: string; log_index: number; live: boolean }[]>(
    `SELECT e.tx_hash, e.log_index, bool_or(e.reverted_at IS NULL) AS live
     FROM jsonb_to_recordset($1::jsonb) AS w(tx_hash text, log_index int)
     JOIN chain_event e ON e.cursor_id = $2 AND e.tx_hash = w.tx_hash AND e.log_index = w.log_index
     GROUP BY e.tx_hash, e.log_index`,
    JSON.stringify(logs.map((l) => ({ tx_hash: l.txHash, log_index: l.logIndex }))),
    cursorIdOf(scope),
  );
  return new Map(seen.map((s) => [`${s.tx_hash}:${s.log_index}`, s.live]));
}

async function quarantinedChannels(db: Db, scope: MirrorScope): Promise<Set<Hex>> {
  const rows = await db.$queryRawUnsafe<{ channel_id: string }[]>(
    `SELECT DISTINCT channel_id FROM chain_event_failure WHERE cursor_id = $1 AND resolved_at IS NULL`,
    cursorIdOf(scope),
  );
  return new Set(rows.map((r) => r.channel_id as Hex));
}

/** Keeps a channel's events for later, in order, and blocks the channel. Returns how many. */
async function quarantine(tx: Tx, scope: MirrorScope, channelId: Hex, logs: ChainLog[], reason: string): Promise<number> {
  await tx.$executeRawUnsafe(
    `INSERT INTO chain_event_failure (cursor_id, channel_id, block_number, block_hash, tx_hash, log_index, name, args, error)
     SELECT $1, $2, f.block_number, f.block_hash, f.tx_hash, f.log_index, f.name, f.args, $3
     FROM jsonb_to_recordset($4::jsonb) AS f(block_number bigint, block_hash text, tx_hash text, log_index int, name text, args jsonb)
     ON CONFLICT (cursor_id, tx_hash, log_index) WHERE resolved_at IS NULL DO NOTHING`,
    cursorIdOf(scope),
    channelId,
    reason,
    JSON.stringify(
      logs.map((log) => ({
        block_number: log.blockNumber.toString(),
        block_hash: log.blockHash.toLowerCase(),
        tx_hash: log.txHash.toLowerCase(),
        log_index: log.logIndex,
        name: log.name,
        args: argsOf(log),
      })),
    ),
  );
  await tx.$executeRawUnsafe(`UPDATE channel SET blocked_reason = $2, updated_at = now() WHERE id = $1 AND blocked_reason IS DISTINCT FROM $3`, channelId, BLOCKED.mirrorFailed, BLOCKED.shortfall);
  return logs.length;
}

export type RetryResult = { resolved: { channelId: Hex; events: number }[]; stillFailing: { channelId: Hex; reason: string }[] };

/**
 * Tries again to book the events kept for channels the mirror could not book, each channel in its own
 * transaction and in order; a channel whose events all book is unblocked.
 */
export async function retryFailures(prisma: PrismaClient, scope: MirrorScope): Promise<RetryResult> {
  const result: RetryResult = { resolved: [], stillFailing: [] };
  for (const channelId of await quarantinedChannels(prisma, scope)) {
    try {
      const events = await longTransaction(prisma, async (tx) => {
        const rows = await tx.$queryRawUnsafe<FailureRow[]>(
          `SELECT id, block_number::text, block_hash, tx_hash, log_index, name, args FROM chain_event_failure
           WHERE cursor_id = $1 AND channel_id = $2 AND resolved_at IS NULL ORDER BY block_number, log_index FOR UPDATE`,
          cursorIdOf(scope),
          channelId,
        );
        const logs = rows.map(logOf(channelId));
        const history = await mirroredHistory(tx, scope, logs);
        const fresh = logs.filter((l) => history.get(`${l.txHash}:${l.logIndex}`) !== true);
        await bookChannels(tx, scope, new Map([[channelId, fresh]]), history);
        await tx.$executeRawUnsafe(`UPDATE chain_event_failure SET resolved_at = now(), updated_at = now() WHERE id = ANY($1::bigint[])`, rows.map((r) => r.id));
        await tx.$executeRawUnsafe(`UPDATE channel SET blocked_reason = NULL, updated_at = now() WHERE id = $1 AND blocked_reason = $2`, channelId, BLOCKED.mirrorFailed);
        return rows.length;
      });
      result.resolved.push({ channelId, events });
    } catch (error) {
      if (!isBookingFailure(error)) throw error;
      const reason = reasonOf(error);
      await prisma.$executeRawUnsafe(
        `UPDATE chain_event_failure SET attempts = attempts + 1, error = $3, updated_at = now() WHERE cursor_id = $1 AND channel_id = $2 AND resolved_at IS NULL`,
        cursorIdOf(scope),
        channelId,
        reason,
      );
      result.stillFailing.push({ channelId, reason });
    }
  }
  return result;
}

type FailureRow = { id: bigint; block_number: string; block_hash: string; tx_hash: string; log_index: number; name: string; args: Record<string, Json> };

const logOf = (channelId: Hex) => (row: FailureRow): ChainLog => {
  const args = Object.fromEntries(
    Object.entries(row.args).map(([k, v]) => [k, ["deposit", "amount", "newDeposit", "totalClaimed", "readyAt", "refunded"].includes(k) ? BigInt(v as string) : v]),
  );
  return {
    ...(args as object),
    name: row.name,
    channelId,
    blockNumber: BigInt(row.block_number),
    blockHash: row.block_hash as Hex,
    txHash: row.tx_hash as Hex,
    logIndex: row.log_index,
  } as ChainLog;
};

/** Channels whose head state differs from their confirmed state: the watcher re-reads them each poll. */
export async function channelsSeenAhead(db: Db, scope: MirrorScope): Promise<Hex[]> {
  const rows = await db.$queryRawUnsafe<{ id: string }[]>(
    `SELECT id FROM channel
     WHERE (deposit_seen <> deposit OR pending_booked <> 0 OR closed_seen <> closed OR withdraw_ready_at_seen IS DISTINCT FROM withdraw_ready_at)
       AND chain_id = $1 AND lower(payee) = $2
     ORDER BY id`,
    BigInt(scope.chainId),
    scope.payee.toLowerCase(),
  );
  return rows.map((r) => r.id as Hex);
}

/**
 * Records what the chain's head says about these channels: the head state, and the pending deposit
 * following it (a pending deposit a reorg dropped is voided; what was spent from it becomes a shortfall).
 */
export async function recordHeadStates(prisma: PrismaClient, states: Map<Hex, ChannelChainState>): Promise<void> {
  if (states.size === 0) return;
  await longTransaction(prisma, async (tx) => {
    const books = await ChannelBooks.load(tx, [...states.keys()]);
    for (const [id, state] of states) {
      const book = books.get(id);
      if (book && !sameHead(book, state)) books.seen(book, state);
    }
    await books.write(tx);
  });
}

function sameHead(book: ChannelBook, head: ChannelChainState): boolean {
  const pending = head.closed || book.closed ? 0n : head.deposit > book.deposit ? head.deposit - book.deposit : 0n;
  return (
    (head.closed ? book.depositSeen === book.deposit : book.depositSeen === head.deposit) &&
    book.withdrawReadyAtSeen === head.withdrawReadyAt &&
    book.closedSeen === head.closed &&
    book.pendingBooked === pending
  );
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

/** Our transactions final in blocks after `blockNumber`, with the block hash their receipt named. */
export async function transactionsFinalAfter(db: Db, chainId: number, sender: Address, blockNumber: bigint): Promise<{ id: string; blockNumber: bigint; blockHash: Hex | null }[]> {
  const rows = await db.$queryRawUnsafe<{ id: string; block_number: string; block_hash: string | null }[]>(
    `SELECT id::text, block_number::text, block_hash FROM chain_tx
     WHERE chain_id = $1 AND sender = $2 AND status IN ('CONFIRMED', 'FAILED') AND block_number > $3 ORDER BY block_number`,
    BigInt(chainId),
    sender.toLowerCase(),
    blockNumber,
  );
  return rows.map((r) => ({ id: r.id, blockNumber: BigInt(r.block_number), blockHash: r.block_hash as Hex | null }));
}

export type RewindResult = { reverted: number; reversedEntries: number; channels: Hex[]; transactions: number; shortfalls: { channelId: Hex; amount: bigint }[] };

/**
 * Undoes a reorg, in one transaction: every live event mirrored after `to` (the last block still on
 * the chain) is marked reverted and its entry reversed (key `reorg:<eventId>`), newest first, with what
 * spent money cannot give back booked as the channel's shortfall; each channel's confirmed state is
 * recomputed from the events still live, and its head state is `heads` (read from the chain now); our
 * transactions whose blocks left the chain (`droppedTransactions`) have their gas reversed and go back
 * to PENDING for the transaction manager; the cursor moves back from `from` to `to`.
 */
export async function rewindTo(
  prisma: PrismaClient,
  scope: MirrorScope,
  from: Cursor,
  to: Cursor,
  heads: Map<Hex, ChannelChainState>,
  droppedTransactions: string[] = [],
): Promise<RewindResult> {
  return longTransaction(prisma, async (tx) => {
    await moveCursor(tx, scope, from, to);
    const cursor = cursorIdOf(scope);
    const events = await tx.$queryRawUnsafe<{ id: bigint; channel_id: string; entry_id: string | null; block_hash: string }[]>(
      `SELECT id, channel_id, entry_id::text, block_hash FROM chain_event
       WHERE cursor_id = $1 AND reverted_at IS NULL AND block_number > $2
       ORDER BY block_number DESC, log_index DESC
       FOR UPDATE`,
      cursor,
      to.blockNumber,
    );
    const channels = [...new Set([...events.map((e) => e.channel_id as Hex), ...heads.keys()])].sort();
    const books = await ChannelBooks.load(tx, channels);
    const lines = await entryLines(tx, events.flatMap((e) => (e.entry_id ? [e.entry_id] : [])));
    const reversals: { eventId: bigint; entryId: string | null }[] = [];
    for (const event of events) {
      const book = books.get(event.channel_id as Hex)!;
      const reversal = event.entry_id
        ? books.reverse(book, { id: event.entry_id, lines: lines.get(event.entry_id)! }, `reorg:${event.id}`, {
            reason: "reorg",
            droppedBlockHash: event.block_hash,
            survivingBlock: to.blockNumber.toString(),
          })
        : null;
      reversals.push({ eventId: event.id, entryId: reversal });
    }
    await writeEntriesOf(tx, books);
    if (reversals.length > 0) {
      await tx.$executeRawUnsafe(
        `UPDATE chain_event e SET reverted_at = now(), reversal_entry_id = r.entry_id
         FROM jsonb_to_recordset($1::jsonb) AS r(id bigint, entry_id uuid) WHERE e.id = r.id`,
        JSON.stringify(reversals.map((r) => ({ id: r.eventId.toString(), entry_id: r.entryId }))),
      );
    }
    // Events kept for a poisoned channel whose blocks left the chain will never be booked; a channel
    // with none left is no longer held back by them.
    await tx.$executeRawUnsafe(
      `UPDATE chain_event_failure SET resolved_at = now(), error = error || ' (its block left the chain)', updated_at = now()
       WHERE cursor_id = $1 AND resolved_at IS NULL AND block_number > $2`,
      cursor,
      to.blockNumber,
    );
    await tx.$executeRawUnsafe(
      `UPDATE channel c SET blocked_reason = NULL, updated_at = now()
       WHERE c.id = ANY($2::text[]) AND c.blocked_reason = $3
         AND NOT EXISTS (SELECT 1 FROM chain_event_failure f WHERE f.cursor_id = $1 AND f.channel_id = c.id AND f.resolved_at IS NULL)`,
      cursor,
      channels,
      BLOCKED.mirrorFailed,
    );
    const confirmed = await confirmedStates(tx, scope, channels);
    for (const id of channels) {
      const book = books.get(id);
      if (!book) continue;
      books.confirmedState(book, confirmed.get(id) ?? { deposit: 0n, claimedOnChain: 0n, withdrawReadyAt: null, closed: false });
      const head = heads.get(id);
      if (head) books.seen(book, head);
    }
    const shortfalls = channels.flatMap((id) => {
      const book = books.get(id);
      return book && book.shortfall > 0n ? [{ channelId: id, amount: book.shortfall }] : [];
    });
    await books.write(tx);
    const transactions = await dropTransactions(tx, droppedTransactions);
    return { reverted: events.length, reversedEntries: reversals.filter((r) => r.entryId).length, channels, transactions, shortfalls };
  });
}

async function writeEntriesOf(tx: Tx, books: ChannelBooks): Promise<void> {
  await writeEntries(tx, books.entries);
  books.entries.length = 0;
}

/** The confirmed state of channels as their live mirrored events say. */
async function confirmedStates(tx: Tx, scope: MirrorScope, ids: Hex[]): Promise<Map<Hex, Pick<ChannelBook, "deposit" | "claimedOnChain" | "withdrawReadyAt" | "closed">>> {
  const rows = await tx.$queryRawUnsafe<{ channel_id: string; deposit: string | null; claimed: string | null; ready_at: string | null; closed: boolean }[]>(
    `SELECT c.id AS channel_id,
            (SELECT COALESCE(e.args->>'newDeposit', e.args->>'deposit') FROM chain_event e
              WHERE e.cursor_id = $1 AND e.channel_id = c.id AND e.reverted_at IS NULL AND e.name IN ('ChannelOpened', 'Deposited')
              ORDER BY e.block_number DESC, e.log_index DESC LIMIT 1) AS deposit,
            (SELECT e.args->>'totalClaimed' FROM chain_event e
              WHERE e.cursor_id = $1 AND e.channel_id = c.id AND e.reverted_at IS NULL AND e.name IN ('Claimed', 'ChannelClosed')
              ORDER BY e.block_number DESC, e.log_index DESC LIMIT 1) AS claimed,
            (SELECT e.args->>'readyAt' FROM chain_event e
              WHERE e.cursor_id = $1 AND e.channel_id = c.id AND e.reverted_at IS NULL AND e.name = 'WithdrawalRequested'
              ORDER BY e.block_number DESC, e.log_index DESC LIMIT 1) AS ready_at,
            EXISTS (SELECT 1 FROM chain_event e
              WHERE e.cursor_id = $1 AND e.channel_id = c.id AND e.reverted_at IS NULL AND e.name = 'ChannelClosed') AS closed
     FROM channel c WHERE c.id = ANY($2::text[])`,
    cursorIdOf(scope),
    ids,
  );
  return new Map(
    rows.map((r) => {
      const claimed = BigInt(r.claimed ?? "0");
      return [
        r.channel_id as Hex,
        {
          // The escrow keeps deposit = claimed once closed.
          deposit: r.closed ? claimed : BigInt(r.deposit ?? "0"),
          claimedOnChain: claimed,
          withdrawReadyAt: r.closed || r.ready_at === null ? null : BigInt(r.ready_at),
          closed: r.closed,
        },
      ];
    }),
  );
}

/** Undoes our transactions whose receipts' blocks left the chain (see dropTransactions). */
export async function undoDroppedTransactions(prisma: PrismaClient, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  return longTransaction(prisma, (tx) => dropTransactions(tx, ids));
}

/**
 * Transactions whose receipt's block left the chain: their gas entries are reversed and they go back
 * to PENDING, so the transaction manager follows them again — finding them mined anew (and booking
 * the gas of that receipt) or sending the very same signed bytes again at once.
 */
async function dropTransactions(tx: Tx, ids: string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const rows = await tx.$queryRawUnsafe<{ id: string; fee_entry_id: string | null }[]>(
    `SELECT id::text, fee_entry_id::text FROM chain_tx WHERE id = ANY($1::uuid[]) AND status IN ('CONFIRMED', 'FAILED') ORDER BY id FOR UPDATE`,
    ids,
  );
  const lines = await entryLines(tx, rows.flatMap((r) => (r.fee_entry_id ? [r.fee_entry_id] : [])));
  await writeEntries(
    tx,
    rows.flatMap((r) =>
      r.fee_entry_id
        ? [{
            id: randomUUID(),
            idempotencyKey: `reorg-gas:${r.fee_entry_id}`,
            kind: "REVERSAL" as const,
            reverses: r.fee_entry_id,
            metadata: { reason: "reorg", chainTxId: r.id },
            lines: lines.get(r.fee_entry_id)!.map((l) => ({ ...l, side: l.side === "DEBIT" ? ("CREDIT" as const) : ("DEBIT" as const) })),
          }]
        : [],
    ),
  );
  await tx.$executeRawUnsafe(
    `UPDATE chain_tx SET status = 'PENDING', tx_hash = NULL, block_number = NULL, block_hash = NULL, gas_used = NULL,
            effective_gas_price = NULL, fee = NULL, fee_entry_id = NULL, error = NULL, updated_at = now()
     WHERE id = ANY($1::uuid[])`,
    rows.map((r) => r.id),
  );
  await tx.$executeRawUnsafe(
    `UPDATE settlement_item i SET outcome = NULL, skip_reason = NULL
     FROM settlement_batch b WHERE b.id = i.batch_id AND b.chain_tx_id = ANY($1::uuid[])`,
    rows.map((r) => r.id),
  );
  return rows.length;
}

/** Errors that mean the books refused an event, as opposed to the database or the node failing. */
function isBookingFailure(error: unknown): boolean {
  if (error instanceof BookingError) return true;
  const code = postgresError(error)?.code;
  // check_violation (balance constraints, balanced entries), integrity constraints of the ledger.
  return code === "23514" || code === "23000" || code === "23505";
}

function reasonOf(error: unknown): string {
  return postgresError(error)?.message ?? (error instanceof Error ? error.message : String(error));
}
