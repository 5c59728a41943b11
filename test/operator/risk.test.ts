// The risk policy as an operator configures it: RISK_* variables parsed (bad values named), off by
// default, and on through startPaychan — a paid route over its limit answers 429, the decision is
// one log line with its reasons and a row the operator reads at GET /risk/decisions and on the console.
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import type { PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { createPaidFetch } from "../../src/client/paidFetch.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { listen } from "../../src/ops/http.js";
import { RiskPolicy } from "../../src/policy/risk.js";
import { createApp, createOperatorEndpoints, riskRulesOf } from "../../src/server.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { DEPOSIT, PRICE, deployEscrow, startTestPaychan, type EscrowFixture } from "../settlement/helpers.js";

const ASSET = "eip155:31337/native" as const;

describe("risk configuration", () => {
  it("is off by default", () => {
    expect(new RiskPolicy(riskRulesOf(loadConfig({}), ASSET)).active).to.equal(false);
  });

  it("turns RISK_* into limits per dimension and per route, value in ASSET", () => {
    const rules = riskRulesOf(
      loadConfig({
        RISK_CHANNEL_REQUESTS_PER_MINUTE: "60",
        RISK_PAYER_VALUE_PER_HOUR: "5000",
        RISK_ROUTES: '{"get  /api/report": {"client": {"requestsPerMinute": 5, "valuePerHour": "700"}}}',
        RISK_ANOMALY: "on",
        RISK_STEP_UP_SCORE: "40",
      }),
      ASSET,
    );
    expect(rules.limits).to.deep.equal({ channel: { requestsPerMinute: 60 }, payer: { valuePerHour: { [ASSET]: 5000n } } });
    expect(rules.routes).to.deep.equal({ "GET /api/report": { client: { requestsPerMinute: 5, valuePerHour: { [ASSET]: 700n } } } });
    expect(rules.anomaly).to.include({ stepUpScore: 40, denyScore: 100 });
  });

  it("names the variable of a bad value", () => {
    expect(() => loadConfig({ RISK_CHANNEL_REQUESTS_PER_MINUTE: "0" })).to.throw(ConfigError, /RISK_CHANNEL_REQUESTS_PER_MINUTE/);
    expect(() => loadConfig({ RISK_ROUTES: "{not json" })).to.throw(ConfigError, /RISK_ROUTES: must be JSON/);
    expect(() => loadConfig({ RISK_ROUTES: '{"GET /a": {"wallet": {}}}' })).to.throw(ConfigError, /RISK_ROUTES/);
    expect(() => loadConfig({ RISK_ROUTES: '{"GET /a": {"channel": {"valuePerHour": 5}}}' })).to.throw(ConfigError, /RISK_ROUTES\.GET \/a\.channel\.valuePerHour/);
    expect(() => loadConfig({ RISK_ANOMALY: "yes" })).to.throw(ConfigError, /RISK_ANOMALY/);
  });
});

for (const kind of ["postgres", "pglite"] as const) {
  describe(`risk policy in paychan serve [${kind}]`, function () {
    this.timeout(120_000);
    let chain: EscrowFixture;

    before(async () => {
      chain = await deployEscrow();
    });

    it("refuses the third request a minute with 429, logs the reasons, and shows the decision at GET /risk/decisions", async () => {
      const database = kind === "postgres" ? await createPostgresDatabase() : { url: "pglite:memory", drop: async () => {} };
      const lines: string[] = [];
      const test = await startTestPaychan(chain, database.url, { env: { RISK_CHANNEL_REQUESTS_PER_MINUTE: "2", LOG_LEVEL: "info", LOG_FORMAT: "json" }, logTo: { write: (line) => lines.push(line) } });
      const operator = await listen(createOperatorEndpoints(test.paychan), { host: "127.0.0.1", port: 0, portVariable: "OPERATOR_PORT" });
      const server = createApp(test.paychan, { "GET /quote": PRICE }, { "GET /quote": (_req, res) => void res.json({ quote: 42 }) }).listen(0, "127.0.0.1");
      await new Promise((resolve) => server.once("listening", resolve));
      try {
        const session = privateKeyToAccount(generatePrivateKey());
        const channel = await openChannel({
          wallet: chain.payer as unknown as Wallet,
          publicClient: chain.publicClient as PublicClient,
          escrow: chain.escrow.address,
          payee: test.payee.address,
          signer: session.address,
          amount: DEPOSIT,
          withdrawDelay: 86_400,
        });
        const pay = createPaidFetch({ channel, signer: session, maxPrice: PRICE });
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/quote`;
        expect((await pay(url)).status).to.equal(200);
        expect((await pay(url)).status).to.equal(200);
        const limited = await pay(url);
        expect(limited.status).to.equal(429);
        expect(Number(limited.headers.get("retry-after"))).to.be.within(1, 60);

        const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "risk: limit");
        expect(logged).to.include({ level: "warn", route: "GET /quote", channel: channel.id, action: "limit", code: "rate_limited" });
        expect(logged!.reasons).to.deep.equal(["channel.requestsPerMinute: The channel made 2 requests in the last minute; the limit is 2."]);

        await test.paychan.riskDecisions.flush();
        const response = await fetch(`${operator.url}/risk/decisions?account=${channel.id}`);
        const { decisions } = (await response.json()) as { decisions: Record<string, unknown>[] };
        expect(decisions).to.have.length(1);
        expect(decisions[0]).to.include({ action: "limit", code: "rate_limited", account: channel.id, amount: PRICE.toString() });
        expect((await fetch(`${operator.url}/risk/decisions?limit=0`)).status).to.equal(400);

        // The operator console shows the same decisions, reasons and all.
        const shown = (await (await fetch(`${operator.url}/admin/api/risk`)).json()) as Record<string, unknown>[];
        expect(shown[0]).to.include({ action: "limit", code: "rate_limited", account: channel.id, route: "GET /quote" });
        expect((shown[0]!.reasons as { message: string }[])[0]!.message).to.match(/the limit is 2/);
        const page = await (await fetch(`${operator.url}/admin/`)).text();
        expect(page).to.include('id="risk"');
        const script = await fetch(`${operator.url}/admin/console.js`);
        expect(script.status).to.equal(200);
        expect(await script.text()).to.include("No risk decision yet");
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await operator.close();
        await test.paychan.close();
        await database.drop();
      }
    });
  });
}
