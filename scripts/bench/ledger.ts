// Accepted vouchers per second through the accept statement (src/ledger/acceptVouchers.ts), one
// statement at a time as one gateway's group commit sends them, for statements of 1, 10 and 100
// vouchers over 500 channels — with the journal booked the way the gateway books it (the channels
// accepted on, every second), its time included. On a fresh database of the machine's Postgres, then
// on an in-memory PGlite.
//   npx tsx scripts/bench/ledger.ts [seconds per size, default 3]
// PAYCHAN_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test) must be allowed to
// create databases; the bench database is dropped at the end.
import { randomBytes } from "node:crypto";
import { getAddress, toHex, zeroAddress, type Hex } from "viem";
import { acceptVouchers, type VoucherCharge } from "../../src/ledger/acceptVouchers.js";
import { bookAccepted } from "../../src/ledger/booking.js";
import { saveChannel } from "../../src/ledger/channels.js";
import { openDatabase, type Database } from "../../src/ledger/db.js";
import { trialBalance } from "../../src/ledger/postings.js";
import { freshPostgres } from "./freshPostgres.js";

const seconds = Number(process.argv[2] ?? 3);
const CHANNELS = 500;
const PRICE = 1_000n;
const BOOK_EVERY_MS = 1_000;
const escrow = getAddress("0x5fbdb2315678afecb367f032d93f642f64180aa3");
const token = getAddress("0xe7f1725e7734ce288f8367e1bb143e90bb3f0512");
const context = { chainId: 31337, closingMarginSeconds: 3600 };

async function bench(db: Database) {
  console.log(`\n${db.kind}: opening ${CHANNELS} channels (each deposit booked, pending, by saveChannel)`);
  const channels: { id: Hex; cumulative: bigint }[] = [];
  for (let i = 0; i < CHANNELS; i++) {
    const id = await saveChannel(db.prisma, {
      chainId: 31337,
      escrow,
      payer: getAddress(toHex(randomBytes(20))),
      payee: getAddress(toHex(randomBytes(20))),
      token,
      signer: zeroAddress,
      withdrawDelay: 3600,
      salt: toHex(randomBytes(32)),
      head: { deposit: 10n ** 28n, claimedOnChain: 0n, withdrawReadyAt: null, closed: false },
    });
    channels.push({ id, cumulative: 0n });
  }
  const signature = toHex(randomBytes(65));
  let next = 0;
  const charge = (): VoucherCharge => {
    // Round-robin over the channels, as concurrent requests from many payers would arrive.
    const channel = channels[next++ % channels.length]!;
    channel.cumulative += PRICE;
    return { channelId: channel.id, requestKey: `GET /item ${next}`, cumulativeAmount: channel.cumulative, price: PRICE, signature };
  };

  for (const size of [1, 10, 100]) {
    const latencies: number[] = [];
    const dirty = new Set<string>();
    let booking = 0;
    let lastBooked = performance.now();
    const started = performance.now();
    const end = started + seconds * 1000;
    while (performance.now() < end) {
      const batch = Array.from({ length: size }, charge);
      const start = performance.now();
      const results = await acceptVouchers(db.sql, batch, context);
      latencies.push(performance.now() - start);
      if (!results.every((r) => r.ok)) throw new Error(`refused: ${JSON.stringify(results.find((r) => !r.ok))}`);
      for (const c of batch) dirty.add(c.channelId);
      if (performance.now() - lastBooked >= BOOK_EVERY_MS) {
        const t = performance.now();
        await bookAccepted(db.sql, [...dirty]);
        booking += performance.now() - t;
        dirty.clear();
        lastBooked = performance.now();
      }
    }
    const t = performance.now();
    await bookAccepted(db.sql, [...dirty]);
    booking += performance.now() - t;
    const elapsed = performance.now() - started;
    latencies.sort((a, b) => a - b);
    const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!.toFixed(2);
    const rate = Math.round((latencies.length * size) / (elapsed / 1000));
    console.log(
      `batch ${String(size).padStart(3)}: ${String(rate).padStart(6)} vouchers/s  ` +
        `(${latencies.length} statements, p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms each; booking ${((100 * booking) / elapsed).toFixed(1)}% of the time)`,
    );
  }
  for (const [asset, t] of await trialBalance(db.prisma)) if (t.debits !== t.credits) throw new Error(`${asset} does not balance`);
}

const postgres = await freshPostgres();
try {
  const db = await openDatabase({ url: postgres.url });
  try {
    await bench(db);
  } finally {
    await db.close();
  }
} finally {
  await postgres.drop();
}
const pglite = await openDatabase();
try {
  await bench(pglite);
} finally {
  await pglite.close();
}
