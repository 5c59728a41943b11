import type { AddressInfo } from "node:net";
import { expect } from "chai";
import express from "express";
import { encodeFunctionData, getAddress, keccak256, toHex, zeroAddress, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openDatabase, type Database } from "../../src/ledger/db.js";
import { accountId } from "../../src/ledger/accounts.js";
import { balanceOf, trialBalance } from "../../src/ledger/postings.js";
import { toBigInt } from "../../src/ledger/amount.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { channelId, type ChannelConfig } from "../../src/protocol/Channel.js";
import { signVoucher } from "../../src/protocol/Voucher.js";
import {
  HEADERS,
  X402_VERSION,
  decodePaymentRequired,
  decodeReceipt,
  encodeHeader,
  type PaymentRequirements,
} from "../../src/protocol/wire.js";
import { createPostgresDatabase, describeEachDatabase } from "../ledger/helpers.js";
import { paywall } from "../../src/gateway/paywall.js";
import { ChainWatcher } from "../../src/chain/ChainWatcher.js";
import { channelConfig, deployEscrow, type EscrowFixture } from "../helpers/escrow.js";
import { PRICE, buyerFetch, claimableVoucher, openBuyerChannel, startSeller, type Buyer, type Seller } from "../helpers/seller.js";

/** The terms a 402 from this seller offers. */
async function termsOf(seller: Seller): Promise<PaymentRequirements> {
  const response = await fetch(`${seller.url}/quote`);
  return decodePaymentRequired(response.headers.get(HEADERS.required)!).accepts[0]!;
}

/** A PAYMENT-SIGNATURE header built by hand, so tests can bend any part of it. */
async function paymentHeader(
  buyer: Buyer,
  terms: PaymentRequirements,
  cumulativeAmount: bigint,
  bend: { config?: Partial<ChannelConfig>; signer?: ReturnType<typeof privateKeyToAccount>; chainId?: number; id?: Hex } = {},
) {
  const config = { ...buyer.channel.config, ...bend.config };
  const location = { ...buyer.channel.location, ...(bend.chainId && { chainId: bend.chainId }) };
  const id = bend.id ?? channelId(config, location);
  const voucher = await signVoucher(bend.signer ?? buyer.session, { channelId: id, cumulativeAmount }, location);
  return encodeHeader({ x402Version: X402_VERSION, accepted: terms, payload: { channel: config, voucher } });
}

async function paidGet(seller: Seller, header: string, path = "/quote") {
  const response = await fetch(`${seller.url}${path}`, { headers: { [HEADERS.signature]: header } });
  const body = (await response.json()) as Record<string, unknown>;
  return { status: response.status, body, headers: response.headers };
}

async function storedChannel(db: Database, id: Hex) {
  return (await db.prisma.channel.findUnique({ where: { id } }))!;
}

describeEachDatabase("paywall over HTTP", (db) => {
  let chain: EscrowFixture;
  let seller: Seller;

  before(async () => {
    chain = await deployEscrow();
    seller = await startSeller(chain, db());
  });
  after(async () => seller.close());

  it("pays 30 requests end to end: ledger balanced with 30 charges, last voucher stored and claimable on chain", async () => {
    const buyer = await openBuyerChannel(chain);
    const paidFetch = buyerFetch(buyer);
    const handledBefore = seller.handled.count;
    for (let i = 1; i <= 30; i++) {
      const response = await paidFetch(`${seller.url}/quote`);
      expect(response.status, `request ${i}: ${await response.clone().text()}`).to.equal(200);
      const receipt = decodeReceipt(response.headers.get(HEADERS.response)!);
      expect(receipt.cumulativeAmount).to.equal(PRICE * BigInt(i));
      expect(receipt.charged).to.equal(PRICE);
    }
    expect(seller.handled.count - handledBefore).to.equal(30);

    const id = buyer.channel.id;
    const payments = await db().prisma.payment.count({ where: { channelId: id, status: "ACCEPTED" } });
    expect(payments).to.equal(30);
    await seller.store.book();
    expect(await balanceOf(db().prisma, accountId.channelOwed(id))).to.equal(30n * PRICE);
    const trial = await trialBalance(db().prisma);
    expect((trial.get(nativeAsset(chain.location.chainId))?.debits ?? 0n) > 0n).to.equal(true);
    for (const [asset, row] of trial) expect(row.debits, asset).to.equal(row.credits);

    const stored = await storedChannel(db(), id);
    expect(toBigInt(stored.latestVoucherAmount)).to.equal(30n * PRICE);
    const voucher = await claimableVoucher(db(), id);
    expect(voucher.amount).to.equal(30n * PRICE);
    const before = await chain.publicClient.getBalance({ address: chain.escrow.address });
    await chain.escrow.write.claim([buyer.channel.config, 30n * PRICE, voucher.signature], {
      account: chain.payee.account,
    });
    const after = await chain.publicClient.getBalance({ address: chain.escrow.address });
    expect(before - after).to.equal(30n * PRICE);
  });

  it("answers an unpaid request with 402 and x402 v2 terms, without running the handler", async () => {
    const handled = seller.handled.count;
    const response = await fetch(`${seller.url}/quote`);
    expect(response.status).to.equal(402);
    expect(((await response.json()) as { error: string }).error).to.equal("payment_required");
    const required = decodePaymentRequired(response.headers.get(HEADERS.required)!);
    expect(required.x402Version).to.equal(2);
    expect(required.resource.url).to.equal(`${seller.url}/quote`);
    expect(required.accepts).to.have.length(1);
    const terms = required.accepts[0]!;
    expect(terms).to.deep.include({ scheme: "paychan", network: `eip155:${chain.location.chainId}`, amount: PRICE });
    expect(terms.payTo).to.equal(getAddress(chain.payee.account.address));
    expect(terms.extra.escrow).to.equal(getAddress(chain.escrow.address));
    expect(seller.handled.count).to.equal(handled);
  });

  it("leaves unpriced routes alone", async () => {
    const response = await fetch(`${seller.url}/free`);
    expect(response.status).to.equal(200);
  });

  it("lets a CORS preflight for a paywalled path reach the app's own OPTIONS handler", async () => {
    const app = express();
    app.use(paywall(seller.gateway, { "GET /quote": PRICE }));
    app.options("/quote", (_req, res) => {
      res.setHeader("Access-Control-Allow-Origin", "*");
      res.setHeader("Access-Control-Allow-Headers", HEADERS.signature);
      res.sendStatus(204);
    });
    const server = app.listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const preflight = await fetch(`http://127.0.0.1:${port}/quote`, { method: "OPTIONS" });
      expect(preflight.status).to.equal(204);
      expect(preflight.headers.get("access-control-allow-headers")).to.equal(HEADERS.signature);
      expect((await fetch(`http://127.0.0.1:${port}/quote`)).status).to.equal(402);
    } finally {
      server.close();
    }
  });

  it("paywalls the route however its path is spelled (case, trailing slash, query)", async () => {
    for (const path of ["/QUOTE", "/quote/", "/Quote?x=1", "/quote?"]) {
      const response = await fetch(`${seller.url}${path}`);
      expect(response.status, path).to.equal(402);
    }
  });

  describe("refuses bad payments with a stable code, never a 500, never serving", () => {
    let buyer: Buyer;
    let terms: PaymentRequirements;
    before(async () => {
      buyer = await openBuyerChannel(chain);
      terms = await termsOf(seller);
    });

    const cases: [string, number, string, () => Promise<string>][] = [
      ["garbage that is not base64", 400, "malformed_payment", async () => "%%%not-base64%%%"],
      ["base64 of something that is not JSON", 400, "malformed_payment", async () => btoa("hello, world")],
      ["JSON of the wrong shape", 400, "malformed_payment", async () => encodeHeader({ x402Version: 2, accepted: terms, payload: { voucher: 1 } })],
      ["an x402 version 1 payload", 400, "unsupported_version", async () => encodeHeader({ x402Version: 1, scheme: "exact" })],
      ["another scheme", 402, "unsupported_scheme", async () => encodeHeader({ x402Version: 2, accepted: { ...terms, scheme: "exact" }, payload: {} })],
      ["a header over 8 KiB", 400, "header_too_large", async () => "A".repeat(9000)],
      ["a voucher for another chain", 402, "wrong_network", async () =>
        encodeHeader({ x402Version: 2, accepted: { ...terms, network: "eip155:1" }, payload: JSON.parse(atob(await paymentHeader(buyer, terms, PRICE))).payload })],
      ["a channel paying someone else", 402, "wrong_payee", async () => paymentHeader(buyer, terms, PRICE, { config: { payee: chain.stranger.account.address } })],
      ["a channel in another asset", 402, "wrong_asset", async () =>
        paymentHeader(buyer, terms, PRICE, { config: { token: "0x00000000000000000000000000000000000000aa" } })],
      ["a channel with a too-short withdrawal delay", 402, "withdraw_delay_too_short", async () => paymentHeader(buyer, terms, PRICE, { config: { withdrawDelay: 60 } })],
      ["a channel id that is not the hash of the terms", 400, "channel_id_mismatch", async () => paymentHeader(buyer, terms, PRICE, { id: keccak256(toHex("other")) })],
      ["a channel never opened on chain", 402, "unknown_channel", async () => paymentHeader(buyer, terms, PRICE, { config: { salt: keccak256(toHex("never")) } })],
      ["a voucher signed by a key that is not the channel's signer", 402, "invalid_signature", async () =>
        paymentHeader(buyer, terms, PRICE, { signer: privateKeyToAccount(generatePrivateKey()) })],
      ["a voucher signed for another chain id", 402, "invalid_signature", async () => paymentHeader(buyer, terms, PRICE, { chainId: 1, id: buyer.channel.id })],
      ["a voucher ahead of the accepted total", 402, "cumulative_mismatch", async () => paymentHeader(buyer, terms, PRICE * 5n)],
      ["a voucher beyond the deposit", 402, "cumulative_mismatch", async () => paymentHeader(buyer, terms, 10n ** 30n)],
      ["an accepted entry with another price", 402, "terms_mismatch", async () => paymentHeader(buyer, { ...terms, amount: 1n }, PRICE)],
      ["an accepted entry paying someone else", 402, "terms_mismatch", async () =>
        paymentHeader(buyer, { ...terms, payTo: chain.stranger.account.address }, PRICE)],
      ["an accepted entry in another asset", 402, "terms_mismatch", async () =>
        paymentHeader(buyer, { ...terms, asset: "0x00000000000000000000000000000000000000aa" }, PRICE)],
    ];

    for (const [what, status, code, header] of cases) {
      it(`refuses ${what} with ${status} ${code}`, async () => {
        const handled = seller.handled.count;
        const response = await paidGet(seller, await header());
        expect(response.status).to.equal(status);
        expect(response.body.error).to.equal(code);
        expect(response.body.message).to.be.a("string").and.not.empty;
        expect(decodePaymentRequired(response.headers.get(HEADERS.required)!).code).to.equal(code);
        expect(seller.handled.count).to.equal(handled);
      });
    }

    it("tells a client that is behind the server's accepted total so it can resync", async () => {
      const paidFetch = buyerFetch(buyer);
      expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
      const response = await paidGet(seller, await paymentHeader(buyer, terms, PRICE * 3n));
      expect(response.body.error).to.equal("cumulative_mismatch");
      const view = decodePaymentRequired(response.headers.get(HEADERS.required)!).accepts[0]!.extra.channel!;
      expect(view.channelId).to.equal(buyer.channel.id);
      expect(view.acceptedCumulative).to.equal(PRICE);
    });
  });

  it("refuses a voucher above the deposit with insufficient_deposit, then accepts it after a top-up", async () => {
    const buyer = await openBuyerChannel(chain, PRICE * 2n);
    const paidFetch = buyerFetch(buyer);
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    const refused = await paidFetch(`${seller.url}/quote`);
    expect(refused.status).to.equal(402);
    expect(((await refused.json()) as { error: string }).error).to.equal("insufficient_deposit");
    await chain.escrow.write.topUp([buyer.channel.config, PRICE * 10n], { account: chain.payer.account, value: PRICE * 10n });
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    expect((await paidFetch.state()).accepted).to.equal(PRICE * 3n);
  });

  it("does not charge for a 5xx: the charge is voided and the next voucher at the same total is accepted", async () => {
    const buyer = await openBuyerChannel(chain);
    const paidFetch = buyerFetch(buyer);
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    const failed = await paidFetch(`${seller.url}/boom`);
    expect(failed.status).to.equal(500);
    expect(failed.headers.get(HEADERS.response)).to.equal(null);
    // The void completed before the response ended: the channel is back where it was.
    expect(toBigInt((await storedChannel(db(), buyer.channel.id)).acceptedCumulative)).to.equal(PRICE);
    expect((await paidFetch.state()).accepted).to.equal(PRICE);
    const next = await paidFetch(`${seller.url}/quote`);
    expect(next.status).to.equal(200);
    expect(decodeReceipt(next.headers.get(HEADERS.response)!).cumulativeAmount).to.equal(PRICE * 2n);
    const voided = await db().prisma.payment.count({ where: { channelId: buyer.channel.id, status: "VOIDED" } });
    expect(voided).to.equal(1);
    await seller.store.book();
    expect(await balanceOf(db().prisma, accountId.channelOwed(buyer.channel.id))).to.equal(PRICE * 2n);
  });

  it("serves an identical retry again with the original receipt and charges it once; any other reuse is refused", async () => {
    const buyer = await openBuyerChannel(chain);
    const header = await paymentHeader(buyer, await termsOf(seller), PRICE);
    const handled = seller.handled.count;
    const first = await paidGet(seller, header);
    const retry = await paidGet(seller, header);
    expect([first.status, retry.status]).to.deep.equal([200, 200]);
    expect(retry.headers.get(HEADERS.response)).to.equal(first.headers.get(HEADERS.response));
    expect(seller.handled.count - handled).to.equal(2);
    // The same voucher for another resource is a replay, not a retry.
    const elsewhere = await paidGet(seller, header, "/quote?another=1");
    expect(elsewhere.status).to.equal(402);
    expect(elsewhere.body.error).to.equal("voucher_replayed");
    expect(seller.handled.count - handled).to.equal(2);
    expect(await db().prisma.payment.count({ where: { channelId: buyer.channel.id } })).to.equal(1);
    await seller.store.book();
    expect(await balanceOf(db().prisma, accountId.channelOwed(buyer.channel.id))).to.equal(PRICE);
  });

  it("refuses a retry once the payment's validity has passed", async () => {
    const strict = await startSeller(chain, db(), { maxTimeoutSeconds: 1 });
    try {
      const buyer = await openBuyerChannel(chain);
      const header = await paymentHeader(buyer, await termsOf(strict), PRICE);
      expect((await paidGet(strict, header)).status).to.equal(200);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const late = await paidGet(strict, header);
      expect([late.status, late.body.error]).to.deep.equal([402, "voucher_replayed"]);
    } finally {
      await strict.close();
    }
  });

  it("charges many concurrent requests carrying one voucher once: identical ones share the payment, others are refused", async () => {
    const buyer = await openBuyerChannel(chain);
    const header = await paymentHeader(buyer, await termsOf(seller), PRICE);
    const handled = seller.handled.count;
    const responses = await Promise.all(Array.from({ length: 8 }, (_, i) => paidGet(seller, header, `/quote?n=${i % 2}`)));
    const served = responses.filter((r) => r.status === 200);
    // Every request to the winning URL is the same paid request; the other URL's are replays.
    const paths = new Set(served.map((r) => decodeReceipt(r.headers.get(HEADERS.response)!).paymentId));
    expect(paths.size).to.equal(1);
    expect(served).to.have.length(4);
    expect(responses.filter((r) => r.status === 402 && r.body.error === "voucher_replayed")).to.have.length(4);
    expect(seller.handled.count - handled).to.equal(4);
    expect(await db().prisma.payment.count({ where: { channelId: buyer.channel.id } })).to.equal(1);
  });

  it("a payment committed whose reply was lost is served to the SDK's retry with the original receipt, charged once", async () => {
    const buyer = await openBuyerChannel(chain);
    const paidFetch = buyerFetch(buyer);
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    const handled = seller.handled.count;
    // The handler of /drop kills the connection the first time, after the payment was committed.
    const response = await paidFetch(`${seller.url}/drop`);
    expect(response.status).to.equal(200);
    expect(await response.json()).to.deep.equal({ delivered: true });
    expect(seller.handled.count - handled).to.equal(2);
    expect(decodeReceipt(response.headers.get(HEADERS.response)!).cumulativeAmount).to.equal(PRICE * 2n);
    expect(await db().prisma.payment.count({ where: { channelId: buyer.channel.id } })).to.equal(2);
    // The client did not pay twice: its next voucher builds on the same total.
    expect((await paidFetch.state()).accepted).to.equal(PRICE * 2n);
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    expect((await paidFetch.state()).accepted).to.equal(PRICE * 3n);
  });

  it("refuses a channel whose signer is a contract, as its signatures could be revoked after it was served", async () => {
    const config = channelConfig(chain.payer.account.address, chain.payee.account.address, { signer: chain.token.address, withdrawDelay: 7200 });
    await chain.escrow.write.open([config, PRICE * 10n], { account: chain.payer.account, value: PRICE * 10n });
    const voucher = await signVoucher(chain.payer as never, { channelId: channelId(config, chain.location), cumulativeAmount: PRICE }, chain.location);
    const refused = await paidGet(seller, encodeHeader({ x402Version: X402_VERSION, accepted: await termsOf(seller), payload: { channel: config, voucher } }));
    expect([refused.status, refused.body.error]).to.deep.equal([402, "session_key_required"]);
  });

  it("refuses a contract-wallet payer signing its own vouchers: its ERC-1271 answer could change after it was served", async () => {
    const wallet = await chain.viem.deployContract("ContractWallet", [chain.payer.account.address]);
    const config = channelConfig(wallet.address, chain.payee.account.address, { signer: zeroAddress, withdrawDelay: 7200 });
    const open = encodeFunctionData({ abi: chain.escrow.abi, functionName: "open", args: [config, PRICE * 10n] });
    await chain.payer.sendTransaction({ to: wallet.address, value: PRICE * 10n });
    await wallet.write.execute([chain.escrow.address, PRICE * 10n, open], { account: chain.payer.account });
    const id = channelId(config, chain.location);
    // The wallet's owner signs: the escrow would take it today through ERC-1271.
    const voucher = await signVoucher(chain.payer as never, { channelId: id, cumulativeAmount: PRICE }, chain.location);
    expect(await chain.escrow.read.isValidVoucher([config, PRICE, voucher.signature])).to.equal(true);
    const header = encodeHeader({ x402Version: X402_VERSION, accepted: await termsOf(seller), payload: { channel: config, voucher } });
    const handled = seller.handled.count;
    const refused = await paidGet(seller, header);
    expect([refused.status, refused.body.error]).to.deep.equal([402, "session_key_required"]);
    expect(seller.handled.count).to.equal(handled);
  });

  it("keeps accepting while a withdrawal deadline is beyond the margin in chain time, and refuses within it", async () => {
    const buyer = await openBuyerChannel(chain, PRICE * 100n, 3600);
    const paidFetch = buyerFetch(buyer);
    const first = await paidFetch(`${seller.url}/quote`);
    expect(first.status, await first.clone().text()).to.equal(200);
    await chain.escrow.write.requestWithdrawal([buyer.channel.config], { account: chain.payer.account });
    // The watcher (in whatever process) writes the withdrawal and the chain's clock to the database.
    const watcher = new ChainWatcher({
      prisma: db().prisma,
      client: chain.publicClient as never,
      scope: { chainId: chain.location.chainId, escrow: chain.escrow.address, payee: chain.payee.account.address },
      confirmations: 0,
      fromBlock: await chain.publicClient.getBlockNumber(),
    });
    await watcher.syncOnce();
    // The deadline is an hour away and the margin ten minutes: still safe to accept.
    expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);

    // Chain time moves 51 minutes while the servers' clocks do not: 9 minutes are left, inside the margin.
    await chain.networkHelpers.time.increase(3060);
    await watcher.syncOnce();
    const refused = await paidFetch(`${seller.url}/quote`);
    expect(refused.status).to.equal(402);
    expect(((await refused.json()) as { error: string }).error).to.equal("channel_closing");
  });
});

describe("paywall durability and concurrency on Postgres", () => {
  let chain: EscrowFixture;
  let created: Awaited<ReturnType<typeof createPostgresDatabase>>;
  before(async () => {
    chain = await deployEscrow();
    created = await createPostgresDatabase();
  });
  after(async () => created.drop());

  it("two gateway processes on one database racing on one channel accept each total once", async () => {
    const [dbA, dbB] = [await openDatabase({ url: created.url }), await openDatabase({ url: created.url })];
    const [a, b] = [await startSeller(chain, dbA), await startSeller(chain, dbB)];
    try {
      const buyer = await openBuyerChannel(chain);
      const terms = await termsOf(a);
      for (let n = 1n; n <= 10n; n++) {
        const header = await paymentHeader(buyer, terms, PRICE * n);
        // Four different requests carrying one voucher (identical ones would be retries of one payment).
        const results = await Promise.all([a, b, a, b].map((seller, k) => paidGet(seller, header, `/quote?k=${k}`)));
        expect(results.filter((r) => r.status === 200), `total ${n}`).to.have.length(1);
      }
      expect(a.handled.count + b.handled.count).to.equal(10);
      expect(await dbA.prisma.payment.count({ where: { channelId: buyer.channel.id } })).to.equal(10);
      await Promise.all([a.store.book(), b.store.book()]);
      expect(await balanceOf(dbA.prisma, accountId.channelOwed(buyer.channel.id))).to.equal(PRICE * 10n);
    } finally {
      await a.close();
      await b.close();
      await dbA.close();
      await dbB.close();
    }
  });

  it("keeps accepted vouchers across a gateway restart", async () => {
    const buyer = await openBuyerChannel(chain);
    const paidFetch = buyerFetch(buyer);
    let db = await openDatabase({ url: created.url });
    let seller = await startSeller(chain, db);
    for (let i = 0; i < 5; i++) expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
    await seller.close();
    await db.close();

    db = await openDatabase({ url: created.url });
    seller = await startSeller(chain, db);
    try {
      const stored = (await db.prisma.channel.findUnique({ where: { id: buyer.channel.id } }))!;
      expect(toBigInt(stored.acceptedCumulative)).to.equal(PRICE * 5n);
      const replay = await paidGet(seller, await paymentHeader(buyer, await termsOf(seller), PRICE * 5n));
      expect(replay.body.error).to.equal("voucher_replayed");
      const response = await buyerFetch(buyer, { store: undefined })(`${seller.url}/quote`);
      expect(response.status).to.equal(402);
      expect((await paidFetch(`${seller.url}/quote`)).status).to.equal(200);
      expect((await paidFetch.state()).accepted).to.equal(PRICE * 6n);
    } finally {
      await seller.close();
      await db.close();
    }
  });
});

