// The gateway's voucher store: channels as last read from the chain, and one payment per accepted
// voucher, each committed together with its VOUCHER_ACCEPTED journal entry. `acceptPaymentsBatch` is
// the paid-request hot path: the gateway group-commits concurrent requests through it, and it costs
// three statements per batch whatever the batch size.
//
// What it enforces is the floor that protects the books, not pricing policy (the gateway's): a
// charge is accepted only if its voucher covers every accepted charge including this one, stays
// within the deposit, is not the voucher of a charge that stands (a voided charge's total may be
// paid again), and the payer's ledger balance pays for it.
import { randomUUID } from "node:crypto";
import type { Hex } from "viem";
import { channelId as channelIdOf, type ChannelConfig, type EscrowLocation } from "../protocol/Channel.js";
import { accountId, chartOfAccounts } from "./accounts.js";
import { toDecimal } from "./amount.js";
import { tokenAsset } from "./asset.js";
import { LedgerError } from "./errors.js";
import { deposit } from "./flows.js";
import { inTransaction, postEntry, reverseEntry, rethrow, type Db, type JsonObject } from "./postings.js";

/** What the chain says about a channel; the watcher refreshes it. */
export type ChannelChainState = {
  deposit: bigint;
  claimedOnChain: bigint;
  /** Unix seconds; null while no withdrawal is requested. */
  withdrawReadyAt: bigint | null;
  closed: boolean;
};

/**
 * Records a channel's terms (immutable, and hashed into its id) and what the chain says about it, and
 * opens its ledger accounts. When the deposit read from the chain grew, the growth is booked as a
 * DEPOSIT entry (key `deposit:<channelId>:<new total>`) in the same transaction, so the channel's
 * deposit and its ledger balance never disagree. Fields left out keep their stored values.
 * Returns the channel id.
 */
export async function saveChannel(
  db: Db,
  channel: ChannelConfig & EscrowLocation & Partial<ChannelChainState>,
): Promise<Hex> {
  const id = channelIdOf(channel, channel) as Hex;
  const asset = tokenAsset(channel.chainId, channel.token);
  const state = {
    ...(channel.deposit !== undefined && { deposit: toDecimal(channel.deposit) }),
    ...(channel.claimedOnChain !== undefined && { claimedOnChain: toDecimal(channel.claimedOnChain) }),
    ...(channel.withdrawReadyAt !== undefined && { withdrawReadyAt: channel.withdrawReadyAt }),
    ...(channel.closed !== undefined && { closed: channel.closed }),
  };
  await inTransaction(db, async (tx) => {
    const [stored] = await tx.$queryRaw<{ deposit: string }[]>`SELECT deposit::text FROM channel WHERE id = ${id} FOR UPDATE`;
    await tx.channel.upsert({
      where: { id },
      create: {
        id,
        chainId: BigInt(channel.chainId),
        escrow: channel.escrow,
        payer: channel.payer,
        payee: channel.payee,
        token: channel.token,
        signer: channel.signer,
        withdrawDelay: channel.withdrawDelay,
        salt: channel.salt,
        asset,
        ...state,
      },
      update: state,
    });
    await tx.ledgerAccount.createMany({
      data: (["CHANNEL_AVAILABLE", "CHANNEL_OWED"] as const).map((kind) => ({
        id: kind === "CHANNEL_AVAILABLE" ? accountId.channelAvailable(id) : accountId.channelOwed(id),
        asset,
        kind,
        ...chartOfAccounts[kind],
      })),
      skipDuplicates: true,
    });
    const previous = stored ? BigInt(stored.deposit) : 0n;
    if (channel.deposit !== undefined && channel.deposit > previous) {
      await postEntry(tx, {
        idempotencyKey: `deposit:${id}:${channel.deposit}`,
        ...deposit({ channelId: id, escrow: channel.escrow, asset, amount: channel.deposit - previous }),
        metadata: { depositTotal: channel.deposit.toString() },
      });
    }
  });
  return id;
}

export type AcceptPaymentInput = {
  channelId: Hex;
  /** When given, the charge is refused unless the channel's accepted total is still this. */
  expectedCumulative?: bigint;
  /** The request's idempotency key; a retry with the same key gets the original payment back. */
  requestId: string;
  cumulativeAmount: bigint;
  price: bigint;
  signature: Hex;
  metadata?: JsonObject;
};

export type AcceptRejection =
  | "CHANNEL_NOT_FOUND"
  | "CHANNEL_CLOSED"
  | "INVALID_PRICE"
  /** The channel's accepted total is no longer the `expectedCumulative` the request was priced on. */
  | "CUMULATIVE_MISMATCH"
  /** A standing (not voided) payment on the channel already holds a voucher for this total. */
  | "VOUCHER_ALREADY_ACCEPTED"
  /** The voucher's cumulative amount does not cover the accepted charges plus this one. */
  | "VOUCHER_BELOW_ACCEPTED"
  /** The voucher promises more than the channel's deposit, so it could not be claimed in full. */
  | "VOUCHER_EXCEEDS_DEPOSIT"
  /** The payer's available balance in the ledger does not cover the price. */
  | "INSUFFICIENT_FUNDS"
  /** The request id was already used on this channel with another voucher or price. */
  | "REQUEST_CONFLICT"
  /** The request was paid before and that payment was voided: a retry needs a new request id. */
  | "REQUEST_VOIDED";

export type AcceptPaymentResult =
  | { ok: true; paymentId: string; journalEntryId: string; replayed: boolean }
  | { ok: false; code: AcceptRejection; message: string };

type ChannelRow = {
  id: string;
  asset: string;
  closed: boolean;
  deposit: string;
  accepted_cumulative: string;
  latest_voucher_amount: string;
  latest_voucher_signature: string | null;
  available: string;
};

type PaymentRow = {
  /** `request` for a payment with one of the batch's request ids, `amount` for a standing one with one of its totals. */
  match: "request" | "amount";
  id: string;
  channel_id: string;
  request_id: string;
  journal_entry_id: string;
  cumulative_amount: string;
  price: string;
  signature: string;
  status: "ACCEPTED" | "VOIDED";
};

/**
 * Accepts many vouchers in one transaction: each becomes a Payment, a VOUCHER_ACCEPTED entry
 * (Dr CHANNEL_AVAILABLE, Cr CHANNEL_OWED) and an update of its channel. Results are in input order;
 * a rejected item does not affect the others. Items on the same channel apply in input order.
 */
export async function acceptPaymentsBatch(db: Db, batch: AcceptPaymentInput[]): Promise<AcceptPaymentResult[]> {
  if (batch.length === 0) return [];
  // Channel ids are stored as viem's hashes are: lowercase hex.
  const items = batch.map((item) => ({ ...item, channelId: item.channelId.toLowerCase() as Hex }));
  return inTransaction(db, async (tx) => {
    const channelIds = [...new Set(items.map((i) => i.channelId))].sort();
    // Locking the channels (in id order) serializes every writer of their vouchers.
    const channelRows = await tx.$queryRaw<ChannelRow[]>`
      SELECT c.id, c.asset, c.closed, c.deposit::text, c.accepted_cumulative::text, c.latest_voucher_amount::text,
             c.latest_voucher_signature, COALESCE(a.credits - a.debits, 0)::text AS available
      FROM jsonb_to_recordset(${JSON.stringify(
        channelIds.map((id) => ({ id, available_account: accountId.channelAvailable(id) })),
      )}::jsonb) AS w(id text, available_account text)
      JOIN channel c ON c.id = w.id
      LEFT JOIN ledger_account a ON a.id = w.available_account
      ORDER BY c.id
      FOR UPDATE OF c`;
    const seen = await tx.$queryRaw<PaymentRow[]>`
      WITH wanted AS (
        SELECT * FROM jsonb_to_recordset(${JSON.stringify(
          items.map((i) => ({ channel_id: i.channelId, request_id: i.requestId, cumulative_amount: i.cumulativeAmount.toString() })),
        )}::jsonb) AS w(channel_id text, request_id text, cumulative_amount numeric)
      )
      SELECT 'request' AS match, p.id, p.channel_id, p.request_id, p.journal_entry_id, p.cumulative_amount::text, p.price::text, p.signature, p.status::text AS status
      FROM payment p JOIN wanted w ON p.channel_id = w.channel_id AND p.request_id = w.request_id
      UNION ALL
      SELECT 'amount', p.id, p.channel_id, p.request_id, p.journal_entry_id, p.cumulative_amount::text, p.price::text, p.signature, p.status::text AS status
      FROM payment p JOIN wanted w ON p.channel_id = w.channel_id AND p.cumulative_amount = w.cumulative_amount
      WHERE p.status = 'ACCEPTED'`;

    const channels = new Map(
      channelRows.map((c) => [
        c.id,
        {
          asset: c.asset,
          closed: c.closed,
          deposit: BigInt(c.deposit),
          accepted: BigInt(c.accepted_cumulative),
          latest: BigInt(c.latest_voucher_amount),
          latestSignature: c.latest_voucher_signature,
          available: BigInt(c.available),
          touched: false,
        },
      ]),
    );
    const standingAmounts = new Set(seen.filter((p) => p.match === "amount").map((p) => amountKey(p.channel_id, BigInt(p.cumulative_amount))));
    const known = new Map(
      seen.filter((p) => p.match === "request").map((p) => [
        requestKey(p.channel_id, p.request_id),
        {
          paymentId: p.id,
          journalEntryId: p.journal_entry_id,
          cumulativeAmount: BigInt(p.cumulative_amount),
          price: BigInt(p.price),
          signature: p.signature,
          voided: p.status === "VOIDED",
        },
      ]),
    );

    /** One record per accepted charge, sent as a single JSON parameter; the SQL derives the entry,
     * its two postings and the payment from it. */
    const accepted: {
      entry_id: string;
      key: string;
      metadata: JsonObject;
      payment_id: string;
      channel_id: string;
      request_id: string;
      cumulative_amount: string;
      price: string;
      signature: string;
      asset: string;
      available_account: string;
      owed_account: string;
    }[] = [];

    const results = items.map((item): AcceptPaymentResult => {
      const reject = (code: AcceptRejection, message: string): AcceptPaymentResult => ({ ok: false, code, message });
      const earlier = known.get(requestKey(item.channelId, item.requestId));
      if (earlier) {
        if (earlier.voided) {
          return reject("REQUEST_VOIDED", `Request ${item.requestId} was paid and then voided; retry it under a new request id.`);
        }
        if (earlier.cumulativeAmount === item.cumulativeAmount && earlier.price === item.price && earlier.signature === item.signature) {
          return { ok: true, paymentId: earlier.paymentId, journalEntryId: earlier.journalEntryId, replayed: true };
        }
        return reject("REQUEST_CONFLICT", `Request ${item.requestId} was already paid on this channel with another voucher; use a new request id.`);
      }
      const channel = channels.get(item.channelId);
      if (!channel) return reject("CHANNEL_NOT_FOUND", `Channel ${item.channelId} is unknown to this gateway; open or register it first.`);
      if (channel.closed) return reject("CHANNEL_CLOSED", `Channel ${item.channelId} is closed; open a new channel.`);
      if (item.price <= 0n) return reject("INVALID_PRICE", `A charge must be positive, not ${item.price}.`);
      if (item.expectedCumulative !== undefined && item.expectedCumulative !== channel.accepted) {
        return reject("CUMULATIVE_MISMATCH", `The channel's accepted total is ${channel.accepted}, not the ${item.expectedCumulative} this charge was priced on; price it again.`);
      }
      if (item.cumulativeAmount < channel.accepted + item.price) {
        return reject("VOUCHER_BELOW_ACCEPTED", `The voucher for ${item.cumulativeAmount} does not cover the ${channel.accepted} already accepted plus this ${item.price}.`);
      }
      if (item.cumulativeAmount > channel.deposit) {
        return reject("VOUCHER_EXCEEDS_DEPOSIT", `The voucher for ${item.cumulativeAmount} exceeds the channel's deposit of ${channel.deposit}; top up the channel.`);
      }
      if (standingAmounts.has(amountKey(item.channelId, item.cumulativeAmount))) {
        return reject("VOUCHER_ALREADY_ACCEPTED", `A standing payment already holds the voucher for ${item.cumulativeAmount} on this channel; sign the next total.`);
      }
      if (item.price > channel.available) {
        return reject("INSUFFICIENT_FUNDS", `The channel has ${channel.available} available, less than the price ${item.price}; top up the channel.`);
      }

      const paymentId = randomUUID();
      const journalEntryId = randomUUID();
      accepted.push({
        entry_id: journalEntryId,
        // Keyed by the request, not the total: a voided charge's total may be paid again.
        key: `payment:${item.channelId}:${item.requestId}`,
        metadata: { ...item.metadata, paymentId, requestId: item.requestId, cumulativeAmount: item.cumulativeAmount.toString() },
        payment_id: paymentId,
        channel_id: item.channelId,
        request_id: item.requestId,
        cumulative_amount: item.cumulativeAmount.toString(),
        price: item.price.toString(),
        signature: item.signature,
        asset: channel.asset,
        available_account: accountId.channelAvailable(item.channelId),
        owed_account: accountId.channelOwed(item.channelId),
      });
      channel.accepted += item.price;
      channel.available -= item.price;
      // The settlement worker claims with the highest voucher; a newer signature for the same total
      // (re-signed after a void) serves as well.
      if (item.cumulativeAmount >= channel.latest) {
        channel.latest = item.cumulativeAmount;
        channel.latestSignature = item.signature;
      }
      standingAmounts.add(amountKey(item.channelId, item.cumulativeAmount));
      channel.touched = true;
      known.set(requestKey(item.channelId, item.requestId), {
        paymentId,
        journalEntryId,
        cumulativeAmount: item.cumulativeAmount,
        price: item.price,
        signature: item.signature,
        voided: false,
      });
      return { ok: true, paymentId, journalEntryId, replayed: false };
    });

    if (accepted.length === 0) return results;
    const updates = [...channels]
      .filter(([, c]) => c.touched)
      .map(([id, c]) => ({ id, accepted: c.accepted.toString(), latest: c.latest.toString(), signature: c.latestSignature }));
    // One statement writes everything; foreign keys and the account-totals trigger run at its end,
    // the balance check of each entry at commit.
    await tx.$executeRaw`
      WITH a AS (
        SELECT * FROM jsonb_to_recordset(${JSON.stringify(accepted)}::jsonb) AS a(
          entry_id uuid, key text, metadata jsonb, payment_id uuid, channel_id text, request_id text,
          cumulative_amount numeric, price numeric, signature text, asset text, available_account text, owed_account text)
      ), entries AS (
        INSERT INTO journal_entry (id, idempotency_key, kind, metadata, posting_count)
        SELECT entry_id, key, 'VOUCHER_ACCEPTED'::entry_kind, metadata, 2 FROM a
      ), postings AS (
        INSERT INTO posting (entry_id, account_id, asset, side, amount)
        SELECT entry_id, available_account, asset, 'DEBIT'::side, price FROM a
        UNION ALL
        SELECT entry_id, owed_account, asset, 'CREDIT'::side, price FROM a
      ), payments AS (
        INSERT INTO payment (id, channel_id, request_id, cumulative_amount, price, signature, journal_entry_id)
        SELECT payment_id, channel_id, request_id, cumulative_amount, price, signature, entry_id FROM a
      )
      UPDATE channel c
      SET accepted_cumulative = u.accepted, latest_voucher_amount = u.latest, latest_voucher_signature = u.signature, updated_at = now()
      FROM jsonb_to_recordset(${JSON.stringify(updates)}::jsonb) AS u(id text, accepted numeric, latest numeric, signature text)
      WHERE c.id = u.id`.catch((error) => rethrow(error));
    return results;
  });
}

export type VoidResult = { paymentId: string; voidEntryId: string; replayed: boolean };

/**
 * Voids an accepted charge (e.g. the paid request failed): reverses its journal entry as
 * VOUCHER_VOIDED and takes its price off the channel's accepted total. The voucher stays held.
 */
export async function voidPayment(
  db: Db,
  paymentId: string,
  options: { idempotencyKey?: string; metadata?: JsonObject } = {},
): Promise<VoidResult> {
  const idempotencyKey = options.idempotencyKey ?? `voucher-void:${paymentId}`;
  return inTransaction(db, async (tx) => {
    const found = await tx.payment.findUnique({ where: { id: paymentId }, select: { channelId: true } });
    if (!found) throw new LedgerError("PAYMENT_NOT_FOUND", `There is no payment ${paymentId} to void.`);
    await tx.$queryRaw`SELECT 1 FROM channel WHERE id = ${found.channelId} FOR UPDATE`;
    const payment = (await tx.payment.findUnique({ where: { id: paymentId }, include: { voidEntry: true } }))!;
    if (payment.status === "VOIDED") {
      if (payment.voidEntry?.idempotencyKey === idempotencyKey) {
        return { paymentId, voidEntryId: payment.voidEntry.id, replayed: true };
      }
      throw new LedgerError("PAYMENT_ALREADY_VOIDED", `Payment ${paymentId} was already voided.`);
    }
    const { entry } = await reverseEntry(tx, payment.journalEntryId, idempotencyKey, {
      kind: "VOUCHER_VOIDED",
      metadata: { ...options.metadata, paymentId },
    });
    await tx.payment.update({ where: { id: paymentId }, data: { status: "VOIDED", voidEntryId: entry.id } });
    await tx.$executeRaw`
      UPDATE channel SET accepted_cumulative = accepted_cumulative - ${payment.price.toFixed()}::numeric, updated_at = now()
      WHERE id = ${payment.channelId}`;
    return { paymentId, voidEntryId: entry.id, replayed: false };
  });
}

function requestKey(channelId: string, requestId: string): string {
  return `${channelId}\u0000${requestId}`;
}

function amountKey(channelId: string, cumulativeAmount: bigint): string {
  return `${channelId}\u0000${cumulativeAmount}`;
}
