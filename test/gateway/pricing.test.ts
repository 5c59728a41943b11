// Route pricing through the real paywall: the escrow on the EDR chain, the database (Postgres and
// PGlite), the Express paywall on a real HTTP port, and the buyer's SDK. The clock and the demand are
// injected, so the price moves exactly when a test says.
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { expect } from "chai";
import express from "express";
import { createWalletClient, custom, parseEther } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { CreditScheme } from "../../src/gateway/CreditScheme.js";
import { paywall } from "../../src/gateway/paywall.js";
import type { PaymentDecision } from "../../src/gateway/paywall.js";
import type { Database } from "../../src/ledger/db.js";
import { applyFiatEvent, createCreditAccount, issueCreditKey, recordTopUp } from "../../src/ledger/credit.js";
import { LedgerCreditStore } from "../../src/ledger/LedgerCreditStore.js";
import { LedgerPaymentStore } from "../../src/ledger/LedgerPaymentStore.js";
import { PayerVolume } from "../../src/ledger/payerVolume.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { PriceTable } from "../../src/policy/prices.js";
import { RoutePricing, type DemandSample } from "../../src/policy/pricing.js";
import { ChannelPayer } from "../../src/client/ChannelPayer.js";
import { HEADERS, decodePaymentRequired, decodeReceipt, encodeHeader } from "../../src/protocol/wire.js";
import { describeEachDatabase, rejectsWith } from "../ledger/helpers.js";
import { buyerFetch, deployEscrow, openBuyerChannel, sellerGateway, type Buyer } from "../helpers/seller.js";
import type { EscrowFixture } from "../helpers/escrow.js";

const FLOOR = 1_000_000_000_000n;
const CEILING = 3_000_000_000_000n;
const RECOMPUTE_SECONDS = 10;
const GRACE_SECONDS = 20;
const TIER_PRICE = 1_000_000_000_000n;

describeEachDatabase("route pricing through the paywall", (db) => {
  let chain: EscrowFixture;
  let url: string;
  let server: Server;
  let store: LedgerPaymentStore;
  let creditStore: LedgerCreditStore;
  let now: number;
  let handled: number;
  const decisions: PaymentDecision[] = [];
  const demand: DemandSample = { requestsPerSecond: 0, concurrency: 0 };
  const setDemand = (requestsPerSecond: number) => Object.assign(demand, { requestsPerSecond });
  /** Moves the clock past the current price's stand, so the next request reads demand again. */
  const nextPeriod = () => (now += RECOMPUTE_SECONDS * 1000);

  before(async () => {
    chain = await deployEscrow();
    now = Date.UTC(2026, 10, 30, 12, 0, 0);
    store = new LedgerPaymentStore(db());
    const gateway = sellerGateway(chain, store);
    const demandPriced = new RoutePricing({
      demand: { floor: FLOOR, ceiling: CEILING, ceilingAtRequestsPerSecond: 10, recomputeSeconds: RECOMPUTE_SECONDS, graceSeconds: GRACE_SECONDS },
      clock: () => now,
      meter: { sample: () => demand, started() {}, finished() {} },
    });
    // Bounds three units apart: most levels fall between two whole units.
    const odd = new RoutePricing({
      demand: { floor: 1000n, ceiling: 1003n, ceilingAtRequestsPerSecond: 3, recomputeSeconds: RECOMPUTE_SECONDS },
      clock: () => now,
      meter: { sample: () => demand, started() {}, finished() {} },
    });
    const tiered = new RoutePricing({ price: TIER_PRICE, tiers: [{ from: 3, percentOff: 25 }], volume: new PayerVolume(db().sql) });
    // Prepaid credit, priced in dollars by the same kind of policy through the same price table.
    creditStore = new LedgerCreditStore(db());
    const credit = new CreditScheme({ store: creditStore, seller: chain.payee.account.address, asset: "fiat:USD" });
    const dollars = new RoutePricing({
      demand: { floor: { usd: "0.001" }, ceiling: { usd: "0.003" }, ceilingAtRequestsPerSecond: 10, recomputeSeconds: RECOMPUTE_SECONDS },
      clock: () => now,
      meter: { sample: () => demand, started() {}, finished() {} },
    });
    const prices = new PriceTable(gateway.defaultAsset, { "fiat:USD": { usd: "1", decimals: 6 } });
    const app = express();
    const routes = { "GET /dynamic": demandPriced, "GET /odd": odd, "GET /tiered": tiered, "GET /fixed": FLOOR, "GET /credit": dollars };
    app.use(paywall([gateway, credit], routes, { prices, onDecision: (d) => decisions.push(d) }));
    handled = 0;
    for (const path of ["/dynamic", "/odd", "/tiered", "/fixed", "/credit"]) {
      app.get(path, (_req, res) => {
        handled++;
        res.json({ ok: true });
      });
    }
    server = await new Promise((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await store.close();
    await creditStore.close();
  });
  beforeEach(() => {
    setDemand(0);
    nextPeriod();
  });

  async function terms(path = "/dynamic") {
    const response = await fetch(`${url}${path}`);
    expect(response.status).to.equal(402);
    return decodePaymentRequired(response.headers.get(HEADERS.required)!).accepts[0]!;
  }

  async function paymentsOf(buyer: Buyer) {
    return db().prisma.payment.findMany({ where: { channelId: buyer.channel.id.toLowerCase() }, orderBy: { cumulativeAmount: "asc" } });
  }

  it("moves the price with load, between floor and ceiling, and states it and until when it holds in the 402", async () => {
    const idle = await terms();
    expect(idle.amount).to.equal(FLOOR);
    expect(idle.extra.price!.validUntil).to.equal(Math.ceil(now / 1000) + RECOMPUTE_SECONDS + GRACE_SECONDS);
    expect(idle.extra.price!.reason).to.include("demand level 0 ");

    setDemand(5);
    expect((await terms()).amount, "the price stands for recomputeSeconds").to.equal(FLOOR);
    nextPeriod();
    const busy = await terms();
    expect(busy.amount).to.equal((FLOOR + CEILING) / 2n);
    expect(busy.extra.price!.reason).to.include("demand level 0.5 (5 req/s of 10)");

    setDemand(1_000);
    nextPeriod();
    expect((await terms()).amount, "capped at the ceiling").to.equal(CEILING);
    setDemand(0);
    nextPeriod();
    expect((await terms()).amount, "back to the floor").to.equal(FLOOR);
  });

  it("rounds a price between floor and ceiling up, in the seller's favour by less than one unit, and charges that", async () => {
    // 1 req/s of 3: level 0.333333 (whole millionths), exactly 1000.999999 units: 1001.
    setDemand(1);
    nextPeriod();
    expect((await terms("/odd")).amount).to.equal(1001n);
    const buyer = await openBuyerChannel(chain);
    const response = await buyerFetch(buyer)(`${url}/odd`);
    expect(decodeReceipt(response.headers.get(HEADERS.response)!).charged).to.equal(1001n);
    expect(BigInt((await paymentsOf(buyer))[0]!.price.toFixed())).to.equal(1001n);
    // A price that is a whole number of units is not rounded further: the ceiling is 1003, not 1004.
    setDemand(3);
    nextPeriod();
    expect((await terms("/odd")).amount).to.equal(1003n);
    setDemand(0);
    nextPeriod();
    expect((await terms("/odd")).amount).to.equal(1000n);
  });

  it("charges the price the 402 stated until it expires, then refuses it with price_expired and the price now", async () => {
    const buyer = await openBuyerChannel(chain);
    const seen: { status: number; code?: string; amount?: bigint }[] = [];
    const recording: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      const required = response.headers.get(HEADERS.required);
      const body = required ? decodePaymentRequired(required) : undefined;
      seen.push({ status: response.status, code: body?.code, amount: body?.accepts[0]?.amount });
      return response;
    };
    const pay = buyerFetch(buyer, { fetch: recording, maxPrice: CEILING });

    expect((await pay(`${url}/dynamic`)).status).to.equal(200);
    const quotedAt = now;
    // The price rises; the buyer pays the price it was told (remembered from the 402), which still holds.
    setDemand(10);
    nextPeriod();
    seen.length = 0;
    const honoured = await pay(`${url}/dynamic`);
    expect(honoured.status).to.equal(200);
    expect(decodeReceipt(honoured.headers.get(HEADERS.response)!).charged).to.equal(FLOOR);
    expect(seen.map((s) => s.status), "one round trip").to.deep.equal([200]);

    // Past its validUntil the old price is refused, the 402 states the new one, and the SDK pays it.
    now = quotedAt + (RECOMPUTE_SECONDS + GRACE_SECONDS) * 1000;
    seen.length = 0;
    const repriced = await pay(`${url}/dynamic`);
    expect(repriced.status).to.equal(200);
    expect(decodeReceipt(repriced.headers.get(HEADERS.response)!).charged).to.equal(CEILING);
    expect(seen).to.deep.equal([
      { status: 402, code: "price_expired", amount: CEILING },
      { status: 200, code: undefined, amount: undefined },
    ]);

    const payments = await paymentsOf(buyer);
    expect(payments.map((p) => BigInt(p.price.toFixed()))).to.deep.equal([FLOOR, FLOOR, CEILING]);
    expect(payments.map((p) => p.status)).to.deep.equal(["ACCEPTED", "ACCEPTED", "ACCEPTED"]);
  });

  it("serves the identical resend of a paid request whose price expired meanwhile, charged once", async () => {
    const buyer = await openBuyerChannel(chain);
    let lose = 0; // the answers of the next `lose` paid requests are lost on the way back
    const lossy: typeof fetch = async (input, init) => {
      const request = new Request(input, init);
      const paid = request.headers.has(HEADERS.signature);
      const response = await fetch(request);
      if (paid && lose > 0) {
        lose--;
        await response.arrayBuffer();
        now += (RECOMPUTE_SECONDS + GRACE_SECONDS) * 1000; // the resend arrives after validUntil
        throw new TypeError("fetch failed");
      }
      return response;
    };
    const pay = buyerFetch(buyer, { fetch: lossy, maxPrice: CEILING });
    expect((await pay(`${url}/dynamic`)).status).to.equal(200);
    setDemand(10);
    lose = 1;
    const resent = await pay(`${url}/dynamic`);
    expect(resent.status).to.equal(200);
    expect(decodeReceipt(resent.headers.get(HEADERS.response)!).charged).to.equal(FLOOR);
    const payments = await paymentsOf(buyer);
    expect(payments.map((p) => BigInt(p.price.toFixed()))).to.deep.equal([FLOOR, FLOOR]);
  });

  it("stores the price paid and why with the payment, and tells onDecision", async () => {
    const buyer = await openBuyerChannel(chain);
    setDemand(5);
    nextPeriod();
    decisions.length = 0;
    expect((await buyerFetch(buyer, { maxPrice: CEILING })(`${url}/dynamic`)).status).to.equal(200);
    const [payment] = await paymentsOf(buyer);
    expect(BigInt(payment!.price.toFixed())).to.equal((FLOOR + CEILING) / 2n);
    expect(payment!.pricing).to.equal("demand level 0.5 (5 req/s of 10)");
    expect(decisions.find((d) => d.outcome === "paid")!.pricing).to.equal("demand level 0.5 (5 req/s of 10)");

    // A route with a fixed price stores no reason.
    const fixed = await openBuyerChannel(chain);
    expect((await buyerFetch(fixed)(`${url}/fixed`)).status).to.equal(200);
    expect((await paymentsOf(fixed))[0]!.pricing).to.equal(null);
  });

  it("with maxPrice, the SDK refuses a price above it without signing or being served, and pays once it is within", async () => {
    const buyer = await openBuyerChannel(chain);
    const maxPrice = (FLOOR + CEILING) / 2n;
    const pay = buyerFetch(buyer, { maxPrice });
    expect((await pay(`${url}/dynamic`)).status).to.equal(200);

    // The price rises above maxPrice, and the floor the buyer remembers has expired.
    setDemand(8);
    now += (RECOMPUTE_SECONDS + GRACE_SECONDS) * 1000;
    const handledBefore = handled;
    const error = await rejectsWith(pay(`${url}/dynamic`), "price_above_max");
    expect(error.message).to.include(`exceeds maxPrice ${maxPrice}`).and.include("demand level 0.8");
    expect(handled).to.equal(handledBefore);
    // Signed: the first payment and the refused one at the remembered floor; nothing at the new price.
    expect((await pay.state()).signedMax).to.equal(2n * FLOOR);
    expect((await pay.state()).accepted).to.equal(FLOOR);

    setDemand(5);
    nextPeriod();
    expect((await pay(`${url}/dynamic`)).status, "at maxPrice exactly").to.equal(200);
    expect((await paymentsOf(buyer)).map((p) => BigInt(p.price.toFixed()))).to.deep.equal([FLOOR, maxPrice]);
  });

  it("gives a payer crossing a volume tier the cheaper price from its next request on, counted in the database", async () => {
    // A payer of its own: the count is per payer, and other suites' payers share the database.
    const account = privateKeyToAccount(generatePrivateKey());
    await chain.networkHelpers.setBalance(account.address, parseEther("1"));
    const wallet = createWalletClient({ account, transport: custom(chain.connection.provider) }) as unknown as Wallet;
    const session = privateKeyToAccount(generatePrivateKey());
    const channel = await openChannel({
      wallet,
      publicClient: chain.publicClient as never,
      escrow: chain.escrow.address,
      payee: chain.payee.account.address,
      signer: session.address,
      amount: parseEther("0.01"),
      withdrawDelay: 7200,
    });
    const buyer: Buyer = { channel, session, wallet };
    const pay = buyerFetch(buyer, { maxPrice: TIER_PRICE });
    const charged: bigint[] = [];
    for (let i = 0; i < 5; i++) {
      const response = await pay(`${url}/tiered`);
      expect(response.status).to.equal(200);
      charged.push(decodeReceipt(response.headers.get(HEADERS.response)!).charged);
    }
    const discounted = (TIER_PRICE * 3n) / 4n;
    expect(charged).to.deep.equal([TIER_PRICE, TIER_PRICE, TIER_PRICE, discounted, discounted]);
    const payments = await paymentsOf(buyer);
    expect(payments.map((p) => p.pricing)).to.deep.equal([
      "fixed price",
      "fixed price",
      "fixed price",
      "fixed price; volume tier 3+ requests this month: 25% off",
      "fixed price; volume tier 3+ requests this month: 25% off",
    ]);
    // Another gateway process, remembering nothing, reads the same count from the database.
    const replica = new RoutePricing({ price: TIER_PRICE, tiers: [{ from: 3, percentOff: 25 }], volume: new PayerVolume(db().sql) });
    expect((await replica.quote(new PriceTable(nativeAsset(chain.location.chainId)), account.address)).get(nativeAsset(chain.location.chainId))).to.equal(discounted);
    // An unpaid 402 names no payer, so it states the price before tiers.
    expect((await terms("/tiered")).amount).to.equal(TIER_PRICE);
  });

  it("prices prepaid credit from the same policy and table, states it in the 402, and stores why with the credit payment", async () => {
    const { id } = await createCreditAccount(db().prisma, { currency: "USD" });
    const { key } = await issueCreditKey(db().prisma, id);
    await recordTopUp(db().prisma, { id: `tu_${id}`, accountId: id, processor: "stripe", currency: "USD", amountMinor: 1_000n });
    await applyFiatEvent(db().prisma, { id: `evt_${id}`, processor: "stripe", type: "topup.paid", topUpId: `tu_${id}`, paymentRef: `pi_${id}`, currency: "USD", amountMinor: 1_000n });
    setDemand(5);
    nextPeriod();
    const response = await fetch(`${url}/credit`);
    const offered = (JSON.parse(Buffer.from(response.headers.get(HEADERS.required)!, "base64").toString()) as { accepts: { scheme: string; amount: string; extra: { price: { reason: string } } }[] }).accepts;
    expect(offered.map((o) => [o.scheme, o.amount, o.extra.price.reason])).to.deep.equal([["credit", "2000", "demand level 0.5 (5 req/s of 10)"]]);

    const paid = await fetch(`${url}/credit`, { headers: { authorization: `Bearer ${key}` } });
    expect(paid.status, await paid.clone().text()).to.equal(200);
    const [payment] = await db().prisma.creditPayment.findMany({ where: { accountId: id } });
    expect(BigInt(payment!.price.toFixed())).to.equal(2_000n); // $0.002 in millionths
    expect(payment!.pricing).to.equal("demand level 0.5 (5 req/s of 10)");
  });

  it("refuses a payment at a price the route never quoted, with price_expired, charging nothing", async () => {
    const buyer = await openBuyerChannel(chain);
    const pay = buyerFetch(buyer, { maxPrice: CEILING });
    expect((await pay(`${url}/dynamic`)).status).to.equal(200);
    // The same SDK, but its remembered terms bent to a price below the floor.
    const before = (await paymentsOf(buyer)).length;
    const bent = await terms();
    const payer = new ChannelPayer({ channel: buyer.channel, signer: buyer.session, maxPrice: CEILING });
    const payload = await payer.sign({ ...bent, amount: FLOOR - 1n }, { accepted: FLOOR, signedMax: FLOOR });
    const response = await fetch(`${url}/dynamic`, { headers: { [HEADERS.signature]: encodeHeader(payload) } });
    expect(response.status).to.equal(402);
    expect(((await response.json()) as { error: string }).error).to.equal("price_expired");
    expect((await paymentsOf(buyer)).length).to.equal(before);
  });
});
