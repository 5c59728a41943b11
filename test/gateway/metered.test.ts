// Metered routes end to end: paychan assembled by the composition root on the EDR chain, a real
// Express paywall over HTTP, the buyer's SDK, and the settlement worker claiming on chain — on
// Postgres and on PGlite. What is proven: each request is charged what its handler reported (at least
// its price, at most its maximum, nothing for a 5xx), the payer signs exactly what it was charged,
// a voucher leaving the debt out is refused, and the escrow pays the seller exactly the charges.
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { expect } from "chai";
import type { Request, Response } from "express";
import type { Hex } from "viem";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { createPaidFetch, type PaidFetch } from "../../src/client/paidFetch.js";
import { MemoryStateStore } from "../../src/client/stateStore.js";
import { PaychanSchemeClient } from "../../src/x402/index.js";
import { meterOf, paywall } from "../../src/gateway/paywall.js";
import { RoutePricing } from "../../src/policy/pricing.js";
import { accountId } from "../../src/ledger/accounts.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { balanceOf } from "../../src/ledger/postings.js";
import { signVoucher } from "../../src/protocol/Voucher.js";
import {
  HEADERS,
  RECEIPT_EVENT,
  X402_VERSION,
  decodePaymentRequired,
  decodeReceipt,
  encodeHeader,
  type PaymentRequirements,
  type Receipt,
} from "../../src/protocol/wire.js";
import { createApp, reconcilePaychan } from "../../src/server.js";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import type { Buyer } from "../helpers/seller.js";
import { sessionKey } from "../helpers/escrow.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { claimedOnChain, deployEscrow, expectBalancedLedger, startTestPaychan, type EscrowFixture, type TestPaychan } from "../settlement/helpers.js";

const TOKEN = 1_000_000_000n; // what one generated token costs, in wei
const BASE = 5n * TOKEN; // prepaid with the voucher: the least a metered request costs
const MAX = 100n * TOKEN; // the most one may cost
const FIXED = 7n * TOKEN; // a fixed-price route beside the metered ones

/** A request's usage as its handler reports it: `?tokens=` tokens. */
function tokensOf(req: Request): bigint {
  return BigInt(String(req.query.tokens ?? "0"));
}

/** Waits (up to two seconds) for `done`: the paywall voids a 5xx's charge once its response is sent. */
async function until(done: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await done()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("timed out waiting");
}

/** Parses a finished server-sent event stream into its events. */
function eventsOf(text: string): { event: string; data: string }[] {
  return text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      const lines = block.split("\n");
      const field = (name: string) => lines.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
      return { event: field("event") ?? "message", data: field("data") ?? "" };
    });
}

for (const kind of ["postgres", "pglite"] as const) {
  describe(`metered routes over HTTP, settled on chain [${kind}]`, function () {
    let chain: EscrowFixture;
    let test: TestPaychan;
    let server: Server;
    let url: string;
    let drop: (() => Promise<void>) | undefined;
    let release: () => void = () => {};

    before(async () => {
      chain = await deployEscrow();
      let databaseUrl = "pglite:memory";
      if (kind === "postgres") {
        const created = await createPostgresDatabase();
        databaseUrl = created.url;
        drop = created.drop;
      }
      test = await startTestPaychan(chain, databaseUrl);
      const metered = { price: BASE, maxPrice: MAX };
      const app = createApp(
        test.paychan,
        { "GET /generate": metered, "GET /fail": metered, "GET /stream": metered, "GET /slow": metered, "GET /quote": FIXED },
        {
          "GET /generate": (req: Request, res: Response) => {
            meterOf(res).report(tokensOf(req) * TOKEN);
            res.json({ tokens: tokensOf(req).toString() });
          },
          "GET /fail": (req: Request, res: Response) => {
            meterOf(res).report(tokensOf(req) * TOKEN);
            res.status(500).json({ error: "the model crashed" });
          },
          "GET /stream": async (req: Request, res: Response) => {
            const meter = meterOf(res);
            res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
            for (let i = 0n; i < tokensOf(req) && meter.remaining >= TOKEN; i++) {
              meter.add(TOKEN);
              res.write(`data: token ${i}\n\n`);
            }
            res.end(await meter.receiptEvent());
          },
          "GET /slow": async (_req: Request, res: Response) => {
            await new Promise<void>((resolve) => (release = resolve));
            meterOf(res).report(10n * TOKEN);
            res.json({ slow: true });
          },
          "GET /quote": (_req: Request, res: Response) => void res.json({ quote: 42 }),
        },
      );
      server = app.listen(0, "127.0.0.1");
      await new Promise((resolve) => server.once("listening", resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => {
      release();
      await new Promise((resolve) => server.close(resolve));
      await test.paychan.close();
      await drop?.();
    });

    /** A channel from the fixture's payer to this seller, signed by a fresh session key. */
    async function openBuyer(deposit = 10n ** 16n): Promise<Buyer> {
      const session = sessionKey();
      const wallet = chain.payer as unknown as Wallet;
      const channel = await openChannel({
        wallet,
        publicClient: chain.publicClient as never,
        escrow: chain.escrow.address,
        payee: test.payee.address,
        signer: session.address,
        amount: deposit,
        withdrawDelay: 86_400,
      });
      return { channel, session, wallet };
    }

    /** The buyer's SDK, counting the 402s it answered. */
    function buyerFetch(buyer: Buyer): { paidFetch: PaidFetch; refusals: string[] } {
      const refusals: string[] = [];
      const paidFetch = createPaidFetch({
        channel: buyer.channel,
        signer: buyer.session,
        maxPrice: MAX,
        fetch: async (input, init) => {
          const response = await fetch(input, init);
          if (response.status === 402 && new Request(input, init).headers.has(HEADERS.signature)) {
            refusals.push(decodePaymentRequired(response.headers.get(HEADERS.required)!).code ?? "");
          }
          return response;
        },
      });
      return { paidFetch, refusals };
    }

    async function channelRow(id: Hex) {
      return (await test.paychan.db.prisma.channel.findUnique({ where: { id } }))!;
    }

    /** The voucher the settlement worker claims with: the highest standing payment's total. */
    async function highestVoucher(id: Hex): Promise<bigint> {
      const [row] = await test.paychan.db.prisma.payment.findMany({
        where: { channelId: id, status: "ACCEPTED" },
        orderBy: { cumulativeAmount: "desc" },
        take: 1,
      });
      return BigInt(row!.cumulativeAmount.toFixed());
    }

    async function termsOf(path: string): Promise<PaymentRequirements> {
      const response = await fetch(`${url}${path}`);
      expect(response.status).to.equal(402);
      return decodePaymentRequired(response.headers.get(HEADERS.required)!).accepts[0]!;
    }

    async function paidGet(buyer: Buyer, path: string, cumulativeAmount: bigint) {
      const terms = await termsOf(path);
      const voucher = await signVoucher(buyer.session, { channelId: buyer.channel.id, cumulativeAmount }, buyer.channel.location);
      const header = encodeHeader({ x402Version: X402_VERSION, accepted: terms, payload: { channel: buyer.channel.config, voucher } });
      return fetch(`${url}${path}`, { headers: { [HEADERS.signature]: header } });
    }

    it("charges each request what its handler reported, capped at the maximum and nothing for a 5xx; the payer signs exactly its charges and the escrow pays exactly them", async () => {
      const buyer = await openBuyer();
      const { paidFetch, refusals } = buyerFetch(buyer);
      const charged: bigint[] = [];
      const get = async (path: string, status = 200) => {
        const response = await paidFetch(`${url}${path}`);
        expect(response.status, `${path}: ${await response.clone().text()}`).to.equal(status);
        if (status < 500) charged.push(decodeReceipt(response.headers.get(HEADERS.response)!).charged);
        else expect(response.headers.get(HEADERS.response), "a 5xx carries no receipt").to.equal(null);
        return response;
      };

      await get("/generate?tokens=3"); // under the price: charged the price
      const owing = decodeReceipt((await get("/generate?tokens=40")).headers.get(HEADERS.response)!);
      expect(owing.owed).to.equal(40n * TOKEN - BASE);
      expect(owing.maxAmount).to.equal(MAX);
      await get("/generate?tokens=1000"); // over the maximum: charged the maximum
      await get("/fail?tokens=30", 500); // the handler failed: charged nothing, and the debt stays owed
      // Voided before the response ended: the next voucher needs no wait.
      expect((await channelRow(buyer.channel.id)).usageOwed.toFixed()).to.equal((MAX - BASE).toString());
      await get("/generate?tokens=20");
      await get("/quote"); // pays the last request's usage
      expect(charged).to.deep.equal([BASE, 40n * TOKEN, MAX, 20n * TOKEN, FIXED]);
      expect(refusals, "the SDK paid every debt without being refused").to.deep.equal([]);

      const total = BASE + 40n * TOKEN + MAX + 20n * TOKEN + FIXED;
      const row = await channelRow(buyer.channel.id);
      expect(row.usageOwed.toFixed()).to.equal("0");
      expect(row.acceptedCumulative.toFixed()).to.equal(total.toString());
      expect(await highestVoucher(buyer.channel.id), "the highest voucher the seller holds").to.equal(total);
      expect((await paidFetch.state()).signedMax, "the most the payer ever signed").to.equal(total);

      await test.settlement.settleNow();
      expect(await claimedOnChain(chain, buyer.channel.id), "claimed on chain").to.equal(total);
      const revenue = accountId.revenue(test.payee.address, nativeAsset(chain.location.chainId));
      expect(await balanceOf(test.paychan.db.prisma, revenue)).to.equal(total);
      await expectBalancedLedger(test.paychan);
      const reconciled = await reconcilePaychan(test.paychan);
      expect(reconciled.differences).to.deep.equal([]);
      expect(reconciled.ok).to.equal(true);
    });

    it("refuses a voucher that leaves out what the channel owes with usage_owed, naming the debt so the SDK can pay it", async () => {
      const buyer = await openBuyer();
      const { paidFetch } = buyerFetch(buyer);
      expect((await paidFetch(`${url}/generate?tokens=40`)).status).to.equal(200);
      const owed = 40n * TOKEN - BASE;

      const response = await paidGet(buyer, "/quote", BASE + FIXED);
      expect(response.status).to.equal(402);
      const body = (await response.json()) as { error: string; details: Record<string, string> };
      expect(body.error).to.equal("usage_owed");
      expect(body.details.owed).to.equal(owed.toString());
      const required = decodePaymentRequired(response.headers.get(HEADERS.required)!);
      expect(required.accepts[0]!.extra.channel).to.deep.include({ acceptedCumulative: BASE, owed });
      expect((await channelRow(buyer.channel.id)).acceptedCumulative.toFixed(), "nothing was accepted").to.equal(BASE.toString());

      // A voucher for more than the debt is no better: the total must be exact.
      expect(((await (await paidGet(buyer, "/quote", BASE + owed + 1n + FIXED)).json()) as { error: string }).error).to.equal("cumulative_mismatch");
      expect((await paidFetch(`${url}/quote`)).status).to.equal(200);
      expect(await highestVoucher(buyer.channel.id)).to.equal(BASE + owed + FIXED);
    });

    it("streams server-sent events charging per token, stops at the maximum, and sends the final charge as the last event", async () => {
      const buyer = await openBuyer();
      const { paidFetch, refusals } = buyerFetch(buyer);

      const stream = await paidFetch(`${url}/stream?tokens=1000`);
      expect(stream.status).to.equal(200);
      expect(decodeReceipt(stream.headers.get(HEADERS.response)!).owed, "the headers left before any usage").to.equal(0n);
      const events = eventsOf(await stream.text());
      const tokens = events.filter((e) => e.event === "message");
      expect(tokens).to.have.length(Number(MAX / TOKEN));
      const last = events.at(-1)!;
      expect(last.event).to.equal(RECEIPT_EVENT);
      const final: Receipt = decodeReceipt(last.data);
      expect(final.charged).to.equal(MAX);
      expect(final.owed).to.equal(MAX - BASE);
      await paidFetch.recordReceipt(final);

      // Booked from the final event, the next voucher pays the stream's usage without a refusal.
      expect((await paidFetch(`${url}/quote`)).status).to.equal(200);
      expect(refusals).to.deep.equal([]);

      // A buyer that ignores the final event learns the debt from one refusal, then pays it.
      const short = await paidFetch(`${url}/stream?tokens=12`);
      expect(eventsOf(await short.text()).filter((e) => e.event === "message")).to.have.length(12);
      expect((await paidFetch(`${url}/quote`)).status).to.equal(200);
      expect(refusals).to.deep.equal(["usage_owed"]);

      const total = MAX + FIXED + 12n * TOKEN + FIXED;
      expect(await highestVoucher(buyer.channel.id)).to.equal(total);
      expect((await paidFetch.state()).signedMax).to.equal(total);
      const row = await channelRow(buyer.channel.id);
      expect(row.usageOwed.toFixed()).to.equal("0");
    });

    it("serves an identical retry of a metered request again with its receipt, without charging its usage twice", async () => {
      const buyer = await openBuyer();
      const first = await paidGet(buyer, "/generate?tokens=40", BASE);
      const again = await paidGet(buyer, "/generate?tokens=40", BASE);
      expect([first.status, again.status]).to.deep.equal([200, 200]);
      const [a, b] = [first, again].map((r) => decodeReceipt(r.headers.get(HEADERS.response)!));
      expect(b).to.deep.equal(a);
      expect(b!.owed).to.equal(40n * TOKEN - BASE);
      const row = await channelRow(buyer.channel.id);
      expect([row.acceptedCumulative.toFixed(), row.usageOwed.toFixed()]).to.deep.equal([BASE.toString(), (40n * TOKEN - BASE).toString()]);
    });

    it("is paid by the stock x402 client through PaychanSchemeClient, which pays the usage with its next voucher", async () => {
      const buyer = await openBuyer();
      const store = new MemoryStateStore();
      const scheme = new PaychanSchemeClient({ channel: buyer.channel, signer: buyer.session, maxPrice: MAX, store });
      const pay = wrapFetchWithPayment(fetch, new x402Client().register("eip155:*", scheme));
      const first = await pay(`${url}/generate?tokens=40`);
      expect(first.status).to.equal(200);
      expect(decodeReceipt(first.headers.get(HEADERS.response)!).charged).to.equal(40n * TOKEN);
      expect((await store.load(buyer.channel.id))?.owed).to.equal(40n * TOKEN - BASE);
      expect((await pay(`${url}/quote`)).status).to.equal(200);
      expect(await highestVoucher(buyer.channel.id)).to.equal(40n * TOKEN + FIXED);
      expect((await store.load(buyer.channel.id))?.signedMax).to.equal(40n * TOKEN + FIXED);
      expect((await channelRow(buyer.channel.id)).usageOwed.toFixed()).to.equal("0");
    });

    it("refuses at start-up a metered route no scheme can meter, whose maximum is below its price, or whose price moves", () => {
      expect(() => paywall(test.paychan.gateway, { "GET /x": { price: BASE, maxPrice: BASE - 1n } })).to.throw(/maxPrice at least its price/);
      const moving = new RoutePricing({ demand: { floor: BASE, ceiling: 2n * MAX, ceilingAtRequestsPerSecond: 10 } });
      expect(() => paywall(test.paychan.gateway, { "GET /x": { price: moving, maxPrice: MAX } })).to.throw(/must be fixed, not a pricing policy/);
      const fixedOnly = { scheme: "fixed", defaultAsset: test.paychan.gateway.defaultAsset, requirements: () => undefined, authorize: () => Promise.reject(new Error("unused")) };
      expect(() => paywall(fixedOnly, { "GET /x": { price: BASE, maxPrice: MAX } })).to.throw(/none of the schemes "fixed" can meter/);
    });

    it("serves a metered request only when the deposit covers its maximum, and one at a time per channel", async () => {
      const small = await openBuyer(MAX - 1n);
      const refused = await paidGet(small, "/generate?tokens=1", BASE);
      expect(refused.status).to.equal(402);
      expect(((await refused.json()) as { error: string }).error).to.equal("insufficient_deposit");
      expect((await paidGet(small, "/quote", FIXED)).status, "a fixed price within the deposit is served").to.equal(200);

      const buyer = await openBuyer();
      const running = paidGet(buyer, "/slow", BASE);
      await until(async () => (await test.paychan.db.prisma.channel.findUnique({ where: { id: buyer.channel.id } }))?.acceptedCumulative.toFixed() === BASE.toString());
      const second = await paidGet(buyer, "/generate?tokens=1", 2n * BASE);
      expect(second.status).to.equal(402);
      expect(((await second.json()) as { error: string }).error).to.equal("metered_request_running");
      release();
      expect((await running).status).to.equal(200);
      expect((await channelRow(buyer.channel.id)).usageOwed.toFixed()).to.equal((10n * TOKEN - BASE).toString());
    });
  });
}
