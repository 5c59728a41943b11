// GET /metrics as Prometheus scrapes it: over HTTP from the operator listener, parsed strictly as the
// text format, after real paid, retried, voided and refused requests through the real gateway and
// after a real settlement round on the EDR chain — on Postgres and on PGlite. The counters move by
// exactly what happened, and the exposure and gas read at scrape time are the ledger's own figures.
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import type { Address, PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { createPaidFetch } from "../../src/client/paidFetch.js";
import { loadConfig } from "../../src/config.js";
import { accountId } from "../../src/ledger/accounts.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { bookAccepted } from "../../src/ledger/booking.js";
import { balanceOf, balances } from "../../src/ledger/postings.js";
import { listen, type Listener } from "../../src/ops/http.js";
import { HEADERS } from "../../src/protocol/wire.js";
import { createApp, createOperatorEndpoints, startPaychan, type Paychan } from "../../src/server.js";
import { parsePrometheus, integerOf, valueOf, type Family } from "../helpers/prometheus.js";
import { serveProvider } from "../helpers/rpcServer.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { DEPOSIT, PRICE, deployEscrow, startTestPaychan, type EscrowFixture, type TestPaychan } from "../settlement/helpers.js";
import { Cli } from "./helpers.js";

type Scrape = Map<string, Family>;

async function scrape(operator: string, token?: string): Promise<Scrape> {
  const response = await fetch(`${operator}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  expect(response.status, await response.clone().text()).to.equal(200);
  expect(response.headers.get("content-type")).to.equal("text/plain; version=0.0.4; charset=utf-8");
  return parsePrometheus(await response.text());
}

/** What the client sent and saw: each request's PAYMENT-SIGNATURE, its response's status and refusal code. */
type Seen = { header: string | null; status: number; code?: string }[];

function recordingFetch(seen: Seen): typeof fetch {
  return async (input, init) => {
    const request = new Request(input as Request, init);
    const header = request.headers.get(HEADERS.signature);
    const response = await fetch(request);
    const code = response.status >= 400 ? ((await response.clone().json().catch(() => ({}))) as { error?: string }).error : undefined;
    seen.push({ header, status: response.status, code });
    return response;
  };
}

/** A buyer of `payee`: a channel with DEPOSIT and a fetch that pays from it, recording into `seen`. */
async function buyer(chain: EscrowFixture, payee: Address, seen: Seen) {
  const session = privateKeyToAccount(generatePrivateKey());
  const channel = await openChannel({
    wallet: chain.payer as unknown as Wallet,
    publicClient: chain.publicClient as PublicClient,
    escrow: chain.escrow.address,
    payee,
    signer: session.address,
    amount: DEPOSIT,
    withdrawDelay: 86_400,
  });
  return { channel, pay: createPaidFetch({ channel, signer: session, maxPrice: PRICE, fetch: recordingFetch(seen) }) };
}

async function serveApp(paychan: Paychan): Promise<{ url: string; close(): Promise<void> }> {
  const app = createApp(paychan, { "GET /quote": PRICE, "GET /boom": PRICE }, {
    "GET /quote": (_req, res) => void res.json({ quote: 42 }),
    "GET /boom": (_req, res) => void res.status(500).json({ error: "the handler failed" }),
  });
  const server = app.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

for (const kind of ["postgres", "pglite"] as const) {
  describe(`GET /metrics [${kind}]`, function () {
    this.timeout(120_000);
    let chain: EscrowFixture;
    let database: { url: string; drop(): Promise<void> };
    let test: TestPaychan;
    let operator: Listener;
    let app: { url: string; close(): Promise<void> };
    const TOKEN = "metrics-scraper-token-0123456789";

    before(async () => {
      chain = await deployEscrow();
      database = kind === "postgres" ? await createPostgresDatabase() : { url: "pglite:memory", drop: async () => {} };
      test = await startTestPaychan(chain, database.url, { env: { OPERATOR_TOKEN: TOKEN } });
      operator = await listen(createOperatorEndpoints(test.paychan), { host: "127.0.0.1", port: 0, portVariable: "OPERATOR_PORT" });
      app = await serveApp(test.paychan);
    });
    after(async () => {
      await app?.close();
      await operator?.close();
      await test?.paychan.close();
      await database?.drop();
    });

    it("needs the operator token like every operator endpoint", async () => {
      expect((await fetch(`${operator.url}/metrics`)).status).to.equal(401);
      expect((await fetch(`${operator.url}/metrics`, { headers: { authorization: "Bearer wrong-token-wrong-token" } })).status).to.equal(401);
    });

    it("counts paid, retried, voided and refused requests by scheme and code, and reads the exposure from the ledger; after settlement the exposure is 0 and the lag, the claim and its gas are counted", async () => {
      const { paychan, settlement, payee } = test;
      const asset = paychan.gateway.defaultAsset;
      const before = await scrape(operator.url, TOKEN);

      const seen: Seen = [];
      const buyers = [];
      for (let i = 0; i < 2; i++) buyers.push(await buyer(chain, payee.address, seen));
      const [a, b] = buyers as [(typeof buyers)[0], (typeof buyers)[0]];
      for (let i = 0; i < 3; i++) expect((await a.pay(`${app.url}/quote`)).status).to.equal(200);
      for (let i = 0; i < 2; i++) expect((await b.pay(`${app.url}/quote`)).status).to.equal(200);
      expect((await b.pay(`${app.url}/boom`)).status, "a paid request whose handler fails").to.equal(500);

      // A byte-identical retry is served again without charge; the same voucher on another request is a replay.
      expect((await a.pay(`${app.url}/quote`)).status).to.equal(200);
      const header = seen.at(-1)!.header!;
      expect(seen.at(-1)!.status).to.equal(200);
      const retry = await fetch(`${app.url}/quote`, { headers: { [HEADERS.signature]: header } });
      expect(retry.status, "an identical retry").to.equal(200);
      const replay = await fetch(`${app.url}/quote?again`, { headers: { [HEADERS.signature]: header } });
      expect(replay.status, "the same voucher for another request").to.equal(402);
      expect(((await replay.json()) as { error: string }).error).to.equal("voucher_replayed");
      const garbage = await fetch(`${app.url}/quote`, { headers: { [HEADERS.signature]: "not base64 json" } });
      expect(garbage.status).to.equal(400);
      expect(((await garbage.json()) as { error: string }).error).to.equal("malformed_payment");
      const unpaid = await fetch(`${app.url}/quote`);
      expect(unpaid.status).to.equal(402);

      await bookAccepted(paychan.db.sql);
      const after = await scrape(operator.url, TOKEN);
      const delta = (name: string, labels: Record<string, string> = {}) => integerOf(after, name, labels) - integerOf(before, name, labels);

      // 3 + 1 on `a`, 2 on `b`, and the one on /boom before it was voided.
      expect(delta("paychan_paid_requests_total", { scheme: "paychan", code: "ok" })).to.equal(7n);
      expect(delta("paychan_paid_requests_total", { scheme: "paychan", code: "retry" })).to.equal(1n);
      expect(delta("paychan_voided_requests_total", { scheme: "paychan" })).to.equal(1n);
      expect(delta("paychan_charged_total", { scheme: "paychan", asset })).to.equal(7n * PRICE);
      expect(delta("paychan_refused_requests_total", { scheme: "paychan", code: "voucher_replayed" })).to.equal(1n);
      expect(delta("paychan_refused_requests_total", { scheme: "none", code: "malformed_payment" })).to.equal(1n);
      const probes = BigInt(seen.filter((s) => s.status === 402 && s.code === "payment_required").length);
      expect(probes > 0n, "the buyers' fetches learn each route's price from a 402").to.equal(true);
      expect(delta("paychan_refused_requests_total", { scheme: "none", code: "payment_required" })).to.equal(probes + 1n);
      // Every presented payment is timed: 7 new charges and a retry paid, a replay and a garbage header refused.
      expect(delta("paychan_accept_duration_seconds_count", { scheme: "paychan", outcome: "paid" })).to.equal(8n);
      expect(delta("paychan_accept_duration_seconds_count", { scheme: "paychan", outcome: "refused" })).to.equal(1n);
      expect(delta("paychan_accept_duration_seconds_count", { scheme: "none", outcome: "refused" })).to.equal(1n);
      // One voucher at a time reached the accept statement: 7 charges, the retry and the replay.
      expect(integerOf(after, "paychan_group_commit_batch_size_count") - integerOf(before, "paychan_group_commit_batch_size_count")).to.equal(9n);
      expect(Number(valueOf(after, "paychan_group_commit_batch_size_sum")) - Number(valueOf(before, "paychan_group_commit_batch_size_sum") ?? 0)).to.equal(9);

      // Exposure: what the ledger holds as owed, which is what the channels accepted and nobody claimed yet.
      const owed = [...(await balances(paychan.db.prisma)).values()].filter((x) => x.kind === "CHANNEL_OWED").reduce((sum, x) => sum + x.balance, 0n);
      expect(owed, "7 charges, one of them voided").to.equal(6n * PRICE);
      expect(integerOf(after, "paychan_exposure", { asset })).to.equal(owed);
      expect(integerOf(after, "paychan_unclaimed_channels", { asset })).to.equal(2n);
      expect(Number(valueOf(after, "paychan_unclaimed_oldest_age_seconds", { asset }))).to.be.at.least(0);
      expect(integerOf(after, "paychan_collector_up", { collector: "exposure" })).to.equal(1n);

      const report = await settlement.settleNow();
      expect(report.claimed).to.have.length(2);
      const settled = await scrape(operator.url, TOKEN);
      expect(integerOf(settled, "paychan_exposure", { asset }), "nothing is owed once claimed").to.equal(0n);
      expect(integerOf(settled, "paychan_unclaimed_channels", { asset })).to.equal(0n);
      expect(valueOf(settled, "paychan_unclaimed_oldest_age_seconds", { asset })).to.equal(undefined);
      expect(integerOf(settled, "paychan_settlement_lag_seconds_count") - integerOf(after, "paychan_settlement_lag_seconds_count"), "one lag per claimed channel").to.equal(2n);
      expect(integerOf(settled, "paychan_claim_transactions_total", { action: "confirmed" })).to.equal(1n);
      const gas = await balanceOf(paychan.db.prisma, accountId.gas(test.settler.address, nativeAsset(chain.location.chainId)));
      expect(gas > 0n, "the claim cost gas").to.equal(true);
      expect(integerOf(settled, "paychan_gas_spent", { asset: nativeAsset(chain.location.chainId) })).to.equal(gas);
      expect(integerOf(settled, "paychan_claims_in_flight")).to.equal(0n);
      const head = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
      expect(integerOf(settled, "paychan_chain_head_block")).to.equal(head);
      expect(integerOf(settled, "paychan_watcher_head_lag_blocks"), "settle-now mirrored to the head (CONFIRMATIONS=0)").to.equal(0n);

      const reconciled = await fetch(`${operator.url}/reconcile`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const differences = ((await reconciled.json()) as { differences: { severity: string }[] }).differences;
      const last = await scrape(operator.url, TOKEN);
      for (const severity of ["missing", "lag", "warning"]) {
        expect(integerOf(last, "paychan_reconcile_differences", { severity }), severity).to.equal(BigInt(differences.filter((d) => d.severity === severity).length));
      }
      expect(Number(valueOf(last, "paychan_reconcile_last_run_timestamp_seconds"))).to.be.closeTo(Date.now() / 1000, 120);
    });
  });
}

describe("GET /metrics when the database or the chain fails [pglite]", function () {
  this.timeout(120_000);
  let chain: EscrowFixture;

  before(async () => {
    chain = await deployEscrow();
  });


  it("counts a database failure where it happened, answers 503 without charging, and still answers the scrape, with the collectors that read the database down", async () => {
    const lines: string[] = [];
    const test = await startTestPaychan(chain, "pglite:memory", { logTo: { write: (line) => lines.push(line) } });
    const operator = await listen(createOperatorEndpoints(test.paychan), { host: "127.0.0.1", port: 0, portVariable: "OPERATOR_PORT" });
    const app = await serveApp(test.paychan);
    try {
      const seen: Seen = [];
      const { pay } = await buyer(chain, test.payee.address, seen);
      const before = parsePrometheus(await test.paychan.metrics.render());
      await test.paychan.db.close();
      expect((await pay(`${app.url}/quote`)).status).to.equal(503);
      const failures = BigInt(seen.filter((s) => s.status === 503 && s.code === "temporarily_unavailable").length);
      expect(failures > 0n).to.equal(true);

      const after = await scrape(operator.url);
      const delta = (name: string, labels: Record<string, string> = {}) => integerOf(after, name, labels) - integerOf(before, name, labels);
      expect(delta("paychan_refused_requests_total", { scheme: "paychan", code: "temporarily_unavailable" })).to.equal(failures);
      expect(delta("paychan_database_errors_total", { component: "paywall" })).to.equal(failures);
      for (const collector of ["exposure", "unclaimed_age", "gas", "claims", "watcher"]) {
        expect(integerOf(after, "paychan_collector_up", { collector }), collector).to.equal(0n);
      }
      expect(valueOf(after, "paychan_exposure", { asset: test.paychan.gateway.defaultAsset }), "no stale figure passes for fresh").to.equal(undefined);
      expect(delta("paychan_database_errors_total", { component: "metrics" })).to.equal(5n);
      expect(delta("paychan_rpc_errors_total", { method: "eth_blockNumber" })).to.equal(0n);
      // An expected failure is one line with the reason, never a stack trace.
      const failed = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "paywall: could not authorize a payment");
      expect(failed).to.include({ level: "error", error: "PGlite is closed" });
      expect(failed).not.to.have.property("stack");
      expect(lines.join("")).not.to.match(/\n\s+at /);
    } finally {
      await app.close();
      await operator.close();
      await test.paychan.close().catch(() => {});
    }
  });

  it("counts JSON-RPC failures by method, from the gateway and from the scrape, and not as database errors", async () => {
    let down = false;
    const node = await serveProvider({
      request: (args) => (down ? Promise.reject(Object.assign(new Error("the node is down"), { code: -32603 })) : chain.connection.provider.request(args as never)),
    });
    const payee = privateKeyToAccount(generatePrivateKey()).address;
    const config = loadConfig({ DATABASE_URL: "pglite:memory", RPC_URL: node.url, ESCROW_ADDRESS: chain.escrow.address, PAYEE_ADDRESS: payee, LOG_LEVEL: "silent" });
    const paychan = await startPaychan(config);
    const operator = await listen(createOperatorEndpoints(paychan), { host: "127.0.0.1", port: 0, portVariable: "OPERATOR_PORT" });
    const app = await serveApp(paychan);
    try {
      const seen: Seen = [];
      const { pay } = await buyer(chain, payee, seen);
      const before = await scrape(operator.url);
      expect(integerOf(before, "paychan_collector_up", { collector: "watcher" })).to.equal(1n);
      down = true;
      expect((await pay(`${app.url}/quote`)).status, "a new channel cannot be read from the chain").to.equal(503);
      const failures = BigInt(seen.filter((s) => s.status === 503).length);
      const after = await scrape(operator.url);
      const delta = (name: string, labels: Record<string, string> = {}) => integerOf(after, name, labels) - integerOf(before, name, labels);
      expect(delta("paychan_rpc_errors_total", { method: "eth_call" }), "one per channel read that failed").to.equal(failures);
      expect(delta("paychan_rpc_errors_total", { method: "eth_blockNumber" }), "the scrape's read of the head").to.equal(1n);
      expect(integerOf(after, "paychan_collector_up", { collector: "watcher" })).to.equal(0n);
      expect(integerOf(after, "paychan_collector_up", { collector: "exposure" })).to.equal(1n);
      expect(delta("paychan_database_errors_total", { component: "paywall" })).to.equal(0n);
      expect(delta("paychan_database_errors_total", { component: "metrics" })).to.equal(0n);
    } finally {
      await app.close();
      await operator.close();
      await paychan.close();
      await node.close();
    }
  });
});

describe("`paychan work` with WORK_OPERATOR_PORT [pglite]", function () {
  this.timeout(120_000);

  it("serves GET /metrics (and the other operator endpoints) on a listener of its own, behind OPERATOR_TOKEN", async () => {
    const chain = await deployEscrow();
    const rpc = await serveProvider(chain.connection.provider);
    const key = generatePrivateKey();
    const token = "work-metrics-token-0123456789";
    const work = new Cli(["work"], {
      RPC_URL: rpc.url,
      ESCROW_ADDRESS: chain.escrow.address,
      PAYEE_ADDRESS: privateKeyToAccount(key).address,
      SETTLER_PRIVATE_KEY: key,
      WORK_OPERATOR_PORT: "0",
      OPERATOR_TOKEN: token,
      POLL_INTERVAL_MS: "100",
    });
    try {
      const [, url] = await work.waitFor(/operator endpoints on (http:\/\/[^\s:]+:\d+)/);
      await work.waitFor(/watching escrow/);
      expect((await fetch(`${url}/metrics`)).status).to.equal(401);
      const families = await scrape(url!, token);
      expect(integerOf(families, "paychan_collector_up", { collector: "watcher" })).to.equal(1n);
      expect(valueOf(families, "paychan_watcher_head_lag_blocks")).to.match(/^\d+$/);
      expect(families.has("paychan_settlement_lag_seconds")).to.equal(true);
    } finally {
      const run = await work.stop("SIGINT");
      await rpc.close();
      expect(run.code, run.stderr).to.equal(0);
    }
  });
});
