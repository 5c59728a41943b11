// `npm run dev`: everything a newcomer needs to click through, on embedded defaults. Hardhat's
// in-process chain served over HTTP JSON-RPC (so a browser wallet can reach it), the escrow deployed,
// PGlite, the gateway serving the wallet app, a sample paid article page and a paid quote, the chain
// watcher and the settlement worker running, and the operator console on loopback behind a token
// made up at start. Stop it with Ctrl-C; the books live in memory unless DATABASE_URL says otherwise.
//
// Ports: PORT (gateway, 4021), OPERATOR_PORT (console, 4022), DEV_RPC_PORT (chain, 8545); 0 picks a free one.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { network } from "hardhat";
import { parseEther, toHex, type PublicClient } from "viem";
import { generatePrivateKey, mnemonicToAccount, privateKeyToAccount } from "viem/accounts";
import { loadConfig } from "../src/config.js";
import { createApp, createOperatorEndpoints, createSettlement, startPaychan } from "../src/server.js";
import { sampleArticles } from "../src/web/sampleArticles.js";
import { walletApp } from "../src/web/walletApp.js";

/** Hardhat's dev accounts come from this public mnemonic: their keys are known to everyone. */
const HARDHAT_MNEMONIC = "test test test test test test test test test test test junk";
const ARTICLE_PRICE = parseEther("0.00001");
const QUOTE_PRICE = parseEther("0.00002");
const env = process.env;
const port = (name: string, fallback: number) => {
  const value = env[name] === undefined || env[name] === "" ? fallback : Number(env[name]);
  if (!Number.isInteger(value) || value < 0 || value > 65_535) throw new Error(`${name} must be a port number (0 picks a free one), not ${env[name]}.`);
  return value;
};
const servers = new Map<string, Server>();
const ports = { gateway: port("PORT", 4021), console: port("OPERATOR_PORT", 4022), rpc: port("DEV_RPC_PORT", 8545) };

const connection = await network.create();
const { viem, provider } = connection;
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [deployer, buyer, seller] = await viem.getWalletClients();
const chainId = await publicClient.getChainId();
const rpc = await serveJsonRpc(provider, ports.rpc);

const escrow = await viem.deployContract("PaychanEscrow");
// The settlement key: a fresh operator the seller approves, as in production (the payee's own key stays cold).
const operator = privateKeyToAccount(generatePrivateKey());
await deployer!.sendTransaction({ to: operator.address, value: parseEther("10") });
await escrow.write.setOperator([operator.address, true], { account: seller!.account });

const config = loadConfig({
  DATABASE_URL: env.DATABASE_URL || "pglite:memory",
  ESCROW_ADDRESS: escrow.address,
  PAYEE_ADDRESS: seller!.account.address,
  // Short enough to watch a withdrawal end to end: 5 minutes, accepting payments until the last one.
  MIN_WITHDRAW_DELAY: "300",
  CLOSING_MARGIN_SECONDS: "60",
  WATCHTOWER_MARGIN_SECONDS: "120",
  CONFIRMATIONS: "0", // the in-process chain mines each transaction at once and never reorgs
  POLL_INTERVAL_MS: "1000",
  SETTLE_INTERVAL_SECONDS: "300",
});
const paychan = await startPaychan(config, { publicClient });

const articles = sampleArticles(ARTICLE_PRICE);
const app = createApp(
  paychan,
  { "GET /api/quote": { price: QUOTE_PRICE, description: "A quote, priced per request" }, ...articles.routes },
  { "GET /api/quote": (_req, res) => void res.json({ quote: "Simplicity is prerequisite for reliability." }), ...articles.handlers },
);
app.get("/", (_req, res) => res.redirect("/wallet"));
app.use(
  walletApp({
    routes: [
      { label: "An article", url: "/api/articles/why-micropayments-failed" },
      { label: "A quote", url: "/api/quote" },
    ],
    articlesUrl: "/articles",
    chain: { name: "paychan dev chain", rpcUrl: rpc.url },
    devWallet: { rpcUrl: rpc.url, account: buyer!.account.address },
  }),
);
const gateway = await listen(createServer(app), ports.gateway, "PORT");

const settlement = createSettlement(paychan, { account: operator, log: (line) => console.log(`  · ${line}`) });
settlement.start();
const token = randomBytes(24).toString("base64url");
// The operator listener as `serve` runs it (loopback), with this run's token and settlement.
const operatorApp = createOperatorEndpoints({ ...paychan, config: { ...paychan.config, OPERATOR_TOKEN: token } }, { settlement });
const operatorServer = await listen(createServer(operatorApp), ports.console, "OPERATOR_PORT");

const buyerKey = toHex(mnemonicToAccount(HARDHAT_MNEMONIC, { addressIndex: 1 }).getHdKey().privateKey!);
console.log(`
paychan dev is running (chain ${chainId}, escrow ${escrow.address}, payee ${seller!.account.address})

  wallet    ${gateway}/wallet
  articles  ${gateway}/articles
  console   ${operatorServer}/admin/        operator token: ${token}
  chain     ${rpc.url}               JSON-RPC, chain id ${chainId}

In the wallet, pick "Dev chain account" (no extension needed), or add the chain to your browser
wallet and import the buyer account ${buyer!.account.address}
with Hardhat's public test key ${buyerKey} (never use it on a real chain).
Ctrl-C stops everything.
`);

await new Promise<void>((resolve) => {
  process.once("SIGINT", resolve);
  process.once("SIGTERM", resolve);
});
console.log("stopping…");
await settlement.stop();
await Promise.all([closeServer(gateway), closeServer(operatorServer), rpc.close()]);
await paychan.close();
process.exit(0);

/** The chain's EIP-1193 provider as a JSON-RPC endpoint on loopback, open to pages of any origin. */
async function serveJsonRpc(chain: { request(args: { method: string; params?: unknown }): Promise<unknown> }, listenPort: number) {
  const answer = async ({ id, method, params }: { id: unknown; method: string; params?: unknown }) => {
    try {
      return { jsonrpc: "2.0", id, result: (await chain.request({ method, params })) ?? null };
    } catch (error) {
      const e = error as { code?: number; message?: string; data?: unknown };
      return { jsonrpc: "2.0", id, error: { code: typeof e.code === "number" ? e.code : -32603, message: e.message ?? String(error), data: e.data } };
    }
  };
  const server = createServer(async (req, res) => {
    res.setHeader("Access-Control-Allow-Origin", "*");
    res.setHeader("Access-Control-Allow-Headers", "content-type");
    if (req.method === "OPTIONS") return void res.writeHead(204).end();
    if (req.method !== "POST") return void res.writeHead(405).end();
    let body;
    try {
      body = JSON.parse(await read(req));
    } catch {
      return void res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } }));
    }
    const result = Array.isArray(body) ? await Promise.all(body.map(answer)) : await answer(body);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(result, (_k, v) => (typeof v === "bigint" ? toHex(v) : v)));
  });
  const url = await listen(server, listenPort, "DEV_RPC_PORT");
  return { url, close: () => closeServer(url) };
}

async function listen(server: Server, listenPort: number, variable: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(new Error(error.code === "EADDRINUSE" ? `Port ${listenPort} is in use: set ${variable} to another port (0 picks a free one).` : error.message)),
    );
    server.listen(listenPort, "127.0.0.1", resolve);
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  servers.set(url, server);
  return url;
}

function closeServer(url: string): Promise<void> {
  const server = servers.get(url)!;
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

function read(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
