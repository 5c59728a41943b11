// The demo page's script, a wallet-connected buyer: it learns the seller's terms from a 402, opens a
// channel with one wallet transaction, keeps its session key and the channel in localStorage, and pays
// the paywalled route with createPaidFetch. test/browser/wallet.test.ts bundles it and drives it in
// Chromium, and the package test type-checks and bundles it against the installed package.
import {
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  formatEther,
  zeroAddress,
  type Address,
  type Hex,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  WebStorageStateStore,
  createPaidFetch,
  openChannel,
  readChannel,
  type OpenedChannel,
  type PaidFetch,
} from "paychan/client";
import { HEADERS, chainIdOf, decodePaymentRequired, decodeReceipt, type PaymentRequirements } from "paychan/protocol";

type Eip1193 = { request(args: { method: string; params?: unknown }): Promise<unknown> };

declare global {
  interface Window {
    ethereum?: Eip1193;
  }
}

/** The session key and the channel it signs for; the key can spend no more than the deposit. */
type Session = { key: Hex; channel: OpenedChannel };

const SESSION_KEY = "paychan-demo:session";
/** The most this page agrees to pay for one request, whatever a 402 asks. */
const MAX_PRICE = 10n ** 13n;
/** The deposit covers this many requests at the quoted price. */
const PREPAID_REQUESTS = 1000n;
const MIN_WITHDRAW_DELAY = 86_400;

/**
 * An EIP-1193 provider over a JSON-RPC endpoint whose node holds the payer's key (a dev chain's
 * unlocked account): it stands in for an injected wallet such as a browser extension.
 */
export function jsonRpcWallet(url: string): Eip1193 {
  let id = 0;
  return {
    async request({ method, params }) {
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: ++id, method, params: params ?? [] }),
      });
      const body = (await response.json()) as { result?: unknown; error?: { code: number; message: string; data?: unknown } };
      if (body.error) throw Object.assign(new Error(body.error.message), { code: body.error.code, data: body.error.data });
      return body.result;
    },
  };
}

export function start({ rpcUrl, resource, storage = localStorage }: { rpcUrl: string; resource: string; storage?: Storage }) {
  // A real wallet injects window.ethereum; without one, the page uses the dev chain's endpoint.
  const ethereum = (window.ethereum ??= jsonRpcWallet(rpcUrl));
  const store = new WebStorageStateStore(storage);
  const publicClient = createPublicClient({ transport: custom(ethereum), pollingInterval: 250 });
  const $ = (id: string) => document.getElementById(id)!;
  const [openButton, payButton, count] = [$("open") as HTMLButtonElement, $("pay") as HTMLButtonElement, $("count") as HTMLInputElement];
  let session: Session | undefined;
  let paidFetch: PaidFetch | undefined;

  const status = (state: string, text: string) => {
    $("status").dataset.state = state;
    $("status").textContent = text;
  };
  const amount = (value: bigint) => (session?.channel.config.token === zeroAddress ? `${formatEther(value)} ETH` : `${value} base units`);

  async function showSession(current: Session) {
    session = current;
    paidFetch = createPaidFetch({ channel: current.channel, signer: privateKeyToAccount(current.key), maxPrice: MAX_PRICE, store });
    $("payer").textContent = current.channel.config.payer;
    $("network").textContent = `eip155:${current.channel.location.chainId} · escrow ${current.channel.location.escrow}`;
    $("channel-id").textContent = current.channel.id;
    $("session").textContent = current.channel.config.signer;
    const { deposit } = await readChannel(publicClient, current.channel);
    $("deposit").textContent = amount(deposit);
    $("deposit").dataset.wei = deposit.toString();
    await showAccepted();
  }

  async function showAccepted() {
    const { accepted } = await paidFetch!.state();
    $("accepted").textContent = amount(accepted);
    $("accepted").dataset.wei = accepted.toString();
  }

  async function connectAndOpen() {
    const [payer] = (await ethereum.request({ method: "eth_requestAccounts" })) as Address[];
    if (!payer) throw new Error("The wallet connected no account.");
    const terms = await termsOf(resource);
    // The chain the seller names: viem refuses to send if the wallet is on another one.
    const chain = defineChain({
      id: chainIdOf(terms.network),
      name: terms.network,
      nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      rpcUrls: { default: { http: [new URL(rpcUrl, location.href).href] } },
    });
    const wallet = createWalletClient({ account: payer, chain, transport: custom(ethereum) });
    const key = generatePrivateKey();
    const channel = await openChannel({
      wallet,
      publicClient,
      escrow: terms.extra.escrow,
      payee: terms.payTo,
      token: terms.asset,
      signer: privateKeyToAccount(key).address,
      amount: terms.amount * PREPAID_REQUESTS,
      withdrawDelay: Math.max(terms.extra.minWithdrawDelay, MIN_WITHDRAW_DELAY),
    });
    const opened = { key, channel };
    storage.setItem(SESSION_KEY, JSON.stringify(opened));
    await showSession(opened);
  }

  async function pay(n: number) {
    for (let i = 1; i <= n; i++) {
      status("paying", `Paying request ${i} of ${n}…`);
      const response = await paidFetch!(resource);
      const header = response.headers.get(HEADERS.response);
      if (!response.ok || !header) throw new Error(`Request ${i} was not served: HTTP ${response.status} ${await response.text()}`);
      const receipt = decodeReceipt(header);
      const { quote } = (await response.json()) as { quote: string };
      const row = document.createElement("li");
      Object.assign(row.dataset, {
        status: String(response.status),
        charged: receipt.charged.toString(),
        cumulative: receipt.cumulativeAmount.toString(),
        remaining: receipt.remaining.toString(),
      });
      row.innerHTML = `<span class="ok">${response.status}</span> paid ${amount(receipt.charged)} · total ${amount(receipt.cumulativeAmount)} · left ${amount(receipt.remaining)}`;
      row.title = quote;
      $("payments").append(row);
      await showAccepted();
    }
  }

  async function run(busy: string, work: () => Promise<string>) {
    openButton.disabled = payButton.disabled = true;
    status(busy, `${busy[0]!.toUpperCase()}${busy.slice(1)}…`);
    try {
      status("ready", await work());
    } catch (error) {
      status("error", error instanceof Error ? error.message : String(error));
    } finally {
      openButton.disabled = session !== undefined;
      payButton.disabled = session === undefined;
    }
  }

  openButton.onclick = () => run("opening", async () => {
    await connectAndOpen();
    return "Channel open: one wallet transaction. Requests are now paid by the session key.";
  });
  payButton.onclick = () => run("paying", async () => {
    const n = Number(count.value);
    await pay(n);
    return `Paid ${n} request${n === 1 ? "" : "s"} without a wallet prompt.`;
  });

  void run("restoring", async () => {
    const saved = storage.getItem(SESSION_KEY);
    if (!saved) return "No channel yet: connect your wallet to open one.";
    await showSession(JSON.parse(saved) as Session);
    return `Channel restored from localStorage: ${$("accepted").textContent} accepted so far.`;
  });
}

/** The seller's terms for `resource`, from the 402 an unpaid request gets. */
async function termsOf(resource: string): Promise<PaymentRequirements> {
  const response = await fetch(resource);
  const header = response.headers.get(HEADERS.required);
  if (response.status !== 402 || !header) throw new Error(`Expected a 402 with terms from ${resource}, got HTTP ${response.status}.`);
  const terms = decodePaymentRequired(header).accepts[0];
  if (!terms) throw new Error(`${resource} offers no paychan terms.`);
  return terms;
}
