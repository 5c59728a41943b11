import { expect } from "chai";
import { randomBytes } from "node:crypto";
import { getAddress, toHex, zeroAddress, type Address, type Hex } from "viem";
import { accountId } from "../../src/ledger/accounts.js";
import { toBigInt } from "../../src/ledger/amount.js";
import { nativeAsset, tokenAsset } from "../../src/ledger/asset.js";
import * as flows from "../../src/ledger/flows.js";
import { accountsOutOfBalance, balanceOf, balances, postEntry, trialBalance } from "../../src/ledger/postings.js";
import { acceptPaymentsBatch, saveChannel, voidPayment, type AcceptPaymentInput } from "../../src/ledger/voucherStore.js";
import type { Database } from "../../src/ledger/db.js";
import { describeEachDatabase, rejectsWith, unique } from "./helpers.js";

const CHAIN_ID = 31337;
const ESCROW = getAddress("0x5fbdb2315678afecb367f032d93f642f64180aa3");
const TOKEN = getAddress("0xe7f1725e7734ce288f8367e1bb143e90bb3f0512");
const PAYEE = getAddress("0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
const USD_TOKEN = tokenAsset(CHAIN_ID, TOKEN);
const ETH = nativeAsset(CHAIN_ID);

const address = (): Address => getAddress(toHex(randomBytes(20)));
const signature = (): Hex => toHex(randomBytes(65));

/** A new channel of the test token with `deposit` on chain (which saveChannel books in the ledger). */
async function openChannel(db: Database, deposit: bigint): Promise<Hex> {
  return saveChannel(db.prisma, {
    chainId: CHAIN_ID,
    escrow: ESCROW,
    payer: address(),
    payee: PAYEE,
    token: TOKEN,
    signer: zeroAddress,
    withdrawDelay: 3600,
    salt: toHex(randomBytes(32)),
    deposit,
  });
}

function voucher(channelId: Hex, cumulativeAmount: bigint, price: bigint, requestId = unique("req")): AcceptPaymentInput {
  return { channelId, requestId, cumulativeAmount, price, signature: signature() };
}

describeEachDatabase("voucher store", (db) => {
  it("books each growth of a channel's deposit once, as the chain reports it", async () => {
    const id = await openChannel(db(), 100n);
    const channel = await terms(db(), id);
    await saveChannel(db().prisma, { ...channel, deposit: 100n });
    await saveChannel(db().prisma, { ...channel, deposit: 250n, withdrawReadyAt: 1_900_000_000n });
    await saveChannel(db().prisma, { ...channel, closed: false });
    const entries = await db().prisma.journalEntry.findMany({ where: { idempotencyKey: { startsWith: `deposit:${id}:` } }, orderBy: { createdAt: "asc" } });
    expect(entries.map((e) => e.idempotencyKey)).to.deep.equal([`deposit:${id}:100`, `deposit:${id}:250`]);
    expect(await balanceOf(db().prisma, accountId.channelAvailable(id))).to.equal(250n);
    const row = await db().prisma.channel.findUniqueOrThrow({ where: { id } });
    expect([toBigInt(row.deposit), row.withdrawReadyAt]).to.deep.equal([250n, 1_900_000_000n]);
  });

  it("books a realistic channel life exactly: deposit, vouchers, a void, a claim, gas and the refund", async () => {
    const prisma = db().prisma;
    const escrow = accountId.escrow(ESCROW, USD_TOKEN);
    const escrowBefore = await balanceOf(prisma, escrow);
    const id = await openChannel(db(), 1000n);
    const vouchers = [1n, 2n, 3n, 4n, 5n].map((n) => voucher(id, 10n * n, 10n));

    // Two group commits: three vouchers, then two.
    const results = [...(await acceptPaymentsBatch(prisma, vouchers.slice(0, 3))), ...(await acceptPaymentsBatch(prisma, vouchers.slice(3)))];
    expect(results.every((r) => r.ok && !r.replayed)).to.equal(true);

    // The third request failed downstream: its charge is voided, its voucher stays held.
    const third = results[2]!;
    if (!third.ok) throw new Error("unreachable");
    await voidPayment(prisma, third.paymentId);

    // The payee claims on chain with the latest voucher (50), 10 more than the 40 still accepted.
    const owed = await balanceOf(prisma, accountId.channelOwed(id));
    expect(owed).to.equal(40n);
    await postEntry(prisma, {
      idempotencyKey: "chain:0xc1a1:3",
      ...flows.claim({ channelId: id, escrow: ESCROW, asset: USD_TOKEN, amount: 50n, owed, payee: PAYEE }),
    });
    const gas = 21_000n * 1_000_000_007n;
    await postEntry(prisma, { idempotencyKey: "chain:0xc1a1:gas", ...flows.gasFee({ wallet: PAYEE, asset: ETH, amount: gas }) });
    // The payer withdraws the rest: deposit 1000 − claimed 50.
    await postEntry(prisma, { idempotencyKey: "chain:0xc10e:1", ...flows.refund({ channelId: id, escrow: ESCROW, asset: USD_TOKEN, amount: 950n }) });

    const accounts = [
      accountId.channelAvailable(id),
      accountId.channelOwed(id),
      accountId.wallet(PAYEE, USD_TOKEN),
      accountId.revenue(PAYEE, USD_TOKEN),
      accountId.gas(PAYEE, ETH),
      accountId.wallet(PAYEE, ETH),
    ];
    const booked = await balances(prisma, { accounts });
    expect(accounts.map((a) => booked.get(a)?.balance)).to.deep.equal([0n, 0n, 50n, 50n, gas, -gas]);
    expect(await balanceOf(prisma, escrow)).to.equal(escrowBefore);
    for (const [asset, totals] of await trialBalance(prisma)) expect(totals.debits, asset).to.equal(totals.credits);
    expect(await accountsOutOfBalance(prisma)).to.deep.equal([]);

    const channel = (await prisma.channel.findUniqueOrThrow({ where: { id } }))!;
    expect([toBigInt(channel.acceptedCumulative), toBigInt(channel.latestVoucherAmount)]).to.deep.equal([40n, 50n]);
    expect(channel.latestVoucherSignature).to.equal(vouchers[4]!.signature);
    const payments = await prisma.payment.findMany({ where: { channelId: id }, orderBy: { cumulativeAmount: "asc" } });
    expect(payments.map((p) => p.status)).to.deep.equal(["ACCEPTED", "ACCEPTED", "VOIDED", "ACCEPTED", "ACCEPTED"]);
  });

  it("keeps escrow holdings equal to the channels' available plus owed balances", async () => {
    const prisma = db().prisma;
    const escrow = accountId.escrow(ESCROW, USD_TOKEN);
    // The database is shared with other suites: count only this escrow's channels.
    const ours = await prisma.channel.findMany({ where: { escrow: ESCROW, asset: USD_TOKEN }, select: { id: true } });
    const channels = await balances(prisma, { accounts: ours.flatMap(({ id }) => [accountId.channelAvailable(id as Hex), accountId.channelOwed(id as Hex)]) });
    expect(channels.size).to.be.greaterThan(0);
    const sum = [...channels.values()].reduce((total, b) => total + b.balance, 0n);
    expect(await balanceOf(prisma, escrow)).to.equal(sum);
  });

  it("accepts a batch in order, several vouchers per channel, in one journal entry each", async () => {
    const [a, b] = [await openChannel(db(), 100n), await openChannel(db(), 100n)];
    const batch = [voucher(a, 5n, 5n), voucher(b, 7n, 7n), voucher(a, 12n, 7n)];
    const results = await acceptPaymentsBatch(db().prisma, batch);
    expect(results.map((r) => r.ok)).to.deep.equal([true, true, true]);
    expect(await balanceOf(db().prisma, accountId.channelOwed(a))).to.equal(12n);
    expect(await balanceOf(db().prisma, accountId.channelAvailable(b))).to.equal(93n);
    const entries = await db().prisma.journalEntry.findMany({ where: { idempotencyKey: { startsWith: `payment:${a}:` } } });
    expect(entries.map((e) => e.idempotencyKey).sort()).to.deep.equal([batch[0], batch[2]].map((v) => `payment:${a}:${v!.requestId}`).sort());
  });

  it("rejects each bad voucher with its own code without failing the rest of the batch", async () => {
    const id = await openChannel(db(), 100n);
    const closed = await openChannel(db(), 100n);
    await saveChannel(db().prisma, { ...(await terms(db(), closed)), deposit: 100n, closed: true });
    // Refunded in the ledger down to 5 while the channel row still says 100.
    const unfunded = await openChannel(db(), 100n);
    await postEntry(db().prisma, { idempotencyKey: unique("chain"), ...flows.refund({ channelId: unfunded, escrow: ESCROW, asset: USD_TOKEN, amount: 95n }) });
    await acceptPaymentsBatch(db().prisma, [voucher(id, 20n, 20n)]);

    const results = await acceptPaymentsBatch(db().prisma, [
      voucher("0x0000000000000000000000000000000000000000000000000000000000000001", 1n, 1n),
      voucher(closed, 1n, 1n),
      voucher(id, 30n, 0n),
      { ...voucher(id, 30n, 10n), expectedCumulative: 10n },
      voucher(id, 25n, 10n),
      voucher(id, 101n, 10n),
      voucher(unfunded, 10n, 10n),
      { ...voucher(id, 30n, 10n), expectedCumulative: 20n },
    ]);
    expect(results.map((r) => (r.ok ? "ok" : r.code))).to.deep.equal([
      "CHANNEL_NOT_FOUND",
      "CHANNEL_CLOSED",
      "INVALID_PRICE",
      "CUMULATIVE_MISMATCH",
      "VOUCHER_BELOW_ACCEPTED",
      "VOUCHER_EXCEEDS_DEPOSIT",
      "INSUFFICIENT_FUNDS",
      "ok",
    ]);
    expect(await balanceOf(db().prisma, accountId.channelOwed(id))).to.equal(30n);
  });

  it("serializes batches racing on one channel: each voucher total is accepted once", async () => {
    const id = await openChannel(db(), 100n);
    const [first, second] = await Promise.all([
      acceptPaymentsBatch(db().prisma, [voucher(id, 10n, 10n), voucher(id, 20n, 10n)]),
      acceptPaymentsBatch(db().prisma, [voucher(id, 10n, 10n), voucher(id, 20n, 10n)]),
    ]);
    const outcomes = [...first!, ...second!].map((r) => (r.ok ? "ok" : r.code));
    expect(outcomes.filter((o) => o === "ok")).to.have.length(2);
    const row = await db().prisma.channel.findUniqueOrThrow({ where: { id } });
    const accepted = await db().prisma.payment.count({ where: { channelId: id, status: "ACCEPTED" } });
    expect(toBigInt(row.acceptedCumulative)).to.equal(10n * BigInt(accepted));
    expect(await balanceOf(db().prisma, accountId.channelOwed(id))).to.equal(toBigInt(row.acceptedCumulative));
  });

  it("returns the original payment for a retried request, and refuses the request id with another voucher", async () => {
    const id = await openChannel(db(), 100n);
    const first = voucher(id, 10n, 10n);
    const [accepted] = await acceptPaymentsBatch(db().prisma, [first]);
    const [retried, conflicting] = await acceptPaymentsBatch(db().prisma, [first, { ...first, cumulativeAmount: 20n }]);
    expect(retried).to.deep.equal({ ...accepted, replayed: true });
    expect(conflicting).to.include({ ok: false, code: "REQUEST_CONFLICT" });
    expect(await balanceOf(db().prisma, accountId.channelOwed(id))).to.equal(10n);
  });

  it("voids a payment once, replays the same void, and refuses another", async () => {
    const id = await openChannel(db(), 100n);
    const [accepted] = await acceptPaymentsBatch(db().prisma, [voucher(id, 10n, 10n)]);
    if (!accepted?.ok) throw new Error("not accepted");
    const voided = await voidPayment(db().prisma, accepted.paymentId, { idempotencyKey: "void-1" });
    expect(await voidPayment(db().prisma, accepted.paymentId, { idempotencyKey: "void-1" })).to.deep.equal({ ...voided, replayed: true });
    await rejectsWith(voidPayment(db().prisma, accepted.paymentId, { idempotencyKey: "void-2" }), "PAYMENT_ALREADY_VOIDED");
    await rejectsWith(voidPayment(db().prisma, "00000000-0000-4000-8000-000000000000"), "PAYMENT_NOT_FOUND");
    expect(await balanceOf(db().prisma, accountId.channelAvailable(id))).to.equal(100n);
  });

  it("accepts a voided charge's total again, and claims with the newest signature for it", async () => {
    const id = await openChannel(db(), 100n);
    const [, second] = await acceptPaymentsBatch(db().prisma, [voucher(id, 10n, 10n), voucher(id, 20n, 10n)]);
    if (!second?.ok) throw new Error("not accepted");
    await voidPayment(db().prisma, second.paymentId);
    const again = voucher(id, 20n, 10n);
    const [retried] = await acceptPaymentsBatch(db().prisma, [{ ...again, expectedCumulative: 10n }]);
    expect(retried).to.include({ ok: true, replayed: false });
    const row = await db().prisma.channel.findUniqueOrThrow({ where: { id } });
    expect([toBigInt(row.acceptedCumulative), toBigInt(row.latestVoucherAmount), row.latestVoucherSignature]).to.deep.equal([20n, 20n, again.signature]);
    expect(await balanceOf(db().prisma, accountId.channelOwed(id))).to.equal(20n);
  });

  it("refuses to replay a request whose payment was voided", async () => {
    const id = await openChannel(db(), 100n);
    const request = voucher(id, 10n, 10n);
    const [accepted] = await acceptPaymentsBatch(db().prisma, [request]);
    if (!accepted?.ok) throw new Error("not accepted");
    await voidPayment(db().prisma, accepted.paymentId);
    const [retried] = await acceptPaymentsBatch(db().prisma, [request]);
    expect(retried).to.include({ ok: false, code: "REQUEST_VOIDED" });
  });

  it("refuses the total of a standing payment, even when an earlier void makes it look due", async () => {
    const id = await openChannel(db(), 100n);
    const [first] = await acceptPaymentsBatch(db().prisma, [voucher(id, 10n, 10n), voucher(id, 20n, 10n)]);
    if (!first?.ok) throw new Error("not accepted");
    await voidPayment(db().prisma, first.paymentId);
    const [result] = await acceptPaymentsBatch(db().prisma, [voucher(id, 20n, 10n)]);
    expect(result).to.include({ ok: false, code: "VOUCHER_ALREADY_ACCEPTED" });
  });

  it("refuses a void once the charge was claimed, since the owed balance would go negative", async () => {
    const id = await openChannel(db(), 100n);
    const [accepted] = await acceptPaymentsBatch(db().prisma, [voucher(id, 10n, 10n)]);
    if (!accepted?.ok) throw new Error("not accepted");
    await postEntry(db().prisma, { idempotencyKey: unique("chain"), ...flows.claim({ channelId: id, escrow: ESCROW, asset: USD_TOKEN, amount: 10n, owed: 10n, payee: PAYEE }) });
    await rejectsWith(voidPayment(db().prisma, accepted.paymentId), "INSUFFICIENT_BALANCE");
  });

  it("lets the database refuse a second accepted payment for one voucher amount, and payment edits", async () => {
    const id = await openChannel(db(), 100n);
    const [accepted] = await acceptPaymentsBatch(db().prisma, [voucher(id, 10n, 10n)]);
    if (!accepted?.ok) throw new Error("not accepted");
    const duplicate = db().prisma.$transaction(async (tx) => {
      const [{ id: entryId }] = (await tx.$queryRaw<{ id: string }[]>`
        INSERT INTO journal_entry (idempotency_key, kind, posting_count) VALUES (${unique("raw")}, 'ADJUSTMENT', 2) RETURNING id`) as [{ id: string }];
      await tx.$executeRaw`INSERT INTO payment (channel_id, request_id, cumulative_amount, price, signature, journal_entry_id)
        VALUES (${id}, ${unique("req")}, 10, 10, '0x', ${entryId}::uuid)`;
    });
    expect((await duplicate.then(() => undefined, (e: Error) => e))?.message).to.match(/payment_channel_id_cumulative_amount_accepted_key|Unique constraint/);
    const edit = db().prisma.$executeRaw`UPDATE payment SET price = 1 WHERE id = ${accepted.paymentId}::uuid`;
    expect((await edit.then(() => undefined, (e: Error) => e))?.message).to.match(/only ACCEPTED -> VOIDED/);
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
