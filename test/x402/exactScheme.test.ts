// x402's `exact` scheme beside paychan on one route: the stock x402 client (`@x402/fetch` over
// `@x402/core`, with `@x402/evm`'s exact EVM scheme — the real packages) pays with an EIP-3009
// authorization on the mock token, and a PaychanSchemeClient buyer pays the same route with a
// voucher, against the real gateway over HTTP on the EDR chain, on Postgres and on PGlite; the
// settlement process submits the transfers through the outbox and the ledger books them.
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { expect } from "chai";
import { wrapFetchWithPayment, x402Client, x402HTTPClient } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { getAddress, keccak256, parseEther, toHex, type Address, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../../src/client/channel.js";
import { MemoryStateStore } from "../../src/client/stateStore.js";
import { accountId } from "../../src/ledger/accounts.js";
import { tokenAsset } from "../../src/ledger/asset.js";
import { balanceOf, trialBalance } from "../../src/ledger/postings.js";
import { HEADERS, decodeReceipt, encodeHeader } from "../../src/protocol/wire.js";
import { createApp, createSettlement, reconcilePaychan } from "../../src/server.js";
import { acceptExactPayment } from "../../src/ledger/exactPayments.js";
import { eip3009Abi, transferWithAuthorizationTypes } from "../../src/x402/exact/eip3009.js";
import { ExactSettlement } from "../../src/x402/exact/ExactSettlement.js";
import { transferWithAuthorizationData } from "../../src/x402/exact/Eip3009Token.js";
import { PaychanSchemeClient } from "../../src/x402/index.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { deployEscrowOnNewChain } from "../helpers/escrow.js";
import { finish, fundedAccount, startTestPaychan, type EscrowFixture, type TestPaychan } from "../settlement/helpers.js";

const USD_PRICE = "0.001";
const TOKEN_PRICE = 1_000n; // $0.001 of a 6-decimal dollar
const ETH_PRICE = 333_333_333_334n; // $0.001 at $3,000 per ETH, rounded up
const LIMIT_USD = "0.003"; // three payments in flight at most

function decode(header: string | null): Record<string, unknown> {
  return JSON.parse(Buffer.from(header ?? "", "base64").toString("utf8"));
}

for (const kind of ["postgres", "pglite"] as const) {
  describe(`x402 exact beside paychan on one route [${kind}]`, function () {
    let chain: EscrowFixture;
    let token: Address;
    let test: TestPaychan;
    let server: Server;
    let url: string;
    let dropDatabase: () => Promise<void> = async () => {};
    const handled = { count: 0 };

    before(async function () {
      chain = await deployEscrowOnNewChain();
      token = getAddress((await chain.viem.deployContract("Eip3009Token")).address);
      let databaseUrl = "pglite:memory";
      if (kind === "postgres") {
        const created = await createPostgresDatabase();
        databaseUrl = created.url;
        dropDatabase = created.drop;
      }
      test = await startTestPaychan(chain, databaseUrl, {
        settler: await fundedAccount(chain),
        env: { EXACT_TOKEN: token, EXACT_TOKEN_USD: "1", ASSET_USD: "3000", EXACT_MAX_UNSETTLED_USD: LIMIT_USD },
      });
      const app = createApp(
        test.paychan,
        { "GET /quote": { usd: USD_PRICE }, "GET /boom": { usd: USD_PRICE } },
        {
          "GET /quote": (_req, res) => {
            handled.count++;
            res.json({ quote: "the price of everything and the value of nothing" });
          },
          "GET /boom": (_req, res) => {
            handled.count++;
            res.status(500).json({ error: "the handler failed" });
          },
        },
      );
      server = await new Promise((resolve) => {
        const s = app.listen(0, "127.0.0.1", () => resolve(s));
      });
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    after(async function () {
      await new Promise((resolve) => server?.close(resolve));
      await test?.paychan.close();
      await dropDatabase();
    });

    // Every test leaves nothing in flight, so the limit of three payments in flight is each test's own.
    afterEach(async function () {
      await settle();
    });

    const db = () => test.paychan.db;
    const asset = () => tokenAsset(chain.location.chainId, token);
    const payee = () => test.payee.address;

    async function settle() {
      await test.settlement.runOnce();
      await finish(test.settlement);
    }

    /** A buyer with `balance` of the token and nothing else: no ETH, no channel. */
    async function buyerWith(balance: bigint): Promise<PrivateKeyAccount> {
      const account = privateKeyToAccount(generatePrivateKey());
      await chain.deployer.writeContract({ address: token, abi: mintAbi, functionName: "mint", args: [account.address, balance] });
      return account;
    }

    const tokenBalance = (account: Address) => chain.publicClient.readContract({ address: token, abi: eip3009Abi, functionName: "balanceOf", args: [account] });
    /** The payer spends its whole balance elsewhere, with an authorization of its own that someone else submits. */
    async function moveAway(buyer: PrivateKeyAccount) {
      const all = await tokenBalance(buyer.address);
      const authorization = {
        from: buyer.address,
        to: chain.stranger.account.address,
        value: all,
        validAfter: 0n,
        validBefore: (await chain.publicClient.getBlock()).timestamp + 3600n,
        nonce: keccak256(toHex(generatePrivateKey())),
      };
      const domain = { name: "Test Dollar", version: "1", chainId: chain.location.chainId, verifyingContract: token };
      const signature = await buyer.signTypedData({ domain, types: transferWithAuthorizationTypes, primaryType: "TransferWithAuthorization", message: authorization });
      await chain.deployer.sendTransaction({ to: token, data: transferWithAuthorizationData(authorization, signature) });
    }

    /** The stock x402 client with only the exact EVM scheme, allowed to pay the test token. */
    function stockExactFetch(buyer: PrivateKeyAccount, transport: typeof fetch = fetch) {
      const client = new x402Client().register("eip155:*", new ExactEvmScheme(buyer));
      client.setSpendControls({ allowedAssets: [{ network: `eip155:${chain.location.chainId}`, asset: token, maxAmountPerPayment: "10000" }] });
      return wrapFetchWithPayment(transport, client);
    }

    /** A transport that keeps the PAYMENT-SIGNATURE headers it sends. */
    function recording() {
      const sent: string[] = [];
      const transport: typeof fetch = async (input, init) => {
        const request = new Request(input, init);
        const header = request.headers.get(HEADERS.signature);
        if (header) sent.push(header);
        return fetch(request);
      };
      return { sent, transport };
    }

    const paymentRow = (id: string) => db().prisma.exactPayment.findUniqueOrThrow({ where: { id } });
    async function statusOf(id: string, until?: string): Promise<string> {
      for (let i = 0; i < 100; i++) {
        const { status } = await paymentRow(id);
        if (until === undefined || status === until) return status;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return (await paymentRow(id)).status;
    }

    const ledger = (account: string) => balanceOf(db().prisma, account);
    async function expectBalanced() {
      for (const [name, t] of await trialBalance(db().prisma)) expect(t.debits, `trial balance of ${name}`).to.equal(t.credits);
    }

    it("lists paychan, then exact, in the 402's accepts with the same dollar price from the one price table", async () => {
      const response = await fetch(`${url}/quote`);
      expect(response.status).to.equal(402);
      const required = decode(response.headers.get(HEADERS.required)) as { accepts: Record<string, unknown>[] };
      expect(required.accepts.map((a) => a.scheme)).to.deep.equal(["paychan", "exact"]);
      expect(required.accepts[0]).to.deep.include({ amount: ETH_PRICE.toString(), asset: "0x0000000000000000000000000000000000000000", payTo: payee() });
      expect(required.accepts[1]).to.deep.equal({
        scheme: "exact",
        network: `eip155:${chain.location.chainId}`,
        amount: TOKEN_PRICE.toString(),
        asset: token,
        payTo: payee(),
        maxTimeoutSeconds: 300,
        extra: { name: "Test Dollar", version: "1" },
      });
    });

    it("the stock x402 exact client pays the route; work submits the transfer through the outbox and the books follow it", async () => {
      const buyer = await buyerWith(10_000n);
      const handledBefore = handled.count;
      const response = await stockExactFetch(buyer)(`${url}/quote`);
      expect(response.status, await response.clone().text()).to.equal(200);
      expect(handled.count - handledBefore).to.equal(1);
      const receipt = decode(response.headers.get(HEADERS.response));
      expect(receipt).to.deep.include({ success: true, scheme: "exact", payer: buyer.address, transaction: "", amount: TOKEN_PRICE.toString() });
      const id = receipt.paymentId as string;
      expect(await statusOf(id, "READY")).to.equal("READY");
      // Nothing moved yet, and nothing is booked: the payment is recorded, the transfer not yet sent.
      expect(await tokenBalance(payee())).to.equal(0n);

      await settle();
      const row = await paymentRow(id);
      expect(row.status).to.equal("SETTLED");
      expect(await tokenBalance(payee())).to.equal(TOKEN_PRICE);
      expect(await tokenBalance(buyer.address)).to.equal(10_000n - TOKEN_PRICE);
      // Sent by the settlement key's TxManager, which booked its gas from the receipt.
      const tx = await db().prisma.chainTx.findUniqueOrThrow({ where: { id: row.chainTxId! } });
      expect([tx.status, tx.sender, tx.txHash]).to.deep.equal(["CONFIRMED", test.settler.address.toLowerCase(), row.txHash]);
      expect(await db().prisma.journalEntry.count({ where: { idempotencyKey: `gas:${row.txHash}:${tx.blockHash}` } })).to.equal(1);
      expect(await ledger(accountId.wallet(payee(), asset()))).to.equal(TOKEN_PRICE);
      expect(await ledger(accountId.revenue(payee(), asset()))).to.equal(TOKEN_PRICE);
      expect(await ledger(accountId.exactReceivable(payee(), asset()))).to.equal(0n);
      expect(await ledger(accountId.exactClearing(payee(), asset()))).to.equal(0n);
      await expectBalanced();
      // Booked once, however often the receipt is seen.
      await settle();
      expect(await ledger(accountId.revenue(payee(), asset()))).to.equal(TOKEN_PRICE);

      const report = await reconcilePaychan(test.paychan);
      expect(report.differences.filter((d) => d.code.startsWith("EXACT"))).to.deep.equal([]);
      expect(report.exact).to.deep.equal([{ asset: asset(), awaitingSubmission: "0", submitted: "0", settled: TOKEN_PRICE.toString(), unpaid: "0", voided: 0 }]);
    });

    it("a PaychanSchemeClient buyer pays the same route with a voucher, at the same dollar price", async () => {
      const session = privateKeyToAccount(generatePrivateKey());
      const channel = await openChannel({
        wallet: chain.payer as unknown as Wallet,
        publicClient: chain.publicClient as PublicClient,
        escrow: chain.escrow.address,
        payee: payee(),
        signer: session.address,
        amount: parseEther("0.01"),
        withdrawDelay: 86_400,
      });
      const store = new MemoryStateStore();
      const scheme = new PaychanSchemeClient({ channel, signer: session, maxPrice: ETH_PRICE, store });
      const pay = wrapFetchWithPayment(fetch, new x402Client().register("eip155:*", scheme));
      for (let i = 1n; i <= 2n; i++) {
        const response = await pay(`${url}/quote`);
        expect(response.status, await response.clone().text()).to.equal(200);
        expect(decodeReceipt(response.headers.get(HEADERS.response)!)).to.deep.include({ scheme: "paychan", charged: ETH_PRICE, cumulativeAmount: ETH_PRICE * i });
      }
      // A client holding both schemes pays with the first the seller lists: paychan.
      const both = new x402Client().register("eip155:*", new PaychanSchemeClient({ channel, signer: session, maxPrice: ETH_PRICE, store }));
      both.register("eip155:*", new ExactEvmScheme(await buyerWith(10_000n)));
      const response = await wrapFetchWithPayment(fetch, both)(`${url}/quote?both`);
      expect(decodeReceipt(response.headers.get(HEADERS.response)!)).to.deep.include({ scheme: "paychan", cumulativeAmount: ETH_PRICE * 3n });
    });

    it("refuses a replayed authorization, and serves a byte-identical retry again, charged once, before and after it settles", async () => {
      const buyer = await buyerWith(10_000n);
      const { sent, transport } = recording();
      const first = await stockExactFetch(buyer, transport)(`${url}/quote`);
      expect(first.status).to.equal(200);
      const id = decode(first.headers.get(HEADERS.response)).paymentId as string;
      const header = sent[0]!;
      const resend = (path: string) => fetch(`${url}${path}`, { headers: { [HEADERS.signature]: header } });

      const handledBefore = handled.count;
      const replay = await resend("/quote?another=request");
      expect(replay.status).to.equal(402);
      expect(await replay.json()).to.deep.include({ error: "authorization_used" });
      expect(handled.count).to.equal(handledBefore);

      const retry = await resend("/quote");
      expect(retry.status).to.equal(200);
      expect(decode(retry.headers.get(HEADERS.response)).paymentId).to.equal(id);

      await settle();
      // The chain now calls the nonce used; the identical retry is still the same payment.
      const late = await resend("/quote");
      expect(late.status).to.equal(200);
      expect(decode(late.headers.get(HEADERS.response)).paymentId).to.equal(id);
      expect((await resend("/quote?after=settling")).status).to.equal(402);
      expect(await db().prisma.exactPayment.count({ where: { payer: buyer.address.toLowerCase() } })).to.equal(1);
      expect((await paymentRow(id)).retries).to.equal(2);
      expect(await tokenBalance(buyer.address)).to.equal(10_000n - TOKEN_PRICE);
    });

    it("does not serve an authorization whose payer spent the balance after the 402, nor more in flight than the balance covers", async () => {
      const buyer = await buyerWith(TOKEN_PRICE);
      const draining: typeof fetch = async (input, init) => {
        const request = new Request(input, init);
        const response = await fetch(request);
        if (!request.headers.has(HEADERS.signature)) await moveAway(buyer);
        return response;
      };
      const handledBefore = handled.count;
      const refused = await stockExactFetch(buyer, draining)(`${url}/quote`);
      expect(refused.status).to.equal(402);
      expect(await refused.json()).to.deep.include({ error: "insufficient_balance" });
      expect(handled.count).to.equal(handledBefore);

      // Enough for one and a half payments: two paid at once, one is served and one refused.
      const thrifty = await buyerWith((TOKEN_PRICE * 3n) / 2n);
      const statuses = (await Promise.all([stockExactFetch(thrifty)(`${url}/quote?a`), stockExactFetch(thrifty)(`${url}/quote?b`)])).map((r) => r.status);
      expect(statuses.sort()).to.deep.equal([200, 402]);
      expect(await db().prisma.exactPayment.count({ where: { payer: thrifty.address.toLowerCase() } })).to.equal(1);
    });

    it("books a payer who moves the tokens away after being served as the bounded loss, and reconciliation names it", async () => {
      const buyer = await buyerWith(TOKEN_PRICE);
      const response = await stockExactFetch(buyer)(`${url}/quote`);
      expect(response.status).to.equal(200);
      const id = decode(response.headers.get(HEADERS.response)).paymentId as string;
      await statusOf(id, "READY");
      await moveAway(buyer);

      await settle();
      const row = await paymentRow(id);
      expect(row.status).to.equal("FAILED");
      expect(row.failure).to.match(/not sent: would revert/);
      const entries = await db().prisma.journalEntry.findMany({ where: { idempotencyKey: { startsWith: `exact:${id}:` } }, orderBy: { createdAt: "asc" } });
      expect(entries.map((e) => e.kind)).to.deep.equal(["EXACT_SUBMITTED", "EXACT_FAILED"]);
      expect(await ledger(accountId.exactReceivable(payee(), asset()))).to.equal(0n);
      await expectBalanced();
      const report = await reconcilePaychan(test.paychan);
      const unpaid = report.differences.filter((d) => d.code === "EXACT_UNPAID");
      expect(unpaid).to.have.length(1);
      expect(unpaid[0]).to.deep.include({ severity: "missing", expected: TOKEN_PRICE.toString(), actual: "0" });
      expect(unpaid[0]!.cause).to.include(id);
      expect(report.ok).to.equal(false);
    });

    it("books a transfer that reverts on chain (the payer spent the tokens after it was signed) as unpaid, with its gas", async () => {
      const buyer = await buyerWith(TOKEN_PRICE);
      const response = await stockExactFetch(buyer)(`${url}/quote`);
      const id = decode(response.headers.get(HEADERS.response)).paymentId as string;
      await statusOf(id, "READY");
      // Between the TxManager signing the transfer and broadcasting it, the payer moves the tokens.
      let moved: Promise<void> | undefined;
      const racing = createSettlement(test.paychan, {
        account: test.settler,
        faults: {
          beforeBroadcast: async () => {
            moved ??= moveAway(buyer);
            await moved;
          },
        },
      });
      await racing.runOnce();
      await finish(racing);
      const row = await paymentRow(id);
      expect(row.status).to.equal("FAILED");
      expect(row.failure).to.match(/reverted/);
      const tx = await db().prisma.chainTx.findUniqueOrThrow({ where: { id: row.chainTxId! } });
      expect(await db().prisma.journalEntry.count({ where: { idempotencyKey: `gas:${row.txHash}:${tx.blockHash}` } })).to.equal(1);
      expect(await ledger(accountId.exactReceivable(payee(), asset()))).to.equal(0n);
      await expectBalanced();
    });

    it("does not charge for a 5xx: the authorization is never submitted and stays unused", async () => {
      const buyer = await buyerWith(10_000n);
      const { sent, transport } = recording();
      const response = await stockExactFetch(buyer, transport)(`${url}/boom`);
      expect(response.status).to.equal(500);
      expect(response.headers.get(HEADERS.response)).to.equal(null);
      const [row] = await db().prisma.exactPayment.findMany({ where: { payer: buyer.address.toLowerCase() } });
      expect(await statusOf(row!.id, "VOIDED")).to.equal("VOIDED");
      await settle();
      expect((await paymentRow(row!.id)).status).to.equal("VOIDED");
      const nonce = (decode(sent[0]!) as { payload: { authorization: { nonce: Hex } } }).payload.authorization.nonce;
      expect(await chain.publicClient.readContract({ address: token, abi: eip3009Abi, functionName: "authorizationState", args: [buyer.address, nonce] })).to.equal(false);
      expect(await tokenBalance(buyer.address)).to.equal(10_000n);
      expect(await db().prisma.journalEntry.count({ where: { idempotencyKey: { startsWith: `exact:${row!.id}` } } })).to.equal(0);
    });

    it("refuses exact payments beyond EXACT_MAX_UNSETTLED_USD in flight with 503 until transfers land", async () => {
      const buyer = await buyerWith(100_000n);
      const pay = stockExactFetch(buyer);
      for (let i = 0; i < 3; i++) expect((await pay(`${url}/quote?n=${i}`)).status).to.equal(200);
      const refused = await pay(`${url}/quote?n=3`);
      expect(refused.status).to.equal(503);
      expect(await refused.json()).to.deep.include({ error: "temporarily_unavailable" });
      await settle();
      expect((await pay(`${url}/quote?n=4`)).status).to.equal(200);
    });

    it("submits a payment whose gateway died before its handler answered, and counts one that expired unsubmitted as unpaid", async () => {
      const buyer = await buyerWith(10_000n);
      const scope = { chainId: chain.location.chainId, token, payee: payee() };
      const sweep = (orphanAfterSeconds: number) =>
        new ExactSettlement({ prisma: db().prisma, txManager: test.settlement.txManager, scope, orphanAfterSeconds }).submitDue();
      // Payments earlier tests left due (on a slow run, older than the minute below) would be swept
      // with this test's: settle them first.
      await sweep(0);
      await finish(test.settlement);
      const charge = (validBefore: bigint) => ({
        ...scope,
        payer: buyer.address,
        nonce: keccak256(toHex(generatePrivateKey())),
        value: TOKEN_PRICE,
        validAfter: 0n,
        validBefore,
        signature: "0x00" as Hex,
        requestKey: "GET /quote",
      });
      const limits = { balance: 10_000n, maxUnsettled: 10_000n, retryWithinSeconds: 300, maxRetries: 3 };
      const now = (await chain.publicClient.getBlock()).timestamp;
      // Accepted, and never completed: the gateway died while its handler ran.
      const orphan = charge(now + 300n);
      const { value, validAfter, validBefore, nonce } = orphan;
      const signature = await buyer.signTypedData({
        domain: { name: "Test Dollar", version: "1", chainId: chain.location.chainId, verifyingContract: token },
        types: transferWithAuthorizationTypes,
        primaryType: "TransferWithAuthorization",
        message: { from: buyer.address, to: payee(), value, validAfter, validBefore, nonce },
      });
      const accepted = await acceptExactPayment(db().prisma, { ...orphan, signature }, { ...limits, minValiditySeconds: 150 });
      // Accepted while `work` was down, and expired since.
      const expired = await acceptExactPayment(db().prisma, charge(now - 10n), { ...limits, minValiditySeconds: -600 });
      if (!accepted.ok || !expired.ok) throw new Error("not accepted");

      expect(await sweep(60)).to.deep.equal({ submitted: 0, expired: 0 });
      expect(await sweep(0)).to.deep.equal({ submitted: 1, expired: 1 });
      await finish(test.settlement);
      expect((await paymentRow(accepted.paymentId)).status).to.equal("SETTLED");
      expect(await tokenBalance(buyer.address)).to.equal(10_000n - TOKEN_PRICE);
      const lost = await paymentRow(expired.paymentId);
      expect([lost.status, lost.failure]).to.deep.equal(["FAILED", "the authorization expired before it was submitted (was `paychan work` running?)"]);
      const report = await reconcilePaychan(test.paychan);
      expect(report.differences.filter((d) => d.code === "EXACT_UNPAID").map((d) => d.cause)).to.satisfy((causes: string[]) =>
        causes.some((c) => c.includes(expired.paymentId)),
      );
      await expectBalanced();
    });

    describe("refuses a tampered or unfit authorization with a stable code, never serving it", () => {
      /** A genuine payment header from the stock client, for a request to `path`, decoded. */
      async function genuine(buyer: PrivateKeyAccount, path = "/quote") {
        const offer = await fetch(`${url}${path}`);
        const http = new x402HTTPClient(new x402Client().register("eip155:*", new ExactEvmScheme(buyer)));
        const required = http.getPaymentRequiredResponse((name) => offer.headers.get(name), await offer.json());
        const client = new x402Client().register("eip155:*", new ExactEvmScheme(buyer));
        client.setSpendControls(false);
        return JSON.parse(JSON.stringify(await client.createPaymentPayload(required))) as {
          accepted: Record<string, unknown>;
          payload: { authorization: Record<string, string>; signature: Hex };
        };
      }
      const other = privateKeyToAccount(generatePrivateKey());
      const cases: [string, string, number, (p: Awaited<ReturnType<typeof genuine>>) => Promise<void> | void][] = [
        ["a lower value", "terms_mismatch", 402, (p) => void (p.payload.authorization.value = "999")],
        ["another payee", "wrong_payee", 402, (p) => void (p.payload.authorization.to = other.address)],
        ["another token in the terms", "wrong_asset", 402, (p) => void (p.accepted.asset = other.address)],
        ["another signer", "invalid_signature", 402, (p) => void (p.payload.authorization.from = other.address)],
        ["a smart-wallet signature", "invalid_signature", 402, (p) => void (p.payload.signature = `${p.payload.signature}00` as Hex)],
        ["a malformed nonce", "malformed_payment", 400, (p) => void (p.payload.authorization.nonce = "0x1234")],
        [
          "an authorization expiring too soon to settle",
          "authorization_expired",
          402,
          async (p) => {
            const now = (await chain.publicClient.getBlock()).timestamp;
            const signed = await resign(p, { validBefore: (now + 30n).toString() });
            p.payload = signed;
          },
        ],
      ];
      let signer: PrivateKeyAccount;
      async function resign(p: Awaited<ReturnType<typeof genuine>>, changes: Record<string, string>) {
        const authorization = { ...p.payload.authorization, ...changes };
        const signature = await signer.signTypedData({
          domain: { name: "Test Dollar", version: "1", chainId: chain.location.chainId, verifyingContract: token },
          types: transferWithAuthorizationTypes,
          primaryType: "TransferWithAuthorization",
          message: { ...authorization, value: BigInt(authorization.value!), validAfter: BigInt(authorization.validAfter!), validBefore: BigInt(authorization.validBefore!) } as never,
        });
        return { authorization, signature };
      }
      for (const [what, code, status, tamper] of cases) {
        it(`refuses ${what} with ${status} ${code}`, async () => {
          signer = await buyerWith(10_000n);
          const payment = await genuine(signer);
          await tamper(payment);
          const handledBefore = handled.count;
          const response = await fetch(`${url}/quote`, { headers: { [HEADERS.signature]: encodeHeader(payment) } });
          expect(response.status).to.equal(status);
          expect((await response.json()).error).to.equal(code);
          expect(handled.count).to.equal(handledBefore);
          expect(await db().prisma.exactPayment.count({ where: { payer: signer.address.toLowerCase() } })).to.equal(0);
        });
      }
    });
  });
}

const mintAbi = [
  { type: "function", name: "mint", stateMutability: "nonpayable", inputs: [{ name: "to", type: "address" }, { name: "amount", type: "uint256" }], outputs: [] },
] as const;
