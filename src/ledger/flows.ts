// The journal entries of paychan's money flows, in the payee operator's books (chart of accounts in
// src/ledger/accounts.ts). Pure functions: each returns an entry's kind and postings, to be posted
// with `postEntry(tx, { idempotencyKey, ...flow })`.
//
// | flow              | debit                                   | credit                          |
// |-------------------|-----------------------------------------|---------------------------------|
// | deposit / top-up  | ESCROW_HOLDINGS                         | CHANNEL_AVAILABLE               |
// | voucher accepted  | CHANNEL_AVAILABLE                       | CHANNEL_OWED                    |
// | voucher voided    | CHANNEL_OWED                            | CHANNEL_AVAILABLE               |
// | claim             | CHANNEL_OWED (+ CHANNEL_AVAILABLE for   | ESCROW_HOLDINGS                 |
// |                   |   any part beyond what was accepted)    |                                 |
// |                   | PAYEE_WALLET                            | PAYEE_REVENUE                   |
// | refund to payer   | CHANNEL_AVAILABLE (+ CHANNEL_OWED for   | ESCROW_HOLDINGS                 |
// |                   |   accepted vouchers never claimed)      |                                 |
// | gas fee (native)  | GAS_EXPENSE                             | PAYEE_WALLET                    |
// | exact submitted   | EXACT_RECEIVABLE                        | EXACT_CLEARING                  |
// | exact settled     | EXACT_CLEARING                          | EXACT_RECEIVABLE                |
// |                   | PAYEE_WALLET                            | PAYEE_REVENUE                   |
// | exact failed      | the submitted entry reversed (EXACT_FAILED)                               |
// | fiat top-up, card | FIAT_CASH                               | FIAT_PAYABLE (the customer)     |
// | payout            | FIAT_PAYABLE                            | FIAT_CASH                       |
//
// Prepaid credit (src/ledger/credit.ts; `fiat:<currency>` in millionths of its unit):
//
// | flow                   | debit                          | credit                                |
// |------------------------|--------------------------------|---------------------------------------|
// | card top-up (webhook)  | FIAT_CLEARING                  | CUSTOMER_CREDIT                       |
// | refund / dispute       | CUSTOMER_CREDIT                | FIAT_CLEARING                         |
// | dispute won            | FIAT_CLEARING                  | CUSTOMER_CREDIT                       |
// | credit spent (booked)  | CUSTOMER_CREDIT                | SELLER_PAYABLE (per seller)           |
// | credit spend voided    | SELLER_PAYABLE                 | CUSTOMER_CREDIT                       |
// | payout pending         | SELLER_PAYABLE                 | PAYOUTS_IN_TRANSIT                    |
// | payout posted          | PAYOUTS_IN_TRANSIT             | FIAT_CLEARING                         |
// | payout voided          | PAYOUTS_IN_TRANSIT             | SELLER_PAYABLE                        |
import type { Address, Hex } from "viem";
import type { EntryKind } from "../generated/prisma/enums.js";
import { accountId } from "./accounts.js";
import type { Asset } from "./asset.js";
import type { PostingInput } from "./postings.js";

export type Flow = { kind: EntryKind; postings: PostingInput[] };

type ChannelMoney = { channelId: Hex; escrow: Address; asset: Asset; amount: bigint };

/** Tokens the payer locked in the escrow for this channel (open or top-up). */
export function deposit({ channelId, escrow, asset, amount }: ChannelMoney): Flow {
  return {
    kind: "DEPOSIT",
    postings: [
      { account: accountId.escrow(escrow, asset), asset, debit: amount },
      { account: accountId.channelAvailable(channelId), asset, credit: amount },
    ],
  };
}

/** A charge paid by a voucher: part of the payer's deposit is now owed to the payee. */
export function voucherAccepted({ channelId, asset, amount }: Omit<ChannelMoney, "escrow">): Flow {
  return {
    kind: "VOUCHER_ACCEPTED",
    postings: [
      { account: accountId.channelAvailable(channelId), asset, debit: amount },
      { account: accountId.channelOwed(channelId), asset, credit: amount },
    ],
  };
}

/** A charge voided after it was accepted (its request failed): the reverse of `voucherAccepted`. */
export function voucherVoided({ channelId, asset, amount }: Omit<ChannelMoney, "escrow">): Flow {
  return {
    kind: "VOUCHER_VOIDED",
    postings: [
      { account: accountId.channelOwed(channelId), asset, debit: amount },
      { account: accountId.channelAvailable(channelId), asset, credit: amount },
    ],
  };
}

/**
 * The payee's on-chain claim of `amount` new tokens. The claim uses the latest voucher, which can
 * exceed the accepted charges when some were voided afterwards: `owed` (the balance of
 * CHANNEL_OWED) is settled first and the rest is taken from CHANNEL_AVAILABLE, as it was on chain.
 */
export function claim({
  channelId,
  escrow,
  asset,
  amount,
  owed,
  payee,
}: ChannelMoney & { owed: bigint; payee: Address }): Flow {
  const fromOwed = amount < owed ? amount : owed;
  const postings: PostingInput[] = [];
  if (fromOwed > 0n) postings.push({ account: accountId.channelOwed(channelId), asset, debit: fromOwed });
  if (amount > fromOwed) postings.push({ account: accountId.channelAvailable(channelId), asset, debit: amount - fromOwed });
  postings.push(
    { account: accountId.escrow(escrow, asset), asset, credit: amount },
    { account: accountId.wallet(payee, asset), asset, debit: amount },
    { account: accountId.revenue(payee, asset), asset, credit: amount },
  );
  return { kind: "CLAIM", postings };
}

/**
 * The unspent deposit returned to the payer when the channel closes. With `available` (the balance of
 * CHANNEL_AVAILABLE), a refund larger than it takes the rest from CHANNEL_OWED, as it was on chain:
 * vouchers accepted but not claimed before the close went back to the payer, never to be revenue.
 */
export function refund({ channelId, escrow, asset, amount, available }: ChannelMoney & { available?: bigint }): Flow {
  const fromAvailable = available !== undefined && available < amount ? available : amount;
  const postings: PostingInput[] = [];
  if (fromAvailable > 0n) postings.push({ account: accountId.channelAvailable(channelId), asset, debit: fromAvailable });
  if (amount > fromAvailable) postings.push({ account: accountId.channelOwed(channelId), asset, debit: amount - fromAvailable });
  postings.push({ account: accountId.escrow(escrow, asset), asset, credit: amount });
  return { kind: "REFUND", postings };
}

/** Native coin a wallet of the operator spent on a transaction (a claim, a close). */
export function gasFee({ wallet, asset, amount }: { wallet: Address; asset: Asset; amount: bigint }): Flow {
  return {
    kind: "GAS_FEE",
    postings: [
      { account: accountId.gas(wallet, asset), asset, debit: amount },
      { account: accountId.wallet(wallet, asset), asset, credit: amount },
    ],
  };
}

type ExactMoney = { payee: Address; asset: Asset; amount: bigint };

/**
 * An x402 `exact` payment (an EIP-3009 transfer the payer signed to the payee) handed to the outbox:
 * the payee expects `amount` in its own wallet, not yet final. Not revenue until the transfer lands.
 */
export function exactSubmitted({ payee, asset, amount }: ExactMoney): Flow {
  return {
    kind: "EXACT_SUBMITTED",
    postings: [
      { account: accountId.exactReceivable(payee, asset), asset, debit: amount },
      { account: accountId.exactClearing(payee, asset), asset, credit: amount },
    ],
  };
}

/** The transfer of an exact payment is final on chain: the receivable is cleared, and the tokens
 * in the payee's wallet are revenue. */
export function exactSettled({ payee, asset, amount }: ExactMoney): Flow {
  return {
    kind: "EXACT_SETTLED",
    postings: [
      { account: accountId.exactClearing(payee, asset), asset, debit: amount },
      { account: accountId.exactReceivable(payee, asset), asset, credit: amount },
      { account: accountId.wallet(payee, asset), asset, debit: amount },
      { account: accountId.revenue(payee, asset), asset, credit: amount },
    ],
  };
}

type FiatMoney = { processor: string; party: string; asset: Asset; amount: bigint };

/** A customer paid by card: cash arrives at the processor and is owed to the customer as credit. */
export function fiatTopUp({ processor, party, asset, amount }: FiatMoney): Flow {
  return {
    kind: "FIAT_TOPUP",
    postings: [
      { account: accountId.cash(processor, asset), asset, debit: amount },
      { account: accountId.payable(party, asset), asset, credit: amount },
    ],
  };
}

/** Fiat owed to a party (a customer's unused credit, a seller's earnings) paid out from cash. */
export function payout({ processor, party, asset, amount }: FiatMoney): Flow {
  return {
    kind: "PAYOUT",
    postings: [
      { account: accountId.payable(party, asset), asset, debit: amount },
      { account: accountId.cash(processor, asset), asset, credit: amount },
    ],
  };
}

type CardMoney = { processor: string; creditAccount: string; asset: Asset; amount: bigint };

/** A card payment arrived at the processor and became the buyer's prepaid credit. */
export function cardTopUp({ processor, creditAccount, asset, amount }: CardMoney): Flow {
  return {
    kind: "FIAT_TOPUP",
    postings: [
      { account: accountId.clearing(processor, asset), asset, debit: amount },
      { account: accountId.customerCredit(creditAccount), asset, credit: amount },
    ],
  };
}

/** Card money given back (a refund) or taken back by the card network (a dispute): the credit
 * shrinks, possibly below zero when it was already spent. A dispute won restores it. */
export function cardReversal({ processor, creditAccount, asset, amount, kind }: CardMoney & { kind: "FIAT_REFUND" | "FIAT_DISPUTE" }): Flow {
  return {
    kind,
    postings: [
      { account: accountId.customerCredit(creditAccount), asset, debit: amount },
      { account: accountId.clearing(processor, asset), asset, credit: amount },
    ],
  };
}

export function disputeWon({ processor, creditAccount, asset, amount }: CardMoney): Flow {
  return { ...cardTopUp({ processor, creditAccount, asset, amount }), kind: "FIAT_DISPUTE_WON" };
}

/** A paid request voided after the journal held it: the seller's share goes back to the buyer. */
export function creditVoided({ creditAccount, seller, asset, amount }: { creditAccount: string; seller: string; asset: Asset; amount: bigint }): Flow {
  return {
    kind: "CREDIT_VOIDED",
    postings: [
      { account: accountId.sellerPayable(seller, asset), asset, debit: amount },
      { account: accountId.customerCredit(creditAccount), asset, credit: amount },
    ],
  };
}

type PayoutMoney = { processor: string; seller: string; asset: Asset; amount: bigint };

/** Two-phase payout, first phase: the amount leaves the seller's balance and waits in transit. */
export function payoutPending({ processor, seller, asset, amount }: PayoutMoney): Flow {
  return {
    kind: "PAYOUT_PENDING",
    postings: [
      { account: accountId.sellerPayable(seller, asset), asset, debit: amount },
      { account: accountId.payoutsInTransit(processor, asset), asset, credit: amount },
    ],
  };
}

/** The payout left the processor balance for the seller's account. */
export function payoutPosted({ processor, asset, amount }: Omit<PayoutMoney, "seller">): Flow {
  return {
    kind: "PAYOUT_POSTED",
    postings: [
      { account: accountId.payoutsInTransit(processor, asset), asset, debit: amount },
      { account: accountId.clearing(processor, asset), asset, credit: amount },
    ],
  };
}

/** The payout failed: the amount is back in the seller's balance. */
export function payoutVoided({ processor, seller, asset, amount }: PayoutMoney): Flow {
  return {
    kind: "PAYOUT_VOIDED",
    postings: [
      { account: accountId.payoutsInTransit(processor, asset), asset, debit: amount },
      { account: accountId.sellerPayable(seller, asset), asset, credit: amount },
    ],
  };
}
