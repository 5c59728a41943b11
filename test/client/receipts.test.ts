// A seller that lies in its receipts: a proxy in front of the real gateway rewrites each
// PAYMENT-RESPONSE to claim the whole deposit was accepted. Both clients that share ChannelPayer
// (createPaidFetch and, through the stock x402 client, PaychanSchemeClient) must not believe it:
// following it would make their next voucher authorize the deposit.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { parseEther } from "viem";
import { MemoryStateStore } from "../../src/client/stateStore.js";
import type { Database } from "../../src/ledger/db.js";
import { HEADERS, decodeReceipt, encodeHeader } from "../../src/protocol/wire.js";
import { PaychanSchemeClient } from "../../src/x402/index.js";
import { openTestDatabase } from "../ledger/helpers.js";
import { PRICE, buyerFetch, deployEscrow, openBuyerChannel, startSeller, type Seller } from "../helpers/seller.js";
import type { EscrowFixture } from "../helpers/escrow.js";

const DEPOSIT = parseEther("0.01");

/** Forwards every request to `upstream` and inflates the receipt's cumulative total to `claimed`. */
async function startForgingProxy(upstream: string, claimed: bigint): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) if (typeof value === "string") headers.set(name, value);
    const response = await fetch(`${upstream}${req.url}`, { method: req.method, headers });
    const body = Buffer.from(await response.arrayBuffer());
    response.headers.forEach((value, name) => {
      if (name !== "content-length" && name !== "transfer-encoding") res.setHeader(name, value);
    });
    const receipt = response.headers.get(HEADERS.response);
    if (receipt) res.setHeader(HEADERS.response, encodeHeader({ ...decodeReceipt(receipt), cumulativeAmount: claimed }));
    res.writeHead(response.status).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve()))),
  };
}

describe("a receipt claiming more than the client signed", () => {
  let chain: EscrowFixture;
  let db: Database;
  let seller: Seller;
  let proxy: Awaited<ReturnType<typeof startForgingProxy>>;

  before(async () => {
    chain = await deployEscrow();
    db = await openTestDatabase("postgres");
    seller = await startSeller(chain, db);
    proxy = await startForgingProxy(seller.url, DEPOSIT);
  });
  after(async () => {
    await proxy?.close();
    await seller?.close();
    await db?.close();
  });

  it("is ignored by createPaidFetch: its next voucher is the true total plus the price", async () => {
    const buyer = await openBuyerChannel(chain, DEPOSIT);
    const store = new MemoryStateStore();
    const paidFetch = buyerFetch(buyer, { store });
    const first = await paidFetch(`${proxy.url}/quote`);
    expect(first.status).to.equal(200);
    expect(decodeReceipt(first.headers.get(HEADERS.response)!).cumulativeAmount).to.equal(DEPOSIT);
    expect(await store.load(buyer.channel.id)).to.deep.equal({ accepted: 0n, signedMax: PRICE });

    // Another resource: re-sending the first request unchanged would be a retry of the same payment.
    expect((await paidFetch(`${proxy.url}/quote?next`)).status).to.equal(200);
    expect((await store.load(buyer.channel.id))?.signedMax).to.equal(PRICE * 2n);
  });

  it("is ignored by PaychanSchemeClient under the stock x402 client", async () => {
    const buyer = await openBuyerChannel(chain, DEPOSIT);
    const store = new MemoryStateStore();
    const scheme = new PaychanSchemeClient({ channel: buyer.channel, signer: buyer.session, maxPrice: PRICE, store });
    const pay = wrapFetchWithPayment(fetch, new x402Client().register("eip155:*", scheme));
    expect((await pay(`${proxy.url}/quote`)).status).to.equal(200);
    expect(await store.load(buyer.channel.id)).to.deep.equal({ accepted: 0n, signedMax: PRICE });

    expect((await pay(`${proxy.url}/quote?next`)).status).to.equal(200);
    expect((await store.load(buyer.channel.id))?.signedMax).to.equal(PRICE * 2n);
  });
});
