// The chart of accounts: the payee operator's books. Every account holds one asset; its kind fixes
// its normal side and whether its balance may go negative (TigerBeetle-style balance constraints,
// enforced by a CHECK in the database).
//
// | kind              | id                                  | normal | >= 0 | what it is                                         |
// |-------------------|-------------------------------------|--------|------|----------------------------------------------------|
// | ESCROW_HOLDINGS   | escrow:<escrow>:<asset>             | debit  | yes  | tokens locked in the escrow contract, all channels  |
// | CHANNEL_AVAILABLE | channel:<channelId>:available       | credit | yes  | the payer's unspent deposit (owed back to the payer)|
// | CHANNEL_OWED      | channel:<channelId>:owed            | credit | yes  | vouchers accepted and not yet claimed on chain      |
// | PAYEE_WALLET      | wallet:<address>:<asset>            | debit  | no   | the payee's own wallet (funded outside the books)   |
// | PAYEE_REVENUE     | revenue:<payee>:<asset>             | credit | no   | income: claimed vouchers                            |
// | GAS_EXPENSE       | gas:<address>:<asset>               | debit  | no   | native coin spent on transaction fees               |
// | FIAT_CASH         | cash:<processor>:<asset>            | debit  | no   | fiat held at a card processor or bank               |
// | FIAT_PAYABLE      | payable:<party>:<asset>             | credit | yes  | fiat owed to a customer or seller                   |
// | ESCROW_PENDING    | escrow-pending:<escrow>:<asset>     | debit  | yes  | deposits seen at the head, not yet confirmed        |
// | CHANNEL_SHORTFALL | channel:<channelId>:shortfall       | debit  | yes  | money spent on the channel that a reorg took away   |
// | FIAT_CLEARING     | clearing:<processor>:<asset>        | debit  | no   | card money at the processor (its platform balance)  |
// | CUSTOMER_CREDIT   | credit:<creditAccountId>            | credit | no   | a buyer's prepaid credit; refunds may take it < 0   |
// | SELLER_PAYABLE    | seller:<seller>:<asset>             | credit | no   | credit spent with a seller, not yet paid out        |
// | PAYOUTS_IN_TRANSIT| payouts:<processor>:<asset>         | credit | yes  | payouts pending at the processor (two-phase)        |
// | EXACT_RECEIVABLE  | exact:<payee>:<asset>:receivable    | debit  | yes  | x402 `exact` transfers submitted, not yet final     |
// | EXACT_CLEARING    | exact:<payee>:<asset>:clearing      | credit | yes  | the same, revenue once the transfer is final        |
//
// Fiat assets (`fiat:USD`) count millionths of the currency's unit, so $0.001 is 1,000 base units.
//
// Invariant per escrow and asset:
//   ESCROW_HOLDINGS + ESCROW_PENDING + Σ CHANNEL_SHORTFALL = Σ CHANNEL_AVAILABLE + Σ CHANNEL_OWED.
// Per payee and asset: EXACT_RECEIVABLE = EXACT_CLEARING = Σ value of the exact payments SUBMITTED.
import type { Address, Hex } from "viem";
import type { AccountKind, Side } from "../generated/prisma/enums.js";
import type { Asset } from "./asset.js";

export type AccountRules = { normalSide: Side; nonNegative: boolean };

export const chartOfAccounts: Record<AccountKind, AccountRules> = {
  ESCROW_HOLDINGS: { normalSide: "DEBIT", nonNegative: true },
  CHANNEL_AVAILABLE: { normalSide: "CREDIT", nonNegative: true },
  CHANNEL_OWED: { normalSide: "CREDIT", nonNegative: true },
  PAYEE_WALLET: { normalSide: "DEBIT", nonNegative: false },
  PAYEE_REVENUE: { normalSide: "CREDIT", nonNegative: false },
  GAS_EXPENSE: { normalSide: "DEBIT", nonNegative: false },
  FIAT_CASH: { normalSide: "DEBIT", nonNegative: false },
  FIAT_PAYABLE: { normalSide: "CREDIT", nonNegative: true },
  ESCROW_PENDING: { normalSide: "DEBIT", nonNegative: true },
  CHANNEL_SHORTFALL: { normalSide: "DEBIT", nonNegative: true },
  FIAT_CLEARING: { normalSide: "DEBIT", nonNegative: false },
  CUSTOMER_CREDIT: { normalSide: "CREDIT", nonNegative: false },
  SELLER_PAYABLE: { normalSide: "CREDIT", nonNegative: false },
  PAYOUTS_IN_TRANSIT: { normalSide: "CREDIT", nonNegative: true },
  EXACT_RECEIVABLE: { normalSide: "DEBIT", nonNegative: true },
  EXACT_CLEARING: { normalSide: "CREDIT", nonNegative: true },
};

export const accountId = {
  escrow: (escrow: Address, asset: Asset) => `escrow:${escrow}:${asset}`,
  escrowPending: (escrow: Address, asset: Asset) => `escrow-pending:${escrow}:${asset}`,
  channelAvailable: (channelId: Hex) => `channel:${channelId}:available`,
  channelOwed: (channelId: Hex) => `channel:${channelId}:owed`,
  channelShortfall: (channelId: Hex) => `channel:${channelId}:shortfall`,
  wallet: (address: Address, asset: Asset) => `wallet:${address}:${asset}`,
  revenue: (payee: Address, asset: Asset) => `revenue:${payee}:${asset}`,
  gas: (address: Address, asset: Asset) => `gas:${address}:${asset}`,
  cash: (processor: string, asset: Asset) => `cash:${processor}:${asset}`,
  payable: (party: string, asset: Asset) => `payable:${party}:${asset}`,
  clearing: (processor: string, asset: Asset) => `clearing:${processor}:${asset}`,
  customerCredit: (creditAccountId: string) => `credit:${creditAccountId}`,
  sellerPayable: (seller: string, asset: Asset) => `seller:${seller}:${asset}`,
  payoutsInTransit: (processor: string, asset: Asset) => `payouts:${processor}:${asset}`,
  exactReceivable: (payee: Address, asset: Asset) => `exact:${payee}:${asset}:receivable`,
  exactClearing: (payee: Address, asset: Asset) => `exact:${payee}:${asset}:clearing`,
};

const kindByPrefix: Record<string, AccountKind> = {
  escrow: "ESCROW_HOLDINGS",
  "escrow-pending": "ESCROW_PENDING",
  wallet: "PAYEE_WALLET",
  revenue: "PAYEE_REVENUE",
  gas: "GAS_EXPENSE",
  cash: "FIAT_CASH",
  payable: "FIAT_PAYABLE",
  clearing: "FIAT_CLEARING",
  credit: "CUSTOMER_CREDIT",
  seller: "SELLER_PAYABLE",
  payouts: "PAYOUTS_IN_TRANSIT",
};

/** The kind an account id names under the scheme above, or undefined for an id outside it. */
export function accountKindOf(id: string): AccountKind | undefined {
  const prefix = id.slice(0, id.indexOf(":"));
  if (prefix === "channel") {
    if (id.endsWith(":available")) return "CHANNEL_AVAILABLE";
    if (id.endsWith(":owed")) return "CHANNEL_OWED";
    if (id.endsWith(":shortfall")) return "CHANNEL_SHORTFALL";
    return undefined;
  }
  if (prefix === "exact") {
    if (id.endsWith(":receivable")) return "EXACT_RECEIVABLE";
    if (id.endsWith(":clearing")) return "EXACT_CLEARING";
    return undefined;
  }
  return kindByPrefix[prefix];
}
