// `serve` and `work` as separate processes on one Postgres (two paychan instances with their own
// connection pools and memory): what the watcher in one writes, the gateway in the other obeys at once.
import { expect } from "chai";
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import type { PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { createPaidFetch } from "../../src/client/paidFetch.js";
import { createApp, reconcilePaychan } from "../../src/server.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { DEPOSIT, PRICE, claimedOnChain, deployEscrow, finish, startTestPaychan, type EscrowFixture, type TestPaychan } from "./helpers.js";

describe("serve and work as separate processes on one Postgres", function () {
  let chain: EscrowFixture;
  let database: Awaited<ReturnType<typeof createPostgresDatabase>>;
  const started: TestPaychan[] = [];
  let server: Server | undefined;

  before(async () => {
    chain = await deployEscrow();
    database = await createPostgresDatabase();
  });
  after(async () => {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    for (const test of started) await test.paychan.close();
    await database.drop();
  });

  it("refuses new vouchers on a channel whose payer started withdrawing as soon as `work` has seen it, and loses nothing", async () => {
    // A withdrawal delay (10 minutes) shorter than the closing margin (an hour): once requested, the
    // deadline is already inside the margin.
    const env = { CLOSING_MARGIN_SECONDS: "3600", MIN_WITHDRAW_DELAY: "60", WATCHTOWER_MARGIN_SECONDS: "300" };
    const work = await startTestPaychan(chain, database.url, { env });
    const serve = await startTestPaychan(chain, database.url, { env, payee: work.payee });
    started.push(work, serve);

    const route = "GET /quote";
    const app = createApp(serve.paychan, { [route]: PRICE }, { [route]: (_req, res) => void res.json({ quote: 42 }) });
    server = app.listen(0, "127.0.0.1");
    await new Promise((resolve) => server!.once("listening", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/quote`;

    const session = privateKeyToAccount(generatePrivateKey());
    const channel = await openChannel({
      wallet: chain.payer as unknown as Wallet,
      publicClient: chain.publicClient as PublicClient,
      escrow: chain.escrow.address,
      payee: work.payee.address,
      signer: session.address,
      amount: DEPOSIT,
      withdrawDelay: 600,
    });
    const paidFetch = createPaidFetch({ channel, signer: session, maxPrice: PRICE });
    for (let i = 0; i < 3; i++) expect((await paidFetch(url)).status).to.equal(200);

    await chain.escrow.write.requestWithdrawal([channel.config], { account: chain.payer.account });
    // `work` sees the request and the watchtower claims what was accepted.
    await work.settlement.runOnce();
    await finish(work.settlement);
    expect(await claimedOnChain(chain, channel.id)).to.equal(3n * PRICE);

    // The long-running `serve` was never told anything directly: the row the watcher wrote decides.
    const refused = await paidFetch(url);
    expect(refused.status).to.equal(402);
    expect(((await refused.json()) as { error: string }).error).to.equal("channel_closing");

    // After the deadline the payer takes the rest; every voucher served was claimed.
    await chain.networkHelpers.time.increase(601);
    await chain.escrow.write.finalizeWithdrawal([channel.config], { account: chain.payer.account });
    await work.settlement.watcher.syncOnce();
    const report = await reconcilePaychan(work.paychan);
    expect(report.differences.filter((d) => d.channelId === channel.id && d.severity === "missing")).to.deep.equal([]);
    expect((await paidFetch(url)).status).to.equal(402);
  });
});
