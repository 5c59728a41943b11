// Settlement as an operator watches it: on a development chain the confirmations default to 0, and
// an explicit CONFIRMATIONS there makes settle-now stop at once with advice instead of printing "mined"
// for five minutes; no line is printed twice; a catch-up shows its progress; claims that cost more gas
// than they bring in wait for --force; a claim the escrow skipped is reported as skipped, a channel
// closed with vouchers unclaimed shows that amount as lost to the payer, and `balances` explains the
// negative wallet that gas leaves behind.
import { expect } from "chai";
import { createPublicClient, http, type PublicClient } from "viem";
import { StartupError } from "../../src/config.js";
import { claimBatchGas } from "../../src/chain/SettlementWorker.js";
import { accountId } from "../../src/ledger/accounts.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { balanceOf } from "../../src/ledger/postings.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";
import {
  PRICE,
  claimedOnChain,
  deployEscrow,
  openChannels,
  pay,
  startTestPaychan,
  type EscrowFixture,
  type TestPaychan,
} from "../settlement/helpers.js";
import { fundedKey, runCli } from "./helpers.js";

describe("settlement seen by its operator [postgres]", function () {
  this.timeout(120_000);
  let chain: EscrowFixture;
  let database: { url: string; drop(): Promise<void> };
  let rpc: RpcServer;
  let running: TestPaychan[] = [];

  before(async () => {
    chain = await deployEscrow();
    database = await createPostgresDatabase();
    rpc = await serveProvider(chain.connection.provider);
  });
  afterEach(async () => {
    await Promise.all(running.map((t) => t.paychan.close()));
    running = [];
  });
  after(async () => {
    await rpc.close();
    await database.drop();
  });

  async function start(options: Parameters<typeof startTestPaychan>[2] = {}) {
    const test = await startTestPaychan(chain, database.url, options);
    running.push(test);
    return test;
  }

  /** What a CLI command run against this test's books, chain and payee needs. */
  function cliEnv(test: TestPaychan, settlerKey: string): Record<string, string> {
    return {
      DATABASE_URL: database.url,
      RPC_URL: rpc.url,
      ESCROW_ADDRESS: chain.escrow.address,
      PAYEE_ADDRESS: test.payee.address,
      SETTLER_PRIVATE_KEY: settlerKey,
      POLL_INTERVAL_MS: "100",
      WATCH_FROM_BLOCK: test.paychan.config.WATCH_FROM_BLOCK.toString(),
    };
  }

  function expectNoRepeats(lines: string[]): void {
    const seen = new Set<string>();
    for (const line of lines) {
      expect(seen.has(line), `printed twice: ${line}`).to.equal(false);
      seen.add(line);
    }
  }

  it("waits for no confirmations on a dev chain unless told to, and then settle-now stops at once saying what to do, each line once", async () => {
    const defaulted = await start({ env: { CONFIRMATIONS: "" } });
    expect(chain.location.chainId).to.equal(31337);
    expect(defaulted.paychan.confirmations).to.equal(0);
    expect(defaulted.paychan.config.CONFIRMATIONS).to.equal(0);

    const lines: string[] = [];
    const { paychan, settlement, payee } = await start({ env: { CONFIRMATIONS: "2" }, log: (line) => lines.push(line) });
    expect(paychan.confirmations).to.equal(2);
    const [channel] = await openChannels(chain, payee, 1);
    await chain.networkHelpers.mine(2);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, [channel!], 3);
    const failure = await settlement.settleNow({ timeoutMs: 600_000 }).then(() => undefined, (e: Error) => e);
    expect(failure).to.be.instanceOf(StartupError);
    expect(failure!.message).to.include("chain 31337 is a development chain that makes a block only when a transaction arrives");
    expect(failure!.message).to.include("Set CONFIRMATIONS=0");
    expect(lines.filter((l) => l.includes("mined in block"))).to.have.length(1);
    expect(lines.find((l) => l.includes("mined in block"))).to.match(/waiting for 2 confirmation\(s\)$/);
    expectNoRepeats(lines);
  });

  it("shows a catch-up's progress, prints a failing loop's error once and says when it works again", async () => {
    let down = false;
    const flaky = await serveProvider({
      request: (args) => (down ? Promise.reject(Object.assign(new Error("the node is down"), { code: -32603 })) : chain.connection.provider.request(args as never)),
    });
    try {
      const lines: string[] = [];
      await chain.networkHelpers.mine(40);
      const from = (await chain.publicClient.getBlockNumber({ cacheTime: 0 })) - 40n;
      const publicClient = createPublicClient({ transport: http(flaky.url, { retryCount: 0 }) }) as PublicClient;
      const { settlement } = await start({
        env: { WATCH_FROM_BLOCK: String(from), LOG_BLOCK_RANGE: "4" },
        publicClient,
        log: (line) => lines.push(line),
      });
      const head = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
      await settlement.watcher.syncOnce();
      expect(lines[0]).to.equal(`catching up: mirrored to block ${from + 3n} of ${head} (${(300n / (head - from)).toString()}%)`);
      expect(lines).to.include(`caught up at block ${head}`);

      lines.length = 0;
      settlement.start();
      down = true;
      const before = flaky.stats.requests;
      while (flaky.stats.requests < before + 20) await new Promise((resolve) => setTimeout(resolve, 50));
      down = false;
      while (!lines.some((l) => l.startsWith("watcher: working again"))) await new Promise((resolve) => setTimeout(resolve, 50));
      await settlement.stop();
      expect(lines.filter((l) => l.startsWith("watcher: ") && l.includes("the node is down"))).to.have.length(1);
      expect(lines.find((l) => l.startsWith("watcher: working again"))).to.match(/\(after \d+ rounds of the same\)$/);
      expectNoRepeats(lines);
    } finally {
      await flaky.close();
    }
  });

  it("leaves claims that cost more gas than they bring in to --force, in settle-now and in the CLI", async () => {
    const { key, account } = await fundedKey(chain);
    const test = await start({ payee: account });
    const { paychan, settlement, payee } = test;
    const [small, large] = await openChannels(chain, payee, 2);
    const gasPrice = await chain.publicClient.getGasPrice();
    const pairShare = (claimBatchGas(2) * gasPrice) / 2n;
    const alone = claimBatchGas(1) * gasPrice;
    expect(pairShare > PRICE, `a claim of ${PRICE} must cost more gas than it brings at ${gasPrice} wei/gas`).to.equal(true);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, [small!], 1);
    await pay(paychan, chain, [large!], Number((2n * alone) / PRICE) + 1);

    const report = await settlement.settleNow({ onlyProfitable: true });
    expect(report.claimed.map((c) => c.channelId)).to.deep.equal([large!.id]);
    expect(report.unprofitable.map((u) => [u.candidate.channelId, u.candidate.unclaimed])).to.deep.equal([[small!.id, PRICE]]);
    expect(report.unprofitable[0]!.gasCost > PRICE).to.equal(true);
    expect(await claimedOnChain(chain, small!.id)).to.equal(0n);

    const env = cliEnv(test, key);
    const warned = await runCli(["settle-now"], env);
    expect(warned.code, warned.stderr).to.equal(0);
    expect(warned.stderr).to.include("warning: left 1 channel(s) unclaimed: claiming them would cost more gas than they bring in");
    expect(warned.stderr).to.include(`${small!.id} brings ${PRICE}, its claim costs about`);
    expect(warned.stderr).to.include("run `paychan settle-now --force` to claim them anyway");
    expect(await claimedOnChain(chain, small!.id)).to.equal(0n);

    const forced = await runCli(["settle-now", "--force"], env);
    expect(forced.code, forced.stderr).to.equal(0);
    expect(forced.stdout).to.include(`claimed 1 channel(s) for ${PRICE} in 1 transaction(s)`);
    expect(await claimedOnChain(chain, small!.id)).to.equal(PRICE);
  });

  it("reports a claim the escrow skipped as skipped, not confirmed, and lists a channel that closed unclaimed as lost to the payer", async () => {
    const { key, account } = await fundedKey(chain);
    const lines: string[] = [];
    const test = await start({ payee: account, log: (line) => lines.push(line) });
    const { paychan, settlement, payee } = test;
    const [channel] = await openChannels(chain, payee, 1, 3600);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, [channel!], 2);
    await chain.escrow.write.requestWithdrawal([channel!.cfg], { account: chain.payer.account });
    await settlement.watcher.syncOnce();
    // The claim is decided in time, but reaches the chain after the payer's deadline.
    expect(await settlement.worker.decide({ manual: true })).to.have.length(1);
    await chain.networkHelpers.time.increase(3601);

    const report = await settlement.settleNow();
    expect(report.claimed).to.deep.equal([]);
    expect(report.skipped).to.deep.equal([{ channelId: channel!.id, reason: "ClaimWindowClosed" }]);
    const final = lines.filter((l) => l.startsWith("claim transaction") && l.includes(" in block "));
    expect(final).to.have.length(1);
    expect(final[0]).to.include("final, but nothing was claimed: the escrow skipped every channel in it");
    expect(final[0]).to.include(`${channel!.id} ClaimWindowClosed (the payer's withdrawal deadline had passed`);
    expect(lines.join("\n")).not.to.match(/confirmed/);

    await chain.escrow.write.finalizeWithdrawal([channel!.cfg], { account: chain.payer.account });
    await settlement.watcher.syncOnce();
    const [run, books] = await Promise.all([runCli(["channels"], cliEnv(test, key)), runCli(["balances"], cliEnv(test, key))]);
    expect(run.code, run.stderr).to.equal(0);
    const row = run.stdout.split("\n").find((l) => l.startsWith(channel!.id))!;
    expect(row.split(/\s{2,}/).slice(3, 7)).to.deep.equal([String(2n * PRICE), "0", "0", String(2n * PRICE)]);
    expect(row).to.include("closed: the payer got back the accepted but unclaimed amount");
    expect(run.stdout).to.include(
      `${2n * PRICE} lost on 1 closed channel(s): accepted, but not claimed before the channel closed, so the escrow refunded it to the payer`,
    );

    // The skipped claim still cost gas, and nothing came in: the books explain the negative wallet.
    const gas = await balanceOf(paychan.db.prisma, accountId.gas(payee.address, nativeAsset(chain.location.chainId)));
    expect(gas > 0n).to.equal(true);
    expect(books.code, books.stderr).to.equal(0);
    expect(books.stdout).to.include(`gas:${payee.address}:${nativeAsset(chain.location.chainId)}: ${gas} of native coin spent on transaction fees (claims) by that key.`);
    expect(books.stdout).to.include(
      `wallet:${payee.address}:${nativeAsset(chain.location.chainId)} is -${gas}: that key paid more in gas than claims brought into it. ` +
        "The gas came out of the key's own native balance, which was funded outside the books",
    );
  });
});
