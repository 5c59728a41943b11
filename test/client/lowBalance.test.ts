// Keeping a buyer's channel funded, end to end: the real gateway behind its Express paywall on the
// EDR chain and a real database tell the buyer what its channel has left (in receipts and 402s), and
// createPaidFetch warns once per crossing of the threshold and tops the channel up on chain within
// the cap per period the user set — a cap a reloaded client still honours.
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { FileStateStore } from "../../src/client/FileStateStore.js";
import { readChannel } from "../../src/client/channel.js";
import type { LowBalanceEvent } from "../../src/client/lowBalance.js";
import { MemoryStateStore } from "../../src/client/stateStore.js";
import { HEADERS, decodePaymentRequired, decodeReceipt } from "../../src/protocol/wire.js";
import { describeEachDatabase } from "../ledger/helpers.js";
import { PRICE, buyerFetch, deployEscrow, openBuyerChannel, startSeller, type Seller } from "../helpers/seller.js";
import type { EscrowFixture } from "../helpers/escrow.js";

const DEPOSIT = PRICE * 10n;
const DAY = 86_400;

describeEachDatabase("remaining balance and low-balance top-ups through the paywall", (db) => {
  let chain: EscrowFixture;
  let seller: Seller;

  before(async () => {
    chain = await deployEscrow();
    seller = await startSeller(chain, db());
  });
  after(async () => {
    await seller?.close();
  });

  it("puts the channel's remaining deposit in every receipt and in the 402 that refuses for the deposit", async () => {
    const buyer = await openBuyerChannel(chain, PRICE * 2n);
    const paidFetch = buyerFetch(buyer);
    const first = await paidFetch(`${seller.url}/quote`);
    expect(first.status).to.equal(200);
    expect(decodeReceipt(first.headers.get(HEADERS.response)!).remaining).to.equal(PRICE);
    const second = await paidFetch(`${seller.url}/quote?2`);
    expect(decodeReceipt(second.headers.get(HEADERS.response)!).remaining).to.equal(0n);

    const refused = await paidFetch(`${seller.url}/quote?3`);
    expect(refused.status).to.equal(402);
    expect(((await refused.json()) as { error: string }).error).to.equal("insufficient_deposit");
    const terms = decodePaymentRequired(refused.headers.get(HEADERS.required)!).accepts[0]!;
    expect(terms.extra.channel).to.deep.include({ channelId: buyer.channel.id, acceptedCumulative: PRICE * 2n, deposit: PRICE * 2n, remaining: 0n });
  });

  it("calls onLowBalance once when the remaining deposit crosses the threshold, not on every receipt below it", async () => {
    const buyer = await openBuyerChannel(chain, DEPOSIT);
    const events: LowBalanceEvent[] = [];
    const paidFetch = buyerFetch(buyer, { lowBalance: { threshold: PRICE * 3n, onLowBalance: (event) => void events.push(event) } });
    for (let i = 1; i <= 7; i++) expect((await paidFetch(`${seller.url}/quote?${i}`)).status).to.equal(200);
    expect(events).to.deep.equal([]); // 3 left: not below the threshold
    expect((await paidFetch(`${seller.url}/quote?8`)).status).to.equal(200);
    expect(events).to.deep.equal([{ channelId: buyer.channel.id, remaining: PRICE * 2n, threshold: PRICE * 3n, reason: "below_threshold" }]);
    expect((await paidFetch(`${seller.url}/quote?9`)).status).to.equal(200);
    expect(events).to.have.length(1);
  });

  it("tops up on chain when the balance runs low, never past the cap in a period, even after a reload", async () => {
    const buyer = await openBuyerChannel(chain, DEPOSIT);
    const path = join(await mkdtemp(join(tmpdir(), "paychan-topup-")), "channels.json");
    let now = 1_000_000;
    const events: LowBalanceEvent[] = [];
    const options = () => ({
      store: new FileStateStore(path),
      lowBalance: { threshold: PRICE * 3n, onLowBalance: (event: LowBalanceEvent) => void events.push(event) },
      autoTopUp: { wallet: buyer.wallet, publicClient: chain.publicClient as never, amount: PRICE * 5n, cap: PRICE * 5n, period: DAY, now: () => now },
    });
    const onChain = async () => (await readChannel(chain.publicClient as never, buyer.channel)).deposit;

    let paidFetch = buyerFetch(buyer, options());
    for (let i = 1; i <= 8; i++) expect((await paidFetch(`${seller.url}/quote?${i}`)).status).to.equal(200);
    expect(events).to.have.length(1);
    expect(events[0]).to.deep.include({ remaining: PRICE * 2n, reason: "below_threshold" });
    expect(events[0]!.topUp).to.deep.equal({ outcome: "topped_up", amount: PRICE * 5n, spentInPeriod: PRICE * 5n, cap: PRICE * 5n });
    expect(await onChain()).to.equal(DEPOSIT + PRICE * 5n);

    // The gateway learns of the new deposit when a voucher needs it, and serves on.
    for (let i = 9; i <= 12; i++) expect((await paidFetch(`${seller.url}/quote?${i}`)).status).to.equal(200);

    // A reloaded client (same state file) is below the threshold again within the period: the cap holds.
    paidFetch = buyerFetch(buyer, options());
    expect((await paidFetch(`${seller.url}/quote?13`)).status).to.equal(200);
    expect(events).to.have.length(2);
    expect(events[1]!.topUp).to.deep.equal({ outcome: "cap_reached", amount: PRICE * 5n, spentInPeriod: PRICE * 5n, cap: PRICE * 5n, resetsAt: 1_000_000 + DAY });
    expect(await onChain()).to.equal(DEPOSIT + PRICE * 5n);

    // Spent out: the refusal for the deposit is returned as it is, no top-up attempted.
    expect((await paidFetch(`${seller.url}/quote?14`)).status).to.equal(200);
    expect((await paidFetch(`${seller.url}/quote?15`)).status).to.equal(200);
    const refused = await paidFetch(`${seller.url}/quote?16`);
    expect(refused.status).to.equal(402);
    expect(((await refused.json()) as { error: string }).error).to.equal("insufficient_deposit");
    expect(events[2]).to.deep.include({ reason: "insufficient_deposit" });
    expect(events[2]!.topUp?.outcome).to.equal("cap_reached");
    expect(await onChain()).to.equal(DEPOSIT + PRICE * 5n);

    // The next period: the refused request tops up and is served.
    now += DAY;
    const served = await paidFetch(`${seller.url}/quote?16`);
    expect(served.status).to.equal(200);
    expect(await onChain()).to.equal(DEPOSIT + PRICE * 10n);
    expect((await new FileStateStore(path).load(buyer.channel.id))?.topUps).to.deep.equal({ since: 1_000_000 + DAY, amount: PRICE * 5n });
  });

  it("does nothing of the kind unless asked: no callback, no top-up", async () => {
    const buyer = await openBuyerChannel(chain, PRICE);
    const store = new MemoryStateStore();
    const paidFetch = buyerFetch(buyer, { store });
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    expect((await paidFetch(`${seller.url}/quote?2`)).status).to.equal(402);
    expect(await store.load(buyer.channel.id)).to.deep.equal({ accepted: PRICE, signedMax: PRICE * 2n });
    expect((await readChannel(chain.publicClient as never, buyer.channel)).deposit).to.equal(PRICE);
  });
});
