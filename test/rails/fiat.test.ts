// The fiat rails end to end, for real but offline: the real Stripe SDK talks to a local fake of
// Stripe's API (test/helpers/fakeStripe.ts), webhooks are signed with the SDK's own test helper and
// delivered over HTTP to the gateway, credit is spent through the real paywall, and the ledger is
// checked after every scenario — on Postgres and PGlite.
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { randomUUID } from "node:crypto";
import { expect } from "chai";
import express from "express";
import { CreditScheme } from "../../src/gateway/CreditScheme.js";
import { paywall } from "../../src/gateway/paywall.js";
import { accountId } from "../../src/ledger/accounts.js";
import { bookCredit } from "../../src/ledger/creditBooking.js";
import { creditBalance, createCreditAccount, issueCreditKey } from "../../src/ledger/credit.js";
import { type Database, openDatabase } from "../../src/ledger/db.js";
import { LedgerCreditStore } from "../../src/ledger/LedgerCreditStore.js";
import { setSellerDestination } from "../../src/ledger/payouts.js";
import { accountsOutOfBalance, balanceOf, trialBalance } from "../../src/ledger/postings.js";
import { PriceTable } from "../../src/policy/prices.js";
import { HEADERS, decodePaymentRequired } from "../../src/protocol/wire.js";
import { creditReceiptSchema, encodeCreditPayment } from "../../src/protocol/credit.js";
import { decodeJsonHeader } from "./decode.js";
import { FiatRails } from "../../src/rails/FiatRails.js";
import { operatorFiatRoutes, publicFiatRoutes } from "../../src/rails/http.js";
import { StripeRail } from "../../src/rails/StripeRail.js";
import { signWebhook, startFakeStripe, type FakeStripe } from "../helpers/fakeStripe.js";
import { createPostgresDatabase, describeEachDatabase, unique } from "../ledger/helpers.js";

const USD = "fiat:USD" as const;
const WEBHOOK_SECRET = "whsec_test_paychan";
const PRICE_USD = "0.001"; // 1,000 micro-dollars
const PRICE = 1_000n;

type Shop = {
  url: string;
  fiat: FiatRails;
  store: LedgerCreditStore;
  seller: string;
  handled: { count: number };
  close(): Promise<void>;
};

/** A seller's app with the credit scheme only (no chain needed): GET /quote, GET /boom (500). */
async function startShop(db: Pick<Database, "prisma" | "sql">, stripe: FakeStripe, seller = unique("seller"), options: { threshold?: bigint; timeoutMs?: number } = {}): Promise<Shop> {
  const rail = new StripeRail({ secretKey: "sk_test_paychan", webhookSecret: WEBHOOK_SECRET, apiBase: stripe.url, timeoutMs: options.timeoutMs ?? 2_000 });
  const fiat = new FiatRails({ db, rail, currency: "USD", payoutThreshold: options.threshold ?? 1_000_000n, successUrl: "https://shop.example/ok", cancelUrl: "https://shop.example/no" });
  const store = new LedgerCreditStore(db, { bookingIntervalMs: 60_000 });
  const credit = new CreditScheme({ store, seller, asset: USD, topUpPath: "/credit/topups" });
  const handled = { count: 0 };
  const app = express();
  app.use(publicFiatRoutes(fiat, () => {}));
  app.use("/ops", operatorFiatRoutes(fiat));
  app.use(paywall([credit], { "GET /quote": { usd: PRICE_USD }, "GET /boom": { usd: PRICE_USD } }, { prices: new PriceTable(USD, { [USD]: { usd: "1", decimals: 6 } }) }));
  app.get("/quote", (_req, res) => void (handled.count++, res.json({ quote: "ok" })));
  app.get("/boom", (_req, res) => void (handled.count++, res.status(500).json({ error: "boom" })));
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    fiat,
    store,
    seller,
    handled,
    async close() {
      await new Promise((resolve) => server.close(resolve));
      await store.close();
    },
  };
}

async function deliver(shop: Shop, event: unknown, { secret = WEBHOOK_SECRET, timestamp }: { secret?: string; timestamp?: number } = {}) {
  const payload = JSON.stringify(event);
  const response = await fetch(`${shop.url}/webhooks/stripe`, {
    method: "POST",
    headers: { "content-type": "application/json", "stripe-signature": signWebhook(payload, secret, timestamp) },
    body: payload,
  });
  return { status: response.status, body: (await response.json()) as { outcome?: string; error?: string } };
}

/** A credit account with a key, topped up by `dollars` through checkout and a delivered webhook. */
async function fundedBuyer(shop: Shop, stripe: FakeStripe, dollars = "5.00") {
  const opened = await (await fetch(`${shop.url}/ops/credit/accounts`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).json() as { accountId: string; key: string; keyId: string };
  const started = await fetch(`${shop.url}/credit/topups`, {
    method: "POST",
    headers: { authorization: `Bearer ${opened.key}`, "content-type": "application/json" },
    body: JSON.stringify({ amount: dollars }),
  });
  expect(started.status, await started.clone().text()).to.equal(201);
  const { topUpId, url } = (await started.json()) as { topUpId: string; url: string };
  const sessionId = url.split("/").pop()!;
  const paid = stripe.payCheckout(sessionId);
  return { ...opened, topUpId, sessionId, paid, paymentIntent: paid.data.object.payment_intent as string };
}

async function payWithCredit(shop: Shop, key: string, options: { path?: string; nonce?: string; bearer?: boolean; idempotencyKey?: string } = {}) {
  const headers: Record<string, string> = options.bearer
    ? { authorization: `Bearer ${key}`, ...(options.idempotencyKey && { "idempotency-key": options.idempotencyKey }) }
    : { [HEADERS.signature]: encodeCreditPayment(key, options.nonce ?? randomUUID()) };
  const response = await fetch(`${shop.url}${options.path ?? "/quote"}`, { headers });
  const body = (await response.json()) as { error?: string };
  const receipt = response.headers.get(HEADERS.response);
  return { status: response.status, body, receipt: receipt ? creditReceiptSchema.parse(decodeJsonHeader(receipt)) : undefined, required: response.headers.get(HEADERS.required) };
}

/** The books balance: every asset's debits equal its credits, every account equals its postings. */
async function expectBalancedBooks(db: Pick<Database, "prisma">) {
  for (const [asset, t] of await trialBalance(db.prisma)) expect(t.debits, asset).to.equal(t.credits);
  expect(await accountsOutOfBalance(db.prisma)).to.deep.equal([]);
}

describeEachDatabase("fiat rails: card top-ups, credit through the paywall, payouts", (db) => {
  let stripe: FakeStripe;
  let shop: Shop;

  before(async () => {
    stripe = await startFakeStripe();
    shop = await startShop(db(), stripe);
  });
  after(async () => {
    await shop.close();
    await stripe.close();
  });

  it("grants credit only from the signed webhook, then pays requests from it through the paywall, booked to the seller", async () => {
    const buyer = await fundedBuyer(shop, stripe, "5.00");
    const checkout = stripe.requests.find((r) => r.path === "/v1/checkout/sessions" && r.body.client_reference_id === buyer.topUpId)!;
    expect(checkout.headers["idempotency-key"]).to.equal(`paychan:topup:${buyer.topUpId}`);
    expect(checkout.body).to.include({ mode: "payment", "line_items[0][price_data][unit_amount]": "500", "line_items[0][price_data][currency]": "usd", "metadata[paychan_topup]": buyer.topUpId });

    // Paid at the processor, but no webhook yet: no credit.
    const before = await payWithCredit(shop, buyer.key);
    expect(before.status).to.equal(402);
    expect(before.body.error).to.equal("insufficient_credit");
    const offer = decodePaymentRequired(before.required!);
    expect(offer.accepts).to.deep.equal([]); // the channel parser drops other schemes…
    const raw = decodeJsonHeader(before.required!) as { accepts: { scheme: string; amount: string; asset: string; extra: { decimals: number } }[] };
    expect(raw.accepts[0]).to.deep.include({ scheme: "credit", amount: "1000", asset: USD }); // …the credit entry is there

    expect((await deliver(shop, buyer.paid)).body.outcome).to.equal("applied");
    expect((await creditBalance(db().prisma, buyer.accountId))!.balance).to.equal(5_000_000n);

    for (let i = 1; i <= 3; i++) {
      const paid = await payWithCredit(shop, buyer.key);
      expect(paid.status, JSON.stringify(paid.body)).to.equal(200);
      expect(paid.receipt).to.include({ scheme: "credit", payer: buyer.accountId, charged: PRICE, remaining: 5_000_000n - BigInt(i) * PRICE });
    }
    const bearer = await payWithCredit(shop, buyer.key, { bearer: true });
    expect(bearer.status).to.equal(200);
    expect(bearer.receipt!.remaining).to.equal(5_000_000n - 4n * PRICE);

    await shop.store.book();
    expect(await balanceOf(db().prisma, accountId.customerCredit(buyer.accountId))).to.equal(5_000_000n - 4n * PRICE);
    expect(await balanceOf(db().prisma, accountId.sellerPayable(shop.seller, USD))).to.satisfy((v: bigint) => v >= 4n * PRICE);
    expect(await balanceOf(db().prisma, accountId.clearing("stripe", USD))).to.satisfy((v: bigint) => v >= 5_000_000n);
    await expectBalancedBooks(db());
  });

  it("refuses a webhook with a bad signature or an old timestamp, answers a duplicate without effect, and applies an out-of-order refund when its top-up arrives", async () => {
    const buyer = await fundedBuyer(shop, stripe, "2.00");
    expect((await deliver(shop, buyer.paid, { secret: "whsec_someone_else" })).status).to.equal(400);
    expect((await deliver(shop, buyer.paid, { timestamp: Math.floor(Date.now() / 1000) - 3_600 })).body.error).to.equal("invalid_webhook");
    const unsigned = await fetch(`${shop.url}/webhooks/stripe`, { method: "POST", body: JSON.stringify(buyer.paid) });
    expect(unsigned.status).to.equal(400);
    expect((await creditBalance(db().prisma, buyer.accountId))!.granted).to.equal(0n);

    // The refund's event arrives before the payment's: parked, then applied with the top-up.
    const refund = stripe.refund(buyer.paymentIntent, 50);
    expect((await deliver(shop, refund)).body.outcome).to.equal("parked");
    expect((await deliver(shop, buyer.paid)).body.outcome).to.equal("applied");
    expect((await deliver(shop, buyer.paid)).body.outcome).to.equal("duplicate");
    expect((await deliver(shop, refund)).body.outcome).to.equal("duplicate");
    expect((await creditBalance(db().prisma, buyer.accountId))!.granted).to.equal(2_000_000n - 500_000n);
    // A second partial refund carries the cumulative total; an old event delivered late changes nothing.
    const second = stripe.refund(buyer.paymentIntent, 25);
    expect((await deliver(shop, second)).body.outcome).to.equal("applied");
    expect((await deliver(shop, { ...refund, id: `${refund.id}_late` })).body.outcome).to.equal("applied");
    expect((await creditBalance(db().prisma, buyer.accountId))!.granted).to.equal(2_000_000n - 750_000n);
    await expectBalancedBooks(db());
  });

  it("a refund after the credit was spent takes the balance negative and suspends spending until a top-up settles it; a dispute likewise, restored when won", async () => {
    const buyer = await fundedBuyer(shop, stripe, "1.00");
    await deliver(shop, buyer.paid);
    for (let i = 0; i < 600; i += 200) await Promise.all(Array.from({ length: 200 }, () => payWithCredit(shop, buyer.key)));
    expect((await creditBalance(db().prisma, buyer.accountId))!.balance).to.equal(400_000n);
    await deliver(shop, stripe.refund(buyer.paymentIntent, 100));
    const after = (await creditBalance(db().prisma, buyer.accountId))!;
    expect(after.balance).to.equal(-600_000n);
    expect(after.suspended).to.equal(true);
    const refused = await payWithCredit(shop, buyer.key);
    expect([refused.status, refused.body.error]).to.deep.equal([402, "credit_suspended"]);

    // A new top-up settles the debt; spending resumes.
    const topUp = await fetch(`${shop.url}/credit/topups`, { method: "POST", headers: { authorization: `Bearer ${buyer.key}`, "content-type": "application/json" }, body: JSON.stringify({ amount: "1.00" }) });
    const { url } = (await topUp.json()) as { url: string };
    const paid = stripe.payCheckout(url.split("/").pop()!);
    await deliver(shop, paid);
    expect((await payWithCredit(shop, buyer.key)).status).to.equal(200);

    const dispute = stripe.dispute(paid.data.object.payment_intent, 100);
    await deliver(shop, dispute);
    expect((await creditBalance(db().prisma, buyer.accountId))!.balance).to.equal(-601_000n);
    expect((await payWithCredit(shop, buyer.key)).body.error).to.equal("credit_suspended");
    await deliver(shop, stripe.disputeWon(dispute.data.object.id));
    expect((await creditBalance(db().prisma, buyer.accountId))!.balance).to.equal(399_000n);
    await shop.store.book();
    await expectBalancedBooks(db());
  });

  it("refuses wrong, revoked and out-of-scope keys with stable codes", async () => {
    const buyer = await fundedBuyer(shop, stripe, "1.00");
    await deliver(shop, buyer.paid);
    const wrong = await payWithCredit(shop, `pck_${"0".repeat(12)}_nothing`);
    expect([wrong.status, wrong.body.error]).to.deep.equal([401, "credit_key_invalid"]);
    const scoped = await issueCreditKey(db().prisma, buyer.accountId, { pathPrefixes: ["/articles/"] });
    const outside = await payWithCredit(shop, scoped.key);
    expect([outside.status, outside.body.error]).to.deep.equal([403, "credit_key_out_of_scope"]);
    expect((await payWithCredit(shop, buyer.key)).status).to.equal(200); // warms this process's key cache
    expect((await fetch(`${shop.url}/ops/credit/keys/${buyer.keyId}/revoke`, { method: "POST" })).status).to.equal(200);
    const revoked = await payWithCredit(shop, buyer.key);
    expect([revoked.status, revoked.body.error]).to.deep.equal([401, "credit_key_revoked"]);
    const topUp = await fetch(`${shop.url}/credit/topups`, { method: "POST", headers: { authorization: `Bearer ${buyer.key}` } });
    expect(topUp.status).to.equal(401);
  });

  it("voids the charge of a 5xx, and serves a byte-identical retry again charged once (PAYMENT-SIGNATURE and Idempotency-Key)", async () => {
    const buyer = await fundedBuyer(shop, stripe, "1.00");
    await deliver(shop, buyer.paid);
    const boom = await payWithCredit(shop, buyer.key, { path: "/boom" });
    expect(boom.status).to.equal(500);
    expect(boom.receipt).to.equal(undefined);
    expect((await creditBalance(db().prisma, buyer.accountId))!.balance).to.equal(1_000_000n);

    const nonce = randomUUID();
    const first = await payWithCredit(shop, buyer.key, { nonce });
    const again = await payWithCredit(shop, buyer.key, { nonce });
    expect(again.status).to.equal(200);
    expect(again.receipt!.paymentId).to.equal(first.receipt!.paymentId);
    const viaBearer = await payWithCredit(shop, buyer.key, { bearer: true, idempotencyKey: "order-42" });
    const bearerAgain = await payWithCredit(shop, buyer.key, { bearer: true, idempotencyKey: "order-42" });
    expect(bearerAgain.receipt!.paymentId).to.equal(viaBearer.receipt!.paymentId);
    expect((await creditBalance(db().prisma, buyer.accountId))!.balance).to.equal(1_000_000n - 2n * PRICE);
    for (let i = 0; i < 3; i++) await payWithCredit(shop, buyer.key, { nonce });
    const exhausted = await payWithCredit(shop, buyer.key, { nonce });
    expect(exhausted.body.error).to.equal("credit_request_replayed");
    await shop.store.book();
    await expectBalancedBooks(db());
  });

  it("pays a seller out above the threshold in whole cents, keeping the sub-cent remainder accrued, with an idempotency key on every call", async () => {
    const seller = unique("seller");
    const payouts = await startShop(db(), stripe, seller, { threshold: 2_000n });
    try {
      await setSellerDestination(db().prisma, seller, "acct_test_rounding");
      const buyer = await fundedBuyer(payouts, stripe, "1.00");
      await deliver(payouts, buyer.paid);
      // 12,000 micro-dollars of revenue, $0.012: 1 cent is paid out, the 2,000 below a cent stay accrued.
      for (let i = 0; i < 12; i++) await payWithCredit(payouts, buyer.key);
      const first = await payouts.fiat.runPayouts();
      expect(first.find((o) => o.seller === seller)).to.deep.include({ outcome: "posted" });
      const posted = first.find((o) => o.seller === seller) as { payout: { amount: bigint; amountMinor: bigint; transferRef: string } };
      expect(posted.payout.amountMinor).to.equal(1n);
      expect(posted.payout.amount).to.equal(10_000n);
      expect(await balanceOf(db().prisma, accountId.sellerPayable(seller, USD))).to.equal(2_000n);
      const transfer = stripe.requests.find((r) => r.path === "/v1/transfers" && r.body.destination === "acct_test_rounding")!;
      expect(transfer.body).to.include({ amount: "1", currency: "usd" });
      expect(transfer.headers["idempotency-key"]).to.match(/^paychan:payout:po_[0-9a-f]+:transfer$/);
      const payout = stripe.requests.find((r) => r.path === "/v1/payouts" && r.headers["stripe-account"] === "acct_test_rounding")!;
      expect(payout.headers["idempotency-key"]).to.equal(transfer.headers["idempotency-key"]!.toString().replace(":transfer", ":payout"));
      // Below the threshold now: nothing runs.
      expect((await payouts.fiat.runPayouts()).find((o) => o.seller === seller)).to.deep.equal({ seller, outcome: "below-threshold" });
      await expectBalancedBooks(db());
    } finally {
      await payouts.close();
    }
  });

  it("retries a Stripe 5xx and a timeout on every call with the same idempotency key, so nothing happens twice", async () => {
    const seller = unique("seller");
    const flaky = await startShop(db(), stripe, seller, { threshold: 1n, timeoutMs: 300 });
    try {
      await setSellerDestination(db().prisma, seller, "acct_test_flaky");
      for (const path of [/^\/v1\/checkout\/sessions$/, /^\/v1\/transfers$/, /^\/v1\/payouts$/]) {
        stripe.fault("POST", path, { status: 500 });
        stripe.fault("POST", path, { delayMs: 1_000 });
      }
      const buyer = await fundedBuyer(flaky, stripe, "1.00");
      const sessions = stripe.requests.filter((r) => r.body.client_reference_id === buyer.topUpId);
      expect(sessions).to.have.length(3);
      expect(new Set(sessions.map((r) => r.headers["idempotency-key"])).size).to.equal(1);
      expect([...stripe.objects.values()].filter((o) => o.client_reference_id === buyer.topUpId)).to.have.length(1);
      await deliver(flaky, buyer.paid);
      for (let i = 0; i < 20; i++) await payWithCredit(flaky, buyer.key);
      const [outcome] = (await flaky.fiat.runPayouts()).filter((o) => o.seller === seller);
      expect(outcome).to.deep.include({ outcome: "posted" });
      const transfers = stripe.requests.filter((r) => r.path === "/v1/transfers" && r.body.destination === "acct_test_flaky");
      expect(transfers).to.have.length(3);
      expect(new Set(transfers.map((r) => r.headers["idempotency-key"])).size).to.equal(1);
      expect([...stripe.objects.values()].filter((o) => o.object === "transfer" && o.destination === "acct_test_flaky")).to.have.length(1);
      const payoutCalls = stripe.requests.filter((r) => r.path === "/v1/payouts" && r.headers["stripe-account"] === "acct_test_flaky");
      expect(payoutCalls).to.have.length(3);
      expect(new Set(payoutCalls.map((r) => r.headers["idempotency-key"])).size).to.equal(1);

      // Reconciliation's listing survives a 5xx and a timeout too (a GET: retried as is).
      stripe.fault("GET", /^\/v1\/balance_transactions$/, { status: 503 });
      stripe.fault("GET", /^\/v1\/balance_transactions$/, { delayMs: 1_000 });
      await bookCredit(db().sql);
      const report = await flaky.fiat.reconcile();
      expect(report.differences.filter((d) => d.severity === "missing"), JSON.stringify(report.differences)).to.deep.equal([]);
      await expectBalancedBooks(db());
    } finally {
      await flaky.close();
    }
  });

  it("voids a payout Stripe refuses — before the transfer, or after it (reversed) — with the money back in the seller's balance; keeps one it cannot confirm pending and resumes it with the same keys", async () => {
    const seller = unique("seller");
    const shop2 = await startShop(db(), stripe, seller, { threshold: 1n, timeoutMs: 300 });
    try {
      await setSellerDestination(db().prisma, seller, "acct_test_failing");
      const buyer = await fundedBuyer(shop2, stripe, "1.00");
      await deliver(shop2, buyer.paid);
      for (let i = 0; i < 30; i++) await payWithCredit(shop2, buyer.key);
      await shop2.store.book();
      const payable = () => balanceOf(db().prisma, accountId.sellerPayable(seller, USD));
      expect(await payable()).to.equal(30_000n);
      const refusal = { status: 400, body: JSON.parse(JSON.stringify({ error: { type: "invalid_request_error", code: "balance_insufficient", message: "You have insufficient available funds in your Stripe account." } })) };

      stripe.fault("POST", /^\/v1\/transfers$/, refusal);
      const [refused] = (await shop2.fiat.runPayouts()).filter((o) => o.seller === seller);
      expect(refused).to.deep.include({ outcome: "voided" });
      expect(await payable()).to.equal(30_000n);

      stripe.fault("POST", /^\/v1\/payouts$/, refusal);
      const [afterTransfer] = (await shop2.fiat.runPayouts()).filter((o) => o.seller === seller) as unknown as [{ outcome: string; payout: { transferRef: string; reversalRef: string } }];
      expect(afterTransfer.outcome).to.equal("voided");
      expect(afterTransfer.payout.reversalRef).to.match(/^trr_/);
      expect(stripe.requests.find((r) => r.path === `/v1/transfers/${afterTransfer.payout.transferRef}/reversals`)!.headers["idempotency-key"]).to.match(/:reversal$/);
      expect(await payable()).to.equal(30_000n);

      // Stripe down for longer than the SDK retries: pending, with PAYOUTS_IN_TRANSIT holding it.
      stripe.fault("POST", /^\/v1\/transfers$/, { status: 500, times: 3 });
      const [unknown] = (await shop2.fiat.runPayouts()).filter((o) => o.seller === seller) as unknown as [{ outcome: string; payout: { id: string } }];
      expect(unknown.outcome).to.equal("pending");
      expect(await payable()).to.equal(0n);
      expect(await balanceOf(db().prisma, accountId.payoutsInTransit("stripe", USD))).to.satisfy((v: bigint) => v >= 30_000n);
      const [resumed] = (await shop2.fiat.runPayouts()).filter((o) => o.seller === seller) as unknown as [{ outcome: string; payout: { id: string } }];
      expect(resumed).to.deep.include({ outcome: "posted" });
      expect(resumed.payout.id).to.equal(unknown.payout.id);
      const keys = stripe.requests.filter((r) => r.path === "/v1/transfers" && r.headers["idempotency-key"]?.includes(unknown.payout.id)).map((r) => r.headers["idempotency-key"]);
      expect(keys).to.have.length(4);
      expect(new Set(keys).size).to.equal(1);
      await expectBalancedBooks(db());
    } finally {
      await shop2.close();
    }
  });

  it("reconciles Stripe's balance transactions with the ledger, naming a charge whose webhook never came and a movement nobody booked", async () => {
    const buyer = await fundedBuyer(shop, stripe, "3.00");
    await bookCredit(db().sql);
    let report = await shop.fiat.reconcile();
    const missing = report.differences.filter((d) => d.severity === "missing");
    expect(missing.map((d) => d.code)).to.deep.equal(["FIAT_CHARGE_NOT_BOOKED"]);
    expect(missing[0]!.cause).to.include(buyer.paymentIntent);
    stripe.adjust(-700, "manual adjustment");
    await deliver(shop, buyer.paid);
    report = await shop.fiat.reconcile();
    expect(report.differences.filter((d) => d.severity === "missing")).to.deep.equal([]);
    expect(report.differences.map((d) => d.code)).to.include("FIAT_UNEXPLAINED_MOVEMENT");
    expect(BigInt(report.processorTotals.fees) > 0n).to.equal(true);
  });
}, { own: true });

describe("fiat rails: two gateway processes on one Postgres", function () {
  it("never spend more credit than the account holds, whatever the race", async () => {
    const database = await createPostgresDatabase();
    const [one, two] = [await openDatabase({ url: database.url }), await openDatabase({ url: database.url })];
    const stripe = await startFakeStripe();
    const seller = unique("seller");
    const [a, b] = [await startShop(one, stripe, seller), await startShop(two, stripe, seller)];
    try {
      const buyer = await fundedBuyer(a, stripe, "1.00");
      await deliver(b, buyer.paid);
      // $1.00 buys 1,000 requests at $0.001; 1,320 are sent, split over both gateways, 40 at a time.
      const statuses: number[] = [];
      for (let round = 0; round < 33; round++) {
        const results = await Promise.all(Array.from({ length: 40 }, (_, i) => payWithCredit(i % 2 ? a : b, buyer.key)));
        statuses.push(...results.map((r) => r.status));
      }
      expect(statuses.filter((s) => s === 200)).to.have.length(1_000);
      expect(statuses.filter((s) => s === 402)).to.have.length(320);
      const balance = (await creditBalance(one.prisma, buyer.accountId))!;
      expect([balance.spent, balance.balance]).to.deep.equal([1_000_000n, 0n]);
      await a.store.book();
      await b.store.book();
      expect(await balanceOf(one.prisma, accountId.sellerPayable(seller, USD))).to.equal(1_000_000n);
      await expectBalancedBooks(one);
    } finally {
      await a.close();
      await b.close();
      await stripe.close();
      await one.close();
      await two.close();
      await database.drop();
    }
  });
});
