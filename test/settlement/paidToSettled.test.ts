import { expect } from "chai";
import type { AddressInfo } from "node:net";
import type { Hex, PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { createPaidFetch } from "../../src/client/paidFetch.js";
import { accountId } from "../../src/ledger/accounts.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { balanceOf } from "../../src/ledger/postings.js";
import { createApp, reconcilePaychan } from "../../src/server.js";
import { DEPOSIT, PRICE, claimedOnChain, deployEscrow, entriesOfKind, startTestPaychan, type EscrowFixture, type TestPaychan } from "./helpers.js";

describe("from paid requests to settled books [pglite]", function () {
  let chain: EscrowFixture;
  let test: TestPaychan | undefined;

  before(async () => {
    chain = await deployEscrow();
  });
  after(async () => test?.paychan.close());

  it("buyers pay through the paywall, one claimBatch settles every channel, the watcher mirrors it once, and reconciliation is clean", async () => {
    test = await startTestPaychan(chain, "pglite:memory");
    const { paychan, settlement, payee } = test;
    const route = "GET /quote";
    const app = createApp(paychan, { [route]: PRICE }, { [route]: (_req, res) => void res.json({ quote: 42 }) });
    const server = app.listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/quote`;
    const ids: Hex[] = [];
    try {
      for (let buyer = 0; buyer < 3; buyer++) {
        const session = privateKeyToAccount(generatePrivateKey());
        const channel = await openChannel({
          wallet: chain.payer as unknown as Wallet,
          publicClient: chain.publicClient as PublicClient,
          escrow: chain.escrow.address,
          payee: payee.address,
          signer: session.address,
          amount: DEPOSIT,
          withdrawDelay: 86_400,
        });
        ids.push(channel.id);
        const paidFetch = createPaidFetch({ channel, signer: session, maxPrice: PRICE });
        for (let i = 0; i < 4; i++) expect((await paidFetch(url)).status).to.equal(200);
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }

    const report = await settlement.settleNow();

    expect(report.decided.map((b) => b.items.length)).to.deep.equal([3]);
    for (const id of ids) expect(await claimedOnChain(chain, id)).to.equal(4n * PRICE);
    expect(await entriesOfKind(paychan, "CLAIM", ids)).to.have.length(3);
    expect(await balanceOf(paychan.db.prisma, accountId.revenue(payee.address, nativeAsset(chain.location.chainId)))).to.equal(12n * PRICE);
    // The gateway booked each deposit as pending when the buyer first paid; the watcher confirmed it,
    // moving it from ESCROW_PENDING into the escrow's holdings.
    expect(await entriesOfKind(paychan, "DEPOSIT_PENDING", ids)).to.have.length(3);
    const opened = await paychan.db.prisma.chainEvent.findMany({ where: { channelId: { in: ids }, name: "ChannelOpened" } });
    expect(opened.filter((e) => e.entryId !== null)).to.have.length(3);
    const rows = await paychan.db.prisma.channel.findMany({ where: { id: { in: ids } } });
    expect(rows.map((r) => [r.deposit.toFixed(), r.pendingBooked.toFixed()])).to.deep.equal(ids.map(() => [DEPOSIT.toString(), "0"]));
    expect(await balanceOf(paychan.db.prisma, accountId.escrowPending(chain.escrow.address, nativeAsset(chain.location.chainId)))).to.equal(0n);
    const reconciled = await reconcilePaychan(paychan);
    expect(reconciled.ok).to.equal(true);
    expect(reconciled.differences).to.deep.equal([]);
  });
});
