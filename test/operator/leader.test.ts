// Two `paychan work` processes on one Postgres with one settlement key: exactly one leads (a
// session-level advisory lock on a connection of its own) and sends claims; the other stands by,
// naming the leader, and takes over when the leader is killed with -9. While a `work` leads,
// `settle-now` with the same key refuses instead of fighting it for nonces.
import { expect } from "chai";
import { getAddress } from "viem";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";
import {
  PRICE,
  claimedOnChain,
  deployEscrow,
  nonceOf,
  openChannels,
  pay,
  startTestPaychan,
  type EscrowFixture,
  type TestPaychan,
} from "../settlement/helpers.js";
import { Cli, fundedKey, runCli } from "./helpers.js";

async function until(condition: () => Promise<boolean>, what: string, attempts = 600): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting until ${what}`);
}

describe("work: one leader per settlement key [postgres]", function () {
  this.timeout(180_000);
  let chain: EscrowFixture;
  let database: { url: string; drop(): Promise<void> };
  let rpc: RpcServer;
  let test: TestPaychan | undefined;
  const workers: Cli[] = [];

  before(async () => {
    chain = await deployEscrow();
    database = await createPostgresDatabase();
    rpc = await serveProvider(chain.connection.provider);
  });
  after(async () => {
    await Promise.all(workers.map((w) => w.stop("SIGKILL")));
    await test?.paychan.close();
    await rpc.close();
    await database.drop();
  });

  it("lets exactly one of two workers claim, and the standby take over after kill -9 of the leader", async () => {
    const { key, account } = await fundedKey(chain);
    test = await startTestPaychan(chain, database.url, { payee: account });
    const { paychan, settlement, payee } = test;
    const [first, second] = await openChannels(chain, payee, 2);
    await settlement.watcher.syncOnce();
    const env = {
      DATABASE_URL: database.url,
      RPC_URL: rpc.url,
      ESCROW_ADDRESS: chain.escrow.address,
      PAYEE_ADDRESS: payee.address,
      SETTLER_PRIVATE_KEY: key,
      WATCH_FROM_BLOCK: paychan.config.WATCH_FROM_BLOCK.toString(),
      POLL_INTERVAL_MS: "200",
      HEARTBEAT_SECONDS: "1",
      SETTLE_INTERVAL_SECONDS: "0",
      SETTLE_THRESHOLD: "1",
      SETTLE_GAS_MULTIPLIER: "1000000000",
    };
    workers.push(new Cli(["work"], env), new Cli(["work"], env));
    await Promise.all(workers.map((w) => w.waitFor(/leading:|standby:/, "leading or standby")));
    const leading = workers.filter((w) => w.stdout.includes("leading:"));
    expect(leading, workers.map((w) => w.output).join("\n---\n")).to.have.length(1);
    const [leader, standby] = [leading[0]!, workers.find((w) => w !== leading[0])!];
    expect(standby.stdout, standby.output).to.match(new RegExp(`standby: paychan work pid ${leader.pid} on \\S+ (\\(from \\S+\\) )?leads for this settlement key`));

    // What `work` says at start and while idle.
    expect(leader.stdout).to.include(`watching escrow ${getAddress(chain.escrow.address)} on chain ${chain.location.chainId} at ${rpc.url} for payee ${payee.address}`);
    expect(leader.stdout).to.include(`settlement key ${payee.address} (the payee's own)`);
    await leader.waitFor(/heartbeat: head \d+, mirrored to block \d+ \(CONFIRMATIONS=0\), 0 claim transaction\(s\) in flight, 0 channel\(s\)/);

    const refused = await runCli(["settle-now"], env);
    expect(refused.code, refused.stderr).to.equal(1);
    expect(refused.stderr).to.include(`paychan work pid ${leader.pid}`).and.to.include(`is settling with the key ${payee.address} right now`);

    await pay(paychan, chain, [first!], 2);
    await until(async () => (await claimedOnChain(chain, first!.id)) === 2n * PRICE, "the leader claimed");
    await leader.waitFor(/claim transaction 0x[0-9a-f]+ in block \d+: confirmed: 1 channel\(s\) claimed/);
    expect(standby.stdout, "the standby sends nothing").not.to.include("claim transaction");

    await leader.stop("SIGKILL");
    await standby.waitFor(/leading:/);
    await pay(paychan, chain, [second!], 3);
    await until(async () => (await claimedOnChain(chain, second!.id)) === 3n * PRICE, "the new leader claimed");
    await standby.waitFor(/claim transaction 0x[0-9a-f]+ in block \d+: confirmed: 1 channel\(s\) claimed/);

    // One sender at a time: every nonce the key used carries one of our claims, none was fought over.
    // (A slow machine may claim a channel in two steps, as its vouchers arrive: count, don't assume.)
    const sentBy = () => paychan.db.prisma.chainTx.findMany({ where: { sender: payee.address.toLowerCase() } });
    await until(async () => (await sentBy()).every((t) => t.status === "CONFIRMED"), "every claim transaction is final");
    const sent = await sentBy();
    expect(sent.length).to.be.at.least(2);
    expect(await nonceOf(chain, payee)).to.equal(sent.length);

    const stopped = await standby.stop("SIGINT");
    expect(stopped.code, stopped.stderr).to.equal(0);
  });
});
