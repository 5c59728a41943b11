// A card processor, as paychan needs it: start a top-up, turn its webhooks into ledger events, pay a
// seller out, and list what moved through its balance for reconciliation. Stripe (StripeRail.ts) is
// the first implementation; the gateway and the ledger only ever see this interface and the
// processor's name. Amounts here are the processor's minor units (cents), as bigints.
import type { FiatEvent } from "../ledger/credit.js";
import type { BalanceMovement } from "../ledger/fiatReconcile.js";

export type TopUpRequest = {
  /** paychan's id for the top-up; the webhook names it back, and it keys the call's idempotency. */
  topUpId: string;
  creditAccountId: string;
  currency: string;
  amountMinor: bigint;
  successUrl: string;
  cancelUrl: string;
  /** Save the card for off-session recharges (the checkout tells the buyer so). */
  saveCard?: boolean;
};

/** An off-session charge of the card saved for a credit account: one attempt of a recharge. */
export type SavedCardCharge = {
  /** paychan's id for this attempt's top-up; it keys the call's idempotency, and the webhook names it. */
  topUpId: string;
  rechargeId: string;
  creditAccountId: string;
  customerRef: string;
  currency: string;
  amountMinor: bigint;
};

/** Where the buyer pays (a hosted checkout page) and the processor's reference for it. */
export type TopUpSession = { sessionRef: string; url: string };

export type TransferRequest = { payoutId: string; destination: string; currency: string; amountMinor: bigint };

export type { BalanceMovement } from "../ledger/fiatReconcile.js";

export interface Rail {
  /** Names the processor in the ledger (`clearing:<name>:fiat:USD`) and in webhook URLs. */
  readonly name: string;
  createTopUp(request: TopUpRequest): Promise<TopUpSession>;
  /**
   * Charges the saved card off-session. Resolves with the processor's payment reference once it
   * accepted the charge (the credit still comes only from its webhook); a decline is a definitive
   * RailError.
   */
  chargeSavedCard(request: SavedCardCharge): Promise<{ paymentRef: string }>;
  /**
   * Verifies a webhook's signature on its raw body (and its age) and parses it; throws a
   * RailWebhookError for anything not signed by the processor.
   */
  parseWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): FiatEvent;
  /** Moves the amount from the platform balance to the seller's account at the processor. */
  transfer(request: TransferRequest): Promise<{ transferRef: string }>;
  /** Pays the seller's processor balance out to its bank. */
  payout(request: TransferRequest): Promise<{ payoutRef: string }>;
  /** Takes a transfer back into the platform balance (a payout that failed after it). */
  reverseTransfer(request: TransferRequest & { transferRef: string }): Promise<{ reversalRef: string }>;
  /** Every balance movement created in [from, to). */
  balanceMovements(period: { from: Date; to: Date }): Promise<BalanceMovement[]>;
}

/** A webhook that is not the processor's, or too old to trust: answered 400, never applied. */
export class RailWebhookError extends Error {
  override readonly name = "RailWebhookError";
}

/**
 * A processor call that failed. `definitive`: the processor refused it (a 4xx) and retrying with the
 * same idempotency key would be refused again; otherwise (5xx, timeout, network) the outcome is
 * unknown and the call must be retried with the same key.
 */
export class RailError extends Error {
  override readonly name = "RailError";
  constructor(
    message: string,
    readonly definitive: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
