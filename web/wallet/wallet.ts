// The buyer's wallet page: finds the browser's wallets (EIP-6963, window.ethereum as the fallback),
// reads the seller's terms from its 402s, opens a channel with one wallet transaction signed for a
// session key generated here, and shows what the session has spent as it spends it — on this page or
// on a paid page in another tab. Top-up, the payer's timed withdrawal and a session export live here too.
//
// Paying by card is not offered: the gateway has no fiat rail yet. When it has one (the fiat-rails
// issue), its 402 will list that rail in `accepts`; `showTerms` is where its path to the same content goes.
import {
  createPublicClient,
  createWalletClient,
  custom,
  defineChain,
  erc20Abi,
  formatUnits,
  parseUnits,
  zeroAddress,
  type Address,
  type Chain,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { CLOSED, finalizeWithdrawal, openChannel, readChannel, requestWithdrawal, topUp, type Wallet } from "paychan/client";
import { HEADERS, chainIdOf, decodePaymentRequired, type PaymentRequirements } from "paychan/protocol";
import "../shared/style.css";
import type { WalletConfig } from "../../src/web/WalletConfig.js";
import { formatAmount, formatDuration, shortHex } from "../shared/format.js";
import { $, element, isBusy, run, status } from "../shared/page.js";
import { parseSessionExport } from "../shared/sessionExport.js";
import { WalletStore, type AssetUnit, type Session } from "../shared/store.js";
import { devChainWallet, discoverWallets, ensureChain, WrongChainError, type DiscoveredWallet } from "../shared/wallets.js";

/** Warn when the deposit left pays fewer requests than this at the dearest route's price. */
const LOW_BALANCE_REQUESTS = 20n;
/** The deposit suggested when opening: this many requests at the dearest price. */
const SUGGESTED_REQUESTS = 1000n;
const ERC20_UNIT_FALLBACK = (token: Address): AssetUnit => ({ symbol: `units of ${shortHex(token, 4)}`, decimals: 0 });

type OnChain = { deposit: bigint; claimed: bigint; withdrawReadyAt: bigint; blockTime: bigint; readAt: number };
type Connection = { wallet: Wallet; publicClient: PublicClient; source: DiscoveredWallet };

const store = await WalletStore.open();
const config = (await (await fetch("/wallet/config.json")).json()) as WalletConfig;
let terms: PaymentRequirements | undefined;
let highestPrice = 0n;
let chain: Chain | undefined;
let unit: AssetUnit = { symbol: "ETH", decimals: 18 };
let wallets: DiscoveredWallet[] = [];
let connection: Connection | undefined;
let session: Session | undefined;
let onChain: OnChain | undefined;

if (config.articlesUrl) $<HTMLAnchorElement>("articles-link").href = config.articlesUrl;
else $("articles-link").hidden = true;

function chainNow(): number {
  // The chain's clock, not this computer's: a block's time plus what passed since it was read, but
  // never behind the wall clock (an idle dev chain mines no blocks).
  const elapsed = onChain ? (Date.now() - onChain.readAt) / 1000 : 0;
  return Math.max(onChain ? Number(onChain.blockTime) + elapsed : 0, Date.now() / 1000);
}

async function loadTerms(): Promise<void> {
  const rows: HTMLTableRowElement[] = [];
  for (const route of config.routes) {
    const response = await fetch(route.url);
    const header = response.headers.get(HEADERS.required);
    if (response.status !== 402 || !header) throw new Error(`Expected a 402 with terms from ${route.url}, got HTTP ${response.status}.`);
    const offered = decodePaymentRequired(header).accepts[0];
    if (!offered) throw new Error(`${route.url} offers no paychan terms.`);
    terms ??= offered;
    if (offered.amount > highestPrice) highestPrice = offered.amount;
    const price = element("td", { className: "num" });
    price.dataset.baseUnits = offered.amount.toString();
    rows.push(element("tr", {}, element("td", {}, route.label, " ", element("code", {}, new URL(route.url, location.href).pathname)), price));
  }
  $("terms-routes").replaceChildren(...rows);
  if (!terms) throw new Error("The server lists no paid routes.");
  const chainId = chainIdOf(terms.network);
  chain = defineChain({
    id: chainId,
    name: config.chain.name,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: config.chain.rpcUrl ? [config.chain.rpcUrl] : [] } },
  });
  unit = terms.asset === zeroAddress ? { symbol: "ETH", decimals: 18 } : ERC20_UNIT_FALLBACK(terms.asset);
  showTerms();
}

function showTerms(): void {
  if (!terms) return;
  $("terms-routes").querySelectorAll<HTMLElement>("td[data-base-units]").forEach((cell) => (cell.textContent = formatAmount(cell.dataset.baseUnits!, unit)));
  $("t-network").textContent = `${config.chain.name} (${terms.network})`;
  $("t-asset").textContent = terms.asset === zeroAddress ? "ETH (native)" : `${unit.symbol} (${terms.asset})`;
  $("t-escrow").textContent = terms.extra.escrow;
  $("t-payee").textContent = terms.payTo;
  $("t-delay").textContent = formatDuration(terms.extra.minWithdrawDelay);
  $("w-delay").textContent = formatDuration(terms.extra.minWithdrawDelay);
  $("t-margin").textContent =
    terms.extra.closingMarginSeconds === undefined
      ? "not stated"
      : `${formatDuration(terms.extra.closingMarginSeconds)} (after a withdrawal request, the seller stops accepting payments this long before its deadline)`;
  $("deposit-unit").textContent = `(${unit.symbol})`;
  document.querySelectorAll(".topup-unit").forEach((span) => (span.textContent = `(${unit.symbol})`));
  const deposit = $<HTMLInputElement>("deposit-amount");
  if (!deposit.value) deposit.value = formatUnits(highestPrice * SUGGESTED_REQUESTS, unit.decimals);
  $("funding").hidden = terms.asset === zeroAddress;
}

function showWallets(found: DiscoveredWallet[]): void {
  wallets = config.devWallet ? [...found, devChainWallet(config.devWallet.rpcUrl, config.devWallet.account)] : found;
  const checked = document.querySelector<HTMLInputElement>('input[name="wallet"]:checked')?.value ?? session?.wallet ?? wallets[0]?.info.rdns;
  if (wallets.length === 0) {
    $("wallets").replaceChildren(element("p", {}, "No wallet found. Install a browser wallet (any EIP-6963 wallet works), then reload."));
  } else {
    $("wallets").replaceChildren(
      ...wallets.map((w) => {
        const radio = document.createElement("input");
        Object.assign(radio, { type: "radio", name: "wallet", value: w.info.rdns, checked: w.info.rdns === checked });
        const icon = w.info.icon ? element("img", { src: w.info.icon, alt: "", className: "wallet-icon" }) : "";
        return element("label", { className: "inline" }, radio, icon, w.info.name);
      }),
    );
    if (!document.querySelector('input[name="wallet"]:checked')) document.querySelector<HTMLInputElement>('input[name="wallet"]')!.checked = true;
  }
  updateButtons();
}

async function connect(): Promise<string> {
  if (!terms || !chain) throw new Error("The seller's terms are not loaded.");
  const rdns = document.querySelector<HTMLInputElement>('input[name="wallet"]:checked')?.value;
  const source = wallets.find((w) => w.info.rdns === rdns);
  if (!source) throw new Error("Choose a wallet first.");
  const [account] = (await source.provider.request({ method: "eth_requestAccounts" })) as Address[];
  if (!account) throw new Error("The wallet connected no account.");
  $("account").textContent = account;
  const wrongChain = $("wrong-chain");
  try {
    await ensureChain(source.provider, { id: chain.id, name: config.chain.name, rpcUrl: config.chain.rpcUrl });
    wrongChain.hidden = true;
  } catch (error) {
    if (error instanceof WrongChainError) {
      wrongChain.textContent = error.message;
      wrongChain.hidden = false;
      $("chain").textContent = `chain ${error.current} (wrong chain)`;
    }
    throw error;
  }
  $("chain").textContent = `${config.chain.name} (chain ${chain.id})`;
  const publicClient = createPublicClient({ chain, transport: custom(source.provider), pollingInterval: 250 }) as PublicClient;
  const wallet = createWalletClient({ account, chain, transport: custom(source.provider) }) as Wallet;
  connection = { wallet, publicClient, source };
  if (!listening.has(source.provider)) {
    listening.add(source.provider);
    source.provider.on?.("chainChanged", () => void recheckChain());
    source.provider.on?.("accountsChanged", (accounts) => accountsChanged(source, accounts as Address[]));
  }
  if (terms.asset !== zeroAddress) unit = await erc20Unit(publicClient, terms.asset);
  showTerms();
  await refreshChain();
  return session && session.channel.config.payer !== account
    ? `Connected ${account}, but this session's channel belongs to ${session.channel.config.payer}: connect that account to top up or withdraw.`
    : `Connected ${account} on ${config.chain.name}.`;
}

/** Wallets this page already listens to (connecting twice must not add listeners twice). */
const listening = new WeakSet<object>();

/** Another account in the wallet: the page stops acting for the old one until connected again. */
function accountsChanged(source: DiscoveredWallet, accounts: Address[]): void {
  if (connection?.source !== source || accounts[0]?.toLowerCase() === connection.wallet.account.address.toLowerCase()) return;
  connection = undefined;
  $("account").textContent = "not connected";
  status("ready", "Your wallet switched accounts: connect again to act for the new one.");
  updateButtons();
}

async function recheckChain(): Promise<void> {
  if (!connection || !chain) return;
  const now = Number(await connection.source.provider.request({ method: "eth_chainId" }));
  const wrong = $("wrong-chain");
  wrong.hidden = now === chain.id;
  if (now !== chain.id) {
    wrong.textContent = new WrongChainError(now, { id: chain.id, name: config.chain.name }, "").message;
    status("error", wrong.textContent);
  }
  $("chain").textContent = now === chain.id ? `${config.chain.name} (chain ${chain.id})` : `chain ${now} (wrong chain)`;
  updateButtons();
}

async function erc20Unit(publicClient: PublicClient, token: Address): Promise<AssetUnit> {
  try {
    const [symbol, decimals] = await Promise.all([
      publicClient.readContract({ address: token, abi: erc20Abi, functionName: "symbol" }),
      publicClient.readContract({ address: token, abi: erc20Abi, functionName: "decimals" }),
    ]);
    return { symbol, decimals };
  } catch {
    return ERC20_UNIT_FALLBACK(token);
  }
}

function parseAmount(input: HTMLInputElement, what: string): bigint {
  const text = input.value.trim();
  if (!/^[0-9]*\.?[0-9]+$/.test(text)) throw new Error(`Enter the ${what} as a number of ${unit.symbol}, e.g. 0.01.`);
  const [, fraction = ""] = text.split(".");
  if (fraction.length > unit.decimals) throw new Error(`${unit.symbol} has ${unit.decimals} decimals; the ${what} has more.`);
  const value = parseUnits(text, unit.decimals);
  if (value <= 0n) throw new Error(`The ${what} must be more than zero.`);
  return value;
}

async function open(): Promise<string> {
  if (!connection || !terms) throw new Error("Connect a wallet first.");
  const amount = parseAmount($<HTMLInputElement>("deposit-amount"), "deposit");
  const key = generatePrivateKey();
  const usePermit = terms.asset !== zeroAddress && document.querySelector<HTMLInputElement>('input[name="funding"]:checked')?.value === "permit";
  status("opening", terms.asset === zeroAddress ? "Confirm the deposit in your wallet (one transaction)…" : "Confirm in your wallet…");
  const channel = await openChannel({
    wallet: connection.wallet,
    publicClient: connection.publicClient,
    escrow: terms.extra.escrow,
    payee: terms.payTo,
    token: terms.asset,
    signer: privateKeyToAccount(key).address,
    amount,
    withdrawDelay: terms.extra.minWithdrawDelay,
    usePermit,
  });
  session = { key, channel, unit, openedAt: Date.now(), wallet: connection.source.info.rdns };
  await store.saveSession(session);
  await refreshChain();
  return `Channel open with ${formatAmount(amount, unit)}. Paid pages now pay from it without asking your wallet.`;
}

async function refreshChain(): Promise<void> {
  if (connection && session) {
    const [state, block] = await Promise.all([readChannel(connection.publicClient, session.channel), connection.publicClient.getBlock()]);
    onChain = { ...state, blockTime: block.timestamp, readAt: Date.now() };
  }
  await render();
}

async function render(): Promise<void> {
  const has = session !== undefined;
  $("channel-section").hidden = $("withdraw-section").hidden = $("session-section").hidden = !has;
  if (session) {
    const { channel } = session;
    const receipts = await store.receipts(channel.id);
    const state = await store.stateStore().load(channel.id);
    const accepted = state?.accepted ?? 0n;
    // The deposit as the chain says, or as the last receipt implies when no wallet is connected.
    const last = receipts[0];
    const deposit = onChain?.deposit ?? (last ? BigInt(last.cumulativeAmount) + BigInt(last.remaining) : undefined);
    const remaining = deposit === undefined ? undefined : deposit > accepted ? deposit - accepted : 0n;
    setAmount("accepted", accepted);
    setAmount("deposit", deposit);
    setAmount("remaining", remaining);
    $("requests").textContent = String(new Set(receipts.map((r) => r.paymentId)).size);
    $("channel-id").textContent = channel.id;
    $("session-key").textContent = channel.config.signer;
    $("payer").textContent = channel.config.payer;
    $("receipts").replaceChildren(
      ...receipts.slice(0, 10).map((r) =>
        element(
          "tr",
          {},
          element("td", {}, new Date(r.at).toLocaleTimeString()),
          element("td", {}, element("code", {}, new URL(r.url).pathname)),
          element("td", { className: "num" }, formatAmount(r.charged, session!.unit)),
          element("td", { className: "num" }, formatAmount(r.cumulativeAmount, session!.unit)),
          element("td", { className: "num" }, formatAmount(r.remaining, session!.unit)),
        ),
      ),
    );
    const low = $("low-balance");
    const closed = onChain?.withdrawReadyAt === CLOSED;
    low.hidden = closed || remaining === undefined || highestPrice === 0n || remaining >= highestPrice * LOW_BALANCE_REQUESTS;
    if (!low.hidden) {
      low.textContent = `Low balance: ${formatAmount(remaining!, session.unit)} left, about ${remaining! / highestPrice} more request(s). Top up to keep paying.`;
    }
    renderWithdrawal();
  }
  updateButtons();
}

function setAmount(id: string, value: bigint | undefined): void {
  const el = $(id);
  el.dataset.baseUnits = value === undefined ? "" : value.toString();
  el.textContent = value === undefined || !session ? "—" : formatAmount(value, session.unit);
}

function renderWithdrawal(): void {
  const readyAt = onChain?.withdrawReadyAt;
  const closed = readyAt === CLOSED;
  const withdrawing = readyAt !== undefined && readyAt !== 0n && !closed;
  $("withdrawal").hidden = !withdrawing;
  $("closed-note").hidden = !closed;
  $("channel-state").textContent = readyAt === undefined ? "connect the payer's wallet to read it" : closed ? "closed" : withdrawing ? "withdrawing" : "open";
  if (closed && onChain) {
    $("closed-note").textContent = `Channel closed. The seller claimed ${formatAmount(onChain.claimed, session!.unit)}; the rest of the deposit went back to ${session!.channel.config.payer}. Open a new channel to keep paying.`;
  }
  if (withdrawing) {
    const deadline = Number(readyAt);
    $("deadline").textContent = `Deadline: ${new Date(deadline * 1000).toLocaleString()} (chain time).`;
    const margin = terms?.extra.closingMarginSeconds;
    $("margin-note").textContent =
      margin === undefined ? "" : `The seller accepts payments from this channel until ${formatDuration(margin)} before the deadline.`;
    tick();
  }
}

function tick(): void {
  const readyAt = onChain?.withdrawReadyAt;
  if (readyAt === undefined || readyAt === 0n || readyAt === CLOSED) return;
  const left = Number(readyAt) - chainNow();
  const countdown = $("countdown");
  countdown.textContent = left > 0 ? formatDuration(left) : "now: finalize to get your refund";
  countdown.dataset.seconds = String(Math.max(0, Math.ceil(left)));
  updateButtons();
}

function updateButtons(): void {
  const connected = connection !== undefined && $("wrong-chain").hidden;
  const ours = connected && session !== undefined && connection!.wallet.account.address === session.channel.config.payer;
  const readyAt = onChain?.withdrawReadyAt;
  const open = readyAt === 0n;
  const withdrawing = readyAt !== undefined && readyAt !== 0n && readyAt !== CLOSED;
  const closedOrNone = session === undefined || readyAt === CLOSED;
  const busy = isBusy();
  $<HTMLButtonElement>("connect").disabled = busy || wallets.length === 0 || !terms;
  $<HTMLButtonElement>("open").disabled = busy || !connected || !closedOrNone;
  $("open-note").textContent = !connected
    ? "Connect a wallet on the seller's chain first."
    : !closedOrNone
      ? "You already have an open channel with this seller."
      : terms?.asset === zeroAddress
        ? `One transaction deposits into the escrow; the channel's withdrawal delay is ${formatDuration(terms.extra.minWithdrawDelay)}.`
        : "With a permit: one signature and one transaction. With approve: two transactions.";
  $("open-section").hidden = !closedOrNone;
  $<HTMLButtonElement>("topup").disabled = busy || !ours || !open;
  $<HTMLButtonElement>("request-withdrawal").disabled = busy || !ours || !open;
  $<HTMLButtonElement>("finalize").disabled = busy || !ours || !withdrawing || Number(readyAt) > chainNow();
}

async function exportSession(): Promise<string> {
  const text = JSON.stringify(await store.export(), null, 2);
  const area = $<HTMLTextAreaElement>("export-text");
  area.value = text;
  area.hidden = $("export-label").hidden = false;
  const link = $<HTMLAnchorElement>("export-download");
  URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  link.download = `paychan-session-${session!.channel.id.slice(2, 10)}.json`;
  link.hidden = false;
  return "Session exported. Keep the file as safe as the deposit it can spend.";
}

async function importSession(): Promise<string> {
  const imported = await store.import(parseSessionExport($<HTMLTextAreaElement>("import-text").value));
  session = imported;
  unit = imported.unit;
  $<HTMLTextAreaElement>("import-text").value = "";
  onChain = undefined;
  await refreshChain();
  return `Session imported: channel ${shortHex(imported.channel.id)}.`;
}

$("connect").onclick = () => run("connecting", connect);
$("open").onclick = () => run("opening", open);
$("topup").onclick = () =>
  run("topping up", async () => {
    const amount = parseAmount($<HTMLInputElement>("topup-amount"), "top-up");
    await topUp(connection!.wallet, connection!.publicClient, session!.channel, amount);
    await refreshChain();
    return `Topped up by ${formatAmount(amount, unit)}.`;
  });
$("request-withdrawal").onclick = () =>
  run("requesting the withdrawal", async () => {
    const readyAt = await requestWithdrawal(connection!.wallet, connection!.publicClient, session!.channel);
    await refreshChain();
    return `Withdrawal requested: you can finalize it after ${new Date(Number(readyAt) * 1000).toLocaleString()}.`;
  });
$("finalize").onclick = () =>
  run("finalizing the withdrawal", async () => {
    await finalizeWithdrawal(connection!.wallet, connection!.publicClient, session!.channel);
    await refreshChain();
    return "Withdrawal finalized: the unspent deposit is back in your wallet.";
  });
$("export").onclick = () => run("exporting", exportSession);
$("import").onclick = () => run("importing", importSession);
store.onChange(() => void store.session().then((s) => ((session = s), render())));
addEventListener("paychan-idle", updateButtons);
setInterval(tick, 1000);
// While a withdrawal runs, re-read the chain now and then: its clock decides when finalizing works.
setInterval(() => {
  if (connection && session && !isBusy() && onChain && onChain.withdrawReadyAt !== 0n && onChain.withdrawReadyAt !== CLOSED) void refreshChain();
}, 3000);

void run("loading", async () => {
  session = await store.session();
  if (session) unit = session.unit;
  await loadTerms();
  if (session) unit = session.unit;
  showTerms();
  discoverWallets(showWallets);
  await render();
  return session
    ? `Your channel ${shortHex(session.channel.id)} is here: connect ${shortHex(session.channel.config.payer, 4)} to see it on chain, top up or withdraw.`
    : "No channel yet: connect your wallet and open one.";
});
