// Keeping buyers on prepaid credit, for real but offline: credit spent through the real paywall on
// Postgres and PGlite, the real Stripe SDK against the local fake Stripe (saved cards, off-session
// PaymentIntents, declines), webhooks signed with the SDK's helper and delivered over HTTP, and the
// seller's notice receiver a local HTTP server that checks each signature. The worker's clock is
// injected, so a retry schedule of hours runs in milliseconds.
import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:http";
import { randomUUID } from "node:crypto";
import { expect } from "chai";
import express from "express";
import { ConfigError, loadConfig } from "../../src/config.js";
import { CreditScheme } from "../../src/gateway/CreditScheme.js";
import { paywall } from "../../src/gateway/paywall.js";
import { createCreditAccount, creditBalance, issueCreditKey } from "../../src/ledger/credit.js";
import type { Database } from "../../src/ledger/db.js";
import { claimDueRecharges, noticesOf, openDueRecharges, rechargeDeclined, rechargesOf } from "../../src/ledger/dunning.js";
import { LedgerCreditStore } from "../../src/ledger/LedgerCreditStore.js";
import { accountsOutOfBalance, trialBalance } from "../../src/ledger/postings.js";
import { PriceTable } from "../../src/policy/prices.js";
import { creditReceiptSchema, encodeCreditPayment } from "../../src/protocol/credit.js";
import { HEADERS } from "../../src/protocol/wire.js";
import { Dunning, SIGNATURE_HEADER, verifyNoticeSignature } from "../../src/rails/Dunning.js";
import { FiatRails } from "../../src/rails/FiatRails.js";
import { operatorFiatRoutes, publicFiatRoutes } from "../../src/rails/http.js";
import { StripeRail } from "../../src/rails/StripeRail.js";
import { createApp, startPaychan } from "../../src/server.js";
import { deployEscrow } from "../helpers/escrow.js";
import { signWebhook, startFakeStripe, type FakeStripe } from "../helpers/fakeStripe.js";
import { describeEachDatabase, unique } from "../ledger/helpers.js";
import { decodeJsonHeader } from "./decode.js";

const USD = "fiat:USD" as const;
const WEBHOOK_SECRET = "whsec_test_paychan";
const NOTICE_SECRET = "notice-secret-for-tests";
const PRICE = 1_000n; // $0.001
/** Below $4.998 the seller is told, and a saved card recharged. */
const THRESHOLD = 4_998_000n;
const HOUR = 3600;
const SCHEDULE = [HOUR, 6 * HOUR, 24 * HOUR];

type Received = { body: string; headers: Record<string, string | string[] | undefined> };

/** The seller's system: receives notices, answers 500 while `failing` > 0. */
async function startReceiver() {
  const received: Received[] = [];
  const state = { failing: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ body: Buffer.concat(chunks).toString("utf8"), headers: req.headers });
      if (state.failing > 0) {
        state.failing--;
        return void res.writeHead(500).end("down");
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/paychan-notices`,
    received,
    state,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describeEachDatabase("keeping buyers on credit: low-balance notices and auto-recharge", (db) => {
  let stripe: FakeStripe;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let server: Server;
  let url: string;
  let store: LedgerCreditStore;
  let dunning: Dunning;
  let clock: number;
  const logged: string[] = [];

  before(async () => {
    stripe = await startFakeStripe();
    receiver = await startReceiver();
    const rail = new StripeRail({ secretKey: "sk_test_paychan", webhookSecret: WEBHOOK_SECRET, apiBase: stripe.url, timeoutMs: 2_000, maxNetworkRetries: 0 });
    const fiat = new FiatRails({ db: db(), rail, currency: "USD", payoutThreshold: 1_000_000n, successUrl: "https://shop.example/ok", cancelUrl: "https://shop.example/no", saveCards: true });
    store = new LedgerCreditStore(db(), { bookingIntervalMs: 60_000, lowBalance: THRESHOLD });
    const credit = new CreditScheme({ store, seller: unique("seller"), asset: USD, topUpPath: "/credit/topups" });
    const app = express();
    app.use(publicFiatRoutes(fiat, () => {}));
    app.use("/ops", operatorFiatRoutes(fiat));
    app.use(paywall([credit], { "GET /quote": { usd: "0.001" } }, { prices: new PriceTable(USD, { [USD]: { usd: "1", decimals: 6 } }) }));
    app.get("/quote", (_req, res) => void res.json({ quote: "ok" }));
    server = await new Promise((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    clock = Date.now();
    dunning = new Dunning({
      db: db(),
      rail,
      currency: "USD",
      asset: USD,
      notices: { url: receiver.url, secret: NOTICE_SECRET },
      recharge: { threshold: THRESHOLD, amountMinor: 500n, retrySchedule: SCHEDULE },
      now: () => new Date(clock),
      log: (line) => void logged.push(line),
    });
  });
  after(async () => {
    await new Promise((resolve) => server.close(resolve));
    await store.close();
    await receiver.close();
    await stripe.close();
  });

  async function deliver(event: unknown) {
    const payload = JSON.stringify(event);
    const response = await fetch(`${url}/webhooks/stripe`, {
      method: "POST",
      headers: { "content-type": "application/json", "stripe-signature": signWebhook(payload, WEBHOOK_SECRET) },
      body: payload,
    });
    expect(response.status).to.equal(200);
  }

  /** A checkout top-up of `dollars`, paid and its webhook delivered: the session (with the saved card's customer). */
  async function topUp(key: string, dollars: string) {
    const started = await fetch(`${url}/credit/topups`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ amount: dollars }) });
    expect(started.status).to.equal(201);
    const sessionId = ((await started.json()) as { url: string }).url.split("/").pop()!;
    await deliver(stripe.payCheckout(sessionId));
    return stripe.objects.get(sessionId)!;
  }

  async function buyer(dollars = "5.00") {
    const opened = (await (await fetch(`${url}/ops/credit/accounts`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).json()) as { accountId: string; key: string; keyId: string };
    const session = await topUp(opened.key, dollars);
    return { ...opened, customer: session.customer as string };
  }

  async function pay(key: string) {
    const response = await fetch(`${url}/quote`, { headers: { [HEADERS.signature]: encodeCreditPayment(key, randomUUID()) } });
    const body = (await response.json()) as { error?: string; details?: Record<string, string> };
    const receipt = response.headers.get(HEADERS.response);
    const required = response.headers.get(HEADERS.required);
    return {
      status: response.status,
      body,
      receipt: receipt ? creditReceiptSchema.parse(decodeJsonHeader(receipt)) : undefined,
      terms: required ? (decodeJsonHeader(required) as { accepts: { scheme: string; extra: { remaining?: string } }[] }).accepts[0] : undefined,
    };
  }

  const balanceOf = async (account: string) => (await creditBalance(db().prisma, account))!;

  it("puts the account's balance in each receipt and in the 402 that refuses for it", async () => {
    const funded = await buyer("5.00");
    const paid = await pay(funded.key);
    expect(paid.status).to.equal(200);
    expect(paid.receipt!.remaining).to.equal(5_000_000n - PRICE);

    const opened = (await (await fetch(`${url}/ops/credit/accounts`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).json()) as { key: string };
    const refused = await pay(opened.key);
    expect([refused.status, refused.body.error]).to.deep.equal([402, "insufficient_credit"]);
    expect(refused.terms!.extra.remaining).to.equal("0");
  });

  it("writes one low-balance notice per crossing, delivers it signed, and retries after the receiver failed", async () => {
    const funded = await buyer("5.00");
    for (let i = 0; i < 2; i++) expect((await pay(funded.key)).status).to.equal(200); // 4.998: not below
    expect(await noticesOf(db().prisma, funded.accountId)).to.deep.equal([]);
    for (let i = 0; i < 3; i++) expect((await pay(funded.key)).status).to.equal(200);
    const [notice, ...more] = await noticesOf(db().prisma, funded.accountId);
    expect(more).to.deep.equal([]);
    expect(notice!.type).to.equal("credit.low_balance");
    expect(notice!.data).to.deep.equal({ accountId: funded.accountId, asset: USD, balance: "4997000", threshold: "4998000" });

    // The worker's clock from here on (the notice was written at the database's).
    clock = Date.now() + 1_000;
    receiver.received.length = 0;
    receiver.state.failing = 1;
    const failed = await dunning.runOnce();
    expect(failed.undelivered).to.be.greaterThan(0);
    const mine = () => receiver.received.filter((r) => JSON.parse(r.body).id === notice!.id);
    expect(mine()).to.have.length(1);
    expect((await noticesOf(db().prisma, funded.accountId))[0]).to.deep.include({ attempts: 1, deliveredAt: null, lastError: "the receiver answered 500" });

    await dunning.runOnce(); // not due yet: the backoff is 30 s
    expect(mine()).to.have.length(1);
    clock += 31_000;
    await dunning.runOnce();
    expect(mine()).to.have.length(2);
    const [first, second] = mine();
    expect(second!.body).to.equal(first!.body);
    expect(second!.headers["idempotency-key"]).to.equal(notice!.id);
    const signature = second!.headers[SIGNATURE_HEADER] as string;
    expect(verifyNoticeSignature(second!.body, signature, NOTICE_SECRET, { now: Math.floor(clock / 1000) })).to.equal(true);
    expect(verifyNoticeSignature(second!.body.replace("4997000", "9997000"), signature, NOTICE_SECRET, { now: Math.floor(clock / 1000) })).to.equal(false);
    expect(verifyNoticeSignature(second!.body, signature, "another secret", { now: Math.floor(clock / 1000) })).to.equal(false);
    expect(JSON.parse(second!.body)).to.deep.include({ id: notice!.id, type: "credit.low_balance" });
    expect((await noticesOf(db().prisma, funded.accountId))[0]!.deliveredAt).to.not.equal(null);
    await dunning.runOnce();
    expect(mine()).to.have.length(2);

    // A top-up lifts the balance above the threshold; the next crossing is a new notice, and only one.
    await topUp(funded.key, "1.00");
    const charge = (n: number) => ({ keyId: funded.keyId, accountId: funded.accountId, seller: "s", price: 1_000_000n, requestKey: `big-${n}` });
    expect((await store.spend([charge(1)]))[0]!.ok).to.equal(true); // 5.995 → 4.995
    expect((await store.spend([charge(2)]))[0]!.ok).to.equal(true);
    const notices = await noticesOf(db().prisma, funded.accountId);
    expect(notices.map((n) => n.data)).to.deep.equal([
      { accountId: funded.accountId, asset: USD, balance: "4997000", threshold: "4998000" },
      { accountId: funded.accountId, asset: USD, balance: "4995000", threshold: "4998000" },
    ]);
  });

  it("recharges the saved card off-session, credits it only from the webhook, and opens no second recharge meanwhile", async () => {
    const funded = await buyer("5.00");
    expect((await balanceOf(funded.accountId)).cardSaved).to.equal(true);
    for (let i = 0; i < 3; i++) expect((await pay(funded.key)).status).to.equal(200); // 4.997: below
    const round = await dunning.runOnce();
    expect(round.opened).to.be.greaterThan(0);
    const [recharge] = await rechargesOf(db().prisma, funded.accountId);
    expect(recharge).to.deep.include({ status: "CHARGED", attempts: 1 });
    const charge = stripe.requests.filter((r) => r.path === "/v1/payment_intents" && r.body.customer === funded.customer);
    expect(charge).to.have.length(1);
    expect(charge[0]!.headers["idempotency-key"]).to.equal(`paychan:recharge:${recharge!.topUpId}`);
    expect(charge[0]!.body).to.include({ amount: "500", currency: "usd", off_session: "true", confirm: "true", "metadata[paychan_recharge]": recharge!.id });
    expect((await balanceOf(funded.accountId)).balance).to.equal(4_997_000n); // not before the webhook

    await dunning.runOnce();
    expect(stripe.requests.filter((r) => r.path === "/v1/payment_intents" && r.body.customer === funded.customer)).to.have.length(1);

    const intent = [...stripe.objects.values()].find((o) => o.object === "payment_intent" && o.customer === funded.customer)!;
    const succeeded = stripe.paymentIntentSucceeded(intent.id);
    await deliver(succeeded);
    await deliver(succeeded); // a duplicate changes nothing
    expect((await balanceOf(funded.accountId)).balance).to.equal(4_997_000n + 5_000_000n);
    expect((await rechargesOf(db().prisma, funded.accountId))[0]!.status).to.equal("SUCCEEDED");
    await store.book();
    for (const [asset, t] of await trialBalance(db().prisma)) expect(t.debits, asset).to.equal(t.credits);
    expect(await accountsOutOfBalance(db().prisma)).to.deep.equal([]);
  });

  it("tries a recharge whose outcome was unknown (a Stripe 5xx) again with the same idempotency key, counting no attempt", async () => {
    const funded = await buyer("5.00");
    for (let i = 0; i < 3; i++) expect((await pay(funded.key)).status).to.equal(200);
    stripe.fault("POST", /^\/v1\/payment_intents$/, { status: 500 });
    clock = Math.max(clock, Date.now()) + 1_000;
    expect((await dunning.runOnce()).uncertain).to.equal(1);
    expect((await rechargesOf(db().prisma, funded.accountId))[0]).to.deep.include({ status: "PENDING", attempts: 0 });
    clock += 61_000;
    expect((await dunning.runOnce()).charged).to.equal(1);
    const sent = stripe.requests.filter((r) => r.path === "/v1/payment_intents" && r.body.customer === funded.customer);
    expect(sent).to.have.length(2);
    expect(sent[1]!.headers["idempotency-key"]).to.equal(sent[0]!.headers["idempotency-key"]);
    expect((await rechargesOf(db().prisma, funded.accountId))[0]).to.deep.include({ status: "CHARGED", attempts: 1 });
  });

  it("retries a declined card on the schedule, then suspends the account with a final notice; never below zero; a paid top-up lifts it", async () => {
    const funded = await buyer("5.00");
    stripe.declineCard(funded.customer, 4);
    for (let i = 0; i < 3; i++) expect((await pay(funded.key)).status).to.equal(200);
    const attempts = () => stripe.requests.filter((r) => r.path === "/v1/payment_intents" && r.body.customer === funded.customer);
    const start = clock;

    await dunning.runOnce();
    expect(attempts()).to.have.length(1);
    let [recharge] = await rechargesOf(db().prisma, funded.accountId);
    expect(recharge).to.deep.include({ status: "PENDING", attempts: 1 });
    expect(recharge!.nextAttemptAt!.getTime()).to.equal(start + HOUR * 1000);
    expect(recharge!.lastError).to.match(/card_declined/);

    clock = start + 30 * 60_000; // within the first wait: nothing
    await dunning.runOnce();
    expect(attempts()).to.have.length(1);
    clock = start + HOUR * 1000;
    await dunning.runOnce();
    expect(attempts()).to.have.length(2);
    clock += 6 * HOUR * 1000;
    await dunning.runOnce();
    expect(attempts()).to.have.length(3);
    expect((await pay(funded.key)).status).to.equal(200); // still spending its own balance meanwhile
    clock += 24 * HOUR * 1000;
    receiver.received.length = 0;
    await dunning.runOnce();
    expect(attempts()).to.have.length(4);
    // Each attempt its own top-up and idempotency key.
    expect(new Set(attempts().map((r) => r.headers["idempotency-key"])).size).to.equal(4);

    [recharge] = await rechargesOf(db().prisma, funded.accountId);
    expect(recharge).to.deep.include({ status: "FAILED", attempts: 4, nextAttemptAt: null });
    const account = await balanceOf(funded.accountId);
    expect(account).to.deep.include({ suspended: true, suspendedReason: "recharge_failed", balance: 4_996_000n });
    const final = (await noticesOf(db().prisma, funded.accountId)).find((n) => n.type === "credit.recharge_failed");
    expect(final!.data).to.deep.include({ accountId: funded.accountId, rechargeId: recharge!.id, attempts: 4, balance: "4996000" });
    const sent = receiver.received.map((r) => JSON.parse(r.body) as { id: string; type: string });
    expect(sent.filter((n) => n.id === final!.id)).to.have.length(1);
    expect(logged.some((line) => line.includes(recharge!.id) && line.includes("suspended"))).to.equal(true);

    const shown = (await (await fetch(`${url}/ops/credit/accounts/${funded.accountId}`)).json()) as { suspendedReason: string; recharges: { status: string }[]; notices: { type: string }[] };
    expect(shown.suspendedReason).to.equal("recharge_failed");
    expect(shown.recharges.map((r) => r.status)).to.deep.equal(["FAILED"]);
    expect(shown.notices.map((n) => n.type)).to.deep.equal(["credit.low_balance", "credit.recharge_failed"]);

    const refused = await pay(funded.key);
    expect([refused.status, refused.body.error, refused.body.details?.reason]).to.deep.equal([402, "credit_suspended", "recharge_failed"]);
    expect(refused.terms!.extra.remaining).to.equal("4996000");
    clock += 48 * HOUR * 1000;
    await dunning.runOnce(); // a suspended account gets no new recharge
    expect(attempts()).to.have.length(4);
    expect((await balanceOf(funded.accountId)).balance).to.equal(4_996_000n);

    await topUp(funded.key, "1.00");
    expect(await balanceOf(funded.accountId)).to.deep.include({ suspended: false, balance: 5_996_000n });
    expect((await pay(funded.key)).status).to.equal(200);
  });

  it("counts an attempt once when two workers report it (a lease that ran out while the processor answered)", async () => {
    const funded = await buyer("5.00");
    for (let i = 0; i < 3; i++) expect((await pay(funded.key)).status).to.equal(200);
    clock = Math.max(clock, Date.now()) + 1_000;
    await openDueRecharges(db().prisma, { asset: USD, processor: "stripe", currency: "USD", threshold: THRESHOLD, amountMinor: 500n, now: new Date(clock) });
    const due = (await claimDueRecharges(db().prisma, new Date(clock), 1, 100)).find((r) => r.accountId === funded.accountId)!;
    const again = (await claimDueRecharges(db().prisma, new Date(clock + 10), 1, 100)).find((r) => r.accountId === funded.accountId)!;
    expect(again.topUpId).to.equal(due.topUpId); // the same attempt: the same top-up, the same idempotency key
    await rechargeDeclined(db().prisma, due, { retryAt: new Date(clock + HOUR * 1000), error: "declined", now: new Date(clock) });
    await rechargeDeclined(db().prisma, again, { retryAt: new Date(clock + HOUR * 1000), error: "declined", now: new Date(clock) });
    expect((await rechargesOf(db().prisma, funded.accountId))[0]).to.deep.include({ status: "PENDING", attempts: 1 });
  });

  it("does none of it unless configured: no notice, no recharge", async () => {
    const quiet = new LedgerCreditStore(db(), { bookingIntervalMs: 60_000 });
    const silent = new Dunning({ db: db(), rail: new StripeRail({ secretKey: "sk_test_paychan", webhookSecret: WEBHOOK_SECRET, apiBase: stripe.url }), currency: "USD", asset: USD });
    try {
      const funded = await buyer("5.00");
      for (let i = 0; i < 3; i++) {
        const [outcome] = await quiet.spend([{ keyId: funded.keyId, accountId: funded.accountId, seller: "s", price: PRICE, requestKey: `quiet-${i}` }]);
        expect(outcome!.ok).to.equal(true);
      }
      expect((await balanceOf(funded.accountId)).balance < THRESHOLD).to.equal(true);
      expect(await noticesOf(db().prisma, funded.accountId)).to.deep.equal([]);
      expect(silent.enabled).to.equal(false);
      expect(await silent.runOnce()).to.deep.equal({ opened: 0, charged: 0, declined: 0, failed: 0, uncertain: 0, delivered: 0, undelivered: 0 });
      expect(await rechargesOf(db().prisma, funded.accountId)).to.deep.equal([]);
    } finally {
      await quiet.close();
    }
  });
});

describe("keeping buyers on credit: configuration", () => {
  const base = {
    ESCROW_ADDRESS: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    PAYEE_ADDRESS: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    STRIPE_SECRET_KEY: "sk_test_paychan",
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  };
  const refusal = async (env: Record<string, string>) => {
    const error = await startPaychan(loadConfig({ ...base, ...env })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(ConfigError);
    return (error as Error).message;
  };

  it("names the variable that is missing or wrong, before opening anything", async () => {
    expect(await refusal({ CREDIT_AUTO_RECHARGE: "10.00" })).to.match(/^CREDIT_LOW_BALANCE is not set/);
    expect(await refusal({ CREDIT_LOW_BALANCE: "2", CREDIT_NOTICE_WEBHOOK_URL: "https://seller.example/hooks" })).to.match(/^CREDIT_NOTICE_WEBHOOK_SECRET is not set/);
    expect(await refusal({ CREDIT_LOW_BALANCE: "2.001" })).to.match(/^CREDIT_LOW_BALANCE: /);
    expect(await refusal({ CREDIT_LOW_BALANCE: "2", CREDIT_AUTO_RECHARGE: "0" })).to.match(/^CREDIT_AUTO_RECHARGE must be more than 0/);
    expect(await refusal({ CREDIT_LOW_BALANCE: "20", CREDIT_AUTO_RECHARGE: "10" })).to.match(/^CREDIT_AUTO_RECHARGE \(10\) must be at least CREDIT_LOW_BALANCE/);
    expect(await refusal({ STRIPE_SECRET_KEY: "", STRIPE_WEBHOOK_SECRET: "", CREDIT_LOW_BALANCE: "2" })).to.match(/^CREDIT_LOW_BALANCE applies to prepaid credit, which is off/);
    expect(() => loadConfig({ CREDIT_RECHARGE_RETRIES: "1h,soon" })).to.throw(ConfigError, /CREDIT_RECHARGE_RETRIES/);
  });
});

describe("keeping buyers on credit: composed from the configuration by startPaychan", () => {
  it("spends through createApp's paywall with CREDIT_LOW_BALANCE in the spend statement, and paychan.dunning delivers and recharges", async () => {
    const chain = await deployEscrow();
    const stripe = await startFakeStripe();
    const receiver = await startReceiver();
    const paychan = await startPaychan(
      loadConfig({
        ESCROW_ADDRESS: chain.escrow.address,
        PAYEE_ADDRESS: chain.payee.account.address,
        DATABASE_URL: "pglite:memory",
        STRIPE_SECRET_KEY: "sk_test_paychan",
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        STRIPE_API_BASE: stripe.url,
        CREDIT_LOW_BALANCE: "5.00",
        CREDIT_NOTICE_WEBHOOK_URL: receiver.url,
        CREDIT_NOTICE_WEBHOOK_SECRET: NOTICE_SECRET,
        CREDIT_AUTO_RECHARGE: "5.00",
        LOG_LEVEL: "silent",
      }),
      { publicClient: chain.publicClient as never },
    ).catch(async (error: unknown) => {
      await receiver.close();
      await stripe.close();
      throw error;
    });
    const app = createApp(paychan, { "GET /quote": { usd: "0.001" } }, { "GET /quote": (_req, res) => void res.json({ ok: true }) });
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect(paychan.dunning?.enabled).to.equal(true);
      const { id } = await createCreditAccount(paychan.db.prisma, { currency: "USD" });
      const { key } = await issueCreditKey(paychan.db.prisma, id);
      const started = await fetch(`${base}/credit/topups`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ amount: "5.00" }) });
      const sessionId = ((await started.json()) as { url: string }).url.split("/").pop()!;
      expect(stripe.requests.find((r) => r.path === "/v1/checkout/sessions")!.body).to.include({ customer_creation: "always", "payment_intent_data[setup_future_usage]": "off_session" });
      const payload = JSON.stringify(stripe.payCheckout(sessionId));
      await fetch(`${base}/webhooks/stripe`, { method: "POST", headers: { "content-type": "application/json", "stripe-signature": signWebhook(payload, WEBHOOK_SECRET) }, body: payload });

      for (let i = 0; i < 2; i++) expect((await fetch(`${base}/quote`, { headers: { authorization: `Bearer ${key}` } })).status).to.equal(200);
      expect((await noticesOf(paychan.db.prisma, id)).map((n) => n.type)).to.deep.equal(["credit.low_balance"]); // 5.000 → 4.999 crossed once

      const round = await paychan.dunning!.runOnce();
      expect(round).to.deep.include({ opened: 1, charged: 1, delivered: 1 });
      const [sent] = receiver.received;
      expect(verifyNoticeSignature(sent!.body, sent!.headers[SIGNATURE_HEADER] as string, NOTICE_SECRET)).to.equal(true);
      expect(stripe.requests.filter((r) => r.path === "/v1/payment_intents")[0]!.body).to.include({ amount: "500", off_session: "true" });
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await paychan.close();
      await receiver.close();
      await stripe.close();
    }
  });
});
