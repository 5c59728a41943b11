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
import type { PaymentStore } from "../../src/gateway/PaymentStore.js";
import { paywall } from "../../src/gateway/paywall.js";
import type { Database } from "../../src/ledger/db.js";
import { PrismaPaymentStore } from "../../src/ledger/PrismaPaymentStore.js";
import { deployEscrow, type EscrowFixture } from "./escrow.js";

export const PRICE = 1_000_000_000_000n; // 10^12 wei per request

export type Seller = {
  url: string;
  gateway: PaymentGateway;
  store: PaymentStore;
  handled: { count: number };
  close(): Promise<void>;
};

/** Starts a paywalled app: GET /quote (PRICE), GET /boom (PRICE, answers 500), GET /free. */
export async function startSeller(chain: EscrowFixture, db: Database, overrides: Partial<GatewayOptions> = {}): Promise<Seller> {
  const store = new PrismaPaymentStore(db.prisma);
  const gateway = new PaymentGateway({
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
  const handled = { count: 0 };
  const app = express();
  app.use(paywall(gateway, { "GET /quote": PRICE, "GET /boom": PRICE }));
  app.get("/quote", (_req, res) => {
    handled.count++;
    res.json({ quote: "the price of everything and the value of nothing" });
  });
  app.get("/boom", (_req, res) => {
    handled.count++;
    res.status(500).json({ error: "the handler failed" });
  });
  app.get("/free", (_req, res) => res.json({ free: true }));
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    gateway,
    store,
    handled,
    close: () => new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve()))),
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
