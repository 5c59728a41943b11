// Finding the buyer's wallets and getting them onto the seller's chain. Wallets announce themselves
// with EIP-6963 (every injected wallet, each with its name and icon); a wallet that only sets
// `window.ethereum` is offered as the fallback. On a dev chain the page can also offer the chain's
// own unlocked account, which is how `npm run dev` works without a browser extension.
import { numberToHex, type Address } from "viem";

export type Eip1193 = {
  request(args: { method: string; params?: unknown }): Promise<unknown>;
  on?(event: string, listener: (...args: unknown[]) => void): void;
};

export type WalletInfo = { uuid: string; name: string; icon: string; rdns: string };
export type DiscoveredWallet = { info: WalletInfo; provider: Eip1193 };

/** Every wallet announced so far, kept up to date; `onChange` runs on each new one. */
export function discoverWallets(onChange: (wallets: DiscoveredWallet[]) => void): () => DiscoveredWallet[] {
  const announced = new Map<string, DiscoveredWallet>();
  const list = () => {
    const wallets = [...announced.values()];
    // window.ethereum is usually one of the announced wallets too; offer it only when it is not.
    const injected = (window as { ethereum?: Eip1193 }).ethereum;
    if (injected && !wallets.some((w) => w.provider === injected)) {
      wallets.push({ info: { uuid: "window.ethereum", name: "Browser wallet (window.ethereum)", icon: "", rdns: "window.ethereum" }, provider: injected });
    }
    return wallets;
  };
  window.addEventListener("eip6963:announceProvider", (event) => {
    const { info, provider } = (event as CustomEvent<DiscoveredWallet>).detail ?? {};
    if (!info?.uuid || !provider || typeof provider.request !== "function") return;
    announced.set(info.uuid, { info, provider });
    onChange(list());
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  onChange(list());
  return list;
}

export type ChainSpec = { id: number; name: string; rpcUrl?: string };

export class WrongChainError extends Error {
  constructor(
    readonly current: number,
    readonly wanted: ChainSpec,
    reason: string,
  ) {
    super(
      `Your wallet is on chain ${current}, but this seller is paid on chain ${wanted.id} (${wanted.name}). ` +
        `Switch your wallet to chain ${wanted.id} and try again${reason ? ` (${reason})` : ""}.`,
    );
  }
}

export async function chainIdOf(provider: Eip1193): Promise<number> {
  return Number(await provider.request({ method: "eth_chainId" }));
}

/**
 * Asks the wallet to switch to `chain` (EIP-3326), adding it first (EIP-3085) when the wallet does not
 * know it and we know an RPC URL for it. Throws WrongChainError if the wallet stays elsewhere.
 */
export async function ensureChain(provider: Eip1193, chain: ChainSpec): Promise<void> {
  const current = await chainIdOf(provider);
  if (current === chain.id) return;
  const chainId = numberToHex(chain.id);
  try {
    await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
  } catch (error) {
    const code = (error as { code?: number }).code;
    if (code === 4902 && chain.rpcUrl) {
      await provider.request({
        method: "wallet_addEthereumChain",
        params: [{ chainId, chainName: chain.name, rpcUrls: [chain.rpcUrl], nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 } }],
      });
    } else {
      throw new WrongChainError(current, chain, code === 4001 ? "the wallet refused to switch" : (error as Error).message ?? "");
    }
  }
  const now = await chainIdOf(provider);
  if (now !== chain.id) throw new WrongChainError(now, chain, "the wallet did not switch");
}

/**
 * A dev chain's unlocked account as a wallet: it forwards JSON-RPC to the node, which signs for its
 * own accounts. Only for chains whose keys are public anyway (Hardhat's), never for real money.
 */
export function devChainWallet(rpcUrl: string, account: Address): DiscoveredWallet {
  let id = 0;
  const provider: Eip1193 = {
    async request({ method, params }) {
      if (method === "eth_requestAccounts" || method === "eth_accounts") return [account];
      const response = await fetch(rpcUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: ++id, method, params: params ?? [] }),
      });
      const body = (await response.json()) as { result?: unknown; error?: { code: number; message: string; data?: unknown } };
      if (body.error) throw Object.assign(new Error(body.error.message), { code: body.error.code, data: body.error.data });
      return body.result;
    },
  };
  return { info: { uuid: "dev-chain", name: "Dev chain account (unlocked, test only)", icon: "", rdns: "local.paychan.dev" }, provider };
}
