// Paid vs unpaid requests per second on the same paywalled route, in one run. Vouchers are durable in
// Postgres (DATABASE_URL, default a fresh database on the local server) and pre-signed, so the load
// generator's signing is not what is measured. The load generator is a separate process (load.mjs).
// The paid route is served twice over, by the same gateway: through createApp, which logs a JSON line
// per decision (to a file) and counts metrics, and through a bare paywall() without either; the runs
// alternate (bare, instrumented, instrumented, bare), each on channels of its own, so the ratio of the
// two is what logs and metrics cost on the paid path (ROUNDS times over, default 2).
// Run: npm run bench:paywall   (env: SECONDS, CONNECTIONS, VOUCHERS, ROUNDS)
import { execFile } from "node:child_process";
import { openSync, statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { network } from "hardhat";
import secp256k1 from "secp256k1";
import express from "express";
import { hexToBytes, keccak256, parseEther, toHex, type Hex, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { loadConfig } from "../../src/config.js";
import { paywall } from "../../src/gateway/paywall.js";
import { voucherDigester } from "../../src/gateway/signatures.js";
import { HEADERS, X402_VERSION, decodePaymentRequired, encodeHeader } from "../../src/protocol/wire.js";
import { createApp, loggerFor, startPaychan } from "../../src/server.js";
import { freshPostgres } from "./freshPostgres.js";

const SECONDS = Number(process.env.SECONDS ?? 8);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 32);
const VOUCHERS_PER_CONNECTION = Number(process.env.VOUCHERS ?? 600);
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const PRICE = 1_000_000_000n;


const { viem } = await network.create();
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [, payer, payee] = await viem.getWalletClients();
const escrow = await viem.deployContract("PaychanEscrow");
const database = await freshPostgres();
const config = loadConfig({ DATABASE_URL: database.url, ESCROW_ADDRESS: escrow.address, PAYEE_ADDRESS: payee!.account.address, MIN_WITHDRAW_DELAY: "3600" });
const dir = await mkdtemp(join(tmpdir(), "paychan-bench-"));
const logFile = join(dir, "paychan.log");
const paychan = await startPaychan(config, { publicClient, logger: loggerFor(config, openSync(logFile, "a")) });
const routes = { "GET /api/item": PRICE };
const handler = (_req: express.Request, res: express.Response) => void res.json({ item: 42 });
const instrumented = createApp(paychan, routes, { "GET /api/item": handler });
const bare = express().use(paywall(paychan.gateway, routes)).get("/api/item", handler);
const urlOf = async (app: express.Express) => {
  const server = app.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/item` };
};
const [withLogs, without] = [await urlOf(instrumented), await urlOf(bare)];
const url = withLogs.url;
const terms = decodePaymentRequired((await fetch(url)).headers.get(HEADERS.required)!).accepts[0]!;

const SETS = 4 * ROUNDS;
console.log(`opening ${SETS * CONNECTIONS} channels and pre-signing ${SETS * CONNECTIONS * VOUCHERS_PER_CONNECTION} vouchers…`);
const digest = voucherDigester({ chainId: await publicClient.getChainId(), escrow: escrow.address });
const jobs: string[][] = [];
for (let c = 0; c < SETS * CONNECTIONS; c++) {
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
for (let set = 0; set < SETS; set++) await writeFile(join(dir, `paid-${set}.json`), JSON.stringify(jobs.slice(set * CONNECTIONS, (set + 1) * CONNECTIONS)));
await writeFile(join(dir, "unpaid.json"), JSON.stringify(jobs.slice(0, CONNECTIONS).map(() => [])));

type Result = { total: number; elapsed: number; rps: number; meanLatencyMs: number; statuses: Record<string, number> };
const load = async (target: string, file: string): Promise<Result> => {
  const { stdout } = await promisify(execFile)(process.execPath, [join(import.meta.dirname, "load.mjs"), target, join(dir, file), String(SECONDS)]);
  return JSON.parse(stdout);
};

await load(url, "unpaid.json"); // warm-up: JIT, connection pools
const unpaid = await load(url, "unpaid.json");
const bareRuns: Result[] = [];
const loggedRuns: Result[] = [];
for (let set = 0; set < SETS; set++) {
  const logged = set % 4 === 1 || set % 4 === 2;
  (logged ? loggedRuns : bareRuns).push(await load(logged ? withLogs.url : without.url, `paid-${set}.json`));
}
const accepted = await paychan.db.prisma.payment.count();

const row = (label: string, r: Result) =>
  console.log(`${label.padEnd(24)} ${Math.round(r.rps).toString().padStart(7)} req/s   mean latency ${r.meanLatencyMs.toFixed(2)} ms   statuses ${JSON.stringify(r.statuses)}`);
console.log(`\n${CONNECTIONS} connections, ${SECONDS} s each, database ${paychan.db.kind}`);
row("unpaid (logs, metrics)", unpaid);
for (let set = 0; set < SETS; set++) {
  const logged = set % 4 === 1 || set % 4 === 2;
  row(logged ? "paid (logs, metrics)" : "paid, bare paywall", (logged ? loggedRuns : bareRuns)[Math.floor(set / 4) * 2 + (set % 4 === 0 || set % 4 === 1 ? 0 : 1)]!);
}
const mean = (runs: Result[]) => runs.reduce((sum, r) => sum + r.rps, 0) / runs.length;
console.log(`paid / unpaid = ${(mean(loggedRuns) / unpaid.rps).toFixed(2)}   (payments durable in the database: ${accepted})`);
console.log(`paid with logs and metrics / bare paid = ${(mean(loggedRuns) / mean(bareRuns)).toFixed(3)}   (log: ${statSync(logFile).size} bytes)`);
// The same cost without the load's noise: what one paid decision adds, timed in this process.
const decide = paychan.paywallOptions.onDecision!;
const decision = { scheme: "paychan", outcome: "paid" as const, code: "ok", account: keccak256("0x01"), amount: PRICE, asset: paychan.gateway.defaultAsset, seconds: 0.002 };
const req = { method: "GET", originalUrl: "/api/item" } as express.Request;
const res = { locals: { requestId: "6a0c5a9e-8b39-4a8e-9d37-6a1f0b1c2d3e" } } as unknown as express.Response;
for (let i = 0; i < 10_000; i++) decide(decision, req, res);
const started = performance.now();
for (let i = 0; i < 100_000; i++) decide(decision, req, res);
console.log(`logs and metrics of one paid decision, in process: ${(((performance.now() - started) * 1000) / 100_000).toFixed(1)} µs (a log line written to a file, counters, a histogram)`);
const served = [...bareRuns, ...loggedRuns].reduce((sum, r) => sum + (r.statuses["200"] ?? 0), 0);
if (served !== accepted) console.log(`WARNING: ${served} paid responses but ${accepted} payments stored`);

withLogs.server.close();
without.server.close();
await paychan.close();
await database.drop();
await rm(dir, { recursive: true, force: true });
