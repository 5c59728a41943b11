// A sample paid page's server side: a free list of articles and their bodies behind the paywall, each
// at the same small price. `npm run dev` and the browser tests serve it with the wallet app.
import type { RequestHandler } from "express";
import type { RouteSpec } from "../gateway/paywall.js";

type Article = { id: string; title: string; summary: string; body: string };

const ARTICLES: Article[] = [
  ["why-micropayments-failed", "Why micropayments failed, twice", "Card fees, then mental transaction costs.", "Every earlier attempt charged per click with a per-click cost to settle. Channels move that cost to the end: one deposit, many signatures, one claim."],
  ["vouchers", "A voucher is a signed running total", "The payer never signs a payment, only a new total.", "Each voucher says: you may take this much in total. The newest one replaces all the others, so losing one costs nothing."],
  ["session-keys", "Session keys, or how to stop asking the wallet", "One prompt opens the channel; the page signs the rest.", "The channel names a signer. The page generates its key and keeps it; it can spend the deposit and nothing else."],
  ["batch-claims", "Claiming a thousand channels in one transaction", "Settlement cost per channel falls with the batch.", "The seller sums up many channels' latest vouchers in one claimBatch call, paying the transaction's base cost once."],
  ["withdrawal-delay", "The payer's exit: a delay, not a permission", "You can always leave; the seller gets time to claim.", "Requesting a withdrawal starts a clock. The seller claims what was paid before it runs out; the payer takes the rest."],
  ["double-entry", "Double entry for a payment gateway", "Every voucher is a movement between two accounts.", "Available becomes owed when a voucher is accepted; owed becomes paid when the chain says it was claimed."],
  ["reconciliation", "The morning report", "Chain, ledger and voucher store compared, line by line.", "Reconciliation names each difference and its likely cause, so an operator knows whether money is missing or just late."],
  ["reorgs", "When the chain changes its mind", "A reorg reverses entries; it never edits them.", "The watcher mirrors events a few blocks behind the head and books a reversal when a block it read disappears."],
  ["gas", "What a paid request costs in gas", "A few hundred gas, spread over a batch.", "One claim per channel per batch, many requests per voucher: the gas per request is what is left after both divisions."],
  ["x402", "Speaking x402", "A 402 that says how to pay, a header that pays.", "The seller answers an unpaid request with its terms; the client retries with a payment header and gets a receipt."],
  ["watchtower", "Watching for the payer's exit", "A withdrawal wakes the settler.", "When the watcher sees a withdrawal request it claims that channel at once, well before the deadline."],
  ["permit", "One signature instead of an approval", "EIP-2612 lets a token deposit skip the approve transaction.", "The wallet signs a permit; the escrow presents it and pulls the deposit in the same transaction that opens the channel."],
].map(([id, title, summary, body]) => ({ id: id!, title: title!, summary: summary!, body: body! }));

/** The routes (for the paywall) and handlers of the sample articles, priced `price` each. */
export function sampleArticles(price: bigint): { routes: Record<string, RouteSpec>; handlers: Record<string, RequestHandler> } {
  const byId = new Map(ARTICLES.map((a) => [a.id, a]));
  return {
    // One route per article: an unknown one is not behind the paywall and gets a plain 404, uncharged.
    routes: Object.fromEntries(
      ARTICLES.map((a) => [`GET /api/articles/${a.id}`, { price, description: `The Ledger Review: ${a.title}`, mimeType: "application/json" }]),
    ),
    handlers: {
      "GET /api/articles": (_req, res) => void res.json(ARTICLES.map(({ id, title, summary }) => ({ id, title, summary, url: `/api/articles/${id}` }))),
      "GET /api/articles/:id": (req, res) => {
        const article = byId.get(String(req.params.id));
        if (!article) return void res.status(404).json({ error: "not_found", message: `There is no article "${String(req.params.id)}".` });
        res.json({ id: article.id, title: article.title, body: article.body });
      },
    },
  };
}
