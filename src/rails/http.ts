// HTTP for the fiat rails, thin Express adapters over FiatRails and the credit books:
// - public (the gateway's listener): the processor's webhook, which must see the raw body to verify
//   its signature, and a key holder's card top-up;
// - operator (the operator listener, behind OPERATOR_TOKEN): credit accounts, their keys, seller
//   payout destinations, and payout runs.
import express, { type Request, type Response, type Router } from "express";
import { createCreditAccount, creditBalance, findCreditKey, issueCreditKey, revokeCreditKey, KEY_PREFIX } from "../ledger/credit.js";
import { parseMajor } from "../ledger/currency.js";
import { noticesOf, rechargesOf } from "../ledger/dunning.js";
import { setSellerDestination } from "../ledger/payouts.js";
import type { FiatRails } from "./FiatRails.js";
import { TopUpError } from "./FiatRails.js";
import { RailError, RailWebhookError } from "./Rail.js";

/** The processor's webhook path on the public listener. */
export const webhookPath = (rail: string) => `/webhooks/${rail}`;
export const TOP_UP_PATH = "/credit/topups";

export function publicFiatRoutes(fiat: FiatRails, onError: (message: string, error: unknown) => void = console.error): Router {
  const router = express.Router();
  router.post(webhookPath(fiat.rail.name), express.raw({ type: () => true, limit: "1mb" }), (req, res) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    fiat.receiveWebhook(body, req.headers).then(
      ({ eventId, outcome }) => res.json({ received: eventId, outcome }),
      (error: unknown) => {
        if (error instanceof RailWebhookError) return void res.status(400).json({ error: "invalid_webhook", message: error.message });
        // The processor delivers again later: nothing was applied.
        onError("fiat: could not apply a webhook:", error);
        res.status(500).json({ error: "unavailable", message: "The webhook could not be applied now; it will be retried." });
      },
    );
  });
  router.post(TOP_UP_PATH, express.json({ limit: "4kb" }), (req, res) => {
    void topUp(fiat, req, res).catch((error: unknown) => {
      if (error instanceof TopUpError || error instanceof RangeError) return void res.status(400).json({ error: "invalid_top_up", message: error.message });
      if (error instanceof RailError) return void res.status(502).json({ error: "processor_unavailable", message: "The card processor did not answer; retry in a moment." });
      onError("fiat: could not start a top-up:", error);
      res.status(503).json({ error: "unavailable", message: "Top-ups are briefly unavailable; retry in a moment." });
    });
  });
  return router;
}

async function topUp(fiat: FiatRails, req: Request, res: Response): Promise<void> {
  const token = /^Bearer (\S+)$/i.exec(req.get("authorization") ?? "")?.[1];
  const key = token?.startsWith(KEY_PREFIX) ? await findCreditKey(fiat.db.sql, token) : undefined;
  if (!key || key.revoked) {
    res.setHeader("WWW-Authenticate", 'Bearer realm="paychan credit"');
    res.status(401).json({ error: key ? "credit_key_revoked" : "credit_key_invalid", message: "A top-up needs Authorization: Bearer <credit key>." });
    return;
  }
  const amount = typeof req.body?.amount === "string" ? req.body.amount : "";
  const started = await fiat.startTopUp(key.accountId, parseMajor(fiat.currency, amount));
  res.status(201).json({ topUpId: started.topUpId, url: started.url, amount: started.amount.toString(), asset: fiat.asset });
}

export function operatorFiatRoutes(fiat: FiatRails): Router {
  const router = express.Router();
  const db = fiat.db.prisma;
  router.use(express.json({ limit: "16kb" }));
  const list = (value: unknown) => (Array.isArray(value) && value.every((v) => typeof v === "string") ? (value as string[]) : undefined);
  router.post("/credit/accounts", async (req, res) => {
    const { id } = await createCreditAccount(db, { currency: fiat.currency, label: typeof req.body?.label === "string" ? req.body.label : undefined });
    const { keyId, key } = await issueCreditKey(db, id, { sellers: list(req.body?.sellers), pathPrefixes: list(req.body?.pathPrefixes) });
    res.status(201).json({ accountId: id, asset: fiat.asset, keyId, key });
  });
  router.post("/credit/accounts/:id/keys", async (req, res) => {
    if (!(await creditBalance(db, req.params.id!))) return void res.status(404).json({ error: "not_found", message: `No credit account ${req.params.id}.` });
    const issued = await issueCreditKey(db, req.params.id!, { sellers: list(req.body?.sellers), pathPrefixes: list(req.body?.pathPrefixes), label: req.body?.label });
    res.status(201).json(issued);
  });
  router.post("/credit/keys/:keyId/revoke", async (req, res) => {
    if (!(await revokeCreditKey(db, req.params.keyId!))) return void res.status(404).json({ error: "not_found", message: `No key ${req.params.keyId}.` });
    res.json({ revoked: req.params.keyId });
  });
  router.get("/credit/accounts/:id", async (req, res) => {
    const balance = await creditBalance(db, req.params.id!);
    if (!balance) return void res.status(404).json({ error: "not_found", message: `No credit account ${req.params.id}.` });
    // With its recharges and notices, so the operator sees why an account is suspended and what the seller was told.
    const account = { ...balance, recharges: await rechargesOf(db, balance.accountId), notices: await noticesOf(db, balance.accountId) };
    res.json(JSON.parse(JSON.stringify(account, (_k, v) => (typeof v === "bigint" ? v.toString() : v))));
  });
  router.put("/credit/sellers/:seller", async (req, res) => {
    const destination = req.body?.destination;
    if (typeof destination !== "string" || destination === "") return void res.status(400).json({ error: "invalid", message: "Give the seller's processor account as destination." });
    await setSellerDestination(db, req.params.seller!, destination);
    res.json({ seller: req.params.seller, destination });
  });
  router.post("/payouts/run", async (_req, res) => {
    const outcomes = await fiat.runPayouts();
    res.json(JSON.parse(JSON.stringify(outcomes, (_k, v) => (typeof v === "bigint" ? v.toString() : v))));
  });
  return router;
}
