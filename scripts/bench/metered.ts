// What metering costs a paid request: one buyer pays REQUESTS fixed-price requests, then REQUESTS
// metered ones (each reporting usage, so each leaves a debt the next voucher pays), one at a time over
// real HTTP through the paywall, on Hardhat's in-process chain and DATABASE_URL (default: PGlite in
// memory). A metered request costs one more statement (recording its usage) before its response ends.
// Run: npx hardhat run scripts/bench/metered.ts   (env: REQUESTS=300, DATABASE_URL)
import type { AddressInfo } from "node:net";
import { network } from "hardhat";
import { parseEther, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createPaidFetch, openChannel, type Wallet } from "../../src/client/index.js";
import { loadConfig } from "../../src/config.js";
import { meterOf } from "../../src/gateway/paywall.js";
import { createApp, startPaychan } from "../../src/server.js";

const REQUESTS = Number(process.env.REQUESTS ?? 300);
const PRICE = 10n ** 9n;

const { viem } = await network.create();
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [, buyerWallet, sellerWallet] = await viem.getWalletClients();
const escrow = await viem.deployContract("PaychanEscrow");
const paychan = await startPaychan(
  loadConfig({
    DATABASE_URL: process.env.DATABASE_URL ?? "pglite:memory",
    ESCROW_ADDRESS: escrow.address,
    PAYEE_ADDRESS: sellerWallet!.account.address,
    MIN_WITHDRAW_DELAY: "3600",
    CONFIRMATIONS: "0",
    LOG_LEVEL: "warn",
  }),
  { publicClient },
);
const app = createApp(
  paychan,
  { "GET /fixed": PRICE, "GET /metered": { price: PRICE, maxPrice: 10n * PRICE } },
  {
    "GET /fixed": (_req, res) => void res.json({ ok: true }),
    "GET /metered": (_req, res) => {
      meterOf(res).report(3n * PRICE);
      res.json({ ok: true });
    },
  },
);
const server = app.listen(0, "127.0.0.1");
await new Promise((resolve) => server.once("listening", resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

const session = privateKeyToAccount(generatePrivateKey());
const channel = await openChannel({
  wallet: buyerWallet as unknown as Wallet,
  publicClient,
  escrow: escrow.address,
  payee: sellerWallet!.account.address,
  signer: session.address,
  amount: parseEther("1"),
  withdrawDelay: 86_400,
});
const paidFetch = createPaidFetch({ channel, signer: session, maxPrice: 10n * PRICE });

for (const path of ["/fixed", "/metered"]) {
  for (let i = 0; i < 20; i++) await (await paidFetch(`${url}${path}`)).arrayBuffer(); // warm up
  const started = performance.now();
  for (let i = 0; i < REQUESTS; i++) {
    const response = await paidFetch(`${url}${path}`);
    if (response.status !== 200) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    await response.arrayBuffer();
  }
  const ms = (performance.now() - started) / REQUESTS;
  console.log(`${path.slice(1).padEnd(8)} ${REQUESTS} sequential paid requests: ${ms.toFixed(2)} ms each, ${(1000 / ms).toFixed(0)} req/s`);
}
server.close();
await paychan.close();
