// Paid vs unpaid requests per second on the same paywalled route, in one run: paid with channel
// vouchers, and paid from prepaid credit (the `credit` scheme, an API key per connection). Payments
// are durable in Postgres (DATABASE_URL, default a fresh database on the local server) and vouchers
// pre-signed, so the load generator's signing is not what is measured. The load generator is a
// separate process (load.mjs); the fiat rail is a local fake of Stripe's API, never called here.
// Run: npm run bench:paywall   (env: SECONDS, CONNECTIONS)
import { execFile } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { network } from "hardhat";
import secp256k1 from "secp256k1";
import { hexToBytes, keccak256, parseEther, toHex, type Hex, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { loadConfig } from "../../src/config.js";
import { voucherDigester } from "../../src/gateway/signatures.js";
import { HEADERS, X402_VERSION, decodePaymentRequired, encodeHeader } from "../../src/protocol/wire.js";
import { createApp, startPaychan } from "../../src/server.js";
import { applyFiatEvent, createCreditAccount, issueCreditKey, recordTopUp } from "../../src/ledger/credit.js";
import { encodeCreditPayment } from "../../src/protocol/credit.js";
import { StripeRail } from "../../src/rails/StripeRail.js";
import { freshPostgres } from "./freshPostgres.js";

const SECONDS = Number(process.env.SECONDS ?? 8);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 32);
const VOUCHERS_PER_CONNECTION = Number(process.env.VOUCHERS ?? 2500);
const PRICE = 1_000_000_000n;


const { viem } = await network.create();
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [, payer, payee] = await viem.getWalletClients();
const escrow = await viem.deployContract("PaychanEscrow");
const database = await freshPostgres();
const paychan = await startPaychan(
  loadConfig({ DATABASE_URL: database.url, ESCROW_ADDRESS: escrow.address, PAYEE_ADDRESS: payee!.account.address, MIN_WITHDRAW_DELAY: "3600" }),
  { publicClient, rail: new StripeRail({ secretKey: "sk_test_bench", webhookSecret: "whsec_bench", apiBase: "http://127.0.0.1:9" }) },
);
const app = createApp(
  paychan,
  { "GET /api/item": { usd: "0.001", amounts: { [paychan.gateway.defaultAsset]: PRICE } } },
  { "GET /api/item": (_req, res) => res.json({ item: 42 }) },
);
const server = app.listen(0, "127.0.0.1");
await new Promise((r) => server.once("listening", r));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/item`;
const terms = decodePaymentRequired((await fetch(url)).headers.get(HEADERS.required)!).accepts[0]!;

console.log(`opening ${CONNECTIONS} channels and pre-signing ${CONNECTIONS * VOUCHERS_PER_CONNECTION} vouchers…`);
const digest = voucherDigester({ chainId: await publicClient.getChainId(), escrow: escrow.address });
const jobs: string[][] = [];
for (let c = 0; c < CONNECTIONS; c++) {
  const key = keccak256(toHex(`bench-session-${c}`));
  const session = privateKeyToAccount(key);
  const channel = await openChannel({
    wallet: payer as unknown as Wallet,
    publicClient,
    escrow: escrow.address,
    payee: payee!.account.address,
    signer: session.address,
    amount: parseEther("1"),
    withdrawDelay: 86_400,
  });
  const headers: string[] = [];
  for (let i = 1n; i <= BigInt(VOUCHERS_PER_CONNECTION); i++) {
    const { signature, recid } = secp256k1.ecdsaSign(digest(channel.id, i * PRICE), hexToBytes(key));
    const voucher = { channelId: channel.id, cumulativeAmount: i * PRICE, signature: toHex(new Uint8Array([...signature, 27 + recid])) as Hex };
    headers.push(encodeHeader({ x402Version: X402_VERSION, accepted: terms, payload: { channel: channel.config, voucher } }));
  }
  jobs.push(headers);
}
console.log(`opening ${CONNECTIONS} credit accounts, each topped up by a (booked) card payment…`);
const creditJobs: string[][] = [];
for (let c = 0; c < CONNECTIONS; c++) {
  const { id } = await createCreditAccount(paychan.db.prisma, { currency: "USD" });
  const { key } = await issueCreditKey(paychan.db.prisma, id);
  const topUpId = `tu_bench_${c}`;
  await recordTopUp(paychan.db.prisma, { id: topUpId, accountId: id, processor: "stripe", currency: "USD", amountMinor: 1_000_000n });
  await applyFiatEvent(paychan.db.prisma, { id: `evt_bench_${c}`, processor: "stripe", type: "topup.paid", topUpId, paymentRef: `pi_bench_${c}`, currency: "USD", amountMinor: 1_000_000n });
  creditJobs.push(Array.from({ length: VOUCHERS_PER_CONNECTION }, (_, i) => encodeCreditPayment(key, `bench-${c}-${i}-nonce`)));
}
const dir = await mkdtemp(join(tmpdir(), "paychan-bench-"));
await writeFile(join(dir, "credit.json"), JSON.stringify(creditJobs));
await writeFile(join(dir, "paid.json"), JSON.stringify(jobs));
await writeFile(join(dir, "unpaid.json"), JSON.stringify(jobs.map(() => [])));

type Result = { total: number; elapsed: number; rps: number; meanLatencyMs: number; statuses: Record<string, number> };
const load = async (file: string): Promise<Result> => {
  const { stdout } = await promisify(execFile)(process.execPath, [join(import.meta.dirname, "load.mjs"), url, join(dir, file), String(SECONDS)]);
  return JSON.parse(stdout);
};

await load("unpaid.json"); // warm-up: JIT, connection pools
const unpaid = await load("unpaid.json");
const paid = await load("paid.json");
const credit = await load("credit.json");
const accepted = await paychan.db.prisma.payment.count();
const spent = await paychan.db.prisma.creditPayment.count({ where: { status: "ACCEPTED" } });

const row = (label: string, r: Result) =>
  console.log(`${label.padEnd(8)} ${Math.round(r.rps).toString().padStart(7)} req/s   mean latency ${r.meanLatencyMs.toFixed(2)} ms   statuses ${JSON.stringify(r.statuses)}`);
console.log(`\n${CONNECTIONS} connections, ${SECONDS} s each, database ${paychan.db.kind}`);
row("unpaid", unpaid);
row("paid", paid);
row("credit", credit);
console.log(`paid / unpaid = ${(paid.rps / unpaid.rps).toFixed(2)}   (payments durable in the database: ${accepted})`);
console.log(`credit / unpaid = ${(credit.rps / unpaid.rps).toFixed(2)}   (credit payments durable in the database: ${spent})`);
if (paid.statuses["200"] !== accepted) console.log(`WARNING: ${paid.statuses["200"]} paid responses but ${accepted} payments stored`);
if (credit.statuses["200"] !== spent) console.log(`WARNING: ${credit.statuses["200"]} credit-paid responses but ${spent} credit payments stored`);

server.close();
await paychan.close();
await database.drop();
