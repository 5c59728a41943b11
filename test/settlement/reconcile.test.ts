import { expect } from "chai";
import { execFile } from "node:child_process";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import { getAddress, toHex } from "viem";
import { nativeAsset } from "../../src/ledger/asset.js";
import * as flows from "../../src/ledger/flows.js";
import { postEntry } from "../../src/ledger/postings.js";
import { acceptVouchers } from "../../src/ledger/acceptVouchers.js";
import type { ReconcileReport } from "../../src/ledger/reconcile.js";
import { createOperatorEndpoints, reconcilePaychan } from "../../src/server.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";
import { createPostgresDatabase, unique } from "../ledger/helpers.js";
import { PRICE, deployEscrow, finish, openChannels, pay, startTestPaychan, type EscrowFixture, type TestPaychan } from "./helpers.js";

const tsx = createRequire(import.meta.url).resolve("tsx/cli");

/** Runs `paychan reconcile` in its own process, configured by the environment as an operator would. */
function cli(env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [tsx, "src/cli.ts", "reconcile"], { env: { ...process.env, ...env } }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const codes = (report: ReconcileReport, severity = "missing") =>
  report.differences.filter((d) => d.severity === severity).map((d) => [d.code, d.channelId ?? d.asset]);

describe("reconciliation [postgres]", function () {
  let chain: EscrowFixture;
  let database: { url: string; drop(): Promise<void> };
  let rpc: RpcServer;
  let test: TestPaychan;

  before(async () => {
    chain = await deployEscrow();
    database = await createPostgresDatabase();
    rpc = await serveProvider(chain.connection.provider);
  });
  after(async () => {
    await test?.paychan.close();
    await rpc.close();
    await database.drop();
  });

  it("is clean when chain, ledger and voucher store agree, and names each planted discrepancy as money missing — in the report, over HTTP and in the CLI's exit code", async () => {
    test = await startTestPaychan(chain, database.url);
    const { paychan, settlement, payee } = test;
    const channels = await openChannels(chain, payee, 4);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, channels, 3);
    await settlement.settleNow();
    // Life goes on: more vouchers, and a payer withdrawing with some of them unclaimed.
    await pay(paychan, chain, [channels[0]!, channels[3]!], 1);
    await chain.escrow.write.requestWithdrawal([channels[3]!.cfg], { account: chain.payer.account });
    await settlement.watcher.syncOnce();
    const env = {
      DATABASE_URL: database.url,
      RPC_URL: rpc.url,
      ESCROW_ADDRESS: chain.escrow.address,
      PAYEE_ADDRESS: payee.address,
      CONFIRMATIONS: "0",
    };

    const clean = await reconcilePaychan(paychan);
    expect(clean.ok).to.equal(true);
    expect(clean.differences.map((d) => [d.severity, d.code, d.channelId])).to.deep.equal([["warning", "WITHDRAWAL_UNCLAIMED", channels[3]!.id]]);
    const [eth] = clean.assets;
    expect(eth).to.include({ asset: nativeAsset(chain.location.chainId), channels: 4, claimed: (12n * PRICE).toString(), unclaimed: (2n * PRICE).toString() });
    expect(eth!.escrowHoldingsLedger).to.equal(eth!.escrowHoldingsChain);
    expect((await cli(env)).code, "paychan reconcile exits 0 when nothing is missing").to.equal(0);

    // Planted: a DEPOSIT the chain never saw, an accepted total edited behind the store's back, and
    // a voucher whose signature is not the channel signer's.
    await postEntry(paychan.db.prisma, {
      idempotencyKey: unique("stray"),
      ...flows.deposit({ channelId: channels[1]!.id, escrow: getAddress(chain.escrow.address), asset: nativeAsset(chain.location.chainId), amount: 5n }),
    });
    await paychan.db.prisma.$executeRaw`
      UPDATE channel SET accepted_cumulative = accepted_cumulative - ${PRICE.toString()}::numeric WHERE id = ${channels[2]!.id}`;
    channels[0]!.cumulative += PRICE;
    const [forged] = await acceptVouchers(paychan.db.sql, [
      { channelId: channels[0]!.id, requestKey: unique("req"), cumulativeAmount: channels[0]!.cumulative, price: PRICE, signature: toHex(new Uint8Array(65).fill(7)) },
    ], { chainId: chain.location.chainId, closingMarginSeconds: 0 });
    expect(forged!.ok).to.equal(true);

    const planted = await reconcilePaychan(paychan);
    expect(planted.ok).to.equal(false);
    expect(codes(planted)).to.have.deep.members([
      ["DEPOSIT_NOT_ON_CHAIN", channels[1]!.id],
      ["ESCROW_HOLDINGS", nativeAsset(chain.location.chainId)],
      ["ACCEPTED_TOTAL", channels[2]!.id],
      ["VOUCHER_SIGNATURE_INVALID", channels[0]!.id],
    ]);

    const server = createOperatorEndpoints(paychan).listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    try {
      const response = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/reconcile`);
      const body = (await response.json()) as ReconcileReport;
      expect(response.status).to.equal(200);
      expect(body.ok).to.equal(false);
      expect(codes(body)).to.have.deep.members(codes(planted));
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }

    const run = await cli(env);
    expect(run.code, run.stderr).to.equal(1);
    expect(run.stdout).to.include("MONEY MISSING: 4");
    expect(run.stdout).to.include(`DEPOSIT_NOT_ON_CHAIN channel ${channels[1]!.id}`);
    await finish(settlement);
  });
});
