// Serves the buyer's pages from the seller's public app: the wallet (/wallet) and, when the seller has
// the sample articles, the paid article page (/articles). Static: the pages talk to the gateway only
// over HTTP (its 402s and paid routes) and to the chain through the buyer's wallet.
import { readFile } from "node:fs/promises";
import express, { type Router } from "express";
import type { WalletConfig } from "./WalletConfig.js";
import { bundle } from "./bundle.js";

export type { WalletConfig };

const pages = {
  wallet: { html: "wallet/index.html", entry: "wallet/wallet.ts" },
  articles: { html: "articles/index.html", entry: "articles/articles.ts" },
} as const;

export function walletApp(config: WalletConfig): Router {
  const router = express.Router();
  const served = config.articlesUrl ? (["wallet", "articles"] as const) : (["wallet"] as const);
  for (const name of served) {
    const { html, entry } = pages[name];
    const page = readFile(new URL(`../../web/${html}`, import.meta.url), "utf8");
    router.get(`/${name}`, (_req, res, next) => void page.then((text) => res.set(headers).type("html").send(text), next));
    router.get(`/${name}/app.js`, (_req, res, next) => void bundle(entry).then((b) => res.set(headers).type("text/javascript").send(b.js), next));
    router.get(`/${name}/app.css`, (_req, res, next) => void bundle(entry).then((b) => res.set(headers).type("text/css").send(b.css), next));
  }
  router.get("/wallet/config.json", (_req, res) => void res.set(headers).json(config));
  return router;
}

const headers = { "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache" };
