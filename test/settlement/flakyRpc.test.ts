import { expect } from "chai";
import { createPublicClient, http, parseEventLogs, type PublicClient } from "viem";
import { escrowAbi } from "../../src/contracts/escrowAbi.js";
import { accountId } from "../../src/ledger/accounts.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { balanceOf } from "../../src/ledger/postings.js";
import { reconcilePaychan } from "../../src/server.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import {
  PRICE,
  claimedOnChain,
  deployEscrow,
  entriesOfKind,
  expectBalancedLedger,
  fundedAccount,
  openChannels,
  pay,
  startTestPaychan,
  type EscrowFixture,
  type TestPaychan,
} from "./helpers.js";

describe("settlement over a flaky RPC [postgres]", function () {
  let chain: EscrowFixture;
  let database: { url: string; drop(): Promise<void> };
  let server: RpcServer;
  let test: TestPaychan | undefined;

  before(async () => {
    chain = await deployEscrow();
    database = await createPostgresDatabase();
    server = await serveProvider(chain.connection.provider, {
      seed: 20261121,
      dropBefore: 0.1,
      dropAfter: 0.1,
      httpError: 0.08,
      rpcError: 0.08,
      maxDelayMs: 15,
    });
  });
  after(async () => {
    await test?.paychan.close();
    await server.close();
    await database.drop();
  });

  it("drops, delays and errors slow settlement down but never lose, double or corrupt a claim", async () => {
    const flaky = createPublicClient({ transport: http(server.url, { retryCount: 1, retryDelay: 5, timeout: 2_000 }) }) as PublicClient;
    const payee = await fundedAccount(chain);
    for (let attempt = 0; !test; attempt++) {
      test = await startTestPaychan(chain, database.url, { payee, publicClient: flaky, env: { SETTLE_BATCH_SIZE: "4" } }).catch((error) => {
        if (attempt > 20) throw error;
        return undefined;
      });
    }
    const { paychan, settlement } = test;
    const channels = await openChannels(chain, payee, 20);
    const fromBlock = await chain.publicClient.getBlockNumber({ cacheTime: 0 });

    let failures = 0;
    let rounds = 0;
    let paid = false;
    const settled = async () =>
      paid &&
      (await Promise.all(channels.map((c) => claimedOnChain(chain, c.id)))).every((claimed) => claimed === 2n * PRICE) &&
      (await settlement.txManager.inFlight()) === 0 &&
      (await settlement.watcher.cursor()).blockNumber === (await chain.publicClient.getBlockNumber({ cacheTime: 0 }));
    for (; rounds < 150 && !(await settled()); rounds++) {
      try {
        await settlement.watcher.syncOnce();
        if (!paid) {
          // The watcher must have mirrored the channels before the gateway can take payments on them.
          await pay(paychan, chain, channels, 2);
          paid = true;
        }
        const round = await settlement.worker.settleOnce({ manual: true });
        failures += round.transactions.filter((t) => t.action === "error").length;
      } catch {
        failures++;
      }
    }

    expect(rounds, "settlement finished within the bound").to.be.below(150);
    expect(failures, "the RPC did fail").to.be.above(0);
    expect(server.stats.lostAnswers, "a broadcast reached the node but its answer was lost").to.include("eth_sendRawTransaction");

    // On chain: each channel claimed exactly its vouchers, by Claimed events that add up.
    const logs = await chain.publicClient.getLogs({ address: chain.escrow.address, fromBlock });
    const claimed = parseEventLogs({ abi: escrowAbi, logs, eventName: "Claimed" });
    expect(claimed.reduce((sum, l) => sum + l.args.amount, 0n)).to.equal(40n * PRICE);
    // In the books: one CLAIM entry per Claimed event, one GAS_FEE per final transaction, nothing else.
    const ids = channels.map((c) => c.id);
    expect(await entriesOfKind(paychan, "CLAIM", ids)).to.have.length(claimed.length);
    const asset = nativeAsset(chain.location.chainId);
    expect(await balanceOf(paychan.db.prisma, accountId.revenue(payee.address, asset))).to.equal(40n * PRICE);
    const txs = await paychan.db.prisma.chainTx.findMany({ where: { sender: payee.address.toLowerCase() } });
    const landed = txs.filter((t) => t.txHash !== null);
    expect(await paychan.db.prisma.journalEntry.count({ where: { kind: "GAS_FEE", idempotencyKey: { in: landed.map((t) => `gas:${t.txHash}:${t.blockHash}`) } } })).to.equal(landed.length);
    await expectBalancedLedger(paychan);
    const report = await reconcilePaychan({ ...paychan, publicClient: chain.publicClient as PublicClient });
    expect(report.differences.filter((d) => d.severity !== "lag")).to.deep.equal([]);
  });
});
