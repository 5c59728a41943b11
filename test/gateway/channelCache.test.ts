import { expect } from "chai";
import { LruMap } from "../../src/gateway/ChannelCache.js";
import { describeEachDatabase } from "../ledger/helpers.js";
import { deployEscrow, type EscrowFixture } from "../helpers/escrow.js";
import { PRICE, buyerFetch, openBuyerChannel, startSeller, type Buyer, type Seller } from "../helpers/seller.js";

describe("LruMap", function () {
  it("holds at most its capacity, dropping the least recently used first", function () {
    const cache = new LruMap<string, number>(3);
    for (const [i, key] of ["a", "b", "c", "d"].entries()) cache.set(key, i);
    expect(cache.size).to.equal(3);
    expect(cache.get("a")).to.equal(undefined);
    expect([cache.get("b"), cache.get("c"), cache.get("d")]).to.deep.equal([1, 2, 3]);
  });

  it("counts a read as a use, a peek not", function () {
    const cache = new LruMap<string, number>(2);
    cache.set("a", 1);
    cache.set("b", 2);
    cache.get("a"); // b is now the least recently used
    cache.set("c", 3);
    expect(cache.peek("b")).to.equal(undefined);
    expect(cache.peek("a")).to.equal(1);
    cache.peek("a"); // does not save a from the next eviction
    cache.set("d", 4);
    cache.set("e", 5);
    expect(cache.peek("a")).to.equal(undefined);
  });

  it("replaces a key's value without growing", function () {
    const cache = new LruMap<string, number>(2);
    cache.set("a", 1);
    cache.set("a", 2);
    expect(cache.size).to.equal(1);
    expect(cache.get("a")).to.equal(2);
  });

  it("refuses a capacity below one", function () {
    expect(() => new LruMap(0)).to.throw(RangeError);
  });
});

describeEachDatabase("a gateway's channel cache", (db) => {
  let chain: EscrowFixture;
  let seller: Seller;
  const buyers: Buyer[] = [];

  before(async function () {
    chain = await deployEscrow();
    seller = await startSeller(chain, db(), { channelCacheSize: 2 });
    for (let i = 0; i < 5; i++) buyers.push(await openBuyerChannel(chain));
  });
  after(async function () {
    await seller?.close();
  });

  it("stays within its size while more channels pay, and every evicted channel keeps paying from the database", async function () {
    const fetches = buyers.map((buyer) => buyerFetch(buyer));
    // Round robin: each channel comes back after the two-entry cache has dropped it.
    for (let round = 1n; round <= 3n; round++) {
      for (const [i, paid] of fetches.entries()) {
        const response = await paid(`${seller.url}/quote`);
        expect(response.status, `channel ${i}, round ${round}`).to.equal(200);
        expect(seller.gateway.cachedChannels).to.be.at.most(2);
      }
    }
    for (const buyer of buyers) {
      const row = await db().prisma.channel.findUnique({ where: { id: buyer.channel.id.toLowerCase() } });
      expect(BigInt(row!.acceptedCumulative.toFixed())).to.equal(3n * PRICE);
    }
    expect(await db().prisma.payment.count({ where: { status: "ACCEPTED", channelId: { in: buyers.map((b) => b.channel.id.toLowerCase()) } } })).to.equal(15);
  });
});
