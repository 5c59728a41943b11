// The risk policy through the real Express paywall, the escrow on the EDR chain and the database:
// limits hit and released (a fake clock, no sleeps), 429 with Retry-After and the stable code,
// per-route limits, decisions recorded and readable, and a step-up signed by the payer's wallet.
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { expect } from "chai";
import express from "express";
import type { GatewayOptions } from "../../src/gateway/PaymentGateway.js";
import { ChainWatcher } from "../../src/chain/ChainWatcher.js";
import { reasonToClaim } from "../../src/chain/settlementPolicy.js";
import type { ClaimCandidate } from "../../src/ledger/settlementStore.js";
import { RiskGate } from "../../src/gateway/RiskGate.js";
import { CreditScheme } from "../../src/gateway/CreditScheme.js";
import { applyFiatEvent, createCreditAccount, issueCreditKey, recordTopUp } from "../../src/ledger/credit.js";
import { LedgerCreditStore } from "../../src/ledger/LedgerCreditStore.js";
import { PriceTable } from "../../src/policy/prices.js";
import { creditReceiptSchema, encodeCreditPayment } from "../../src/protocol/credit.js";
import { paywall } from "../../src/gateway/paywall.js";
import { bookAccepted } from "../../src/ledger/booking.js";
import type { Database } from "../../src/ledger/db.js";
import { LedgerPaymentStore } from "../../src/ledger/LedgerPaymentStore.js";
import { RiskDecisionLog, recentRiskDecisions } from "../../src/ledger/riskDecisions.js";
import { RiskPolicy, type RiskRules } from "../../src/policy/risk.js";
import { signStepUp, type SignedStepUp, type StepUpRequest } from "../../src/protocol/StepUp.js";
import { HEADERS, decodePaymentRequired, decodeReceipt } from "../../src/protocol/wire.js";
import { deployEscrow, type EscrowFixture } from "../helpers/escrow.js";
import { PRICE, buyerFetch, claimableVoucher, openBuyerChannel, sellerGateway, type Buyer } from "../helpers/seller.js";
import { describeEachDatabase } from "../ledger/helpers.js";

type RiskSeller = { url: string; clock: { now: number }; decisions: RiskDecisionLog; close(): Promise<void> };

/** A buyer whose requests are recorded, so a test can resend the paid one byte for byte. */
async function resendingBuyer(chain: EscrowFixture): Promise<{ paidFetch: typeof fetch; paidHeaders: () => Headers }> {
  const sent: Headers[] = [];
  const paidFetch = buyerFetch(await openBuyerChannel(chain), {
    fetch: async (input, init) => {
      const request = new Request(input as Request, init);
      sent.push(new Headers(request.headers));
      return fetch(request);
    },
  });
  return { paidFetch, paidHeaders: () => sent.find((h) => h.has(HEADERS.signature))! };
}

/** A seller with GET /quote and GET /report (PRICE each) behind a paywall with `rules` on a fake clock. */
async function startRiskSeller(chain: EscrowFixture, db: Database, rules: RiskRules, overrides: Partial<GatewayOptions> = {}): Promise<RiskSeller> {
  const store = new LedgerPaymentStore(db);
  const gateway = sellerGateway(chain, store, overrides);
  // On a minute boundary, so the hour window's one-minute slots make Retry-After a round figure.
  const clock = { now: Math.ceil(Date.now() / 60_000) * 60_000 };
  const decisions = new RiskDecisionLog(db.sql, { flushMs: 10 });
  const risk = new RiskGate(new RiskPolicy(rules, () => clock.now), { onDecision: (d) => decisions.record(d) });
  const app = express();
  app.use(paywall(gateway, { "GET /quote": PRICE, "GET /report": PRICE, "GET /metered": { price: PRICE, maxPrice: 4n * PRICE } }, { risk }));
  app.get(["/quote", "/report", "/metered"], (_req, res) => res.json({ ok: true }));
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    clock,
    decisions,
    async close() {
      await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
      await decisions.close();
      await store.close();
    },
  };
}

async function bodyOf(response: Response) {
  return (await response.json()) as { error: string; message: string; details?: Record<string, string> };
}

describeEachDatabase("risk policy through the paywall", (db) => {
  let chain: EscrowFixture;
  let seller: RiskSeller | undefined;

  before(async () => {
    chain = await deployEscrow();
  });
  afterEach(async () => {
    await seller?.close();
    seller = undefined;
  });

  it("refuses a channel over its requests per minute with 429, Retry-After and rate_limited, uncharged, and serves it again once the minute slides", async () => {
    seller = await startRiskSeller(chain, db(), { limits: { channel: { requestsPerMinute: 3 } } });
    const buyer = await openBuyerChannel(chain);
    const paidFetch = buyerFetch(buyer);
    for (let i = 1; i <= 3; i++) expect((await paidFetch(`${seller.url}/quote`)).status, `request ${i}`).to.equal(200);
    seller.clock.now += 15_000;
    const limited = await paidFetch(`${seller.url}/quote`);
    expect(limited.status).to.equal(429);
    expect(limited.headers.get("retry-after")).to.equal("45");
    const body = await bodyOf(limited);
    expect(body.error).to.equal("rate_limited");
    expect(body.message).to.match(/The channel made 3 requests in the last minute; the limit is 3/);
    expect(decodePaymentRequired(limited.headers.get(HEADERS.required)!).code).to.equal("rate_limited");

    seller.clock.now += 45_000;
    const released = await paidFetch(`${seller.url}/quote`);
    expect(released.status).to.equal(200);
    // The refused request was never charged: the fourth charge takes the total to 4 × PRICE.
    expect(decodeReceipt(released.headers.get(HEADERS.response)!).cumulativeAmount).to.equal(4n * PRICE);
  });

  it("serves the identical resend of a paid request over the limit again, charged once: refusing it would lose the payer what it paid", async () => {
    seller = await startRiskSeller(chain, db(), { limits: { channel: { requestsPerMinute: 1 } } });
    const { paidFetch, paidHeaders } = await resendingBuyer(chain);
    const paid = await paidFetch(`${seller.url}/quote`);
    expect(paid.status).to.equal(200);
    const first = decodeReceipt(paid.headers.get(HEADERS.response)!);
    // The connection failed before the answer arrived, as far as the client knows: it sends the same bytes again.
    const resent = await fetch(`${seller.url}/quote`, { headers: paidHeaders() });
    expect(resent.status, await resent.clone().text()).to.equal(200);
    expect(decodeReceipt(resent.headers.get(HEADERS.response)!)).to.deep.include({ paymentId: first.paymentId, cumulativeAmount: first.cumulativeAmount });
    // A new request is still over the limit.
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(429);
  });

  it("does not count an identical resend served again against the limits: the payer's next request is still within them", async () => {
    seller = await startRiskSeller(chain, db(), { limits: { channel: { requestsPerMinute: 2 } } });
    const { paidFetch, paidHeaders } = await resendingBuyer(chain);
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    const resent = await fetch(`${seller.url}/quote`, { headers: paidHeaders() });
    expect(resent.status, await resent.clone().text()).to.equal(200);
    // Two requests a minute: the resend was the first one again, so this is the second.
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(429);
  });

  it("counts a metered request at the most it may cost against a value limit", async () => {
    const asset = "eip155:31337/native";
    seller = await startRiskSeller(chain, db(), { limits: { channel: { valuePerHour: { [asset]: 3n * PRICE } } } });
    const paidFetch = buyerFetch(await openBuyerChannel(chain), { maxPrice: 4n * PRICE });
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    // Prepaid PRICE, but it may cost 4 × PRICE: over the 3 × PRICE an hour.
    expect((await paidFetch(`${seller.url}/metered`)).status).to.equal(429);
    expect((await paidFetch(`${seller.url}/quote`)).status, "a fixed price still fits").to.equal(200);
  });

  it("applies a route's own limit to that route only", async () => {
    seller = await startRiskSeller(chain, db(), { routes: { "GET /report": { payer: { requestsPerMinute: 1 } } } });
    const paidFetch = buyerFetch(await openBuyerChannel(chain));
    expect((await paidFetch(`${seller.url}/report`)).status).to.equal(200);
    expect((await paidFetch(`${seller.url}/report`)).status).to.equal(429);
    for (let i = 0; i < 3; i++) expect((await paidFetch(`${seller.url}/quote`)).status, `quote ${i}`).to.equal(200);
  });

  it("limits value per hour per client address across channels, and records each refusal with its reasons", async () => {
    const asset = "eip155:31337/native";
    seller = await startRiskSeller(chain, db(), { limits: { client: { valuePerHour: { [asset]: 2n * PRICE } } } });
    const [first, second] = [buyerFetch(await openBuyerChannel(chain)), buyerFetch(await openBuyerChannel(chain))];
    expect((await first(`${seller.url}/quote`)).status).to.equal(200);
    expect((await second(`${seller.url}/quote`)).status).to.equal(200);
    const limited = await second(`${seller.url}/quote`);
    expect(limited.status).to.equal(429);
    expect(limited.headers.get("retry-after")).to.equal("3600");

    await seller.decisions.flush();
    const [stored] = await recentRiskDecisions(db().sql, { limit: 1 });
    expect(stored).to.include({ route: "GET /quote", scheme: "paychan", action: "limit", code: "rate_limited", asset, amount: PRICE, steppedUp: false });
    expect(stored!.client).to.match(/127\.0\.0\.1/);
    expect(stored!.reasons[0]!.rule).to.equal("client.valuePerHour");
    expect(stored!.reasons[0]!.message).to.match(/would pass the limit of 2000000000000/);

    seller.clock.now += 3_600_000;
    expect((await second(`${seller.url}/quote`)).status).to.equal(200);
  });

  describe("step-up", () => {
    const rules: RiskRules = { anomaly: { stepUpScore: 50, denyScore: 100, freshDrain: { withinSeconds: 60, percent: 50, points: 60 } } };
    let buyer: Buyer;
    const approve = (signer: Parameters<typeof signStepUp>[0], asked: StepUpRequest[]) => async (request: StepUpRequest) => {
      asked.push(request);
      return signStepUp(signer, { channelId: request.channelId, spendingLimit: 5n * PRICE, validUntil: Math.floor(seller!.clock.now / 1000) + 600 }, buyer.channel.location);
    };

    /** Two requests on a channel of 5 × PRICE; the third would spend 60% of it within a minute. */
    async function drainingChannel(options: Parameters<typeof buyerFetch>[1] = {}) {
      buyer = await openBuyerChannel(chain, 5n * PRICE);
      const paidFetch = buyerFetch(buyer, options);
      for (let i = 1; i <= 2; i++) expect((await paidFetch(`${seller!.url}/quote`)).status, `request ${i}`).to.equal(200);
      return paidFetch;
    }

    it("refuses a new channel draining its deposit with step_up_required, explaining why", async () => {
      seller = await startRiskSeller(chain, db(), rules);
      const paidFetch = await drainingChannel();
      const refused = await paidFetch(`${seller.url}/quote`);
      expect(refused.status).to.equal(402);
      const body = await bodyOf(refused);
      expect(body.error).to.equal("step_up_required");
      expect(body.details).to.include({ channelId: buyer.channel.id, cumulativeAmount: String(3n * PRICE), reasons: "freshDrain" });
      await seller.decisions.flush();
      const [stored] = await recentRiskDecisions(db().sql, { account: buyer.channel.id });
      expect(stored).to.include({ action: "step_up", code: "step_up_required", score: 60 });
    });

    it("serves the retry once the payer's wallet signs a StepUp (onStepUp), and records the approval", async () => {
      seller = await startRiskSeller(chain, db(), rules);
      const asked: StepUpRequest[] = [];
      const paidFetch = await drainingChannel({ onStepUp: approve(chain.payer, asked) });
      const served = await paidFetch(`${seller.url}/quote`);
      expect(served.status, await served.clone().text()).to.equal(200);
      expect(asked).to.have.length(1);
      expect(asked[0]).to.include({ channelId: buyer.channel.id, cumulativeAmount: 3n * PRICE, reasons: "freshDrain" });
      expect(decodeReceipt(served.headers.get(HEADERS.response)!).cumulativeAmount).to.equal(3n * PRICE);
      // The approval is sent with the next requests while it holds: no second prompt.
      expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
      expect(asked).to.have.length(1);
      await seller.decisions.flush();
      const [stored] = await recentRiskDecisions(db().sql, { account: buyer.channel.id });
      expect(stored).to.include({ action: "allow", steppedUp: true });
      expect(stored!.reasons.map((r) => r.rule)).to.deep.equal(["freshDrain", "stepUp"]);
    });

    it("refuses a StepUp signed by the session key, or by another wallet, with step_up_invalid", async () => {
      seller = await startRiskSeller(chain, db(), rules);
      for (const [who, signer] of [
        ["session key", () => buyer.session],
        ["stranger", () => chain.stranger],
      ] as const) {
        const asked: StepUpRequest[] = [];
        const paidFetch = await drainingChannel({ onStepUp: async (request) => approve(signer(), asked)(request) });
        const refused = await paidFetch(`${seller.url}/quote`);
        expect(refused.status, who).to.equal(402);
        const body = await bodyOf(refused);
        expect(body.error, who).to.equal("step_up_invalid");
        expect(body.message, who).to.match(/must be signed by the channel's payer/);
        expect(refused.headers.get(HEADERS.response), who).to.equal(null);
      }
    });

    it("refuses a malformed StepUp, or one for another channel, with step_up_invalid rather than an error", async () => {
      seller = await startRiskSeller(chain, db(), rules);
      const cases: [string, (request: StepUpRequest) => Promise<SignedStepUp>, RegExp][] = [
        ["a short signature", async (request) => ({ channelId: request.channelId, spendingLimit: 5n * PRICE, validUntil: 2 ** 40, signature: "0x1234" }), /signature/],
        ["another channel", () => signStepUp(chain.payer, { channelId: `0x${"ab".repeat(32)}`, spendingLimit: 5n * PRICE, validUntil: Math.floor(seller!.clock.now / 1000) + 600 }, buyer.channel.location), /another channel/],
      ];
      for (const [what, onStepUp, message] of cases) {
        const paidFetch = await drainingChannel({ onStepUp });
        const refused = await paidFetch(`${seller.url}/quote`);
        expect(refused.status, what).to.equal(402);
        const body = await bodyOf(refused);
        expect(body.error, what).to.equal("step_up_invalid");
        expect(body.message, what).to.match(message);
      }
    });
  });

  it("limits a prepaid credit account by the same rules, uncharged, until the minute slides", async () => {
    const USD = "fiat:USD" as const;
    const store = new LedgerCreditStore(db(), { bookingIntervalMs: 60_000 });
    const credit = new CreditScheme({ store, seller: "seller-risk", asset: USD });
    const clock = { now: Math.ceil(Date.now() / 60_000) * 60_000 };
    const risk = new RiskGate(new RiskPolicy({ limits: { channel: { requestsPerMinute: 2 } } }, () => clock.now));
    const app = express();
    app.use(paywall([credit], { "GET /quote": 1_000n }, { prices: new PriceTable(USD), risk }));
    app.get("/quote", (_req, res) => void res.json({ ok: true }));
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    try {
      const { id } = await createCreditAccount(db().prisma, { currency: "USD" });
      const { key } = await issueCreditKey(db().prisma, id);
      const topUp = `tu_${id}`;
      await recordTopUp(db().prisma, { id: topUp, accountId: id, processor: "stripe", currency: "USD", amountMinor: 500n });
      await applyFiatEvent(db().prisma, { id: `evt_${id}`, processor: "stripe", type: "topup.paid", topUpId: topUp, paymentRef: `pi_${id}`, currency: "USD", amountMinor: 500n });
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/quote`;
      const pay = (n: number) => fetch(url, { headers: { [HEADERS.signature]: encodeCreditPayment(key, `nonce-${id}-${n}`) } });
      expect((await pay(1)).status).to.equal(200);
      expect((await pay(2)).status).to.equal(200);
      const limited = await pay(3);
      expect(limited.status).to.equal(429);
      expect(limited.headers.get("retry-after")).to.equal("60");
      expect((await bodyOf(limited)).error).to.equal("rate_limited");
      clock.now += 60_000;
      const served = await pay(4);
      expect(served.status).to.equal(200);
      // $5.00 in millionths, less three charges of 1,000: the refused request cost nothing.
      expect(creditReceiptSchema.parse(JSON.parse(atob(served.headers.get(HEADERS.response)!))).remaining).to.equal(5_000_000n - 3_000n);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await store.close();
    }
  });

  describe("exposure cap", () => {
    /** The chain watcher, mirroring the escrow into this suite's database from `fromBlock`, at the head. */
    const watcherFrom = (fromBlock: bigint) =>
      new ChainWatcher({
        prisma: db().prisma,
        client: chain.publicClient as never,
        scope: { chainId: chain.location.chainId, escrow: chain.escrow.address, payee: chain.payee.account.address },
        confirmations: 0,
        fromBlock,
      });

    it("refuses a withdrawing channel near its deadline over the cap with 429 exposure_capped, wakes settlement, and serves it once the claim lands", async () => {
      const woken: string[] = [];
      seller = await startRiskSeller(chain, db(), {}, { exposureCap: { windowSeconds: 3600, percent: 50 }, onExposureCapped: (id) => woken.push(id), exposureRetryAfterSeconds: 3 });
      // The watcher mirrors the channel from its opening, so the books hold its deposit when the claim comes.
      const fromBlock = (await chain.publicClient.getBlockNumber()) + 1n;
      const buyer = await openBuyerChannel(chain, 10n * PRICE, 7200);
      const paidFetch = buyerFetch(buyer);
      for (let i = 1; i <= 4; i++) expect((await paidFetch(`${seller.url}/quote`)).status, `request ${i}`).to.equal(200);
      await chain.escrow.write.requestWithdrawal([buyer.channel.config], { account: chain.payer.account });
      const watcher = watcherFrom(fromBlock);
      await watcher.syncOnce();
      // Two hours to the deadline, outside the one-hour window: no cap yet.
      expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
      await chain.networkHelpers.time.increase(3700);
      await watcher.syncOnce();
      // Inside the window: 6 × PRICE would be owed unclaimed, over half the deposit of 10 × PRICE.
      const capped = await paidFetch(`${seller.url}/quote`);
      expect(capped.status).to.equal(429);
      expect(capped.headers.get("retry-after")).to.equal("3");
      const body = await bodyOf(capped);
      expect(body.error).to.equal("exposure_capped");
      expect(body.details).to.include({ channelId: buyer.channel.id, exposureCap: String(5n * PRICE), claimedOnChain: "0" });
      expect(woken).to.deep.equal([buyer.channel.id]);

      const voucher = await claimableVoucher(db(), buyer.channel.id);
      expect(voucher.amount, "the refused request was not charged").to.equal(5n * PRICE);
      // The settlement worker claims what the books hold: the accepted vouchers are booked first.
      await bookAccepted(db().sql);
      await chain.escrow.write.claim([buyer.channel.config, voucher.amount, voucher.signature], { account: chain.payee.account });
      await watcher.syncOnce();
      const served = await paidFetch(`${seller.url}/quote`);
      expect(served.status, await served.clone().text()).to.equal(200);
      expect(decodeReceipt(served.headers.get(HEADERS.response)!).cumulativeAmount).to.equal(6n * PRICE);
    });

    it("counts what a metered request may add against the cap, not only its prepaid price", async () => {
      seller = await startRiskSeller(chain, db(), {}, { exposureCap: { windowSeconds: 86_400, percent: 100, absolute: 3n * PRICE } });
      const buyer = await openBuyerChannel(chain, 10n * PRICE, 7200);
      const paidFetch = buyerFetch(buyer, { maxPrice: 4n * PRICE });
      const fromBlock = await chain.publicClient.getBlockNumber();
      await chain.escrow.write.requestWithdrawal([buyer.channel.config], { account: chain.payer.account });
      const watcher = watcherFrom(fromBlock);
      await watcher.syncOnce();
      // Prepaid 1 × PRICE, but up to 4 × PRICE owed unclaimed: over the cap of 3 × PRICE, whatever is claimed.
      const metered = await paidFetch(`${seller.url}/metered`);
      expect(metered.status).to.equal(403);
      expect((await bodyOf(metered)).error).to.equal("risk_denied");
      expect((await paidFetch(`${seller.url}/quote`)).status, "a fixed price within the cap").to.equal(200);
    });

    it("refuses for good (risk_denied) when the price alone is over the cap, without waking settlement", async () => {
      const woken: string[] = [];
      seller = await startRiskSeller(chain, db(), {}, { exposureCap: { windowSeconds: 86_400, percent: 50, absolute: PRICE / 2n }, onExposureCapped: (id) => woken.push(id) });
      const buyer = await openBuyerChannel(chain, 10n * PRICE, 7200);
      const paidFetch = buyerFetch(buyer);
      expect((await paidFetch(`${seller.url}/quote`)).status, "no withdrawal: no cap").to.equal(200);
      await chain.escrow.write.requestWithdrawal([buyer.channel.config], { account: chain.payer.account });
      const watcher = watcherFrom(await chain.publicClient.getBlockNumber());
      await watcher.syncOnce();
      const refused = await paidFetch(`${seller.url}/quote`);
      expect(refused.status).to.equal(403);
      expect((await bodyOf(refused)).error).to.equal("risk_denied");
      expect(woken).to.deep.equal([]);
    });
  });
});

describe("settlement policy with an exposure cap", () => {
  const policy = { intervalSeconds: 0, threshold: 0n, gasMultiplier: 0, watchtowerMarginSeconds: 600, batchSize: 100, exposureCap: { windowSeconds: 3600, percent: 50 } };
  const candidate = (unclaimed: bigint, withdrawReadyAt: bigint | null) =>
    ({ unclaimed, deposit: 100n, withdrawReadyAt, withdrawalUnanswered: false, token: "0x00000000000000000000000000000000000000aa" }) as unknown as ClaimCandidate;
  const when = { now: 1_000_000n, intervalDue: false, manual: false, gasPrice: 1n, gasPerClaim: 1n };

  it("claims a withdrawing channel inside the window once it owes half the cap, and not before", () => {
    expect(reasonToClaim(candidate(25n, 1_000_000n + 3000n), when, policy)).to.equal("WATCHTOWER");
    expect(reasonToClaim(candidate(24n, 1_000_000n + 3000n), when, policy)).to.equal(undefined);
    expect(reasonToClaim(candidate(50n, 1_000_000n + 4000n), when, policy), "outside the window").to.equal(undefined);
    expect(reasonToClaim(candidate(50n, null), when, policy), "no withdrawal").to.equal(undefined);
  });
});
