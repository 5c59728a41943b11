// A seller for end-to-end tests: the escrow on the EDR chain, a database (Postgres or PGlite), the
// gateway with its Express paywall on a real HTTP port, and a buyer with an open channel.
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import express from "express";
import { parseEther, zeroAddress, type Hex } from "viem";
import { privateKeyToAccount, generatePrivateKey } from "viem/accounts";
import { ChainChannelReader } from "../../src/chain/ChainChannelReader.js";
import { openChannel, type OpenedChannel, type Wallet } from "../../src/client/channel.js";
import { createPaidFetch, type PaidFetchOptions } from "../../src/client/paidFetch.js";
import { PaymentGateway, type GatewayOptions } from "../../src/gateway/PaymentGateway.js";
import { paywall } from "../../src/gateway/paywall.js";
import type { Database } from "../../src/ledger/db.js";
import { LedgerPaymentStore } from "../../src/ledger/LedgerPaymentStore.js";
import type { PaymentStore } from "../../src/gateway/PaymentStore.js";
import { deployEscrow, type EscrowFixture } from "./escrow.js";

export const PRICE = 1_000_000_000_000n; // 10^12 wei per request

export type Seller = {
  url: string;
  gateway: PaymentGateway;
  store: LedgerPaymentStore;
  handled: { count: number };
  close(): Promise<void>;
};

/** The voucher the settlement worker would claim with: the highest standing payment's. */
export async function claimableVoucher(db: Database, channelId: Hex): Promise<{ amount: bigint; signature: Hex }> {
  const [row] = await db.prisma.payment.findMany({
    where: { channelId: channelId.toLowerCase(), status: "ACCEPTED" },
    orderBy: { cumulativeAmount: "desc" },
    take: 1,
  });
  if (!row) throw new Error(`no standing payment on ${channelId}`);
  return { amount: BigInt(row.cumulativeAmount.toFixed()), signature: row.signature as Hex };
}

/** The test seller's gateway: native ETH on `chain`'s escrow, paid to its payee, recording in `store`. */
export function sellerGateway(chain: EscrowFixture, store: PaymentStore, overrides: Partial<GatewayOptions> = {}): PaymentGateway {
  return new PaymentGateway({
    chainId: chain.location.chainId,
    escrow: chain.escrow.address,
    payee: chain.payee.account.address,
    asset: zeroAddress,
    store,
    chain: new ChainChannelReader(chain.publicClient, chain.escrow.address),
    minWithdrawDelay: 3600,
    closingMarginSeconds: 600,
    ...overrides,
  });
}

/**
 * Starts a paywalled app: GET /quote (PRICE), GET /boom (PRICE, answers 500), GET /free, and GET /drop
 * (PRICE), whose first request is paid and committed and then loses its connection before any reply,
 * as when the server dies between commit and response.
 */
export async function startSeller(chain: EscrowFixture, db: Database, overrides: Partial<GatewayOptions> = {}): Promise<Seller> {
  const store = new LedgerPaymentStore(db);
  const gateway = sellerGateway(chain, store, overrides);
  const handled = { count: 0 };
  const app = express();
  app.use(paywall(gateway, { "GET /quote": PRICE, "GET /boom": PRICE, "GET /drop": PRICE }));
  app.get("/quote", (_req, res) => {
    handled.count++;
    res.json({ quote: "the price of everything and the value of nothing" });
  });
  app.get("/boom", (_req, res) => {
    handled.count++;
    res.status(500).json({ error: "the handler failed" });
  });
  app.get("/free", (_req, res) => res.json({ free: true }));
  let dropped = false;
  app.get("/drop", (req, res) => {
    handled.count++;
    if (!dropped) {
      dropped = true;
      req.socket.destroy();
      return;
    }
    res.json({ delivered: true });
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    gateway,
    store,
    handled,
    async close() {
      await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
      await store.close();
    },
  };
}

export type Buyer = { channel: OpenedChannel; session: ReturnType<typeof privateKeyToAccount>; wallet: Wallet };

/** Opens an ETH channel from the fixture's payer to its payee, signed by a fresh session key. */
export async function openBuyerChannel(chain: EscrowFixture, deposit = parseEther("0.01"), withdrawDelay = 7200): Promise<Buyer> {
  const session = privateKeyToAccount(generatePrivateKey());
  const wallet = chain.payer as unknown as Wallet;
  const channel = await openChannel({
    wallet,
    publicClient: chain.publicClient as never,
    escrow: chain.escrow.address,
    payee: chain.payee.account.address,
    signer: session.address,
    amount: deposit,
    withdrawDelay,
  });
  return { channel, session, wallet };
}

export function buyerFetch(buyer: Buyer, options: Partial<PaidFetchOptions> = {}) {
  return createPaidFetch({ channel: buyer.channel, signer: buyer.session, maxPrice: PRICE * 10n, ...options });
}

export { deployEscrow };
export type { Hex };
