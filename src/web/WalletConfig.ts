// What the seller's server tells its wallet app (GET /wallet/config.json): which routes to show the
// terms of, and the chain to switch wallets to. Prices, asset and escrow are not here: they come from
// each route's 402, the same terms a paying client gets.
import type { Address } from "viem";

export type WalletConfig = {
  /** Paid routes whose terms the wallet page lists (each is fetched unpaid once for its 402). */
  routes: { label: string; url: string }[];
  /** The sample paid page, if the server has one. */
  articlesUrl?: string;
  /** Wallets that do not know the chain are asked to add it with this name and RPC URL. */
  chain: { name: string; rpcUrl?: string };
  /** On a dev chain: offer the node's unlocked account as a wallet. */
  devWallet?: { rpcUrl: string; account: Address };
};
