// One way of paying for a request — an x402 scheme: `paychan` (a voucher on a channel,
// PaymentGateway), and the others a seller adds beside it. The paywall (paywall.ts) lists every
// scheme's terms in the 402's `accepts`, in the order given, and hands a paid request to the scheme
// its PAYMENT-SIGNATURE names. Each scheme decides and records its payments durably before the
// handler runs, with the same guarantees: no charge for a 5xx, nothing served unpaid.
import type { PaymentError } from "../protocol/Errors.js";
import type { Asset } from "../ledger/asset.js";
import type { Quote } from "../policy/prices.js";
import type { RiskRequest } from "../policy/risk.js";

/** The request being paid for: its method and absolute URL identify it (retries, receipts). */
export type PaidRequest = {
  method: string;
  url: string;
  /** For a metered route, the most the request may cost; the quote is then the part paid up front. */
  max?: Quote;
  /** The risk policy's hook, when the seller configured one: a scheme calls it once the payment's
   * signature checked out and before recording it; it throws the refusal. */
  admit?: (payer: PayerFacts) => void;
  /** The PAYMENT-STEP-UP header, when sent: a scheme that can verify it hands it to `admit`. */
  stepUp?: string;
  /** A refusal the paywall decided before the scheme (a price no longer honoured): the scheme serves
   * an identical resend of a request it already charged, as any retry, and otherwise throws this. */
  refusal?: PaymentError;
};

/** What a scheme tells the risk policy about who pays (see RiskRequest). */
export type PayerFacts = Pick<RiskRequest, "account" | "payer" | "cumulative" | "deposit" | "canStepUp" | "stepUp">;

/** A PAYMENT-SIGNATURE as the paywall received it: the header itself and its decoded JSON. */
export type PaymentHeader = { header: string; json: unknown };

/** One entry of a 402's `accepts` (x402 v2 PaymentRequirements); amounts are base units. */
export type Requirements = {
  scheme: string;
  network: string;
  amount: bigint;
  asset: string;
  payTo: string;
  maxTimeoutSeconds: number;
  extra?: Record<string, unknown>;
};

/** An accepted payment: its receipt (the PAYMENT-RESPONSE) and what to do once the handler answered. */
export type Settled = {
  paymentId: string;
  receipt: unknown;
  /** Who paid, as logs name it: the channel (paychan) or the payer's account. */
  account?: string;
  /** An identical retry of a request already paid: served again, charged nothing more. */
  retried?: boolean;
  /** Called once with the handler's status: a 5xx voids the charge. */
  complete(status: number): Promise<void>;
  /** For a metered request: fixes its charge at what the handler used. */
  meter?: MeteredCharge;
};

/** A metered payment: the price its voucher prepaid, the most it may cost, and its final charge. */
export type MeteredCharge = {
  readonly price: bigint;
  readonly max: bigint;
  /** The receipt for a charge of `amount` so far (clamped to [price, max]), before it is final. */
  receipt(amount: bigint): unknown;
  /** Fixes the charge at `amount` (clamped to [price, max]) and records the part beyond the price as
   * the channel's debt, durably, before resolving with the final receipt. Call it once. */
  finish(amount: bigint): Promise<unknown>;
};

export interface PaymentScheme {
  /** The x402 scheme name, e.g. "paychan". */
  readonly scheme: string;
  /** Whether `authorize` honours `PaidRequest.refusal` (serves an identical resend, else throws it);
   * the paywall refuses such payments itself for schemes that do not. */
  readonly servesResendsOfRefused?: boolean;
  /** The asset a bare bigint route price is in, for the scheme listed first. */
  readonly defaultAsset?: Asset;
  /** Whether it can charge metered routes (prepay a price, post-pay usage up to a maximum). */
  readonly metered?: boolean;
  /**
   * This scheme's terms for a route priced `quote`, or undefined when the route cannot be paid this
   * way (no price in its asset). `refusal` is the error being answered: a scheme may add what its
   * client needs to recover from it (paychan adds its view of the channel). `max` is a metered
   * route's maximum (only schemes that say `metered` are asked).
   */
  requirements(quote: Quote, refusal?: PaymentError, max?: Quote): Requirements | undefined;
  /**
   * Decides whether `payment` (a PAYMENT-SIGNATURE naming this scheme) pays `quote` for `request`, and
   * if so records the payment durably before resolving. Rejects with a PaymentError for every
   * refusal; any other rejection means the payment service failed and nothing was charged.
   */
  authorize(payment: PaymentHeader, quote: Quote, request: PaidRequest): Promise<Settled>;
  /**
   * For schemes a plain HTTP client can pay with a bearer token (credit keys): the payment that
   * `Authorization: Bearer <token>` carries when no PAYMENT-SIGNATURE is sent, or undefined when the
   * token is not this scheme's. `idempotencyKey` is the request's Idempotency-Key header.
   */
  fromAuthorization?(token: string, idempotencyKey: string | undefined): PaymentHeader | undefined;
  /**
   * Who a payment of this scheme says pays, as volume tiers count them (src/policy/pricing.ts), or
   * undefined. Read before the payment is verified: it may only choose which price to ask, and
   * `authorize` refuses a payment whose payer is not who it says.
   */
  payerOf?(payment: PaymentHeader): string | undefined;
}
