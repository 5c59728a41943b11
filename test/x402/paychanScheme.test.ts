// The stock x402 client (`@x402/fetch`'s wrapFetchWithPayment over `@x402/core`'s x402Client, the
// real packages) paying the real gateway over HTTP on the EDR chain through PaychanSchemeClient.
import { expect } from "chai";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import type { Hex } from "viem";
import { accountId } from "../../src/ledger/accounts.js";
import { toBigInt } from "../../src/ledger/amount.js";
import type { Database } from "../../src/ledger/db.js";
import { balanceOf } from "../../src/ledger/postings.js";
import { MemoryStateStore } from "../../src/client/stateStore.js";
import { HEADERS, decodePaymentRequired, decodeReceipt, type Receipt } from "../../src/protocol/wire.js";
import { PaychanSchemeClient, type PaychanSchemeClientOptions } from "../../src/x402/index.js";
import { openTestDatabase } from "../ledger/helpers.js";
import { PRICE, buyerFetch, claimableVoucher, deployEscrow, openBuyerChannel, startSeller, type Buyer, type Seller } from "../helpers/seller.js";
import type { EscrowFixture } from "../helpers/escrow.js";

/** The stock client with paychan registered for every EVM chain, exactly as a buyer would set it up. */
function stockFetch(buyer: Buyer, options: Partial<PaychanSchemeClientOptions> = {}, transport: typeof fetch = fetch) {
  const scheme = new PaychanSchemeClient({ channel: buyer.channel, signer: buyer.session, maxPrice: PRICE * 10n, ...options });
  return wrapFetchWithPayment(transport, new x402Client().register("eip155:*", scheme));
}

function receiptOf(response: Response): Receipt {
  return decodeReceipt(response.headers.get(HEADERS.response)!);
}

describe("PaychanSchemeClient with the stock x402 fetch client", () => {
  let chain: EscrowFixture;
  let db: Database;
  let seller: Seller;

  before(async () => {
    chain = await deployEscrow();
    db = await openTestDatabase("postgres");
    seller = await startSeller(chain, db);
  });
  after(async () => {
    await seller?.close();
    await db?.close();
  });

  const accepted = (id: Hex) => db.prisma.payment.count({ where: { channelId: id, status: "ACCEPTED" } });
  // The gateway books what it accepted about once a second; book now to read the journal.
  const owed = async (id: Hex) => {
    await seller.store.book();
    return balanceOf(db.prisma, accountId.channelOwed(id));
  };

  it("cannot pay a paychan route without the paychan scheme (the stock client alone fails)", async () => {
    const exactOnly = {
      scheme: "exact",
      createPaymentPayload: async () => {
        throw new Error("the exact scheme must never be asked to pay a paychan route");
      },
    };
    const handled = seller.handled.count;
    const pay = wrapFetchWithPayment(fetch, new x402Client().register("eip155:*", exactOnly));
    let failure: unknown;
    await pay(`${seller.url}/quote`).catch((error: unknown) => (failure = error));
    expect(String(failure)).to.match(/No network\/scheme registered for x402 version: 2 which comply with the payment requirements/);
    expect(seller.handled.count).to.equal(handled);
  });

  it("pays 10 requests with cumulative vouchers: receipts, state, ledger and an on-chain claim agree", async () => {
    const buyer = await openBuyerChannel(chain);
    const store = new MemoryStateStore();
    const receipts: Receipt[] = [];
    const scheme = new PaychanSchemeClient({
      channel: buyer.channel,
      signer: buyer.session,
      maxPrice: PRICE,
      store,
      onReceipt: (receipt) => void receipts.push(receipt),
    });
    const pay = wrapFetchWithPayment(fetch, new x402Client().register("eip155:*", scheme));
    const handled = seller.handled.count;
    for (let i = 1n; i <= 10n; i++) {
      const response = await pay(`${seller.url}/quote`);
      expect(response.status, `request ${i}: ${await response.clone().text()}`).to.equal(200);
      expect(receiptOf(response)).to.deep.include({ channelId: buyer.channel.id, charged: PRICE, cumulativeAmount: PRICE * i });
    }
    expect(seller.handled.count - handled).to.equal(10);
    expect(receipts.map((r) => r.cumulativeAmount)).to.deep.equal(Array.from({ length: 10 }, (_, i) => PRICE * BigInt(i + 1)));
    expect(await store.load(buyer.channel.id)).to.deep.equal({ accepted: PRICE * 10n, signedMax: PRICE * 10n });
    expect(await accepted(buyer.channel.id)).to.equal(10);
    expect(await owed(buyer.channel.id)).to.equal(PRICE * 10n);

    const stored = (await db.prisma.channel.findUnique({ where: { id: buyer.channel.id } }))!;
    expect(toBigInt(stored.latestVoucherAmount)).to.equal(PRICE * 10n);
    const before = await chain.publicClient.getBalance({ address: chain.escrow.address });
    const voucher = await claimableVoucher(db, buyer.channel.id);
    await chain.escrow.write.claim([buyer.channel.config, PRICE * 10n, voucher.signature], {
      account: chain.payee.account,
    });
    expect(before - (await chain.publicClient.getBalance({ address: chain.escrow.address }))).to.equal(PRICE * 10n);
  });

  it("pays concurrent requests on one channel one at a time, each on the previous accepted total", async () => {
    const buyer = await openBuyerChannel(chain);
    const store = new MemoryStateStore();
    const pay = stockFetch(buyer, { store });
    const responses = await Promise.all(Array.from({ length: 6 }, () => pay(`${seller.url}/quote`)));
    expect(responses.map((r) => r.status)).to.deep.equal([200, 200, 200, 200, 200, 200]);
    const totals = responses.map((r) => receiptOf(r).cumulativeAmount).sort((a, b) => (a < b ? -1 : 1));
    expect(totals).to.deep.equal(Array.from({ length: 6 }, (_, i) => PRICE * BigInt(i + 1)));
    expect(await store.load(buyer.channel.id)).to.deep.equal({ accepted: PRICE * 6n, signedMax: PRICE * 6n });
    expect(await accepted(buyer.channel.id)).to.equal(6);
  });

  it("refuses a price above maxPrice without signing or being served", async () => {
    const buyer = await openBuyerChannel(chain);
    const store = new MemoryStateStore();
    const handled = seller.handled.count;
    let failure: unknown;
    await stockFetch(buyer, { store, maxPrice: PRICE - 1n })(`${seller.url}/quote`).catch((error: unknown) => (failure = error));
    expect(String(failure)).to.include(`Price ${PRICE} exceeds maxPrice ${PRICE - 1n}`);
    expect(await store.load(buyer.channel.id)).to.equal(undefined);
    expect(seller.handled.count).to.equal(handled);
    expect(await db.prisma.payment.count({ where: { channelId: buyer.channel.id } })).to.equal(0);
  });

  it("resyncs to the server's total after losing receipts, but never beyond what it signed", async () => {
    const buyer = await openBuyerChannel(chain);
    const store = new MemoryStateStore();
    const pay = stockFetch(buyer, { store });
    for (let i = 0; i < 3; i++) expect((await pay(`${seller.url}/quote`)).status).to.equal(200);

    // The last two receipts were lost, but the client still knows it signed up to 3 × PRICE.
    await store.save(buyer.channel.id, { accepted: PRICE, signedMax: PRICE * 3n });
    // (Another resource: the same one would be a byte-identical resend, which the server serves again as a retry.)
    const resynced = await pay(`${seller.url}/quote?after=loss`);
    expect(resynced.status, await resynced.clone().text()).to.equal(200);
    expect(receiptOf(resynced).cumulativeAmount).to.equal(PRICE * 4n);
    expect(await store.load(buyer.channel.id)).to.deep.equal({ accepted: PRICE * 4n, signedMax: PRICE * 4n });

    // A client that lost everything signed only PRICE: the server's 4 × PRICE is more than it ever
    // signed, so it does not follow, and the 402 reaches the caller.
    const forgetful = new MemoryStateStore();
    const handled = seller.handled.count;
    const refused = await stockFetch(buyer, { store: forgetful })(`${seller.url}/quote?forgetful`);
    expect(refused.status).to.equal(402);
    const view = decodePaymentRequired(refused.headers.get(HEADERS.required)!).accepts[0]!.extra.channel!;
    expect(view.acceptedCumulative).to.equal(PRICE * 4n);
    expect(await forgetful.load(buyer.channel.id)).to.deep.equal({ accepted: 0n, signedMax: PRICE });
    expect(seller.handled.count).to.equal(handled);
    expect(await accepted(buyer.channel.id)).to.equal(4);
    expect(await owed(buyer.channel.id)).to.equal(PRICE * 4n);
  });

  it("asks onInsufficientDeposit for a top-up and retries once it is done", async () => {
    const buyer = await openBuyerChannel(chain, PRICE * 2n);
    const asked: { deposit: bigint; needed: bigint }[] = [];
    const pay = stockFetch(buyer, {
      onInsufficientDeposit: async (details) => {
        asked.push(details);
        await chain.escrow.write.topUp([buyer.channel.config, PRICE * 10n], { account: chain.payer.account, value: PRICE * 10n });
      },
    });
    for (let i = 1n; i <= 3n; i++) {
      const response = await pay(`${seller.url}/quote`);
      expect(response.status, `request ${i}: ${await response.clone().text()}`).to.equal(200);
      expect(receiptOf(response).cumulativeAmount).to.equal(PRICE * i);
    }
    expect(asked).to.deep.equal([{ deposit: PRICE * 2n, needed: PRICE * 3n }]);
  });

  it("shares the channel state with createPaidFetch: either client continues the other's totals", async () => {
    const buyer = await openBuyerChannel(chain);
    const store = new MemoryStateStore();
    const paidFetch = buyerFetch(buyer, { store });
    const stock = stockFetch(buyer, { store });
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    expect(receiptOf(await stock(`${seller.url}/quote`)).cumulativeAmount).to.equal(PRICE * 2n);
    expect(receiptOf(await paidFetch(`${seller.url}/quote`)).cumulativeAmount).to.equal(PRICE * 3n);
    expect(await accepted(buyer.channel.id)).to.equal(3);
  });

  it("after a response lost in transit, waits out maxTimeoutSeconds and then resyncs to the total the server accepted", async () => {
    const impatient = await startSeller(chain, db, { maxTimeoutSeconds: 1 });
    try {
      const buyer = await openBuyerChannel(chain);
      const store = new MemoryStateStore();
      let loseNextPaidResponse = false;
      const lossy: typeof fetch = async (input, init) => {
        const request = new Request(input, init);
        const response = await fetch(request.clone());
        if (loseNextPaidResponse && request.headers.has(HEADERS.signature)) {
          loseNextPaidResponse = false;
          await response.arrayBuffer();
          throw new TypeError("fetch failed: the connection dropped before the response arrived");
        }
        return response;
      };
      const pay = stockFetch(buyer, { store }, lossy);
      expect((await pay(`${impatient.url}/quote`)).status).to.equal(200);
      loseNextPaidResponse = true;
      let lost: unknown;
      await pay(`${impatient.url}/quote`).catch((error: unknown) => (lost = error));
      expect(String(lost)).to.include("connection dropped");
      // The server accepted the lost voucher; the client only knows it signed it.
      expect(await store.load(buyer.channel.id)).to.deep.equal({ accepted: PRICE, signedMax: PRICE * 2n });

      // Another resource, so the voucher it re-signs is a replay to resync from, not a resend to serve again.
      const next = await pay(`${impatient.url}/quote?next`);
      expect(next.status, await next.clone().text()).to.equal(200);
      expect(receiptOf(next).cumulativeAmount).to.equal(PRICE * 3n);
      expect(await accepted(buyer.channel.id)).to.equal(3);
    } finally {
      await impatient.close();
    }
  });
});
