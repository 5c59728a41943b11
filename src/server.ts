// The composition root: configuration → database (ledger + voucher store) → chain → gateway. The CLI,
// the demo and the tests all assemble paychan through here.
import express, { type Express, type RequestHandler } from "express";
import { createPublicClient, http, type PublicClient } from "viem";
import { ChainChannelReader } from "./chain/ChainChannelReader.js";
import type { Config } from "./config.js";
import { PaymentGateway } from "./gateway/PaymentGateway.js";
import { paywall, type RouteSpec } from "./gateway/paywall.js";
import { openDatabase, type Database } from "./ledger/db.js";
import { PrismaPaymentStore } from "./ledger/PrismaPaymentStore.js";

export type Paychan = {
  config: Config;
  db: Database;
  publicClient: PublicClient;
  gateway: PaymentGateway;
  close(): Promise<void>;
};

/** Opens the database (migrating it) and builds the gateway. `publicClient` defaults to RPC_URL. */
export async function startPaychan(config: Config, options: { publicClient?: PublicClient } = {}): Promise<Paychan> {
  if (!config.ESCROW_ADDRESS) throw new Error("ESCROW_ADDRESS is not set: deploy the escrow first (paychan deploy).");
  if (!config.PAYEE_ADDRESS) throw new Error("PAYEE_ADDRESS is not set: the address vouchers pay.");
  const publicClient = options.publicClient ?? (createPublicClient({ transport: http(config.RPC_URL) }) as PublicClient);
  const chainId = await publicClient.getChainId();
  const db = await openDatabase({ url: config.DATABASE_URL });
  const gateway = new PaymentGateway({
    chainId,
    escrow: config.ESCROW_ADDRESS,
    payee: config.PAYEE_ADDRESS,
    asset: config.ASSET,
    store: new PrismaPaymentStore(db.prisma),
    chain: new ChainChannelReader(publicClient, config.ESCROW_ADDRESS),
    minWithdrawDelay: config.MIN_WITHDRAW_DELAY,
    closingMarginSeconds: config.CLOSING_MARGIN_SECONDS,
  });
  return { config, db, publicClient, gateway, close: () => db.close() };
}

/** An Express app with the paywall in front of `handlers` (keyed like the routes). */
export function createApp(
  paychan: Paychan,
  routes: Record<string, RouteSpec>,
  handlers: Record<string, RequestHandler>,
): Express {
  const app = express();
  app.disable("x-powered-by");
  app.get("/healthz", (_req, res) => res.json({ ok: true }));
  app.use(paywall(paychan.gateway, routes));
  for (const [key, handler] of Object.entries(handlers)) {
    const [method, path] = key.split(/\s+/, 2) as [string, string];
    app[method.toLowerCase() as "get"](path, handler);
  }
  return app;
}
