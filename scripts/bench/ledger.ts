// Accepted vouchers per second through acceptPaymentsBatch, one batch at a time (a single group-commit
// path), for batch sizes 1, 10 and 100: on a fresh database of the machine's Postgres, then on an
// in-memory PGlite. Each voucher is a Payment, a VOUCHER_ACCEPTED entry with two postings and a
// channel update, committed with the batch.
//   npx tsx scripts/bench/ledger.ts [seconds per size, default 3]
// PAYCHAN_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test) must be allowed to
// create databases; the bench database is dropped at the end.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { getAddress, toHex, zeroAddress, type Hex } from "viem";
import { openDatabase, type Database } from "../../src/ledger/db.js";
import { acceptPaymentsBatch, saveChannel, type AcceptPaymentInput } from "../../src/ledger/voucherStore.js";

const seconds = Number(process.argv[2] ?? 3);
const adminUrl = process.env.PAYCHAN_BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const CHANNELS = 500;
const PRICE = 1_000n;
const escrow = getAddress("0x5fbdb2315678afecb367f032d93f642f64180aa3");
const token = getAddress("0xe7f1725e7734ce288f8367e1bb143e90bb3f0512");

async function bench(db: Database) {
  console.log(`\n${db.kind}: opening ${CHANNELS} channels (each deposit booked by saveChannel)`);
  const channels: { id: Hex; cumulative: bigint }[] = [];
  for (let i = 0; i < CHANNELS; i++) {
    const deposit = 10n ** 30n;
    const id = await saveChannel(db.prisma, {
      chainId: 31337,
      escrow,
      payer: getAddress(toHex(randomBytes(20))),
      payee: getAddress(toHex(randomBytes(20))),
      token,
      signer: zeroAddress,
      withdrawDelay: 3600,
      salt: toHex(randomBytes(32)),
      deposit,
    });
    channels.push({ id, cumulative: 0n });
  }
  const signature = toHex(randomBytes(65));
  let next = 0;
  const item = (): AcceptPaymentInput => {
    // Round-robin over the channels, as concurrent requests from many payers would arrive.
    const channel = channels[next++ % channels.length]!;
    channel.cumulative += PRICE;
    return { channelId: channel.id, requestId: `r${next}`, cumulativeAmount: channel.cumulative, price: PRICE, signature };
  };

  for (const size of [1, 10, 100]) {
    const latencies: number[] = [];
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      const batch = Array.from({ length: size }, item);
      const start = performance.now();
      const results = await acceptPaymentsBatch(db.prisma, batch);
      latencies.push(performance.now() - start);
      if (!results.every((r) => r.ok)) throw new Error(`rejected: ${JSON.stringify(results.find((r) => !r.ok))}`);
    }
    const total = latencies.reduce((a, b) => a + b, 0);
    latencies.sort((a, b) => a - b);
    const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!.toFixed(2);
    const rate = Math.round((latencies.length * size) / (total / 1000));
    console.log(
      `batch ${String(size).padStart(3)}: ${String(rate).padStart(6)} vouchers/s  ` +
        `(${latencies.length} batches, p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms per batch)`,
    );
  }
}

const name = `paychan_bench_${randomBytes(4).toString("hex")}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
try {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const postgres = await openDatabase({ url: url.toString() });
  try {
    await bench(postgres);
  } finally {
    await postgres.close();
  }
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
const pglite = await openDatabase();
try {
  await bench(pglite);
} finally {
  await pglite.close();
}
