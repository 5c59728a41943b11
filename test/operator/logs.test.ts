// Structured logs as an operator gets them: `paychan serve` in its own process writes one JSON object a
// line (its output is not a terminal), one line per payment decision with the request's id, which the
// response echoes; and no secret fed in through the configuration — keys, the operator token, the
// database password, an RPC API key — nor any PAYMENT-SIGNATURE ever appears in anything it prints.
import { expect } from "chai";
import { toHex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { createPaidFetch } from "../../src/client/paidFetch.js";
import { loadConfig } from "../../src/config.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { HEADERS } from "../../src/protocol/wire.js";
import { loggerFor } from "../../src/server.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { DEPOSIT, deployEscrow, type EscrowFixture } from "../settlement/helpers.js";
import { Cli } from "./helpers.js";

const PRICE = 1_000_000_000_000n; // `paychan serve`'s default PRICE

type Line = Record<string, unknown> & { level: string; msg: string };

describe("structured logs", function () {
  this.timeout(120_000);
  let chain: EscrowFixture;
  let rpc: RpcServer;

  before(async () => {
    chain = await deployEscrow();
    rpc = await serveProvider(chain.connection.provider);
  });
  after(async () => rpc.close());

  it("`paychan serve` writes one JSON line per payment decision with the request id it echoes, and never a secret or a PAYMENT-SIGNATURE", async () => {
    const settlerKey = generatePrivateKey();
    const token = `operator-token-${toHex(crypto.getRandomValues(new Uint8Array(12))).slice(2)}`;
    const apiKey = toHex(crypto.getRandomValues(new Uint8Array(16))).slice(2);
    const database = await createPostgresDatabase();
    const databaseUrl = new URL(database.url);
    // Postgres here trusts local connections, so any password gets in; a configured one is a real secret too.
    if (!databaseUrl.password) databaseUrl.password = `pw-${toHex(crypto.getRandomValues(new Uint8Array(12))).slice(2)}`;
    const payee = privateKeyToAccount(settlerKey).address;
    const serve = new Cli(["serve"], {
      RPC_URL: `${rpc.url}/v2/${apiKey}`,
      ESCROW_ADDRESS: chain.escrow.address,
      PAYEE_ADDRESS: payee,
      DATABASE_URL: databaseUrl.toString(),
      SETTLER_PRIVATE_KEY: settlerKey,
      OPERATOR_TOKEN: token,
      PORT: "0",
      OPERATOR_PORT: "0",
      LOG_LEVEL: "debug",
    });
    const sentHeaders: string[] = [];
    const echoed: string[] = [];
    let channelId = "";
    try {
      const [, gateway] = await serve.waitFor(/paychan gateway on (http:\/\/[^\s:]+:\d+)/);
      const [, operator] = await serve.waitFor(/operator endpoints on (http:\/\/[^\s:]+:\d+)/);
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
      channelId = channel.id;
      const pay = createPaidFetch({
        channel,
        signer: session,
        maxPrice: PRICE,
        fetch: async (input, init) => {
          const request = new Request(input as Request, init);
          const header = request.headers.get(HEADERS.signature);
          if (header) sentHeaders.push(header);
          const response = await fetch(request);
          if (header) echoed.push(response.headers.get("x-request-id") ?? "");
          return response;
        },
      });
      expect((await pay(`${gateway}/api/quote`)).status).to.equal(200);
      expect((await pay(`${gateway}/api/quote`, { headers: { "X-Request-Id": "trace-abc-123" } })).status).to.equal(200);
      expect((await pay(`${gateway}/api/quote`, { headers: { "X-Request-Id": "forged\tline {\"level\":\"fatal\"}" } })).status).to.equal(200);
      const unpaid = await fetch(`${gateway}/api/quote`);
      expect(unpaid.status).to.equal(402);
      expect(unpaid.headers.get("x-request-id")).to.match(/^[0-9a-f-]{36}$/);
      expect((await fetch(`${operator}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status).to.equal(200);
    } finally {
      const run = await serve.stop("SIGINT");
      await database.drop();
      expect(run.code, run.stderr).to.equal(0);
    }

    expect(echoed.slice(-2)[0], "an acceptable incoming id is kept").to.equal("trace-abc-123");
    expect(echoed.at(-1), "one that could break a log line is replaced").to.match(/^[0-9a-f-]{36}$/);
    const lines = serve.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Line);
    const accepted = lines.filter((l) => l.msg === "payment accepted");
    expect(accepted).to.have.length(3);
    accepted.forEach((line, i) => {
      expect(line).to.include({
        level: "info",
        reqId: echoed[echoed.length - 3 + i],
        method: "GET",
        path: "/api/quote",
        scheme: "paychan",
        channel: channelId,
        amount: PRICE.toString(),
        asset: nativeAsset(chain.location.chainId),
        code: "ok",
      });
      expect(line.latencyMs).to.be.a("number").and.at.least(0);
    });
    const probe = lines.find((l) => l.msg === "payment refused" && l.code === "payment_required");
    expect(probe, "an unpaid request is a debug line").to.include({ level: "debug" });

    const output = serve.stdout + serve.stderr;
    expect(sentHeaders).to.have.length.at.least(3);
    const secrets = [settlerKey, settlerKey.slice(2), token, databaseUrl.password, apiKey, ...sentHeaders];
    for (const header of sentHeaders) secrets.push((JSON.parse(Buffer.from(header, "base64").toString()) as { payload: { voucher: { signature: string } } }).payload.voucher.signature);
    for (const secret of secrets) expect(output, `a secret of ${secret.length} characters appears in the output`).not.to.include(secret);
    expect(output).to.include(`/v2/***`).and.to.include(`:***@127.0.0.1`);
  });

  it("scrubs every secret of the configuration from any line, whatever field or message carries it, and redacts secret fields by name", () => {
    const settlerKey = generatePrivateKey();
    const token = "a-long-operator-token-for-the-scrub-test";
    const databaseUrl = "postgres://paychan:correct%20horse%20battery@db.internal:5432/books";
    const apiKey = "k3y0123456789abcdefghijklmnop";
    const lines: string[] = [];
    const config = loadConfig({ SETTLER_PRIVATE_KEY: settlerKey, OPERATOR_TOKEN: token, DATABASE_URL: databaseUrl, RPC_URL: `https://rpc.example/v2/${apiKey}` });
    const log = loggerFor(config, { write: (line) => lines.push(line) });
    log.info({ settler: settlerKey, nested: { bare: settlerKey.slice(2) } }, `token ${token} and key ${settlerKey}`);
    log.warn({ url: databaseUrl, decoded: "correct horse battery" }, `cannot reach https://rpc.example/v2/${apiKey}`);
    log.info({ headers: { authorization: "Bearer whatever-it-is", "payment-signature": "eyJ4NDAyVmVyc2lvbiI6Mn0=" }, privateKey: "0xabc" }, "a request");
    const text = lines.join("");
    for (const secret of [settlerKey, settlerKey.slice(2), token, "correct%20horse%20battery", "correct horse battery", apiKey, "whatever-it-is", "eyJ4NDAyVmVyc2lvbiI6Mn0=", "0xabc"]) {
      expect(text).not.to.include(secret);
    }
    const [scrubbed, url, redacted] = lines.map((l) => JSON.parse(l) as Line);
    expect(scrubbed).to.include({ msg: "token *** and key ***", settler: "***" });
    expect(scrubbed!.nested).to.deep.equal({ bare: "***" });
    expect(url).to.include({ msg: "cannot reach https://rpc.example/v2/***", url: "postgres://paychan:***@db.internal:5432/books", decoded: "***" });
    expect(redacted!.headers).to.deep.equal({ authorization: "[redacted]", "payment-signature": "[redacted]" });
  });

  it("writes one readable line per entry with LOG_FORMAT=pretty, and JSON otherwise", () => {
    const written: string[] = [];
    const config = loadConfig({ LOG_FORMAT: "pretty", OPERATOR_TOKEN: "pretty-format-operator-token" });
    const log = loggerFor(config, { write: (line) => written.push(line) });
    log.info({ reqId: "r-1", scheme: "paychan", amount: "1000", latencyMs: 1.5, note: "two words" }, "payment accepted");
    log.warn("uses pretty-format-operator-token");
    expect(written[0]).to.match(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  payment accepted reqId=r-1 scheme=paychan amount=1000 latencyMs=1.5 note="two words"\n$/);
    expect(written[1]).to.match(/ WARN  uses \*\*\*\n$/);
    const json = loggerFor(loadConfig({ LOG_FORMAT: "json" }), { write: (line) => written.push(line) });
    json.info({ scheme: "paychan" }, "payment accepted");
    expect(JSON.parse(written[2]!)).to.include({ level: "info", msg: "payment accepted", scheme: "paychan" });
  });
});
