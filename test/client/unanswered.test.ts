// A paid request whose answer never arrives, not even after createPaidFetch's own resends (the server
// committed the payment and then went away for longer than the resends wait). The client did not see
// a receipt, so it signs the same voucher again (accepted total plus the price; session-key signatures
// are deterministic), and the caller's retry of the same request is byte-identical: the server serves
// it as a retry of the payment it already charged, instead of charging twice for one answer.
import { expect } from "chai";
import { parseEther } from "viem";
import { MemoryStateStore } from "../../src/client/stateStore.js";
import type { Database } from "../../src/ledger/db.js";
import { HEADERS, decodeReceipt } from "../../src/protocol/wire.js";
import { openTestDatabase } from "../ledger/helpers.js";
import { PRICE, buyerFetch, deployEscrow, openBuyerChannel, startSeller, type Seller } from "../helpers/seller.js";
import type { EscrowFixture } from "../helpers/escrow.js";

/**
 * A fetch whose next `failures` paid requests reach the server (which commits and answers) but whose
 * answers are lost on the way back, as fetch reports a dead connection: with a TypeError.
 */
function lossyFetch() {
  const control = { failures: 0, paidSent: [] as string[] };
  const lossy = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const signature = request.headers.get(HEADERS.signature);
    if (signature) control.paidSent.push(signature);
    const response = await fetch(request);
    if (signature && control.failures > 0) {
      control.failures--;
      await response.arrayBuffer();
      throw new TypeError("fetch failed");
    }
    return response;
  }) as typeof fetch;
  return { lossy, control };
}

async function acceptedOn(db: Database, channelId: string): Promise<{ payments: number; total: bigint }> {
  const rows = await db.prisma.payment.findMany({ where: { channelId: channelId.toLowerCase(), status: "ACCEPTED" } });
  return { payments: rows.length, total: rows.reduce((sum, row) => sum + BigInt(row.price.toFixed()), 0n) };
}

describe("createPaidFetch after a paid request went unanswered", () => {
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

  it("resends the same payment when the caller retries the request, and is charged once", async () => {
    const buyer = await openBuyerChannel(chain, parseEther("0.01"));
    const { lossy, control } = lossyFetch();
    const paidFetch = buyerFetch(buyer, { fetch: lossy, store: new MemoryStateStore() });
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200); // learns the price

    control.failures = 3; // the first send and both of createPaidFetch's resends lose their answers
    let thrown: unknown;
    await paidFetch(`${seller.url}/quote`).catch((error: unknown) => (thrown = error));
    expect(thrown).to.be.instanceOf(TypeError);
    expect(await acceptedOn(db, buyer.channel.id)).to.deep.equal({ payments: 2, total: PRICE * 2n });

    const retried = await paidFetch(`${seller.url}/quote`);
    expect(retried.status).to.equal(200);
    const receipt = decodeReceipt(retried.headers.get(HEADERS.response)!);
    expect(receipt.cumulativeAmount).to.equal(PRICE * 2n);
    expect(new Set(control.paidSent.slice(1)).size, "every send of the second request carried one payment").to.equal(1);
    expect(await acceptedOn(db, buyer.channel.id)).to.deep.equal({ payments: 2, total: PRICE * 2n });

    // It is forgotten once answered: the next request pays the next price.
    const next = await paidFetch(`${seller.url}/quote`);
    expect(decodeReceipt(next.headers.get(HEADERS.response)!).cumulativeAmount).to.equal(PRICE * 3n);
  });

  it("forgets it when the next request is a different one, which pays on top of what was signed", async () => {
    const buyer = await openBuyerChannel(chain, parseEther("0.01"));
    const { lossy, control } = lossyFetch();
    const paidFetch = buyerFetch(buyer, { fetch: lossy, store: new MemoryStateStore() });
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);

    control.failures = 3;
    await paidFetch(`${seller.url}/quote`).catch(() => undefined);
    const other = await paidFetch(`${seller.url}/quote?another`);
    expect(other.status).to.equal(200);
    expect(decodeReceipt(other.headers.get(HEADERS.response)!).cumulativeAmount).to.equal(PRICE * 3n);
    expect(await acceptedOn(db, buyer.channel.id)).to.deep.equal({ payments: 3, total: PRICE * 3n });
  });
});
