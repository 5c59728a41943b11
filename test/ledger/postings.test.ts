import { expect } from "chai";
import { getAddress, type Address } from "viem";
import { accountId } from "../../src/ledger/accounts.js";
import { MAX_AMOUNT, toBigInt, toDecimal } from "../../src/ledger/amount.js";
import { nativeAsset, tokenAsset, type Asset } from "../../src/ledger/asset.js";
import {
  accountsOutOfBalance,
  balanceOf,
  balances,
  findEntry,
  postEntry,
  reverseEntry,
  trialBalance,
  type PostingInput,
} from "../../src/ledger/postings.js";
import { describeEachDatabase, rejectsWith, unique } from "./helpers.js";

const ETH: Asset = nativeAsset(31337);
const USDC: Asset = tokenAsset(8453, getAddress("0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"));

/** A funded payable→cash pair in `asset`; accounts unique to the caller. */
function transfer(asset: Asset, amount: bigint, from = unique("cash"), to = unique("payable")): PostingInput[] {
  return [
    { account: accountId.cash(from, asset), asset, debit: amount },
    { account: accountId.payable(to, asset), asset, credit: amount },
  ];
}

describe("amount conversion", () => {
  it("round-trips bigints through Decimal exactly, up to 78 digits", () => {
    for (const value of [0n, 1n, 2n ** 64n + 1n, 2n ** 255n - 1n, 2n ** 256n - 1n, MAX_AMOUNT, -(2n ** 200n)]) {
      expect(toBigInt(toDecimal(value))).to.equal(value);
    }
  });

  it("refuses fractions and values beyond NUMERIC(78,0)", () => {
    expect(() => toBigInt("1.5")).to.throw(RangeError);
    expect(() => toDecimal(MAX_AMOUNT + 1n)).to.throw(RangeError);
  });
});

describeEachDatabase("postEntry", (db) => {
  it("posts a balanced entry, creating its accounts with the kind their ids name", async () => {
    const postings = transfer(ETH, 500n);
    const { entry, replayed } = await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "FIAT_TOPUP", postings });
    expect(replayed).to.equal(false);
    expect(entry.postings.map((p) => [p.side, p.amount])).to.deep.equal([
      ["DEBIT", 500n],
      ["CREDIT", 500n],
    ]);
    const accounts = await balances(db().prisma, { accounts: postings.map((p) => p.account) });
    expect(accounts.get(postings[0]!.account)).to.include({ kind: "FIAT_CASH", normalSide: "DEBIT", balance: 500n });
    expect(accounts.get(postings[1]!.account)).to.include({ kind: "FIAT_PAYABLE", normalSide: "CREDIT", balance: 500n });
  });

  it("rejects an unbalanced entry before writing anything", async () => {
    const key = unique("k");
    const postings = transfer(ETH, 10n);
    postings[1] = { ...postings[1]!, credit: 9n } as PostingInput;
    await rejectsWith(postEntry(db().prisma, { idempotencyKey: key, kind: "ADJUSTMENT", postings }), "ENTRY_UNBALANCED");
    expect(await findEntry(db().prisma, { idempotencyKey: key })).to.equal(undefined);
  });

  it("rejects an entry that balances in total but not per asset", async () => {
    const postings: PostingInput[] = [
      { account: accountId.cash("p", ETH), asset: ETH, debit: 10n },
      { account: accountId.payable("q", USDC), asset: USDC, credit: 10n },
    ];
    await rejectsWith(postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "ADJUSTMENT", postings }), "ENTRY_UNBALANCED");
  });

  it("rejects zero amounts, malformed assets and single-posting entries", async () => {
    const post = (postings: PostingInput[]) => postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "ADJUSTMENT", postings });
    await rejectsWith(post(transfer(ETH, 0n)), "ENTRY_INVALID");
    await rejectsWith(post(transfer("eip155:1/erc20:0xabc" as Asset, 1n)), "ENTRY_INVALID");
    const lowercase = "eip155:8453/erc20:0x833589fcd6edb6e08f4c7c32d4f71b54bda02913" as Asset;
    await rejectsWith(post(transfer(lowercase, 1n)), "ENTRY_INVALID");
    await rejectsWith(post(transfer(ETH, 1n).slice(0, 1)), "ENTRY_INVALID");
  });

  it("replays the same key with the same content as the existing entry, writing nothing", async () => {
    const input = { idempotencyKey: unique("chain:0xabc"), kind: "FIAT_TOPUP" as const, postings: transfer(ETH, 7n), metadata: { a: 1, b: [2] } };
    const first = await postEntry(db().prisma, input);
    const again = await postEntry(db().prisma, { ...input, metadata: { b: [2], a: 1 }, postings: [...input.postings].reverse() });
    expect(again.replayed).to.equal(true);
    expect(again.entry.id).to.equal(first.entry.id);
    expect(await balanceOf(db().prisma, input.postings[0]!.account)).to.equal(7n);
  });

  it("writes once when the same entry is posted concurrently, the other post replaying it", async () => {
    const input = { idempotencyKey: unique("k"), kind: "FIAT_TOPUP" as const, postings: transfer(ETH, 9n) };
    const results = await Promise.all([postEntry(db().prisma, input), postEntry(db().prisma, input)]);
    expect(results.map((r) => r.replayed).sort()).to.deep.equal([false, true]);
    expect(results[0]!.entry.id).to.equal(results[1]!.entry.id);
    expect(await balanceOf(db().prisma, input.postings[0]!.account)).to.equal(9n);
  });

  it("rejects the same key with different content", async () => {
    const input = { idempotencyKey: unique("k"), kind: "FIAT_TOPUP" as const, postings: transfer(ETH, 7n) };
    await postEntry(db().prisma, input);
    const changed = input.postings.map((p) => ("debit" in p && p.debit ? { ...p, debit: 8n } : { ...p, credit: 8n })) as PostingInput[];
    await rejectsWith(postEntry(db().prisma, { ...input, postings: changed }), "IDEMPOTENCY_CONFLICT");
    await rejectsWith(postEntry(db().prisma, { ...input, kind: "PAYOUT" }), "IDEMPOTENCY_CONFLICT");
    await rejectsWith(postEntry(db().prisma, { ...input, metadata: { note: "other" } }), "IDEMPOTENCY_CONFLICT");
  });

  it("refuses a posting that would overdraw a non-negative account, leaving totals untouched", async () => {
    const party = unique("customer");
    await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "FIAT_TOPUP", postings: transfer(ETH, 5n, "stripe", party) });
    const payout: PostingInput[] = [
      { account: accountId.payable(party, ETH), asset: ETH, debit: 6n },
      { account: accountId.cash("stripe", ETH), asset: ETH, credit: 6n },
    ];
    const error = await rejectsWith(postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "PAYOUT", postings: payout }), "INSUFFICIENT_BALANCE");
    expect(error.message).to.contain(accountId.payable(party, ETH));
    expect(await balanceOf(db().prisma, accountId.payable(party, ETH))).to.equal(5n);
  });

  it("refuses to post an account in an asset other than its own", async () => {
    const cash = unique("cash");
    await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "ADJUSTMENT", postings: transfer(ETH, 1n, cash) });
    const other: PostingInput[] = [
      { account: accountId.cash(cash, ETH), asset: USDC, debit: 1n },
      { account: accountId.payable(unique("p"), USDC), asset: USDC, credit: 1n },
    ];
    await rejectsWith(postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "ADJUSTMENT", postings: other }), "ACCOUNT_MISMATCH");
  });

  it("needs an explicit kind for an account id outside the chart's scheme", async () => {
    const postings: PostingInput[] = [
      { account: unique("treasury"), asset: ETH, debit: 3n, accountKind: "PAYEE_WALLET" },
      { account: unique("misc"), asset: ETH, credit: 3n },
    ];
    await rejectsWith(postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "ADJUSTMENT", postings }), "ENTRY_INVALID");
    postings[1] = { ...postings[1]!, accountKind: "PAYEE_REVENUE" } as PostingInput;
    await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "ADJUSTMENT", postings });
    expect(await balanceOf(db().prisma, postings[1]!.account)).to.equal(3n);
  });

  it("keeps amounts above 2^64 and near 2^256 exact in postings, balances and the trial balance", async () => {
    const asset = tokenAsset(1, getAddress(`0x${"11".repeat(20)}`) as Address);
    const amounts = [2n ** 64n + 1n, 2n ** 255n - 19n, 2n ** 256n - 1n];
    const [cash, party] = [unique("cash"), unique("payable")];
    for (const amount of amounts) {
      const { entry } = await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "FIAT_TOPUP", postings: transfer(asset, amount, cash, party) });
      expect((await findEntry(db().prisma, { id: entry.id }))!.postings.map((p) => p.amount)).to.deep.equal([amount, amount]);
    }
    const total = amounts.reduce((a, b) => a + b);
    expect(await balanceOf(db().prisma, accountId.cash(cash, asset))).to.equal(total);
    expect((await trialBalance(db().prisma)).get(asset)).to.deep.equal({ debits: total, credits: total });
  });
});

describeEachDatabase("reverseEntry", (db) => {
  it("posts the mirror entry, netting the accounts to zero", async () => {
    const postings = transfer(USDC, 1234n);
    const { entry } = await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "FIAT_TOPUP", postings });
    const reversal = await reverseEntry(db().prisma, entry.id, unique("reversal"));
    expect(reversal.entry).to.include({ kind: "REVERSAL", reversesEntryId: entry.id });
    expect(reversal.entry.postings.map((p) => p.side)).to.deep.equal(["CREDIT", "DEBIT"]);
    for (const p of postings) expect(await balanceOf(db().prisma, p.account)).to.equal(0n);
  });

  it("cannot reverse an entry twice, but replays the same reversal", async () => {
    const { entry } = await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "FIAT_TOPUP", postings: transfer(USDC, 5n) });
    const key = unique("reversal");
    const first = await reverseEntry(db().prisma, entry.id, key);
    const replay = await reverseEntry(db().prisma, entry.id, key);
    expect(replay).to.deep.include({ replayed: true });
    expect(replay.entry.id).to.equal(first.entry.id);
    await rejectsWith(reverseEntry(db().prisma, entry.id, unique("reversal")), "ENTRY_ALREADY_REVERSED");
  });

  it("is also refused by the database when a second reversal bypasses the check", async () => {
    const { entry } = await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "FIAT_TOPUP", postings: transfer(USDC, 5n) });
    await reverseEntry(db().prisma, entry.id, unique("reversal"));
    const mirror = transfer(USDC, 1n);
    await rejectsWith(
      postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "REVERSAL", reverses: entry.id, postings: mirror }),
      "ENTRY_ALREADY_REVERSED",
    );
  });

  it("reports an unknown entry", async () => {
    await rejectsWith(reverseEntry(db().prisma, "00000000-0000-4000-8000-000000000000", unique("r")), "ENTRY_NOT_FOUND");
  });
});

describeEachDatabase("ledger database rules", (db) => {
  /** Writes an entry with raw SQL, bypassing the library's checks. */
  async function rawEntry(debit: bigint, credit: bigint) {
    const [cash, payable] = [accountId.cash(unique("c"), ETH), accountId.payable(unique("p"), ETH)];
    await db().prisma.$transaction(async (tx) => {
      await tx.$executeRaw`INSERT INTO ledger_account (id, asset, kind, normal_side) VALUES
        (${cash}, ${ETH}, 'FIAT_CASH', 'DEBIT'), (${payable}, ${ETH}, 'FIAT_PAYABLE', 'CREDIT')`;
      const [{ id }] = (await tx.$queryRaw<{ id: string }[]>`
        INSERT INTO journal_entry (idempotency_key, kind, posting_count) VALUES (${unique("raw")}, 'ADJUSTMENT', 2) RETURNING id`) as [{ id: string }];
      await tx.$executeRaw`INSERT INTO posting (entry_id, account_id, asset, side, amount) VALUES
        (${id}::uuid, ${cash}, ${ETH}, 'DEBIT', ${debit.toString()}::numeric),
        (${id}::uuid, ${payable}, ${ETH}, 'CREDIT', ${credit.toString()}::numeric)`;
    });
  }

  it("rejects an unbalanced entry written with raw SQL at commit (deferred constraint trigger)", async () => {
    const before = await trialBalance(db().prisma);
    const error = await rawEntry(10n, 9n).then(() => undefined, (e: Error) => e);
    expect(error?.message).to.match(/does not balance/);
    expect(await trialBalance(db().prisma)).to.deep.equal(before);
  });

  it("accepts a balanced entry written with raw SQL, and keeps account totals equal to postings", async () => {
    await rawEntry(10n, 10n);
    expect(await accountsOutOfBalance(db().prisma)).to.deep.equal([]);
  });

  it("refuses postings appended to an existing entry, even balanced ones", async () => {
    const postings = transfer(ETH, 3n);
    const { entry } = await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "FIAT_TOPUP", postings });
    const [cash, payable] = postings.map((p) => p.account) as [string, string];
    const appended = db().prisma.$transaction(async (tx) => {
      await tx.$executeRaw`INSERT INTO posting (entry_id, account_id, asset, side, amount) VALUES
        (${entry.id}::uuid, ${cash}, ${ETH}, 'DEBIT', 5), (${entry.id}::uuid, ${payable}, ${ETH}, 'CREDIT', 5)`;
    });
    expect((await appended.then(() => undefined, (e: Error) => e))?.message).to.match(/has 4 postings, not the 2 it declares/);
    expect(await balanceOf(db().prisma, cash)).to.equal(3n);
  });

  it("refuses UPDATE and DELETE of postings and entries", async () => {
    const { entry } = await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "FIAT_TOPUP", postings: transfer(ETH, 3n) });
    const attempts = [
      db().prisma.$executeRaw`UPDATE posting SET amount = 4 WHERE entry_id = ${entry.id}::uuid`,
      db().prisma.$executeRaw`DELETE FROM posting WHERE entry_id = ${entry.id}::uuid`,
      db().prisma.$executeRaw`UPDATE journal_entry SET kind = 'PAYOUT' WHERE id = ${entry.id}::uuid`,
      db().prisma.$executeRaw`DELETE FROM journal_entry WHERE id = ${entry.id}::uuid`,
      db().prisma.$executeRaw`TRUNCATE posting`,
    ];
    for (const attempt of attempts) {
      const error = await attempt.then(() => undefined, (e: Error) => e);
      expect(error?.message).to.match(/append-only/);
    }
    expect((await findEntry(db().prisma, { id: entry.id }))!.postings.map((p) => p.amount)).to.deep.equal([3n, 3n]);
  });

  it("refuses to change an account's identity or delete it", async () => {
    const [cash] = transfer(ETH, 1n);
    await postEntry(db().prisma, { idempotencyKey: unique("k"), kind: "FIAT_TOPUP", postings: [cash!, transfer(ETH, 1n)[1]!] });
    for (const attempt of [
      db().prisma.$executeRaw`UPDATE ledger_account SET asset = 'fiat:EUR' WHERE id = ${cash!.account}`,
      db().prisma.$executeRaw`DELETE FROM ledger_account WHERE id = ${cash!.account}`,
    ]) {
      const error = await attempt.then(() => undefined, (e: Error) => e);
      expect(error?.message).to.match(/only its totals may change/);
    }
  });
});
