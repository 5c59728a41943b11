// A local stand-in for Stripe's API, for the real Stripe SDK to talk to (its host/port/protocol
// options): it answers with the recorded response shapes in test/fixtures/stripe, keeps the state
// that makes them consistent (sessions, payments, transfers, balance transactions), honours
// Idempotency-Key as Stripe does (same key, same body: the first response again), records every
// request for assertions, and injects faults: a 5xx that does nothing, or a delay past the client's
// timeout after the work is done (the response is lost, the work is not). It also builds the
// webhook events a payment produces, for tests to deliver (signed with the SDK's own helper).
// A checkout that saves the card creates a Customer with a card PaymentMethod; an off-session
// PaymentIntent on it succeeds, or is declined (402 card_error) as often as `declineCard` says.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Stripe from "stripe";

const fixtures = new URL("../fixtures/stripe/", import.meta.url);
const fixture = (name: string): Record<string, any> => JSON.parse(readFileSync(new URL(`${name}.json`, fixtures), "utf8"));

export type RecordedRequest = { method: string; path: string; query: URLSearchParams; body: Record<string, string>; headers: IncomingMessage["headers"] };
export type Fault = { status: number; body?: unknown; times?: number } | { delayMs: number; times?: number };

export type FakeStripe = {
  url: string;
  requests: RecordedRequest[];
  /** Objects created, by id (sessions, transfers, payouts, reversals). */
  objects: Map<string, Record<string, any>>;
  /** Makes the next matching requests fail. */
  fault(method: string, path: RegExp, fault: Fault): void;
  /** The buyer paid a checkout session: a payment, a charge and its balance transaction; the event. */
  payCheckout(sessionId: string): Record<string, any>;
  /** A refund of part of a payment: the `charge.refunded` event (cumulative amount_refunded). */
  refund(paymentIntent: string, amountMinor: number): Record<string, any>;
  dispute(paymentIntent: string, amountMinor: number): Record<string, any>;
  disputeWon(disputeId: string): Record<string, any>;
  /** The next `times` off-session charges of this customer's card are declined (card_declined). */
  declineCard(customerId: string, times: number): void;
  /** The `payment_intent.succeeded` event of a payment intent created here. */
  paymentIntentSucceeded(paymentIntentId: string): Record<string, any>;
  /** A balance movement nobody booked (a manual adjustment), for reconciliation tests. */
  adjust(amountMinor: number, description: string): void;
  close(): Promise<void>;
};

/** The Stripe-Signature header for a payload, made by the SDK itself. */
export function signWebhook(payload: string, secret: string, timestamp = Math.floor(Date.now() / 1000)): string {
  return Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });
}

export async function startFakeStripe(): Promise<FakeStripe> {
  const requests: RecordedRequest[] = [];
  const objects = new Map<string, Record<string, any>>();
  const charges = new Map<string, Record<string, any>>(); // by payment intent
  const transactions: Record<string, any>[] = [];
  const idempotent = new Map<string, { body: string; status: number; response: unknown }>();
  const faults: { method: string; path: RegExp; fault: Fault; left: number }[] = [];
  const declines = new Map<string, number>(); // by customer
  let counter = 0;
  // Unique across servers too: test suites share databases, and Stripe's ids are unique everywhere.
  const instance = randomBytes(4).toString("hex");
  const id = (prefix: string) => `${prefix}_test_${instance}${(++counter).toString().padStart(6, "0")}`;
  const now = () => Math.floor(Date.now() / 1000);

  const txn = (type: string, category: string, amount: number, fee: number, source: Record<string, any>, description: string) => {
    const t: Record<string, any> = { ...fixture("balance_transaction"), id: id("txn"), type, reporting_category: category, amount, fee, net: amount - fee, currency: source.currency, created: now(), source, description };
    t.fee_details = fee ? [{ amount: fee, application: null, currency: source.currency, description: "Stripe processing fees", type: "stripe_fee" }] : [];
    transactions.push(t);
    return t;
  };
  const event = (type: string, object: Record<string, any>) => ({ ...fixture("event"), id: id("evt"), created: now(), type, data: { object } });

  function handle(method: string, path: string, body: Record<string, string>, headers: IncomingMessage["headers"], query: URLSearchParams): { status: number; response: unknown } {
    if (method === "POST" && path === "/v1/checkout/sessions") {
      const session: Record<string, any> = {
        ...fixture("checkout_session"),
        id: id("cs"),
        created: now(),
        amount_subtotal: Number(body["line_items[0][price_data][unit_amount]"]),
        amount_total: Number(body["line_items[0][price_data][unit_amount]"]),
        currency: body["line_items[0][price_data][currency]"],
        client_reference_id: body.client_reference_id ?? null,
        metadata: metadataOf(body, "metadata"),
        success_url: body.success_url,
        cancel_url: body.cancel_url,
        customer_creation: body.customer_creation ?? null,
        setup_future_usage: body["payment_intent_data[setup_future_usage]"] ?? null,
      };
      session.url = `https://checkout.stripe.com/c/pay/${session.id}`;
      objects.set(session.id, session);
      return { status: 200, response: session };
    }
    if (method === "GET" && path === "/v1/payment_methods") {
      const customer = query.get("customer");
      const data = [...objects.values()].filter((o) => o.object === "payment_method" && o.customer === customer);
      return { status: 200, response: { object: "list", data, has_more: false, url: "/v1/payment_methods" } };
    }
    if (method === "POST" && path === "/v1/payment_intents") {
      const customer = objects.get(body.customer ?? "");
      const card = objects.get(body.payment_method ?? "");
      if (!customer || !card || card.customer !== customer.id) {
        return { status: 400, response: { error: { type: "invalid_request_error", code: "resource_missing", message: "No such payment_method for this customer." } } };
      }
      const intent: Record<string, any> = {
        id: id("pi"),
        object: "payment_intent",
        created: now(),
        livemode: false,
        amount: Number(body.amount),
        amount_received: 0,
        currency: body.currency,
        customer: customer.id,
        payment_method: card.id,
        off_session: body.off_session === "true",
        confirmation_method: "automatic",
        metadata: metadataOf(body, "metadata"),
        status: "requires_payment_method",
      };
      objects.set(intent.id, intent);
      const left = declines.get(customer.id) ?? 0;
      if (left > 0) {
        declines.set(customer.id, left - 1);
        intent.last_payment_error = { type: "card_error", code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." };
        return { status: 402, response: { error: { ...intent.last_payment_error, payment_intent: intent } } };
      }
      Object.assign(intent, { status: "succeeded", amount_received: intent.amount });
      const charge = { ...fixture("charge"), id: id("ch"), created: now(), amount: intent.amount, amount_captured: intent.amount, currency: intent.currency, payment_intent: intent.id };
      charges.set(intent.id, charge);
      txn("charge", "charge", charge.amount, Math.round(charge.amount * 0.029) + 30, charge, "Prepaid credit (recharge)");
      return { status: 200, response: intent };
    }
    if (method === "POST" && path === "/v1/transfers") {
      const transfer = { ...fixture("transfer"), id: id("tr"), created: now(), amount: Number(body.amount), currency: body.currency, destination: body.destination, transfer_group: body.transfer_group ?? null, metadata: metadataOf(body, "metadata") };
      objects.set(transfer.id, transfer);
      txn("transfer", "transfer", -transfer.amount, 0, transfer, `Transfer to ${transfer.destination}`);
      return { status: 200, response: transfer };
    }
    const reversal = /^\/v1\/transfers\/([^/]+)\/reversals$/.exec(path);
    if (method === "POST" && reversal) {
      const transfer = objects.get(reversal[1]!);
      if (!transfer) return { status: 404, response: { error: { type: "invalid_request_error", code: "resource_missing", message: `No such transfer: '${reversal[1]}'` } } };
      const amount = Number(body.amount ?? transfer.amount);
      const r = { ...fixture("transfer_reversal"), id: id("trr"), created: now(), amount, currency: transfer.currency, transfer: transfer.id, metadata: metadataOf(body, "metadata") };
      transfer.amount_reversed += amount;
      transfer.reversed = transfer.amount_reversed === transfer.amount;
      objects.set(r.id, r);
      txn("transfer_refund", "transfer_reversal", amount, 0, r, `Reversal of ${transfer.id}`);
      return { status: 200, response: r };
    }
    if (method === "POST" && path === "/v1/payouts") {
      // Paid out of the connected account's balance (Stripe-Account), not the platform's.
      const payout = { ...fixture("payout"), id: id("po"), created: now(), amount: Number(body.amount), currency: body.currency, metadata: metadataOf(body, "metadata"), account: headers["stripe-account"] };
      objects.set(payout.id, payout);
      return { status: 200, response: payout };
    }
    if (method === "GET" && path === "/v1/balance_transactions") {
      const gte = Number(query.get("created[gte]") ?? 0);
      const lt = Number(query.get("created[lt]") ?? Number.MAX_SAFE_INTEGER);
      const limit = Number(query.get("limit") ?? 10);
      const expand = [...query.entries()].some(([k, v]) => k.startsWith("expand") && v === "data.source");
      // Newest first, as Stripe lists them; starting_after pages on.
      let list = transactions.filter((t) => t.created >= gte && t.created < lt).reverse();
      const after = query.get("starting_after");
      if (after) list = list.slice(list.findIndex((t) => t.id === after) + 1);
      const page = list.slice(0, limit).map((t) => (expand ? t : { ...t, source: t.source.id }));
      return { status: 200, response: { object: "list", data: page, has_more: list.length > limit, url: "/v1/balance_transactions" } };
    }
    return { status: 404, response: { error: { type: "invalid_request_error", message: `Unrecognized request URL (${method}: ${path}).` } } };
  }

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const url = new URL(req.url ?? "/", "http://fake");
      const body = Object.fromEntries(new URLSearchParams(raw));
      const method = req.method ?? "GET";
      requests.push({ method, path: url.pathname, query: url.searchParams, body, headers: req.headers });
      const send = (status: number, response: unknown, replayed = false) => {
        res.writeHead(status, { "content-type": "application/json", "request-id": `req_${counter}`, ...(replayed && { "idempotent-replayed": "true" }) });
        res.end(JSON.stringify(response));
      };
      const fault = faults.find((f) => f.left > 0 && f.method === method && f.path.test(url.pathname));
      if (fault) fault.left--;
      if (fault && "status" in fault.fault && fault.fault.status >= 500) return send(fault.fault.status, fault.fault.body ?? { error: { type: "api_error", message: "An unknown error occurred." } });
      const key = req.headers["idempotency-key"] as string | undefined;
      const stored = key ? idempotent.get(key) : undefined;
      let result: { status: number; response: unknown };
      if (stored) {
        if (stored.body !== `${method} ${url.pathname} ${raw}`) {
          return send(400, { error: { type: "idempotency_error", message: `Keys for idempotent requests can only be used with the same parameters they were first used with.` } });
        }
        result = stored;
      } else {
        result = fault && "status" in fault.fault ? { status: fault.fault.status, response: fault.fault.body } : handle(method, url.pathname, body, req.headers, url.searchParams);
        if (key && method === "POST") idempotent.set(key, { body: `${method} ${url.pathname} ${raw}`, ...result });
      }
      if (fault && "delayMs" in fault.fault) {
        setTimeout(() => (res.destroyed ? undefined : send(result.status, result.response, !!stored)), fault.fault.delayMs);
        return;
      }
      send(result.status, result.response, !!stored);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    objects,
    fault(method, path, fault) {
      faults.push({ method, path, fault, left: fault.times ?? 1 });
    },
    payCheckout(sessionId) {
      const session = objects.get(sessionId);
      if (!session) throw new Error(`no checkout session ${sessionId}`);
      const paymentIntent = id("pi");
      const charge = { ...fixture("charge"), id: id("ch"), created: now(), amount: session.amount_total, amount_captured: session.amount_total, currency: session.currency, payment_intent: paymentIntent };
      charges.set(paymentIntent, charge);
      // Stripe's fee: 2.9% + 30¢, rounded.
      txn("charge", "charge", charge.amount, Math.round(charge.amount * 0.029) + 30, charge, "Prepaid credit");
      Object.assign(session, { payment_intent: paymentIntent, payment_status: "paid", status: "complete" });
      if (session.customer_creation === "always" || session.setup_future_usage === "off_session") {
        const customer = { id: id("cus"), object: "customer", created: now(), livemode: false, metadata: {} };
        const card = { id: id("pm"), object: "payment_method", type: "card", created: now(), livemode: false, customer: customer.id, card: { brand: "visa", last4: "4242", exp_month: 12, exp_year: 2030 }, metadata: {} };
        objects.set(customer.id, customer);
        objects.set(card.id, card);
        session.customer = customer.id;
      }
      return event("checkout.session.completed", { ...session });
    },
    refund(paymentIntent, amountMinor) {
      const charge = charges.get(paymentIntent)!;
      const r = { ...fixture("refund"), id: id("re"), created: now(), amount: amountMinor, charge: charge.id, currency: charge.currency, payment_intent: paymentIntent };
      charge.amount_refunded += amountMinor;
      charge.refunded = charge.amount_refunded === charge.amount;
      txn("refund", "refund", -amountMinor, 0, r, "REFUND FOR CHARGE");
      return event("charge.refunded", { ...charge });
    },
    dispute(paymentIntent, amountMinor) {
      const charge = charges.get(paymentIntent)!;
      const d = { ...fixture("dispute"), id: id("dp"), created: now(), amount: amountMinor, charge: charge.id, currency: charge.currency, payment_intent: paymentIntent };
      objects.set(d.id, d);
      charge.disputed = true;
      txn("adjustment", "dispute", -amountMinor, 1500, d, `Chargeback withdrawal for ${charge.id}`);
      return event("charge.dispute.created", { ...d });
    },
    disputeWon(disputeId) {
      const d = objects.get(disputeId)!;
      d.status = "won";
      txn("adjustment", "dispute_reversal", d.amount, -1500, d, `Chargeback reversal for ${d.charge}`);
      return event("charge.dispute.closed", { ...d });
    },
    declineCard(customerId, times) {
      declines.set(customerId, times);
    },
    paymentIntentSucceeded(paymentIntentId) {
      const intent = objects.get(paymentIntentId);
      if (!intent || intent.status !== "succeeded") throw new Error(`no succeeded payment intent ${paymentIntentId}`);
      return event("payment_intent.succeeded", { ...intent });
    },
    adjust(amountMinor, description) {
      txn("adjustment", "other_adjustment", amountMinor, 0, { id: id("adj"), object: "adjustment", currency: "usd" }, description);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** `metadata[key]=value` form fields back into an object. */
function metadataOf(body: Record<string, string>, prefix: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(body)) {
    const m = new RegExp(`^${prefix}\\[([^\\]]+)\\]$`).exec(k);
    if (m) out[m[1]!] = v;
  }
  return out;
}
