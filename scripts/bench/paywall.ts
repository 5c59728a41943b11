// Paid vs unpaid requests on the same paywalled route, every figure measured in this one run.
//
// The chain is Hardhat's in-process EDR, served over HTTP JSON-RPC; each gateway is its own process
// (scripts/bench/replica.ts: paychan assembled from the environment, as `paychan serve` is), and so is
// the load generator (load.mjs), so none of them shares an event loop. Every paid measurement starts
// on a fresh database, so the same pre-signed vouchers (32 channels, native secp256k1, signed before
// the clock starts) are new to it. Vouchers are durable before each response: each run ends by
// comparing the 200s with the payments the database holds.
//
// Runs (RUNS, comma-separated, default all):
//   postgres  unpaid, paid and prepaid-credit saturation on one gateway, Postgres, 1,000 channels
//   latency   p50/p99 of unpaid and paid at half the paid saturation rate (open loop)
//   pglite    unpaid and paid on one gateway, embedded PGlite on disk
//   replicas  two gateway processes on one Postgres, the load split across them
//   scale     paid with 1,000,000 channels in the database, against the 1,000-channel figure
//   pricing   paid with the route's pricing policies off, then on (demand pricing and a volume tier,
//             src/policy/pricing.ts), each on a fresh Postgres, alternating PRICING_ROUNDS times
//   risk      paid with the risk policy off and on (every limit and the anomaly score, none of them
//             reached), alternating RISK_ROUNDS times (default 2) on fresh databases: on / off
// PROFILE=1 adds an unpaid and a paid run under the V8 CPU profiler and prints where a gateway's CPU
// time per request goes, paid against unpaid (PROFILE_OUT=<dir> keeps the .cpuprofile files, which
// Chrome's DevTools open).
// Run: npm run bench:paywall   (env: SECONDS=8, CONNECTIONS=32, VOUCHERS=2500, RUNS, PROFILE, PRICING_ROUNDS=2)
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { network } from "hardhat";
import pg from "pg";
import secp256k1 from "secp256k1";
import { hexToBytes, keccak256, parseEther, toHex, type Hex, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { voucherDigester } from "../../src/gateway/signatures.js";
import { tokenAsset } from "../../src/ledger/asset.js";
import { PriceTable } from "../../src/policy/prices.js";
import { RoutePricing } from "../../src/policy/pricing.js";
import { applyFiatEvent, createCreditAccount, issueCreditKey, recordTopUp } from "../../src/ledger/credit.js";
import { openDatabase } from "../../src/ledger/db.js";
import { encodeCreditPayment } from "../../src/protocol/credit.js";
import { HEADERS, X402_VERSION, decodePaymentRequired, encodeHeader } from "../../src/protocol/wire.js";
import { serveProvider } from "../../test/helpers/rpcServer.js";
import { freshPostgres } from "./freshPostgres.js";

const SECONDS = Number(process.env.SECONDS ?? 8);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 32);
const VOUCHERS = Number(process.env.VOUCHERS ?? 2500);
const RUNS = new Set((process.env.RUNS ?? "postgres,latency,pglite,replicas,scale,pricing,risk").split(","));
const PRICING_ROUNDS = Number(process.env.PRICING_ROUNDS ?? 2);
const RISK_ROUNDS = Number(process.env.RISK_ROUNDS ?? 2);
const PROFILE = process.env.PROFILE === "1";
const PRICE = 1_000_000_000n;
const BASE_CHANNELS = 1_000;
const SCALE_CHANNELS = 1_000_000;

const connection = await network.create();
const { viem } = connection;
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [, payer, payee] = await viem.getWalletClients();
const escrow = await viem.deployContract("PaychanEscrow");
const rpc = await serveProvider(connection.provider as Parameters<typeof serveProvider>[0]);
const chainId = await publicClient.getChainId();
const work = await mkdtemp(join(tmpdir(), "paychan-bench-"));

type Replica = {
  url: string;
  stats(): Promise<{ payments: number; credit: number; rssBytes: number; cpuMicros: number }>;
  /** Sums and counts of the gateway's accept-statement histograms (its Prometheus metrics). */
  commits(): Promise<{ statements: number; vouchers: number; seconds: number }>;
  stop(): Promise<void>;
};
/** Starts one gateway process on `databaseUrl`. */
async function startReplica(databaseUrl: string, options: { fiat?: boolean; env?: Record<string, string> } = {}): Promise<Replica> {
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    RPC_URL: rpc.url,
    ESCROW_ADDRESS: escrow.address,
    PAYEE_ADDRESS: payee!.account.address,
    MIN_WITHDRAW_DELAY: "3600",
    BENCH_PRICE: PRICE.toString(),
    ...(options.fiat ? { STRIPE_SECRET_KEY: "sk_test_bench", STRIPE_WEBHOOK_SECRET: "whsec_bench", STRIPE_API_BASE: "http://127.0.0.1:9" } : {}),
    ...options.env,
  };
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "replica.ts")], { env, stdio: ["ignore", "pipe", "inherit"] });
  const base = await new Promise<string>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the gateway exited (${code}) before listening`)));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.startsWith("READY ")) resolve(line.slice("READY ".length));
    });
  });
  return {
    url: `${base}/api/item`,
    stats: async () => (await fetch(`${base}/bench/stats`)).json(),
    commits: async () => {
      const text = await (await fetch(`${base}/bench/metrics`)).text();
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? 0);
      return {
        statements: value("paychan_group_commit_duration_seconds_count"),
        vouchers: value("paychan_group_commit_batch_size_sum"),
        seconds: value("paychan_group_commit_duration_seconds_sum"),
      };
    },
    stop: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

/** `count` channel rows that no request touches, as a long-lived gateway's database holds. */
async function addIdleChannels(url: string, count: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const asset = tokenAsset(chainId, "0x0000000000000000000000000000000000000000");
    for (let from = 1; from <= count; from += 100_000) {
      await client.query(
        `INSERT INTO channel (id, chain_id, escrow, payer, payee, token, signer, withdraw_delay, salt, asset, deposit, deposit_seen)
         SELECT '0xe' || lpad(to_hex(g), 63, '0'), $1, $2, $3, $4, $5, $3, 86400, '0x' || lpad(to_hex(g), 64, '0'), $6, 1e18, 1e18
         FROM generate_series($7::int, $8::int) AS g`,
        [chainId, escrow.address.toLowerCase(), payer!.account.address.toLowerCase(), payee!.account.address.toLowerCase(), "0x0000000000000000000000000000000000000000", asset, from, Math.min(count, from + 99_999)],
      );
    }
    // What a long-lived database has long since done; left to autovacuum, it runs during the measurement.
    await client.query("VACUUM ANALYZE channel");
    await client.query("CHECKPOINT");
  } finally {
    await client.end();
  }
}

console.log(`opening ${CONNECTIONS} channels and pre-signing ${CONNECTIONS * VOUCHERS} vouchers…`);
const terms = await (async () => {
  // The terms a gateway offers (its `accepted` is echoed in each payment header).
  const database = await freshPostgres();
  const replica = await startReplica(database.url);
  const required = (await fetch(replica.url)).headers.get(HEADERS.required)!;
  await replica.stop();
  await database.drop();
  return decodePaymentRequired(required).accepts[0]!;
})();
const digest = voucherDigester({ chainId, escrow: escrow.address });
const paidJobs: string[][] = [];
for (let c = 0; c < CONNECTIONS; c++) {
  const key = keccak256(toHex(`bench-session-${c}`));
  const channel = await openChannel({
    wallet: payer as unknown as Wallet,
    publicClient,
    escrow: escrow.address,
    payee: payee!.account.address,
    signer: privateKeyToAccount(key).address,
    amount: parseEther("1"),
    withdrawDelay: 86_400,
  });
  const headers: string[] = [];
  for (let i = 1n; i <= BigInt(VOUCHERS); i++) {
    const { signature, recid } = secp256k1.ecdsaSign(digest(channel.id, i * PRICE), hexToBytes(key));
    const voucher = { channelId: channel.id, cumulativeAmount: i * PRICE, signature: toHex(new Uint8Array([...signature, 27 + recid])) as Hex };
    headers.push(encodeHeader({ x402Version: X402_VERSION, accepted: terms, payload: { channel: channel.config, voucher } }));
  }
  paidJobs.push(headers);
}
// Each channel's first voucher registers it (a chain read, its row and its pending deposit booked):
// a once-per-channel cost, paid before the clock starts, as a long-running gateway has paid it.
await writeFile(join(work, "paid-first.json"), JSON.stringify(paidJobs.map((headers) => headers.slice(0, 1))));
await writeFile(join(work, "paid.json"), JSON.stringify(paidJobs.map((headers) => headers.slice(1))));
await writeFile(join(work, "unpaid.json"), JSON.stringify(paidJobs.map(() => [])));

type Result = { total: number; elapsed: number; rps: number; meanLatencyMs: number; p50: number; p99: number; exhausted: number; statuses: Record<string, number>; cpuMicros: number };
async function load(urls: string[], jobs: "paid" | "paid-first" | "unpaid" | "credit", rate?: number): Promise<Result> {
  const args = [join(import.meta.dirname, "load.mjs"), urls.join(","), join(work, `${jobs}.json`), String(SECONDS), ...(rate ? [String(Math.round(rate))] : [])];
  const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as Result;
}
const row = (label: string, r: Result) =>
  console.log(
    `  ${label.padEnd(22)} ${Math.round(r.rps).toString().padStart(6)} req/s   p50 ${r.p50.toFixed(2)} ms   p99 ${r.p99.toFixed(2)} ms   ${JSON.stringify(r.statuses)}` +
      (r.exhausted > 0 ? `   (${r.exhausted} connections ran out of vouchers: raise VOUCHERS)` : ""),
  );
const mib = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MiB`;
/** What one paid run asked of the database: accept statements, vouchers per statement, time per statement. */
async function commitsDuring<T>(replicas: Replica[], run: () => Promise<T>): Promise<T> {
  const total = async () => {
    const all = await Promise.all(replicas.map((r) => r.commits()));
    return all.reduce((a, b) => ({ statements: a.statements + b.statements, vouchers: a.vouchers + b.vouchers, seconds: a.seconds + b.seconds }));
  };
  const before = await total();
  const result = await run();
  const after = await total();
  const statements = after.statements - before.statements;
  console.log(
    `  accept statements: ${statements}, ${((after.vouchers - before.vouchers) / statements).toFixed(1)} vouchers each, ` +
      `${((1000 * (after.seconds - before.seconds)) / statements).toFixed(2)} ms each on average`,
  );
  return result;
}

/** Every 200 on a paid run must be a payment the database holds (besides the `warmUp` ones). */
function checkDurable(label: string, served: Result, stored: number, warmUp = CONNECTIONS) {
  const ok = served.statuses["200"] ?? 0;
  const extra = warmUp > 0 ? ` (+${warmUp} warm-up)` : "";
  console.log(`  ${label}: ${ok} paid responses${extra}, ${stored} payments in the database${ok + warmUp === stored ? "" : "   MISMATCH"}`);
}

/** Transactions the database has committed so far (Postgres's statistics, flushed about once a second). */
async function commits(url: string): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT xact_commit::int AS n FROM pg_stat_database WHERE datname = current_database()");
    return rows[0].n as number;
  } finally {
    await client.end();
  }
}

/** CPU time (µs) the database's server processes have used, read from /proc (Linux, local server). */
async function postgresCpu(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
    let ticks = 0;
    for (const { pid } of rows as { pid: number }[]) {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0); // utime, stime
    }
    return ticks * 10_000; // USER_HZ is 100 on Linux
  } finally {
    await client.end();
  }
}

/** A fresh Postgres gateway with `channels` rows in its database (the 32 paid ones among them). */
async function postgresGateways(count: number, channels: number, fiat = false, env: Record<string, string> = {}) {
  const database = await freshPostgres();
  const seed = await openDatabase({ url: database.url }); // migrates
  await seed.close();
  await addIdleChannels(database.url, channels - CONNECTIONS);
  const replicas: Replica[] = [];
  for (let i = 0; i < count; i++) replicas.push(await startReplica(database.url, { fiat, env }));
  return {
    database,
    replicas,
    async stop() {
      for (const replica of replicas) await replica.stop();
      await database.drop();
    },
  };
}

/**
 * A policy's cost: `rounds` rounds of one paid run with it off and one with it on, each on a fresh
 * Postgres gateway (`on` is the gateway's environment for "on"), the order flipped every round so
 * that neither side always runs second. Throughput moves with whatever else the machine runs; the
 * gateway's CPU time per paid request much less, so both are returned, per mode, one entry a run.
 */
async function offAndOn(name: string, rounds: number, on: Record<string, string>) {
  const rates: Record<"off" | "on", number[]> = { off: [], on: [] };
  const cpu: Record<"off" | "on", number[]> = { off: [], on: [] };
  for (let round = 0; round < rounds; round++) {
    for (const mode of round % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
      const run = await postgresGateways(1, BASE_CHANNELS, false, mode === "on" ? on : {});
      const [replica] = run.replicas;
      await load([replica!.url], "unpaid"); // warm-up: JIT, connection pools
      await load([replica!.url], "paid-first");
      const before = (await replica!.stats()).cpuMicros;
      const paid = await load([replica!.url], "paid");
      const stats = await replica!.stats();
      row(`paid, ${name} ${mode}`, paid);
      console.log(`  gateway CPU per paid request ${Math.round((stats.cpuMicros - before) / paid.total)} µs`);
      checkDurable(`${name} ${mode}`, paid, stats.payments);
      rates[mode].push(paid.rps);
      cpu[mode].push((stats.cpuMicros - before) / paid.total);
      await run.stop();
    }
  }
  return { rates, cpu };
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

const figures: Record<string, Result> = {};
console.log(`\n${CONNECTIONS} connections, ${SECONDS} s per measurement, one load-generator process`);

if (RUNS.has("postgres")) {
  console.log(`\nPostgres, one gateway, ${BASE_CHANNELS.toLocaleString("en")} channels in the database:`);
  const run = await postgresGateways(1, BASE_CHANNELS, true);
  const [replica] = run.replicas;
  // Prepaid credit: one account and API key per connection, each topped up by a booked card payment.
  const seed = await openDatabase({ url: run.database.url });
  const creditJobs: string[][] = [];
  for (let c = 0; c < CONNECTIONS; c++) {
    const { id } = await createCreditAccount(seed.prisma, { currency: "USD" });
    const { key } = await issueCreditKey(seed.prisma, id);
    await recordTopUp(seed.prisma, { id: `tu_bench_${c}`, accountId: id, processor: "stripe", currency: "USD", amountMinor: 1_000_000n });
    await applyFiatEvent(seed.prisma, { id: `evt_bench_${c}`, processor: "stripe", type: "topup.paid", topUpId: `tu_bench_${c}`, paymentRef: `pi_bench_${c}`, currency: "USD", amountMinor: 1_000_000n });
    creditJobs.push(Array.from({ length: VOUCHERS }, (_, i) => encodeCreditPayment(key, `bench-${c}-${i}-nonce`)));
  }
  await seed.close();
  await writeFile(join(work, "credit.json"), JSON.stringify(creditJobs));

  // CPU per request, by process: the gateway, the database's server processes, the load generator.
  const cpu: Record<string, { gateway: number; database: number; load: number }> = {};
  const measured = async (label: string, jobs: "paid" | "unpaid" | "credit") => {
    const [gateway, database] = [(await replica!.stats()).cpuMicros, await postgresCpu(run.database.url)];
    const result = await load([replica!.url], jobs);
    cpu[label] = {
      gateway: ((await replica!.stats()).cpuMicros - gateway) / result.total,
      database: ((await postgresCpu(run.database.url)) - database) / result.total,
      load: result.cpuMicros / result.total,
    };
    return result;
  };
  await load([replica!.url], "unpaid"); // warm-up: JIT, connection pools
  await load([replica!.url], "paid-first");
  row("unpaid", (figures.unpaid = await measured("unpaid", "unpaid")));
  const before = await commits(run.database.url);
  row("paid (channel vouchers)", (figures.paid = await commitsDuring([replica!], () => measured("paid (channel vouchers)", "paid"))));
  const transactions = (await commits(run.database.url)) - before;
  row("paid (prepaid credit)", (figures.credit = await measured("paid (prepaid credit)", "credit")));
  const stats = await replica!.stats();
  checkDurable("vouchers", figures.paid, stats.payments);
  checkDurable("credit", figures.credit, stats.credit, 0);
  console.log(`  CPU per request (µs)        gateway   database   load generator   all`);
  for (const [label, c] of Object.entries(cpu)) {
    const cell = (n: number, width: number) => Math.round(n).toString().padStart(width);
    console.log(`  ${label.padEnd(24)} ${cell(c.gateway, 9)} ${cell(c.database, 10)} ${cell(c.load, 16)} ${cell(c.gateway + c.database + c.load, 5)}`);
  }
  console.log(`  database transactions per paid request ${(transactions / figures.paid.total).toFixed(3)} (accept statements, booking, registering channels)`);
  console.log(`  gateway RSS ${mib(stats.rssBytes)}`);
  console.log(`paid / unpaid = ${(figures.paid.rps / figures.unpaid.rps).toFixed(2)}`);
  console.log(`credit / unpaid = ${(figures.credit.rps / figures.unpaid.rps).toFixed(2)}`);
  await run.stop();
}

if (RUNS.has("latency")) {
  const saturation = figures.paid?.rps ?? 2_000;
  const rate = saturation / 2;
  console.log(`\nLatency at ${Math.round(rate)} req/s (half the paid saturation rate), Postgres, open loop:`);
  const run = await postgresGateways(1, BASE_CHANNELS);
  const [replica] = run.replicas;
  await load([replica!.url], "unpaid"); // warm-up
  await load([replica!.url], "paid-first");
  const unpaid = await load([replica!.url], "unpaid", rate);
  const paid = await commitsDuring([replica!], () => load([replica!.url], "paid", rate));
  row("unpaid", unpaid);
  row("paid", paid);
  checkDurable("vouchers", paid, (await replica!.stats()).payments);
  console.log(`added p99 of a paid request = ${(paid.p99 - unpaid.p99).toFixed(2)} ms   (p50 ${(paid.p50 - unpaid.p50).toFixed(2)} ms)`);
  await run.stop();
}

if (RUNS.has("pglite")) {
  console.log("\nPGlite on disk, one gateway:");
  const dir = join(work, "pglite");
  const replica = await startReplica(`pglite:${dir}`);
  await load([replica.url], "unpaid"); // warm-up
  await load([replica.url], "paid-first");
  const unpaid = await load([replica.url], "unpaid");
  const cpuBefore = (await replica.stats()).cpuMicros;
  const paid = await commitsDuring([replica], () => load([replica.url], "paid"));
  row("unpaid", unpaid);
  row("paid", paid);
  const stats = await replica.stats();
  console.log(`  gateway CPU per paid request ${Math.round((stats.cpuMicros - cpuBefore) / paid.total)} µs (PGlite runs in the gateway's process)`);
  checkDurable("vouchers", paid, stats.payments);
  console.log(`  gateway RSS ${mib(stats.rssBytes)}`);
  console.log(`pglite paid / unpaid = ${(paid.rps / unpaid.rps).toFixed(2)}`);
  await replica.stop();
  await rm(dir, { recursive: true, force: true });
}

if (RUNS.has("replicas")) {
  console.log("\nTwo gateway processes on one Postgres, connections split across them:");
  const run = await postgresGateways(2, BASE_CHANNELS);
  const urls = run.replicas.map((r) => r.url);
  await load(urls, "unpaid"); // warm-up
  await load(urls, "paid-first");
  const unpaid = await load(urls, "unpaid");
  const paid = await commitsDuring(run.replicas, () => load(urls, "paid"));
  row("unpaid", unpaid);
  row("paid", paid);
  checkDurable("vouchers", paid, (await run.replicas[0]!.stats()).payments);
  console.log(`two replicas paid / unpaid = ${(paid.rps / unpaid.rps).toFixed(2)}`);
  await run.stop();
}

if (RUNS.has("pricing")) {
  console.log(
    `\nPricing policies off and on, paid, Postgres, one gateway on a fresh database each time (${BASE_CHANNELS.toLocaleString("en")} channels).\n` +
      "On: demand pricing (floor = ceiling, so the pre-signed vouchers stay valid while every step runs: the meter, the\n" +
      "recompute, the honoured-price check, the reason stored with each payment) and a volume tier no payer reaches (its\n" +
      "count read from the database, then kept by this process):",
  );
  const { rates, cpu } = await offAndOn("pricing", PRICING_ROUNDS, { BENCH_PRICING: "1" });
  // The policies' own work per paid request, in this process: the meter, the price now, the honoured
  // price for the payer (its tier count kept in memory), the payment counted.
  const policy = new RoutePricing({
    demand: { floor: PRICE, ceiling: PRICE, ceilingAtRequestsPerSecond: 1_000, ceilingAtConcurrency: 64 },
    tiers: [{ from: 1_000_000_000, percentOff: 10 }],
    volume: { paidSince: async () => 0 },
  });
  const table = new PriceTable(tokenAsset(chainId, "0x0000000000000000000000000000000000000000"));
  const payerAddress = payer!.account.address;
  const started = performance.now();
  const iterations = 100_000;
  for (let i = 0; i < iterations; i++) {
    policy.meter.started(policy.now());
    await policy.quote(table);
    if (!(await policy.honoured(table, payerAddress, (quote) => quote.get(table.defaultAsset), PRICE))) throw new Error("the price was not honoured");
    policy.paid(payerAddress);
    policy.meter.finished();
  }
  console.log(`  the policies' own work: ${(((performance.now() - started) * 1000) / iterations).toFixed(1)} µs per paid request`);
  const best = (values: number[]) => Math.max(...values);
  console.log(`pricing on / off = ${(mean(rates.on) / mean(rates.off)).toFixed(2)} (mean of ${PRICING_ROUNDS} alternating runs each), best ${(best(rates.on) / best(rates.off)).toFixed(2)}`);
  console.log(`gateway CPU per paid request, on / off = ${(mean(cpu.on) / mean(cpu.off)).toFixed(2)}`);
}

if (RUNS.has("scale")) {
  console.log(`\nScale: ${SCALE_CHANNELS.toLocaleString("en")} channels in the database (inserting them…):`);
  const run = await postgresGateways(1, SCALE_CHANNELS);
  const [replica] = run.replicas;
  await load([replica!.url], "unpaid"); // warm-up
  await load([replica!.url], "paid-first");
  const paid = await commitsDuring([replica!], () => load([replica!.url], "paid"));
  row("paid", paid);
  const stats = await replica!.stats();
  checkDurable("vouchers", paid, stats.payments);
  console.log(`  gateway RSS ${mib(stats.rssBytes)}`);
  if (figures.paid) {
    console.log(`paid at ${SCALE_CHANNELS.toLocaleString("en")} / at ${BASE_CHANNELS.toLocaleString("en")} channels = ${(paid.rps / figures.paid.rps).toFixed(2)}`);
  }
  await run.stop();
}

if (RUNS.has("risk")) {
  // Every check on: three dimensions by count and by value, and the anomaly score. The limits are out
  // of reach, so every request is paid: the figure is what checking costs, not what refusing saves.
  const far = "1000000000000000000000000000000";
  const riskOn: Record<string, string> = {
    RISK_CHANNEL_REQUESTS_PER_MINUTE: "100000000",
    RISK_PAYER_REQUESTS_PER_MINUTE: "100000000",
    RISK_CLIENT_REQUESTS_PER_MINUTE: "100000000",
    RISK_CHANNEL_VALUE_PER_HOUR: far,
    RISK_PAYER_VALUE_PER_HOUR: far,
    RISK_CLIENT_VALUE_PER_HOUR: far,
    RISK_ANOMALY: "on",
  };
  console.log(`\nRisk policy off and on, Postgres, one gateway, ${RISK_ROUNDS} alternating rounds:`);
  const { rates: paid, cpu } = await offAndOn("risk", RISK_ROUNDS, riskOn);
  console.log(`paid with risk on / off = ${(mean(paid.on) / mean(paid.off)).toFixed(2)}   (${Math.round(mean(paid.on))} / ${Math.round(mean(paid.off))} req/s)`);
  console.log(`gateway CPU per paid request, risk on / off = ${(mean(cpu.on) / mean(cpu.off)).toFixed(2)}   (${Math.round(mean(cpu.on))} / ${Math.round(mean(cpu.off))} µs)`);
}

if (PROFILE) {
  console.log("\nCPU profile of one gateway, unpaid then paid (Postgres), CPU time per request by where the code lives:");
  const run = await postgresGateways(1, BASE_CHANNELS);
  const [replica] = run.replicas;
  const profiled = async (jobs: "paid" | "unpaid") => {
    const base = replica!.url.replace(/\/api\/item$/, "");
    await fetch(`${base}/bench/profile/start`, { method: "POST" });
    const result = await load([replica!.url], jobs);
    const profile = (await (await fetch(`${base}/bench/profile/stop`, { method: "POST" })).json()) as CpuProfile;
    if (process.env.PROFILE_OUT) await writeFile(join(process.env.PROFILE_OUT, `${jobs}.cpuprofile`), JSON.stringify(profile));
    return { result, ...cpuByPlace(profile) };
  };
  await load([replica!.url], "unpaid"); // warm-up
  await load([replica!.url], "paid-first");
  const unpaid = await profiled("unpaid");
  const paid = await profiled("paid");
  row("unpaid (profiled)", unpaid.result);
  row("paid (profiled)", paid.result);
  const perRequest = (micros: number | undefined, r: Result) => (micros ?? 0) / r.total;
  const places = [...new Set([...paid.buckets.keys(), ...unpaid.buckets.keys()])].filter((b) => b !== "idle");
  places.sort((a, b) => perRequest(paid.buckets.get(b), paid.result) - perRequest(paid.buckets.get(a), paid.result));
  console.log(`  ${"where".padEnd(34)} ${"unpaid µs/req".padStart(14)} ${"paid µs/req".padStart(12)} ${"added".padStart(8)}`);
  let unpaidTotal = 0;
  let paidTotal = 0;
  for (const place of places) {
    const u = perRequest(unpaid.buckets.get(place), unpaid.result);
    const p = perRequest(paid.buckets.get(place), paid.result);
    unpaidTotal += u;
    paidTotal += p;
    if (p < 2 && u < 2) continue;
    console.log(`  ${place.padEnd(34)} ${u.toFixed(0).padStart(14)} ${p.toFixed(0).padStart(12)} ${(p - u).toFixed(0).padStart(8)}`);
  }
  console.log(`  ${"busy CPU in all".padEnd(34)} ${unpaidTotal.toFixed(0).padStart(14)} ${paidTotal.toFixed(0).padStart(12)} ${(paidTotal - unpaidTotal).toFixed(0).padStart(8)}`);
  console.log("  the busiest functions of a paid request (self µs/req):");
  for (const [name, micros] of [...paid.functions].filter(([n]) => !n.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, 12)) {
    console.log(`  ${perRequest(micros, paid.result).toFixed(1).padStart(7)}  ${name}`);
  }
  await run.stop();
}

type CpuProfile = { nodes: { id: number; callFrame: { functionName: string; url: string } }[]; samples: number[]; timeDeltas: number[] };
/** Self time (µs) by where the code lives — the signature check, the database driver, HTTP, our own
 * code… — and by function. */
function cpuByPlace(profile: CpuProfile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const buckets = new Map<string, number>();
  const functions = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)!;
    const micros = profile.timeDeltas[i] ?? 0;
    const bucket = categoryOf(frame.url, frame.functionName);
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + micros);
    const name = `${frame.functionName || "(anonymous)"} ${frame.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/(src|scripts)\//, "$1/")}`;
    functions.set(name, (functions.get(name) ?? 0) + micros);
  });
  return { buckets, functions };
}

function categoryOf(url: string, fn: string): string {
  if (fn === "(idle)") return "idle";
  if (fn === "(garbage collector)") return "garbage collection";
  if (fn === "(program)") return "V8 and native (program)";
  if (url.includes("secp256k1")) return "signature check (secp256k1)";
  if (url.includes("@noble") || url.includes("/viem/")) return "viem / noble (hashing, encoding)";
  if (/node_modules\/(pg|pg-protocol|pg-pool|pg-types)\//.test(url)) return "Postgres driver (pg)";
  if (url.includes("@prisma") || url.includes("generated/prisma")) return "Prisma";
  if (/node_modules\/(express|router|body-parser|send|finalhandler|qs|on-finished|statuses|http-errors)\//.test(url)) return "Express";
  if (url.includes("node_modules/zod")) return "zod (parsing)";
  if (url.startsWith("node:") || url === "") return fn.startsWith("(") ? fn : "Node core (HTTP, streams, timers)";
  const own = /\/src\/([a-z0-9]+)\//.exec(url);
  if (own && !url.includes("node_modules")) return `paychan src/${own[1]}`;
  if (url.includes("node_modules/tsx") || url.includes("esbuild")) return "tsx loader";
  const pkg = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url);
  return pkg ? `other: ${pkg[1]}` : `other: ${url || fn}`;
}

await rpc.close();
await rm(work, { recursive: true, force: true });
// EDR keeps the process alive otherwise.
process.exit(0);
