// The books of a few channels inside one database transaction: loaded once under their row locks,
// changed in memory by what the chain says — deposits seen at the head and confirmed, claims,
// refunds, withdrawals, reorgs — and written back in a handful of statements however many facts there
// were. Every rule about what a chain fact does to the books lives here, so the gateway (first sight,
// top-ups), the chain mirror (confirmed events), the watcher's head scan and the reorg rewind cannot
// disagree.
//
// The deposit's two phases. A deposit seen at the head but not yet CONFIRMATIONS deep is pending:
//   seen         Dr ESCROW_PENDING            Cr CHANNEL_AVAILABLE         (DEPOSIT_PENDING)
//   confirmed    Dr ESCROW_HOLDINGS           Cr ESCROW_PENDING            (posted: DEPOSIT)
//   dropped      Dr CHANNEL_AVAILABLE         Cr ESCROW_PENDING            (voided: DEPOSIT_VOIDED)
// A deposit confirmed without having been seen first goes straight to Dr ESCROW_HOLDINGS / Cr
// CHANNEL_AVAILABLE. The gateway lets a payer spend a pending deposit only up to a cap (the accept
// statement reads deposit, deposit_seen and the cap).
//
// When a reorg takes away money that vouchers already spent, CHANNEL_AVAILABLE cannot pay it back: the
// part it cannot is debited to the channel's CHANNEL_SHORTFALL instead, and the channel is blocked (the
// accept statement serves nothing on a blocked channel). The books still balance, nothing is deleted,
// and reconciliation names the shortfall as a realised loss. If the money comes back (the deposit is
// mined again), the shortfall is recovered from it first and the channel unblocked.
import { randomUUID } from "node:crypto";
import { getAddress, type Address, type Hex } from "viem";
import type { EntryKind, Side } from "../generated/prisma/enums.js";
import { accountId, accountKindOf, chartOfAccounts } from "./accounts.js";
import type { Asset } from "./asset.js";
import { bookAccepted } from "./booking.js";
import type { ChannelChainState } from "./channels.js";
import type { JsonObject, Tx } from "./postings.js";
import { sqlOf } from "./sql.js";

/** Why nothing is served on a channel. */
export const BLOCKED = {
  /** A reorg took away money the channel had already spent. */
  shortfall: "reorg_shortfall",
  /** The chain mirror could not book one of its events (see chain_event_failure). */
  mirrorFailed: "mirror_failed",
} as const;

export type ChannelBook = {
  id: Hex;
  escrow: Address;
  asset: Asset;
  payee: Address;
  /** Confirmed state. */
  deposit: bigint;
  claimedOnChain: bigint;
  withdrawReadyAt: bigint | null;
  closed: boolean;
  /** Head state. */
  depositSeen: bigint;
  withdrawReadyAtSeen: bigint | null;
  closedSeen: boolean;
  /** What ESCROW_PENDING holds for this channel. */
  pendingBooked: bigint;
  blockedReason: string | null;
  /** Ledger balances, kept in step with the entries below. */
  available: bigint;
  owed: bigint;
  shortfall: bigint;
};

export type Line = { account: string; asset: Asset; side: Side; amount: bigint };

export type PreparedEntry = {
  id: string;
  idempotencyKey: string;
  kind: EntryKind;
  reverses: string | null;
  metadata: JsonObject;
  lines: Line[];
};

/** A fact the books cannot absorb (the chain paid out more than the channel holds in the ledger). */
export class BookingError extends Error {
  override readonly name = "BookingError";
}

export class ChannelBooks {
  readonly entries: PreparedEntry[] = [];
  private readonly changed = new Set<Hex>();

  private constructor(readonly books: Map<Hex, ChannelBook>) {}

  /**
   * Locks the channels' rows (in id order, like every writer of them), books their accepted vouchers
   * (a claim or refund must see every accepted voucher as owed), and loads their state and balances.
   */
  static async load(tx: Tx, ids: readonly Hex[]): Promise<ChannelBooks> {
    const wanted = [...new Set(ids.map((id) => id.toLowerCase() as Hex))].sort();
    if (wanted.length > 0) {
      await tx.$queryRawUnsafe(`SELECT 1 FROM channel WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`, wanted);
      await bookAccepted(sqlOf(tx), wanted, { isolate: false });
    }
    const rows = wanted.length === 0 ? [] : await tx.$queryRawUnsafe<BookRow[]>(LOAD, wanted);
    return new ChannelBooks(new Map(rows.map((r) => [r.id as Hex, bookOf(r)])));
  }

  get(id: Hex): ChannelBook | undefined {
    return this.books.get(id.toLowerCase() as Hex);
  }

  /** A deposit total the chain confirmed (ChannelOpened, Deposited): the growth is booked, from the
   * pending account as far as it was seen pending. Returns the entry's id, or null if nothing grew. */
  confirmDeposit(book: ChannelBook, total: bigint, key: string, metadata: JsonObject): string | null {
    const growth = total - book.deposit;
    book.deposit = total > book.deposit ? total : book.deposit;
    book.depositSeen = max(book.depositSeen, book.deposit);
    this.touch(book);
    if (growth <= 0n) return null;
    const fromPending = min(growth, book.pendingBooked);
    const fresh = growth - fromPending;
    const lines: Line[] = [debit(accountId.escrow(book.escrow, book.asset), book.asset, growth)];
    if (fromPending > 0n) lines.push(credit(accountId.escrowPending(book.escrow, book.asset), book.asset, fromPending));
    if (fresh > 0n) lines.push(credit(accountId.channelAvailable(book.id), book.asset, fresh));
    return this.post(book, "DEPOSIT", key, { ...metadata, depositTotal: total.toString() }, [...lines, ...this.recovery(book, fresh)]);
  }

  /** A claim the chain paid (Claimed): from what is owed first, then from what is available. */
  claim(book: ChannelBook, amount: bigint, totalClaimed: bigint, key: string, metadata: JsonObject): string {
    if (amount > book.owed + book.available) {
      throw new BookingError(
        `Claimed ${amount} on channel ${book.id}, but the ledger holds only ${book.owed} owed and ${book.available} available for it.`,
      );
    }
    book.claimedOnChain = max(book.claimedOnChain, totalClaimed);
    this.touch(book);
    const fromOwed = min(amount, book.owed);
    const lines: Line[] = [];
    if (fromOwed > 0n) lines.push(debit(accountId.channelOwed(book.id), book.asset, fromOwed));
    if (amount > fromOwed) lines.push(debit(accountId.channelAvailable(book.id), book.asset, amount - fromOwed));
    lines.push(
      credit(accountId.escrow(book.escrow, book.asset), book.asset, amount),
      debit(accountId.wallet(book.payee, book.asset), book.asset, amount),
      credit(accountId.revenue(book.payee, book.asset), book.asset, amount),
    );
    return this.post(book, "CLAIM", key, { ...metadata, totalClaimed: totalClaimed.toString() }, lines);
  }

  withdrawalRequested(book: ChannelBook, readyAt: bigint): void {
    if (book.closed) return;
    book.withdrawReadyAt = readyAt;
    book.withdrawReadyAtSeen = readyAt;
    this.touch(book);
  }

  /** The channel closed (ChannelClosed): the refund goes back to the payer, from what is available
   * first, then from what was accepted and never claimed. Returns the refund's entry id, if any. */
  close(book: ChannelBook, totalClaimed: bigint, refunded: bigint, key: string, metadata: JsonObject): string | null {
    // A deposit still pending cannot outlive the close that settled the channel.
    this.settlePending(book, 0n);
    if (refunded > book.available + book.owed) {
      throw new BookingError(`Refunded ${refunded} on channel ${book.id}, but the ledger holds only ${book.available + book.owed} for it.`);
    }
    // The escrow keeps deposit = claimed for a closed channel; the view says what getChannel says.
    Object.assign(book, {
      closed: true,
      closedSeen: true,
      withdrawReadyAt: null,
      withdrawReadyAtSeen: null,
      claimedOnChain: totalClaimed,
      deposit: totalClaimed,
      depositSeen: totalClaimed,
    });
    this.touch(book);
    if (refunded === 0n) return null;
    const fromAvailable = min(refunded, book.available);
    const lines: Line[] = [];
    if (fromAvailable > 0n) lines.push(debit(accountId.channelAvailable(book.id), book.asset, fromAvailable));
    if (refunded > fromAvailable) lines.push(debit(accountId.channelOwed(book.id), book.asset, refunded - fromAvailable));
    lines.push(credit(accountId.escrow(book.escrow, book.asset), book.asset, refunded));
    return this.post(book, "REFUND", key, { ...metadata, totalClaimed: totalClaimed.toString() }, lines);
  }

  /**
   * What the chain's head says now (the gateway's first sight or a top-up, the watcher's head scan, a
   * rewind): the head state is recorded, and the pending deposit follows it — more seen is booked
   * pending, less seen (a reorg dropped it) voids the difference.
   */
  seen(book: ChannelBook, head: ChannelChainState): void {
    book.depositSeen = head.closed ? book.deposit : head.deposit;
    book.withdrawReadyAtSeen = head.withdrawReadyAt;
    book.closedSeen = head.closed;
    this.touch(book);
    this.settlePending(book, book.closed ? 0n : max(0n, book.depositSeen - book.deposit));
  }

  /**
   * Reverses an entry whose block a reorg dropped: the mirror image of its lines, except that what
   * CHANNEL_AVAILABLE cannot give back (vouchers spent it) is debited to CHANNEL_SHORTFALL.
   */
  reverse(book: ChannelBook, original: { id: string; lines: Line[] }, key: string, metadata: JsonObject): string {
    const available = accountId.channelAvailable(book.id);
    let room = book.available;
    const lines: Line[] = [];
    // Credits to AVAILABLE first, so that debits of the same reversal can use them.
    for (const line of original.lines) if (line.account === available && line.side === "DEBIT") room += line.amount;
    for (const line of original.lines) {
      if (line.account === available && line.side === "CREDIT") {
        const back = min(line.amount, room);
        room -= back;
        if (back > 0n) lines.push(debit(available, line.asset, back));
        if (line.amount > back) lines.push(debit(accountId.channelShortfall(book.id), line.asset, line.amount - back));
      } else {
        lines.push({ ...line, side: line.side === "DEBIT" ? "CREDIT" : "DEBIT" });
      }
    }
    this.touch(book);
    return this.post(book, "REVERSAL", key, metadata, lines, original.id);
  }

  /** Sets the confirmed state a rewind recomputed from the events still on the chain. */
  confirmedState(book: ChannelBook, state: Pick<ChannelBook, "deposit" | "claimedOnChain" | "withdrawReadyAt" | "closed">): void {
    Object.assign(book, state);
    this.touch(book);
  }

  /** Marks a channel whose events cannot be booked, or clears that mark. */
  block(book: ChannelBook, reason: string | null): void {
    book.blockedReason = reason;
    this.touch(book);
  }

  /** Brings the pending account to `target` for this channel: books more pending, or voids some. */
  private settlePending(book: ChannelBook, target: bigint): void {
    const difference = target - book.pendingBooked;
    if (difference === 0n) return;
    const pending = accountId.escrowPending(book.escrow, book.asset);
    const available = accountId.channelAvailable(book.id);
    const key = `pending:${book.id}:${randomUUID()}`;
    const metadata = { depositSeen: book.depositSeen.toString(), depositConfirmed: book.deposit.toString() };
    if (difference > 0n) {
      const lines = [debit(pending, book.asset, difference), credit(available, book.asset, difference)];
      this.post(book, "DEPOSIT_PENDING", key, metadata, [...lines, ...this.recovery(book, difference)]);
      return;
    }
    const voided = -difference;
    const back = min(voided, book.available);
    const lines: Line[] = [];
    if (back > 0n) lines.push(debit(available, book.asset, back));
    if (voided > back) lines.push(debit(accountId.channelShortfall(book.id), book.asset, voided - back));
    lines.push(credit(pending, book.asset, voided));
    this.post(book, "DEPOSIT_VOIDED", key, metadata, lines);
  }

  /** Lines that take a shortfall back out of money that just became available. */
  private recovery(book: ChannelBook, arriving: bigint): Line[] {
    const recovered = min(book.shortfall, arriving);
    if (recovered <= 0n) return [];
    return [
      debit(accountId.channelAvailable(book.id), book.asset, recovered),
      credit(accountId.channelShortfall(book.id), book.asset, recovered),
    ];
  }

  private post(book: ChannelBook, kind: EntryKind, key: string, metadata: JsonObject, lines: Line[], reverses: string | null = null): string {
    const id = randomUUID();
    this.entries.push({ id, idempotencyKey: key, kind, reverses, metadata, lines });
    for (const line of lines) this.apply(book, line);
    if (book.shortfall > 0n && book.blockedReason === null) book.blockedReason = BLOCKED.shortfall;
    if (book.shortfall === 0n && book.blockedReason === BLOCKED.shortfall) book.blockedReason = null;
    this.touch(book);
    return id;
  }

  private apply(book: ChannelBook, line: Line): void {
    const signed = line.side === "CREDIT" ? line.amount : -line.amount;
    if (line.account === accountId.channelAvailable(book.id)) book.available += signed;
    else if (line.account === accountId.channelOwed(book.id)) book.owed += signed;
    else if (line.account === accountId.channelShortfall(book.id)) book.shortfall -= signed;
    else if (line.account === accountId.escrowPending(book.escrow, book.asset)) book.pendingBooked -= signed;
  }

  private touch(book: ChannelBook): void {
    this.changed.add(book.id);
  }

  /** Writes the entries and the changed channels: a few statements, however many facts there were. */
  async write(tx: Tx): Promise<void> {
    await writeEntries(tx, this.entries);
    const rows = [...this.changed].map((id) => this.books.get(id)!);
    if (rows.length === 0) return;
    await tx.$executeRawUnsafe(
      `UPDATE channel c SET deposit = u.deposit, claimed_on_chain = u.claimed, withdraw_ready_at = u.ready_at, closed = u.closed,
              deposit_seen = u.deposit_seen, withdraw_ready_at_seen = u.ready_at_seen, closed_seen = u.closed_seen,
              pending_booked = u.pending_booked, blocked_reason = u.blocked_reason, updated_at = now()
       FROM jsonb_to_recordset($1::jsonb) AS u(id text, deposit numeric, claimed numeric, ready_at bigint, closed boolean,
            deposit_seen numeric, ready_at_seen bigint, closed_seen boolean, pending_booked numeric, blocked_reason text)
       WHERE c.id = u.id`,
      JSON.stringify(
        rows.map((b) => ({
          id: b.id,
          deposit: b.deposit.toString(),
          claimed: b.claimedOnChain.toString(),
          ready_at: b.withdrawReadyAt?.toString() ?? null,
          closed: b.closed,
          deposit_seen: b.depositSeen.toString(),
          ready_at_seen: b.withdrawReadyAtSeen?.toString() ?? null,
          closed_seen: b.closedSeen,
          pending_booked: b.pendingBooked.toString(),
          blocked_reason: b.blockedReason,
        })),
      ),
    );
    this.entries.length = 0;
    this.changed.clear();
  }
}

/**
 * Inserts prepared entries and their postings in two statements, creating the accounts they name
 * first. The ledger's triggers check each entry's balance at commit and keep account totals.
 */
export async function writeEntries(tx: Tx, entries: PreparedEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const accounts = new Map<string, Asset>();
  for (const e of entries) for (const l of e.lines) accounts.set(l.account, l.asset);
  const specs = [...accounts].map(([id, asset]) => {
    const kind = accountKindOf(id);
    if (!kind) throw new Error(`account ${id} names no kind in the chart of accounts`);
    return { id, asset, kind, ...chartOfAccounts[kind] };
  });
  await tx.$executeRawUnsafe(
    `INSERT INTO ledger_account (id, asset, kind, normal_side, non_negative)
     SELECT a.id, a.asset, a.kind::account_kind, a.normal_side::side, a.non_negative
     FROM jsonb_to_recordset($1::jsonb) AS a(id text, asset text, kind text, normal_side text, non_negative boolean)
     ORDER BY a.id
     ON CONFLICT (id) DO NOTHING`,
    JSON.stringify(specs.map((s) => ({ id: s.id, asset: s.asset, kind: s.kind, normal_side: s.normalSide, non_negative: s.nonNegative }))),
  );
  await tx.$executeRawUnsafe(
    `INSERT INTO journal_entry (id, idempotency_key, kind, reverses_entry_id, metadata, posting_count)
     SELECT e.id, e.key, e.kind::entry_kind, e.reverses, e.metadata, e.posting_count
     FROM jsonb_to_recordset($1::jsonb) AS e(id uuid, key text, kind text, reverses uuid, metadata jsonb, posting_count int)`,
    JSON.stringify(entries.map((e) => ({ id: e.id, key: e.idempotencyKey, kind: e.kind, reverses: e.reverses, metadata: e.metadata, posting_count: e.lines.length }))),
  );
  await tx.$executeRawUnsafe(
    `INSERT INTO posting (entry_id, account_id, asset, side, amount)
     SELECT p.entry_id, p.account_id, p.asset, p.side::side, p.amount
     FROM jsonb_to_recordset($1::jsonb) AS p(entry_id uuid, account_id text, asset text, side text, amount numeric)`,
    JSON.stringify(entries.flatMap((e) => e.lines.map((l) => ({ entry_id: e.id, account_id: l.account, asset: l.asset, side: l.side, amount: l.amount.toString() })))),
  );
}

/** The lines of mirrored entries, for reversing them. */
export async function entryLines(tx: Tx, entryIds: string[]): Promise<Map<string, Line[]>> {
  if (entryIds.length === 0) return new Map();
  const rows = await tx.$queryRawUnsafe<{ entry_id: string; account_id: string; asset: string; side: Side; amount: string }[]>(
    `SELECT entry_id::text, account_id, asset, side::text AS side, amount::text FROM posting WHERE entry_id = ANY($1::uuid[]) ORDER BY id`,
    entryIds,
  );
  const lines = new Map<string, Line[]>();
  for (const r of rows) {
    const list = lines.get(r.entry_id) ?? [];
    list.push({ account: r.account_id, asset: r.asset as Asset, side: r.side, amount: BigInt(r.amount) });
    lines.set(r.entry_id, list);
  }
  return lines;
}

type BookRow = {
  id: string;
  escrow: string;
  asset: string;
  payee: string;
  deposit: string;
  claimed_on_chain: string;
  withdraw_ready_at: string | null;
  closed: boolean;
  deposit_seen: string;
  withdraw_ready_at_seen: string | null;
  closed_seen: boolean;
  pending_booked: string;
  blocked_reason: string | null;
  available: string;
  owed: string;
  shortfall: string;
};

const LOAD = `
  SELECT c.id, c.escrow, c.asset, c.payee, c.deposit::text, c.claimed_on_chain::text, c.withdraw_ready_at::text, c.closed,
         c.deposit_seen::text, c.withdraw_ready_at_seen::text, c.closed_seen, c.pending_booked::text, c.blocked_reason,
         COALESCE(av.credits - av.debits, 0)::text AS available,
         COALESCE(ow.credits - ow.debits, 0)::text AS owed,
         COALESCE(sh.debits - sh.credits, 0)::text AS shortfall
  FROM channel c
  LEFT JOIN ledger_account av ON av.id = 'channel:' || c.id || ':available'
  LEFT JOIN ledger_account ow ON ow.id = 'channel:' || c.id || ':owed'
  LEFT JOIN ledger_account sh ON sh.id = 'channel:' || c.id || ':shortfall'
  WHERE c.id = ANY($1::text[])`;

function bookOf(r: BookRow): ChannelBook {
  return {
    id: r.id as Hex,
    // Account ids name the escrow checksummed, however the row spells it.
    escrow: getAddress(r.escrow),
    asset: r.asset as Asset,
    payee: getAddress(r.payee),
    deposit: BigInt(r.deposit),
    claimedOnChain: BigInt(r.claimed_on_chain),
    withdrawReadyAt: r.withdraw_ready_at === null ? null : BigInt(r.withdraw_ready_at),
    closed: r.closed,
    depositSeen: BigInt(r.deposit_seen),
    withdrawReadyAtSeen: r.withdraw_ready_at_seen === null ? null : BigInt(r.withdraw_ready_at_seen),
    closedSeen: r.closed_seen,
    pendingBooked: BigInt(r.pending_booked),
    blockedReason: r.blocked_reason,
    available: BigInt(r.available),
    owed: BigInt(r.owed),
    shortfall: BigInt(r.shortfall),
  };
}

const debit = (account: string, asset: Asset, amount: bigint): Line => ({ account, asset, side: "DEBIT", amount });
const credit = (account: string, asset: Asset, amount: bigint): Line => ({ account, asset, side: "CREDIT", amount });
const min = (a: bigint, b: bigint) => (a < b ? a : b);
const max = (a: bigint, b: bigint) => (a > b ? a : b);
