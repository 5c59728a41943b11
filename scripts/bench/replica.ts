// One gateway process for scripts/bench/paywall.ts: paychan assembled by the composition root from
// the environment (DATABASE_URL, RPC_URL, ESCROW_ADDRESS, PAYEE_ADDRESS, …), serving GET /api/item
// (BENCH_PRICE base units of the channel's asset, or BENCH_PRICE_USD dollars of credit; with
// BENCH_PRICING=1, through a pricing policy that keeps that price: see the pricing run) and GET
// /bench/stats (payments stored, this process's memory), /bench/metrics (its Prometheus metrics) and
// /bench/profile/{start,stop}. Prints "READY <url>" once listening.
import { Session } from "node:inspector/promises";
import type { AddressInfo } from "node:net";
import { loadConfig } from "../../src/config.js";
import { RoutePricing } from "../../src/policy/pricing.js";
import { createApp, startPaychan } from "../../src/server.js";

const config = loadConfig();
const paychan = await startPaychan(config);
const price = BigInt(process.env.BENCH_PRICE ?? "1000000000");
const route = "GET /api/item";
// Demand pricing whose floor is its ceiling, and a volume tier no payer reaches: every step of the
// policies runs on each request, and the price the load generator's vouchers were signed for holds.
const pricing = new RoutePricing({
  demand: { floor: price, ceiling: price, ceilingAtRequestsPerSecond: 1_000, ceilingAtConcurrency: 64 },
  tiers: [{ from: 1_000_000_000, percentOff: 10 }],
  volume: paychan.volume,
});
const app = createApp(
  paychan,
  {
    [route]:
      process.env.BENCH_PRICING === "1"
        ? pricing
        : paychan.fiat
          ? { usd: process.env.BENCH_PRICE_USD ?? "0.001", amounts: { [paychan.gateway.defaultAsset]: price } }
          : price,
  },
  { [route]: (_req, res) => void res.json({ item: 42 }) },
);
app.get("/bench/stats", async (_req, res) => {
  const payments = await paychan.db.prisma.payment.count({ where: { status: "ACCEPTED" } });
  const credit = paychan.fiat ? await paychan.db.prisma.creditPayment.count({ where: { status: "ACCEPTED" } }) : 0;
  const cpu = process.cpuUsage();
  res.json({ payments, credit, rssBytes: process.memoryUsage().rss, cpuMicros: cpu.user + cpu.system });
});
app.get("/bench/metrics", async (_req, res) => {
  res.type("text/plain").send(await paychan.metrics.render());
});
// The V8 CPU profiler around one measurement (scripts/bench/paywall.ts PROFILE=1), so that start-up
// and module loading are not in it.
const inspector = new Session();
inspector.connect();
app.post("/bench/profile/start", async (_req, res) => {
  await inspector.post("Profiler.enable");
  await inspector.post("Profiler.start");
  res.json({ ok: true });
});
app.post("/bench/profile/stop", async (_req, res) => {
  const { profile } = await inspector.post("Profiler.stop");
  res.json(profile);
});
const server = app.listen(0, "127.0.0.1", () => {
  console.log(`READY http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
const stop = async () => {
  server.close();
  await paychan.close();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
