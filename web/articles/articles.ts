// A sample paid page, as a seller would write one: a free list of articles whose bodies are behind
// the paywall. Opening one pays for it with createPaidFetch and the session the wallet page keeps in
// IndexedDB; every receipt is recorded there, so the wallet page shows the spending as it happens.
import { privateKeyToAccount } from "viem/accounts";
import { createPaidFetch, type PaidFetch } from "paychan/client";
import { HEADERS, decodePaymentRequired, decodeReceipt } from "paychan/protocol";
import "../shared/style.css";
import { formatAmount } from "../shared/format.js";
import { $, element, run } from "../shared/page.js";
import { WalletStore, type Session } from "../shared/store.js";

type ArticleSummary = { id: string; title: string; summary: string; url: string };

const LOW_BALANCE_ARTICLES = 5n;

const store = await WalletStore.open();
let session: Session | undefined;
let paidFetch: PaidFetch | undefined;
let price: bigint | undefined;

async function useSession(): Promise<void> {
  session = await store.session();
  $("no-session").hidden = session !== undefined;
  paidFetch = session && createPaidFetch({
    channel: session.channel,
    signer: privateKeyToAccount(session.key),
    // A page should not pay more per article than it showed; the 402's price is checked against this.
    maxPrice: price ?? 0n,
    store: store.stateStore(),
  });
  await showSpending();
}

async function showSpending(): Promise<void> {
  if (!session) return;
  const receipts = await store.receipts(session.channel.id);
  const state = await store.stateStore().load(session.channel.id);
  const accepted = state?.accepted ?? 0n;
  const last = receipts[0];
  const remaining = last ? BigInt(last.remaining) : undefined;
  $("requests").textContent = String(new Set(receipts.map((r) => r.paymentId)).size);
  $("accepted").textContent = formatAmount(accepted, session.unit);
  $("accepted").dataset.baseUnits = accepted.toString();
  $("remaining").textContent = remaining === undefined ? "—" : formatAmount(remaining, session.unit);
  $("remaining").dataset.baseUnits = remaining?.toString() ?? "";
  const low = $("low-balance");
  low.hidden = remaining === undefined || price === undefined || remaining >= price * LOW_BALANCE_ARTICLES;
  if (!low.hidden) low.innerHTML = `Your deposit is running low (${formatAmount(remaining!, session.unit)} left). <a href="/wallet">Top up in your wallet</a>.`;
}

/** The price of an article, from the 402 an unpaid request gets: the seller's own terms. */
async function priceOf(url: string): Promise<bigint> {
  const response = await fetch(url);
  const header = response.headers.get(HEADERS.required);
  const offered = header && decodePaymentRequired(header).accepts[0];
  if (response.status !== 402 || !offered) throw new Error(`Expected a 402 with terms from ${url}, got HTTP ${response.status}.`);
  return offered.amount;
}

async function read(article: ArticleSummary, container: HTMLElement, button: HTMLButtonElement): Promise<string> {
  if (!paidFetch || !session) throw new Error("Open a payment channel in your wallet first.");
  const response = await paidFetch(article.url);
  const receiptHeader = response.headers.get(HEADERS.response);
  if (!response.ok || !receiptHeader) {
    const body = (await response.json().catch(() => ({}))) as { message?: string };
    throw new Error(`“${article.title}” was not served (HTTP ${response.status}): ${body.message ?? "no reason given"}`);
  }
  const receipt = decodeReceipt(receiptHeader);
  await store.addReceipt({
    channelId: receipt.channelId,
    paymentId: receipt.paymentId,
    url: new URL(article.url, location.href).href,
    charged: receipt.charged.toString(),
    cumulativeAmount: receipt.cumulativeAmount.toString(),
    remaining: receipt.remaining.toString(),
    at: Date.now(),
  });
  const { body } = (await response.json()) as { body: string };
  container.replaceChildren(element("p", { className: "body" }, body), element("p", { className: "ok" }, `Paid ${formatAmount(receipt.charged, session.unit)}.`));
  container.dataset.paid = receipt.cumulativeAmount.toString();
  button.textContent = "Paid ✓";
  button.disabled = true;
  await showSpending();
  return `Read “${article.title}” for ${formatAmount(receipt.charged, session.unit)}; ${formatAmount(receipt.remaining, session.unit)} left.`;
}

async function showArticles(): Promise<void> {
  const articles = (await (await fetch("/api/articles")).json()) as ArticleSummary[];
  if (articles[0]) price = await priceOf(articles[0].url);
  $("price").textContent = price === undefined ? "a little" : session ? formatAmount(price, session.unit) : `${price} base units`;
  $("articles").replaceChildren(
    ...articles.map((article) => {
      const body = element("div");
      const button = element("button", { type: "button", textContent: "Read" });
      button.setAttribute("aria-describedby", `title-${article.id}`);
      button.onclick = () => run("paying", () => read(article, body, button));
      const item = element("article", { className: "item", id: `article-${article.id}` }, element("h3", { id: `title-${article.id}` }, article.title), element("p", {}, article.summary), button, body);
      return item;
    }),
  );
}

void run("loading", async () => {
  session = await store.session();
  await showArticles();
  await useSession();
  // Another tab may open, import or top up a channel; a new channel needs a new paid fetch.
  store.onChange(() => void store.session().then((s) => (s?.channel.id !== session?.channel.id ? useSession() : showSpending())));
  return session ? "Choose an article: it is paid from your channel when you open it." : "Open a payment channel in your wallet to read.";
});
