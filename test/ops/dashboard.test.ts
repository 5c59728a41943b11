// The operator's dashboard queries (src/ops/dashboard.ts) on both databases, over channels written
// the way the gateway and the watcher write them (saveChannel, the accept statement, the chain head),
// and the console's endpoints over HTTP: what needs the token, what a bad query gets.
import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import express from "express";
import { getAddress, toHex, zeroAddress, type Address, type Hex } from "viem";
import { acceptVouchers } from "../../src/ledger/acceptVouchers.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { recordChainHead, saveChannel } from "../../src/ledger/channels.js";
import type { Database } from "../../src/ledger/db.js";
import { requireToken } from "../../src/ops/operatorApp.js";
import { consoleRouter } from "../../src/ops/console/consoleRouter.js";
import { dashboard, exposure, formatDashboard, revenue } from "../../src/ops/dashboard.js";
import { describeEachDatabase, openTestDatabase, unique } from "../ledger/helpers.js";

const ESCROW = getAddress("0x5fbdb2315678afecb367f032d93f642f64180aa3");
const NOW = 1_900_000_000n;
const address = (): Address => getAddress(toHex(randomBytes(20)));

/** A scope of its own (chain id and payee), so suites sharing a database never see each other's channels. */
function freshScope() {
  return { chainId: 1_000_000 + Math.floor(Math.random() * 1_000_000), escrow: ESCROW, payee: address() };
}

type Scope = ReturnType<typeof freshScope>;

/** A channel with `deposit`, `accepted` paid in `requests` equal charges, then the chain's later state. */
async function channel(db: Database, scope: Scope, deposit: bigint, accepted: bigint, later: { withdrawReadyAt?: bigint; closed?: boolean; claimedOnChain?: bigint } = {}, requests = 1): Promise<Hex> {
  const config = { payer: address(), payee: scope.payee, token: zeroAddress, signer: zeroAddress, withdrawDelay: 3600, salt: toHex(randomBytes(32)) };
  const head = { deposit, claimedOnChain: 0n, withdrawReadyAt: null, closed: false };
  const id = await saveChannel(db.prisma, { ...config, chainId: scope.chainId, escrow: scope.escrow, head });
  const price = accepted / BigInt(requests);
  for (let i = 1; i <= requests && accepted > 0n; i++) {
    const [outcome] = await acceptVouchers(
      db.sql,
      [{ channelId: id, cumulativeAmount: price * BigInt(i), price, signature: toHex(randomBytes(65)), requestKey: unique("GET /a") }],
      { chainId: scope.chainId, closingMarginSeconds: 60 },
    );
    expect(outcome!.ok, JSON.stringify(outcome, (_k, v) => (typeof v === "bigint" ? v.toString() : v))).to.equal(true);
  }
  if (later.withdrawReadyAt !== undefined || later.closed !== undefined) {
    await saveChannel(db.prisma, { ...config, chainId: scope.chainId, escrow: scope.escrow, head: { ...head, ...later } });
  }
  // Claims reach the channel's row through the chain mirror.
  if (later.claimedOnChain !== undefined) await db.prisma.channel.update({ where: { id }, data: { claimedOnChain: later.claimedOnChain.toString() } });
  return id;
}

describeEachDatabase("the operator's dashboard", (db) => {
  it("lists exposure most at risk first: a passed deadline, the nearest deadline, then the most unclaimed", async () => {
    const scope = freshScope();
    await recordChainHead(db().sql, scope.chainId, 100n, NOW);
    const openSmall = await channel(db(), scope, 100n, 30n, {}, 3);
    const openLarge = await channel(db(), scope, 100n, 50n);
    const settled = await channel(db(), scope, 100n, 20n, { claimedOnChain: 20n });
    const withdrawingLater = await channel(db(), scope, 100n, 10n, { withdrawReadyAt: NOW + 1_000n });
    const withdrawingSoon = await channel(db(), scope, 100n, 5n, { withdrawReadyAt: NOW + 100n });
    const lost = await channel(db(), scope, 100n, 7n, { withdrawReadyAt: NOW - 10n });
    await channel(db(), scope, 100n, 40n, { closed: true });

    const { channels, totals, chainTime } = await exposure(db().sql, scope);
    expect(chainTime - Number(NOW)).to.be.within(0, 5);
    expect(channels.map((c) => c.channelId)).to.deep.equal([lost, withdrawingSoon, withdrawingLater, openLarge, openSmall, settled]);
    expect(channels.map((c) => c.risk)).to.deep.equal(["lost", "withdrawing", "withdrawing", "unclaimed", "unclaimed", "none"]);
    expect(channels.map((c) => c.unclaimed)).to.deep.equal(["7", "5", "10", "50", "30", "0"]);
    expect(channels[1]!.secondsLeft).to.be.within(95, 100);
    const small = channels.find((c) => c.channelId === openSmall)!;
    expect([small.requests, small.depositLeft]).to.deep.equal([3, "70"]);
    expect(totals).to.deep.equal([{ asset: nativeAsset(scope.chainId), channels: 6, deposits: "600", atRisk: "102", withdrawing: "22" }]);
  });

  it("counts paid requests and accepted value per minute, and says it as text for the CLI", async () => {
    const scope = freshScope();
    await channel(db(), scope, 1_000n, 40n, {}, 4);
    await channel(db(), scope, 1_000n, 6n, {}, 2);
    const r = await revenue(db().sql, scope, { windowSeconds: 600, bucketSeconds: 60 });
    expect(r.points.reduce((n, p) => n + p.requests, 0)).to.equal(6);
    expect(r.points.reduce((sum, p) => sum + BigInt(p.accepted), 0n)).to.equal(46n);
    expect(r.requestsLastMinute).to.equal(6);
    expect(r.before).to.deep.equal([]);
    expect(r.points.every((p) => p.t % 60 === 0 && p.t >= r.from && p.t <= r.to)).to.equal(true);

    const text = formatDashboard(await dashboard(db().sql, scope, { confirmations: 2 }));
    expect(text).to.contain(`${nativeAsset(scope.chainId)}: 46 at risk on 2 channel(s) (0 on withdrawing ones), 2000 deposited`);
    expect(text).to.contain("6 paid request(s) in the last minute");
    expect(text).to.contain("settlements (newest first):\n  none yet");
    expect(text).to.contain("settlement queue: 0 queued, 0 pending");
  });
});

describe("the operator console's endpoints", () => {
  const TOKEN = "a-console-token-for-this-test";
  let server: Server;
  let url: string;

  before(async () => {
    const db = await openTestDatabase("pglite");
    const app = express();
    app.use(
      "/admin",
      consoleRouter({
        sql: db.sql,
        scope: freshScope(),
        confirmations: 0,
        authenticate: requireToken(TOKEN),
        reconcile: () => Promise.reject(new Error("reconciliation is not exercised here")),
      }),
    );
    server = app.listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/admin`;
  });

  after(() => new Promise((resolve) => server.close(resolve)));

  const get = (path: string, token?: string, method = "GET") => fetch(`${url}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });

  it("serves the page to anyone but its data only with the operator token", async () => {
    const page = await get("/");
    expect(page.status).to.equal(200);
    expect(page.headers.get("content-security-policy")).to.contain("default-src 'self'");
    expect(await page.text()).to.contain("Operator token");
    expect((await get("", undefined)).url).to.equal(`${url}/`);
    for (const path of ["/api/session", "/api/exposure", "/api/revenue", "/api/settlements"]) {
      const refused = await get(path);
      expect(refused.status, path).to.equal(401);
      expect((await refused.json()).error).to.equal("unauthorized");
      expect((await get(path, `${TOKEN}x`)).status, path).to.equal(401);
    }
    const session = await get("/api/session", TOKEN);
    expect(session.status).to.equal(200);
    expect(session.headers.get("cache-control")).to.equal("no-store");
    expect(await session.json()).to.include({ canSettle: false, reconciliation: null });
  });

  it("answers a bad query with 400 and a code, and settling where no worker runs with 409", async () => {
    for (const query of ["window=abc", "window=10", "bucket=1", "window=2592000&bucket=10"]) {
      const response = await get(`/api/revenue?${query}`, TOKEN);
      expect(response.status, query).to.equal(400);
      expect((await response.json()).error, query).to.equal("invalid_query");
    }
    expect((await get("/api/settlements?limit=0", TOKEN)).status).to.equal(400);
    const settle = await get("/api/settle", TOKEN, "POST");
    expect(settle.status).to.equal(409);
    expect((await settle.json()).error).to.equal("settlement_unavailable");
    expect((await get("/api/nothing", TOKEN)).status).to.equal(404);
  });
});
