// Stripe behind the Rail interface, on the official Node SDK. The objects used: Checkout Sessions
// (top-ups: a hosted payment page per top-up), webhook events (credit is granted only from
// `checkout.session.completed` / `checkout.session.async_payment_succeeded`; `charge.refunded`,
// `charge.dispute.created` and `charge.dispute.closed` take it back or restore it), Connect
// Transfers to a seller's connected account and Payouts on that account (seller payouts), Transfer
// Reversals (a payout that failed after its transfer), Balance Transactions (reconciliation), and,
// for auto-recharge, the Customer a checkout saves the card on and an off-session PaymentIntent on
// it (credited from `payment_intent.succeeded`).
//
// Every POST carries an idempotency key derived from paychan's own ids, so the SDK's retries after a
// 5xx or a timeout, and a later run resuming a payout, reuse it and Stripe does the work once.
import Stripe from "stripe";
import type { FiatEvent } from "../ledger/credit.js";
import { RailError, RailWebhookError, type BalanceMovement, type Rail, type SavedCardCharge, type TopUpRequest, type TopUpSession, type TransferRequest } from "./Rail.js";

export type StripeRailOptions = {
  secretKey: string;
  webhookSecret: string;
  /** Another API host, e.g. a local fake for tests: "http://127.0.0.1:12111". */
  apiBase?: string;
  /** Webhooks signed longer ago than this are refused (Stripe's default is 300 s). */
  webhookToleranceSeconds?: number;
  timeoutMs?: number;
  /** Retries of a call that failed with a 5xx, a 409, a timeout or a network error (same idempotency key). */
  maxNetworkRetries?: number;
};

export class StripeRail implements Rail {
  readonly name = "stripe";
  private readonly stripe: Stripe;
  private readonly webhookSecret: string;
  private readonly tolerance: number;

  constructor(options: StripeRailOptions) {
    const base = options.apiBase ? new URL(options.apiBase) : undefined;
    this.stripe = new Stripe(options.secretKey, {
      maxNetworkRetries: options.maxNetworkRetries ?? 2,
      timeout: options.timeoutMs ?? 30_000,
      telemetry: false,
      ...(base && {
        host: base.hostname,
        port: base.port || (base.protocol === "http:" ? 80 : 443),
        protocol: base.protocol === "http:" ? "http" : "https",
      }),
    });
    this.webhookSecret = options.webhookSecret;
    this.tolerance = options.webhookToleranceSeconds ?? 300;
  }

  async createTopUp(request: TopUpRequest): Promise<TopUpSession> {
    const metadata = { paychan_topup: request.topUpId, paychan_credit_account: request.creditAccountId };
    const session = await call(() =>
      this.stripe.checkout.sessions.create(
        {
          mode: "payment",
          client_reference_id: request.topUpId,
          line_items: [
            {
              quantity: 1,
              price_data: { currency: request.currency.toLowerCase(), unit_amount: minorNumber(request.amountMinor), product_data: { name: "Prepaid credit" } },
            },
          ],
          metadata,
          payment_intent_data: { metadata, ...(request.saveCard && { setup_future_usage: "off_session" as const }) },
          ...(request.saveCard && { customer_creation: "always" as const }),
          success_url: request.successUrl,
          cancel_url: request.cancelUrl,
        },
        { idempotencyKey: `paychan:topup:${request.topUpId}` },
      ),
    );
    if (!session.url) throw new RailError(`Stripe created checkout session ${session.id} without a URL.`, true);
    return { sessionRef: session.id, url: session.url };
  }

  async chargeSavedCard(request: SavedCardCharge): Promise<{ paymentRef: string }> {
    const methods = await call(() => this.stripe.paymentMethods.list({ customer: request.customerRef, type: "card", limit: 1 }));
    const card = methods.data[0];
    if (!card) throw new RailError(`Stripe customer ${request.customerRef} has no saved card.`, true);
    const intent = await call(() =>
      this.stripe.paymentIntents.create(
        {
          amount: minorNumber(request.amountMinor),
          currency: request.currency.toLowerCase(),
          customer: request.customerRef,
          payment_method: card.id,
          off_session: true,
          confirm: true,
          metadata: { paychan_topup: request.topUpId, paychan_recharge: request.rechargeId, paychan_credit_account: request.creditAccountId },
        },
        { idempotencyKey: `paychan:recharge:${request.topUpId}` },
      ),
    );
    if (intent.status !== "succeeded" && intent.status !== "processing") {
      throw new RailError(`Stripe left the recharge's payment ${intent.id} ${intent.status}.`, true);
    }
    return { paymentRef: intent.id };
  }

  parseWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): FiatEvent {
    const signature = headers["stripe-signature"];
    if (typeof signature !== "string" || signature === "") throw new RailWebhookError("The webhook has no Stripe-Signature header.");
    let event: Stripe.Event;
    try {
      event = this.stripe.webhooks.constructEvent(rawBody, signature, this.webhookSecret, this.tolerance);
    } catch (error) {
      throw new RailWebhookError(`The webhook's signature does not verify: ${(error as Error).message}`, { cause: error });
    }
    return toFiatEvent(event);
  }

  async transfer(request: TransferRequest): Promise<{ transferRef: string }> {
    const transfer = await call(() =>
      this.stripe.transfers.create(
        {
          amount: minorNumber(request.amountMinor),
          currency: request.currency.toLowerCase(),
          destination: request.destination,
          transfer_group: request.payoutId,
          metadata: { paychan_payout: request.payoutId },
        },
        { idempotencyKey: `paychan:payout:${request.payoutId}:transfer` },
      ),
    );
    return { transferRef: transfer.id };
  }

  async payout(request: TransferRequest): Promise<{ payoutRef: string }> {
    const payout = await call(() =>
      this.stripe.payouts.create(
        { amount: minorNumber(request.amountMinor), currency: request.currency.toLowerCase(), metadata: { paychan_payout: request.payoutId } },
        { stripeAccount: request.destination, idempotencyKey: `paychan:payout:${request.payoutId}:payout` },
      ),
    );
    return { payoutRef: payout.id };
  }

  async reverseTransfer(request: TransferRequest & { transferRef: string }): Promise<{ reversalRef: string }> {
    const reversal = await call(() =>
      this.stripe.transfers.createReversal(
        request.transferRef,
        { amount: minorNumber(request.amountMinor), metadata: { paychan_payout: request.payoutId } },
        { idempotencyKey: `paychan:payout:${request.payoutId}:reversal` },
      ),
    );
    return { reversalRef: reversal.id };
  }

  async balanceMovements({ from, to }: { from: Date; to: Date }): Promise<BalanceMovement[]> {
    const movements: BalanceMovement[] = [];
    await call(async () => {
      movements.length = 0;
      const list = this.stripe.balanceTransactions.list({
        created: { gte: Math.floor(from.getTime() / 1000), lt: Math.ceil(to.getTime() / 1000) },
        limit: 100,
        expand: ["data.source"],
      });
      for await (const transaction of list) movements.push(toMovement(transaction));
    });
    return movements;
  }
}

/** Stripe's events → the ledger's; anything else is recorded and ignored. */
function toFiatEvent(event: Stripe.Event): FiatEvent {
  const base = { id: event.id, processor: "stripe" };
  const object = event.data.object as unknown as Record<string, unknown>;
  const paymentRef = (value: unknown) => (typeof value === "string" ? value : (value as { id?: string } | null)?.id);
  switch (event.type) {
    case "checkout.session.completed":
    case "checkout.session.async_payment_succeeded": {
      const session = event.data.object;
      const topUpId = session.client_reference_id ?? session.metadata?.paychan_topup;
      const payment = paymentRef(session.payment_intent);
      if (session.payment_status !== "paid" || !topUpId || !payment || session.amount_total === null || !session.currency) break;
      const customer = paymentRef(session.customer);
      return {
        ...base,
        type: "topup.paid",
        topUpId,
        paymentRef: payment,
        currency: session.currency.toUpperCase(),
        amountMinor: BigInt(session.amount_total),
        ...(customer && { customerRef: customer }),
      };
    }
    case "payment_intent.succeeded": {
      // Only a recharge is credited from its payment: a checkout's payment is credited from its session.
      const intent = event.data.object;
      const topUpId = intent.metadata?.paychan_topup;
      if (!intent.metadata?.paychan_recharge || !topUpId) break;
      return { ...base, type: "topup.paid", topUpId, paymentRef: intent.id, currency: intent.currency.toUpperCase(), amountMinor: BigInt(intent.amount_received) };
    }
    case "charge.refunded": {
      const charge = event.data.object;
      const payment = paymentRef(charge.payment_intent);
      if (!payment) break;
      return { ...base, type: "payment.refunded", paymentRef: payment, currency: charge.currency.toUpperCase(), refundedMinor: BigInt(charge.amount_refunded) };
    }
    case "charge.dispute.created":
    case "charge.dispute.closed": {
      const dispute = event.data.object;
      const payment = paymentRef(dispute.payment_intent);
      if (!payment || (event.type === "charge.dispute.closed" && dispute.status !== "won")) break;
      return {
        ...base,
        type: event.type === "charge.dispute.created" ? "dispute.opened" : "dispute.won",
        disputeRef: dispute.id,
        paymentRef: payment,
        currency: dispute.currency.toUpperCase(),
        amountMinor: BigInt(dispute.amount),
      };
    }
  }
  void object;
  return { ...base, type: "ignored", name: event.type };
}

function toMovement(t: Stripe.BalanceTransaction): BalanceMovement {
  const source = t.source as unknown as { id?: string; object?: string; payment_intent?: unknown; transfer?: unknown } | string | null;
  const sourceId = typeof source === "string" ? source : (source?.id ?? "");
  const ref = (value: unknown) => (typeof value === "string" ? value : (value as { id?: string } | null)?.id);
  const paymentRef = typeof source === "object" && source ? ref(source.payment_intent) : undefined;
  const category = t.reporting_category;
  let kind: BalanceMovement["kind"] = "other";
  if (t.type === "charge" || t.type === "payment") kind = "charge";
  else if (t.type === "refund" || t.type === "payment_refund") kind = "refund";
  else if (category === "dispute") kind = "dispute";
  else if (category === "dispute_reversal") kind = "dispute_won";
  else if (t.type === "transfer") kind = "transfer";
  else if (t.type === "transfer_refund" || category === "transfer_reversal") kind = "transfer_reversal";
  const transferRef = kind === "transfer" ? sourceId : kind === "transfer_reversal" && typeof source === "object" && source ? ref(source.transfer) : undefined;
  return {
    ref: t.id,
    kind,
    ...(paymentRef && { paymentRef }),
    ...(transferRef && { transferRef }),
    currency: t.currency.toUpperCase(),
    amountMinor: BigInt(t.amount),
    feeMinor: BigInt(t.fee),
    createdAt: new Date(t.created * 1000),
    description: t.description ?? t.type,
  };
}

function minorNumber(amount: bigint): number {
  if (amount <= 0n || amount > BigInt(Number.MAX_SAFE_INTEGER)) throw new RailError(`${amount} is not an amount Stripe takes.`, true);
  return Number(amount);
}

/** Runs a Stripe call and classifies its failure: a refusal (4xx but 409/429) is definitive. */
async function call<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof RailError) throw error;
    if (error instanceof Stripe.errors.StripeError) {
      const status = error.statusCode;
      const definitive = status !== undefined && status >= 400 && status < 500 && status !== 409 && status !== 429;
      throw new RailError(`Stripe ${status ?? "connection"} error${error.code ? ` ${error.code}` : ""}: ${error.message}`, definitive, { cause: error });
    }
    throw new RailError(`Stripe call failed: ${(error as Error).message}`, false, { cause: error });
  }
}
