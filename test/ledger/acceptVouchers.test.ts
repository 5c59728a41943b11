import { expect } from "chai";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import { getAddress, toHex, zeroAddress, type Address, type Hex } from "viem";
import { acceptVouchers, claimRetry, type AcceptContext, type VoucherCharge } from "../../src/ledger/acceptVouchers.js";
import { accountId } from "../../src/ledger/accounts.js";
import { toBigInt } from "../../src/ledger/amount.js";
import { nativeAsset, tokenAsset } from "../../src/ledger/asset.js";
import { bookAccepted, voidPayment } from "../../src/ledger/booking.js";
import { ChannelBooks } from "../../src/ledger/channelBooks.js";
import { recordChainHead, saveChannel, type ChannelChainState } from "../../src/ledger/channels.js";
import { openDatabase, type Database } from "../../src/ledger/db.js";
import * as flows from "../../src/ledger/flows.js";
import { accountsOutOfBalance, balanceOf, balances, postEntry, trialBalance } from "../../src/ledger/postings.js";
import { createPostgresDatabase, describeEachDatabase, rejectsWith, unique } from "./helpers.js";

const CHAIN_ID = 31337;
const ESCROW = getAddress("0x5fbdb2315678afecb367f032d93f642f64180aa3");
const TOKEN = getAddress("0xe7f1725e7734ce288f8367e1bb143e90bb3f0512");
const PAYEE = getAddress("0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
const USD_TOKEN = tokenAsset(CHAIN_ID, TOKEN);
const ETH = nativeAsset(CHAIN_ID);
const context: AcceptContext = { chainId: CHAIN_ID, closingMarginSeconds: 600 };

const address = (): Address => getAddress(toHex(randomBytes(20)));
const signature = (): Hex => toHex(randomBytes(65));

/** What the chain's head says about a channel. */
const head = (deposit: bigint, state: Partial<ChannelChainState> = {}): ChannelChainState => ({
  deposit,
  claimedOnChain: 0n,
  withdrawReadyAt: null,
  closed: false,
  ...state,
});

/** A new channel of the test token with `deposit` seen at the head (which saveChannel books, pending). */
async function openChannel(db: Database, deposit: bigint, chainId = CHAIN_ID): Promise<Hex> {
  return saveChannel(db.prisma, {
    chainId,
    escrow: ESCROW,
    payer: address(),
    payee: PAYEE,
    token: TOKEN,
    signer: zeroAddress,
    withdrawDelay: 3600,
    salt: toHex(randomBytes(32)),
    head: head(deposit),
  });
}

function charge(channelId: Hex, cumulativeAmount: bigint, price: bigint, requestKey = unique("GET /quote")): VoucherCharge {
  return { channelId, cumulativeAmount, price, signature: signature(), requestKey };
}

/** The watcher confirms the channel's deposit total (moving it from pending to the escrow's holdings). */
async function confirm(db: Database, id: Hex, total: bigint): Promise<void> {
  await db.prisma.$transaction(async (tx) => {
    const books = await ChannelBooks.load(tx, [id]);
    books.confirmDeposit(books.get(id)!, total, unique(`chain:${id}`), {});
    await books.write(tx);
  });
}

async function accept(db: Database, charges: VoucherCharge[], ctx = context) {
  return acceptVouchers(db.sql, charges, ctx);
}

const owed = (db: Database, id: Hex) => balanceOf(db.prisma, accountId.channelOwed(id));
const available = (db: Database, id: Hex) => balanceOf(db.prisma, accountId.channelAvailable(id));

describeEachDatabase("accepting vouchers", (db) => {
  it("books each growth of a deposit seen at the head once, as pending", async () => {
    const id = await openChannel(db(), 100n);
    const channel = await terms(db(), id);
    await saveChannel(db().prisma, { ...channel, head: head(100n) });
    await saveChannel(db().prisma, { ...channel, head: head(250n, { withdrawReadyAt: 1_900_000_000n }) });
    await saveChannel(db().prisma, channel);
    const entries = await db().prisma.journalEntry.findMany({ where: { idempotencyKey: { startsWith: `pending:${id}:` } }, include: { postings: true } });
    expect(entries.map((e) => [e.kind, e.postings.map((p) => toBigInt(p.amount))]).sort()).to.deep.equal([
      ["DEPOSIT_PENDING", [100n, 100n]],
      ["DEPOSIT_PENDING", [150n, 150n]],
    ]);
    expect(await available(db(), id)).to.equal(250n);
    const row = await db().prisma.channel.findUniqueOrThrow({ where: { id } });
    expect([toBigInt(row.deposit), toBigInt(row.depositSeen), toBigInt(row.pendingBooked), row.withdrawReadyAtSeen]).to.deep.equal([0n, 250n, 250n, 1_900_000_000n]);
  });

  it("registers a channel once when several processes see it at the same moment", async () => {
    const config = { ...(await terms(db(), await openChannel(db(), 1n))), salt: toHex(randomBytes(32)) };
    // The gateway registers it with the deposit it read; the watcher creates it from ChannelOpened.
    const ids = await Promise.all(Array.from({ length: 6 }, (_, i) => saveChannel(db().prisma, i % 2 ? { ...config, head: head(70n) } : config)));
    expect(new Set(ids).size).to.equal(1);
    expect(await available(db(), ids[0]!)).to.equal(70n);
    expect(await db().prisma.journalEntry.count({ where: { idempotencyKey: { startsWith: `pending:${ids[0]}:` } } })).to.equal(1);
  });

  it("books a realistic channel life exactly: deposit, vouchers, a void, a claim, gas and the refund", async () => {
    const prisma = db().prisma;
    const escrow = accountId.escrow(ESCROW, USD_TOKEN);
    const escrowBefore = await balanceOf(prisma, escrow);
    const id = await openChannel(db(), 1000n);
    await confirm(db(), id, 1000n);

    // Two group commits of one voucher each, then the gateway books them.
    const results = [];
    for (const n of [1n, 2n, 3n, 4n, 5n]) results.push(...(await accept(db(), [charge(id, 10n * n, 10n)])));
    expect(results.every((r) => r.ok)).to.equal(true);
    expect(await owed(db(), id), "nothing is booked before the gateway books").to.equal(0n);
    expect(await bookAccepted(db().sql, [id])).to.deep.equal({ booked: 1, failed: [] });

    // The last request failed downstream: its charge is voided, its voucher stays held.
    const last = results[4]!;
    if (!last.ok) throw new Error("unreachable");
    await voidPayment(prisma, last.paymentId);
    expect(await owed(db(), id)).to.equal(40n);

    // The payee claims on chain with the latest accepted voucher (40).
    await postEntry(prisma, {
      idempotencyKey: unique("chain:0xc1a1:3"),
      ...flows.claim({ channelId: id, escrow: ESCROW, asset: USD_TOKEN, amount: 40n, owed: 40n, payee: PAYEE }),
    });
    const gas = 21_000n * 1_000_000_007n;
    await postEntry(prisma, { idempotencyKey: unique("chain:0xc1a1:gas"), ...flows.gasFee({ wallet: PAYEE, asset: ETH, amount: gas }) });
    // The payer withdraws the rest: deposit 1000 − claimed 40.
    await postEntry(prisma, { idempotencyKey: unique("chain:0xc10e:1"), ...flows.refund({ channelId: id, escrow: ESCROW, asset: USD_TOKEN, amount: 960n }) });

    const booked = await balances(prisma, { accounts: [accountId.channelAvailable(id), accountId.channelOwed(id)] });
    expect([...booked.values()].map((b) => b.balance)).to.deep.equal([0n, 0n]);
    expect(await balanceOf(prisma, escrow)).to.equal(escrowBefore);
    for (const [asset, totals] of await trialBalance(prisma)) expect(totals.debits, asset).to.equal(totals.credits);
    expect(await accountsOutOfBalance(prisma)).to.deep.equal([]);

    const channel = await prisma.channel.findUniqueOrThrow({ where: { id } });
    expect([toBigInt(channel.acceptedCumulative), toBigInt(channel.bookedCumulative), toBigInt(channel.latestVoucherAmount)]).to.deep.equal([40n, 40n, 50n]);
    const payments = await prisma.payment.findMany({ where: { channelId: id }, orderBy: { cumulativeAmount: "asc" } });
    expect(payments.map((p) => p.status)).to.deep.equal(["ACCEPTED", "ACCEPTED", "ACCEPTED", "ACCEPTED", "VOIDED"]);
    const voided = await prisma.journalEntry.findMany({ where: { kind: "VOUCHER_VOIDED", metadata: { path: ["paymentId"], equals: last.paymentId } }, include: { postings: true } });
    expect(voided.map((e) => e.postings.map((p) => [p.accountId, p.side, toBigInt(p.amount)]))).to.deep.equal([
      [
        [accountId.channelOwed(id), "DEBIT", 10n],
        [accountId.channelAvailable(id), "CREDIT", 10n],
      ],
    ]);
  });

  it("keeps escrow holdings plus pending deposits plus shortfalls equal to the channels' available plus owed balances", async () => {
    const prisma = db().prisma;
    await bookAccepted(db().sql);
    // The database is shared with other suites: count only this escrow's channels.
    const ours = await prisma.channel.findMany({ where: { escrow: ESCROW, asset: USD_TOKEN }, select: { id: true } });
    const channels = await balances(prisma, {
      accounts: ours.flatMap(({ id }) => [accountId.channelAvailable(id as Hex), accountId.channelOwed(id as Hex)]),
    });
    const shortfalls = await balances(prisma, { accounts: ours.map(({ id }) => accountId.channelShortfall(id as Hex)) });
    expect(channels.size).to.be.greaterThan(0);
    const sum = (m: typeof channels) => [...m.values()].reduce((total, b) => total + b.balance, 0n);
    const escrow = (await balanceOf(prisma, accountId.escrow(ESCROW, USD_TOKEN))) + (await balanceOf(prisma, accountId.escrowPending(ESCROW, USD_TOKEN)));
    expect(escrow + sum(shortfalls)).to.equal(sum(channels));
  });

  it("accepts several vouchers per channel in order, and books one entry per channel", async () => {
    const [a, b] = [await openChannel(db(), 100n), await openChannel(db(), 100n)];
    const results = await accept(db(), [charge(a, 5n, 5n), charge(b, 7n, 7n), charge(a, 12n, 7n)]);
    expect(results.map((r) => r.ok)).to.deep.equal([true, true, true]);
    expect((await bookAccepted(db().sql, [a, b])).booked).to.equal(2);
    expect(await owed(db(), a)).to.equal(12n);
    expect(await available(db(), b)).to.equal(93n);
    const entries = await db().prisma.journalEntry.findMany({ where: { idempotencyKey: { startsWith: `vouchers:${a}:` } } });
    expect(entries.map((e) => [e.idempotencyKey, e.kind, e.metadata])).to.deep.equal([[`vouchers:${a}:1`, "VOUCHER_ACCEPTED", { bookedFrom: "0", bookedTo: "12" }]]);
    expect((await bookAccepted(db().sql, [a, b])).booked, "nothing left to book").to.equal(0);
  });

  it("refuses each bad voucher with its own reason without failing the rest of the statement", async () => {
    const id = await openChannel(db(), 100n);
    const closed = await openChannel(db(), 100n);
    await saveChannel(db().prisma, { ...(await terms(db(), closed)), head: head(100n, { closed: true }) });
    await accept(db(), [charge(id, 20n, 20n)]);

    const results = await accept(db(), [
      charge("0x0000000000000000000000000000000000000000000000000000000000000001", 1n, 1n),
      charge(closed, 1n, 1n),
      charge(id, 30n, 0n),
      charge(id, 20n, 10n),
      charge(id, 25n, 10n),
      charge(await openChannel(db(), 100n), 101n, 101n),
      charge(id, 30n, 10n),
    ]);
    expect(results.map((r) => (r.ok ? "ok" : r.refusal))).to.deep.equal([
      "CHANNEL_NOT_FOUND",
      "CHANNEL_CLOSED",
      "INVALID_PRICE",
      "VOUCHER_REPLAYED",
      "CUMULATIVE_MISMATCH",
      "EXCEEDS_DEPOSIT",
      "ok",
    ]);
    const refused = results[4]!;
    if (refused.ok) throw new Error("unreachable");
    expect(refused.channel).to.include({ acceptedCumulative: 20n, deposit: 100n, closed: false });
  });

  it("measures the withdrawal margin in chain time, as the watcher last recorded the chain's clock", async () => {
    // A chain of its own, so this test owns its clock.
    const chainId = 900_000 + Math.floor(Math.random() * 100_000);
    const ctx = { chainId, closingMarginSeconds: 600 };
    const id = await openChannel(db(), 100n, chainId);
    const wallClock = BigInt(Math.floor(Date.now() / 1000));
    await saveChannel(db().prisma, { ...(await terms(db(), id)), head: head(100n, { withdrawReadyAt: wallClock + 3_600n }) });
    // The chain runs ahead of the servers' clocks (a dev chain moved with evm_increaseTime): an hour
    // of wall clock is only 100 s of chain time before the deadline.
    expect((await accept(db(), [charge(id, 1n, 1n)], ctx))[0]).to.include({ ok: true });
    await recordChainHead(db().sql, chainId, 100n, wallClock + 3_500n);
    const [refused] = await accept(db(), [charge(id, 2n, 1n)], ctx);
    expect(refused).to.include({ ok: false, refusal: "CHANNEL_CLOSING" });
    // Chain time keeps moving with the database's clock after it was read.
    await recordChainHead(db().sql, chainId, 101n, wallClock + 2_000n);
    expect((await accept(db(), [charge(id, 2n, 1n)], ctx))[0]).to.include({ ok: true });
  });

  it("finds the payment of an identical retry (same voucher, same request) a bounded number of times, and nothing else", async () => {
    const id = await openChannel(db(), 100n);
    const first = charge(id, 10n, 10n, "GET https://seller.example/a");
    const [accepted] = await accept(db(), [first]);
    if (!accepted?.ok) throw new Error("not accepted");
    const [replayed] = await accept(db(), [first]);
    expect(replayed).to.include({ ok: false, refusal: "VOUCHER_REPLAYED" });
    const original = { paymentId: accepted.paymentId, price: 10n, cumulativeAmount: 10n, deposit: 100n };
    expect(await claimRetry(db().sql, { ...first, requestKey: "GET https://seller.example/b" }, 60, 3), "another request").to.equal(undefined);
    expect(await claimRetry(db().sql, { ...first, signature: signature() }, 60, 3), "another signature").to.equal(undefined);
    expect(await claimRetry(db().sql, first, 0, 3), "past the payment's validity").to.equal(undefined);
    for (let retry = 1; retry <= 3; retry++) expect(await claimRetry(db().sql, first, 60, 3), `retry ${retry}`).to.deep.equal(original);
    expect(await claimRetry(db().sql, first, 60, 3), "a fourth retry").to.equal(undefined);
    const again = charge(id, 20n, 10n, "GET https://seller.example/c");
    const [second] = await accept(db(), [again]);
    if (!second?.ok) throw new Error("not accepted");
    await voidPayment(db().prisma, second.paymentId);
    expect(await claimRetry(db().sql, again, 60, 3), "a voided payment").to.equal(undefined);
  });

  it("voids a payment once, replays the same void, and refuses another", async () => {
    const id = await openChannel(db(), 100n);
    const [accepted] = await accept(db(), [charge(id, 10n, 10n)]);
    if (!accepted?.ok) throw new Error("not accepted");
    const voided = await voidPayment(db().prisma, accepted.paymentId, { idempotencyKey: unique("void") });
    const key = (await db().prisma.journalEntry.findUniqueOrThrow({ where: { id: voided.voidEntryId } })).idempotencyKey;
    expect(await voidPayment(db().prisma, accepted.paymentId, { idempotencyKey: key })).to.deep.equal({ ...voided, replayed: true });
    await rejectsWith(voidPayment(db().prisma, accepted.paymentId, { idempotencyKey: unique("void") }), "PAYMENT_ALREADY_VOIDED");
    await rejectsWith(voidPayment(db().prisma, "00000000-0000-4000-8000-000000000000"), "PAYMENT_NOT_FOUND");
    expect(await available(db(), id)).to.equal(100n);
    expect(await owed(db(), id)).to.equal(0n);
  });

  it("accepts a voided charge's total again with a new signature", async () => {
    const id = await openChannel(db(), 100n);
    const [, second] = await accept(db(), [charge(id, 10n, 10n), charge(id, 20n, 10n)]);
    if (!second?.ok) throw new Error("not accepted");
    await voidPayment(db().prisma, second.paymentId);
    const [again] = await accept(db(), [charge(id, 20n, 10n)]);
    expect(again).to.include({ ok: true });
    await bookAccepted(db().sql, [id]);
    const row = await db().prisma.channel.findUniqueOrThrow({ where: { id } });
    expect([toBigInt(row.acceptedCumulative), toBigInt(row.latestVoucherAmount)]).to.deep.equal([20n, 20n]);
    expect(await owed(db(), id)).to.equal(20n);
  });

  it("refuses the total of a standing payment when a void in the middle makes it look due", async () => {
    const id = await openChannel(db(), 100n);
    const [first] = await accept(db(), [charge(id, 10n, 10n), charge(id, 20n, 10n)]);
    if (!first?.ok) throw new Error("not accepted");
    await voidPayment(db().prisma, first.paymentId);
    const [result] = await accept(db(), [charge(id, 20n, 10n)]);
    expect(result).to.include({ ok: false, refusal: "TOTAL_HELD" });
  });

  it("refuses a void once the charge was claimed, since the owed balance would go negative", async () => {
    const id = await openChannel(db(), 100n);
    await confirm(db(), id, 100n);
    const [accepted] = await accept(db(), [charge(id, 10n, 10n)]);
    if (!accepted?.ok) throw new Error("not accepted");
    await bookAccepted(db().sql, [id]);
    await postEntry(db().prisma, { idempotencyKey: unique("chain"), ...flows.claim({ channelId: id, escrow: ESCROW, asset: USD_TOKEN, amount: 10n, owed: 10n, payee: PAYEE }) });
    await rejectsWith(voidPayment(db().prisma, accepted.paymentId), "INSUFFICIENT_BALANCE");
  });

  it("lets the database refuse a second accepted payment for one voucher total, and payment edits", async () => {
    const id = await openChannel(db(), 100n);
    const [accepted] = await accept(db(), [charge(id, 10n, 10n)]);
    if (!accepted?.ok) throw new Error("not accepted");
    const duplicate = db().prisma.$executeRaw`INSERT INTO payment (channel_id, request_key, cumulative_amount, price, signature)
      VALUES (${id}, ${unique("req")}, 10, 10, '0x')`;
    expect((await duplicate.then(() => undefined, (e: Error) => e))?.message).to.match(/payment_channel_id_cumulative_amount_accepted_key|Unique constraint/);
    const edit = db().prisma.$executeRaw`UPDATE payment SET price = 1 WHERE id = ${accepted.paymentId}::uuid`;
    expect((await edit.then(() => undefined, (e: Error) => e))?.message).to.match(/only ACCEPTED -> VOIDED/);
  });

  it("keeps every channel: deleting or truncating channels is refused, so no payment loses its channel", async () => {
    const id = await openChannel(db(), 100n);
    const [accepted] = await accept(db(), [charge(id, 10n, 10n)]);
    expect(accepted?.ok).to.equal(true);
    for (const attempt of [
      db().prisma.$executeRaw`DELETE FROM channel WHERE id = ${id}`,
      db().prisma.$executeRaw`TRUNCATE channel CASCADE`,
    ]) {
      expect((await attempt.then(() => undefined, (e: Error) => e))?.message).to.match(/channels are permanent records/);
    }
    expect(await db().prisma.payment.count({ where: { channelId: id } })).to.equal(1);
  });

  it("books what a gateway accepted and never booked at the next sweep", async () => {
    const id = await openChannel(db(), 100n);
    await accept(db(), [charge(id, 10n, 10n)]);
    await accept(db(), [charge(id, 30n, 20n)]);
    // The gateway died before its booking timer fired: a sweep of every channel finds the gap.
    expect((await bookAccepted(db().sql)).booked).to.be.greaterThanOrEqual(1);
    expect([await owed(db(), id), await available(db(), id)]).to.deep.equal([30n, 70n]);
  });

  it("books every other channel when one channel's gap cannot be booked, and names that one", async () => {
    const [poisoned, healthy] = [await openChannel(db(), 100n), await openChannel(db(), 100n)];
    await confirm(db(), poisoned, 100n);
    await accept(db(), [charge(poisoned, 10n, 10n), charge(healthy, 10n, 10n)]);
    await bookAccepted(db().sql, [poisoned]);
    await postEntry(db().prisma, { idempotencyKey: unique("chain"), ...flows.claim({ channelId: poisoned, escrow: ESCROW, asset: USD_TOKEN, amount: 10n, owed: 10n, payee: PAYEE }) });
    // Edited behind the store's back below what was claimed: booking it would take owed below zero.
    await db().prisma.$executeRaw`UPDATE channel SET accepted_cumulative = 0 WHERE id = ${poisoned}`;
    await accept(db(), [charge(healthy, 20n, 10n)]);
    const result = await bookAccepted(db().sql, [poisoned, healthy]);
    expect(result.booked).to.equal(1);
    expect(result.failed.map((f) => f.channelId)).to.deep.equal([poisoned]);
    expect(await owed(db(), healthy)).to.equal(20n);
  });

  it("books exactly what one entry per voucher would, whatever the order of accepts, voids and bookings", async () => {
    // Each random history runs on two fresh channels: one booked in aggregate as the gateway does,
    // the other (the reference) booked with one VOUCHER_ACCEPTED entry per voucher and one
    // VOUCHER_VOIDED per void. Their balances must be equal after every step.
    const op = fc.oneof(
      fc.record({ kind: fc.constant("pay" as const), price: fc.bigInt({ min: 1n, max: 50n }) }),
      fc.record({ kind: fc.constant("void" as const), back: fc.nat(3) }),
      fc.record({ kind: fc.constant("book" as const) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        const [id, reference] = [await openChannel(db(), 400n), await openChannel(db(), 400n)];
        const standing: { paymentId: string; price: bigint }[] = [];
        let total = 0n;
        for (const step of ops) {
          if (step.kind === "pay") {
            const [result] = await accept(db(), [charge(id, total + step.price, step.price)]);
            if (!result?.ok) continue;
            total += step.price;
            standing.push({ paymentId: result.paymentId, price: step.price });
            await postEntry(db().prisma, { idempotencyKey: unique("ref"), ...flows.voucherAccepted({ channelId: reference, asset: USD_TOKEN, amount: step.price }) });
          } else if (step.kind === "void") {
            // Only the latest charge can be voided without leaving the channel stuck (see TOTAL_HELD).
            const latest = standing.pop();
            if (!latest) continue;
            await voidPayment(db().prisma, latest.paymentId);
            total -= latest.price;
            await postEntry(db().prisma, { idempotencyKey: unique("ref"), ...flows.voucherVoided({ channelId: reference, asset: USD_TOKEN, amount: latest.price }) });
          } else {
            await bookAccepted(db().sql, [id]);
          }
        }
        await bookAccepted(db().sql, [id]);
        expect([await owed(db(), id), await available(db(), id)]).to.deep.equal([await owed(db(), reference), await available(db(), reference)]);
        expect(await owed(db(), id)).to.equal(total);
      }),
      { numRuns: 25 },
    );
  });
});

describe("accepting vouchers from two processes on one Postgres", () => {
  let created: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let a: Database;
  let b: Database;
  before(async () => {
    created = await createPostgresDatabase();
    [a, b] = [await openDatabase({ url: created.url }), await openDatabase({ url: created.url })];
  });
  after(async () => {
    await a.close();
    await b.close();
    await created.drop();
  });

  it("accepts each total once when two connection pools race on the same channels", async () => {
    const ids = [await openChannel(a, 1_000n), await openChannel(a, 1_000n), await openChannel(a, 1_000n)];
    const wins = new Map<string, number>();
    for (let n = 1n; n <= 20n; n++) {
      // Both processes carry the same three vouchers, in opposite channel order.
      const batch = ids.map((id) => charge(id, n * 10n, 10n));
      const [fromA, fromB] = await Promise.all([accept(a, batch), accept(b, [...batch].reverse())]);
      for (const [k, id] of ids.entries()) {
        const won = [fromA[k]!.ok, fromB[ids.length - 1 - k]!.ok].filter(Boolean).length;
        wins.set(id, (wins.get(id) ?? 0) + won);
        expect(won, `total ${n * 10n} on ${id}`).to.equal(1);
      }
    }
    await Promise.all([bookAccepted(a.sql), bookAccepted(b.sql)]);
    for (const id of ids) {
      expect(await a.prisma.payment.count({ where: { channelId: id } })).to.equal(20);
      expect(await owed(a, id)).to.equal(200n);
    }
  });
});

async function terms(db: Database, id: Hex) {
  const c = await db.prisma.channel.findUniqueOrThrow({ where: { id } });
  return {
    chainId: Number(c.chainId),
    escrow: c.escrow as Address,
    payer: c.payer as Address,
    payee: c.payee as Address,
    token: c.token as Address,
    signer: c.signer as Address,
    withdrawDelay: c.withdrawDelay,
    salt: c.salt as Hex,
  };
}
