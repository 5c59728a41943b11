// The operator console as an Express Router: one page (public: it holds no data, only the code that
// asks for it) and its JSON endpoints under api/, every one behind the `authenticate` middleware the
// caller passes — the operator listener's bearer-token check. The endpoints are thin: the data comes
// from src/ops/dashboard.ts, which the CLI prints too.
//
// Mount it with a trailing-slash-insensitive prefix, e.g. `app.use("/admin", consoleRouter(…))`; the
// page's URLs are relative, so it works under any prefix.
import { readFile } from "node:fs/promises";
import express, { type NextFunction, type Request, type RequestHandler, type Response, type Router } from "express";
import { z } from "zod";
import type { MirrorScope } from "../../ledger/chainMirror.js";
import type { ReconcileReport } from "../../ledger/reconcile.js";
import { recentRiskDecisions, type StoredRiskDecision } from "../../ledger/riskDecisions.js";
import type { Sql } from "../../ledger/sql.js";
import { bundle } from "../../web/bundle.js";
import {
  exposure,
  gasVsRevenue,
  reconciliationStatus,
  revenue,
  settlementHistory,
  settlementQueue,
  watcherStatus,
  type ReconciliationStatus,
} from "../dashboard.js";

export type ConsoleOptions = {
  sql: Sql;
  scope: MirrorScope;
  confirmations: number;
  /** Checks the caller of every JSON endpoint (the operator token); the page itself is public. */
  authenticate: RequestHandler;
  /** Runs reconciliation (chain, ledger, voucher store). */
  reconcile: () => Promise<ReconcileReport>;
  /** Claims every accepted voucher now and waits until it is final; absent where this process does
   * not run the settlement (the button is then hidden, and POST api/settle answers 409). */
  settleNow?: () => Promise<{ decided: { items: unknown[]; total: bigint }[]; transactions: { action: string }[] }>;
  /** Links transaction hashes to an explorer: the hash is appended, e.g. "https://etherscan.io/tx/". */
  explorerTxUrl?: string;
  /** How ERC-20 assets are written, by ledger asset id (native ETH needs no entry). */
  units?: Record<string, { symbol: string; decimals: number }>;
};

/** What the page learns when it signs in. */
export type ConsoleSession = {
  scope: MirrorScope;
  canSettle: boolean;
  explorerTxUrl: string | null;
  units: Record<string, { symbol: string; decimals: number }>;
  /** The last reconciliation this process ran, if any. */
  reconciliation: ReconciliationStatus | null;
};

/** One risk decision as the console shows it (src/policy/risk.ts): seconds since the epoch, amounts as strings. */
export type ConsoleRiskDecision = Omit<StoredRiskDecision, "at" | "amount"> & { at: number; amount: string };

const revenueQuery = z.object({
  window: z.coerce.number().int().min(60).max(30 * 86_400).default(3_600),
  bucket: z.coerce.number().int().min(10).max(86_400).default(60),
});
const limitQuery = z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) });
/** A chart of more buckets than this is not worth drawing (nor the query that fills it). */
const MAX_BUCKETS = 2_000;

const html = readFile(new URL("../../../web/console/index.html", import.meta.url), "utf8");

export function consoleRouter(options: ConsoleOptions): Router {
  const { sql, scope } = options;
  const router = express.Router({ strict: true });
  let lastReconciliation: ReconciliationStatus | null = null;
  let reconciling: Promise<ReconciliationStatus> | undefined;
  let settling: Promise<unknown> | undefined;

  // Relative URLs in the page need the prefix to end with a slash.
  router.get("/", (req, res, next) => {
    if (!req.originalUrl.split("?")[0]!.endsWith("/")) return res.redirect(301, `${req.baseUrl}/`);
    html.then((page) => res.set(pageHeaders).type("html").send(page), next);
  });
  router.get("/console.js", (_req, res, next) => {
    bundle("console/console.ts").then((b) => res.set(pageHeaders).type("text/javascript").send(b.js), next);
  });
  router.get("/console.css", (_req, res, next) => {
    bundle("console/console.ts").then((b) => res.set(pageHeaders).type("text/css").send(b.css), next);
  });

  const api = express.Router();
  api.use((_req, res, next) => {
    res.set({ "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff" });
    next();
  });
  api.use(options.authenticate);
  api.get("/session", (_req, res) => {
    const body: ConsoleSession = {
      scope,
      canSettle: options.settleNow !== undefined,
      explorerTxUrl: options.explorerTxUrl ?? null,
      units: options.units ?? {},
      reconciliation: lastReconciliation,
    };
    res.json(body);
  });
  api.get("/exposure", answer(() => exposure(sql, scope)));
  api.get(
    "/revenue",
    answer((req) => {
      const { window, bucket } = parse(revenueQuery, req.query);
      if (window / bucket > MAX_BUCKETS) throw new BadRequest(`window / bucket must be at most ${MAX_BUCKETS} buckets.`);
      return revenue(sql, scope, { windowSeconds: window, bucketSeconds: bucket });
    }),
  );
  api.get("/settlements", answer((req) => settlementHistory(sql, scope, parse(limitQuery, req.query).limit)));
  api.get("/gas", answer(() => gasVsRevenue(sql, scope)));
  api.get("/watcher", answer(() => watcherStatus(sql, scope, options.confirmations)));
  api.get("/queue", answer(() => settlementQueue(sql, scope)));
  api.get(
    "/risk",
    answer(async (req) => {
      const decisions = await recentRiskDecisions(sql, { limit: parse(limitQuery, req.query).limit });
      return decisions.map((d): ConsoleRiskDecision => ({ ...d, at: d.at.getTime() / 1000, amount: d.amount.toString() }));
    }),
  );
  api.get("/reconciliation", (_req, res) => void res.json(lastReconciliation));
  api.post(
    "/reconciliation",
    answer(async () => {
      // One run at a time: a second click waits for the run under way.
      reconciling ??= options
        .reconcile()
        .then(reconciliationStatus)
        .finally(() => (reconciling = undefined));
      lastReconciliation = await reconciling;
      return lastReconciliation;
    }),
  );
  api.post("/settle", (_req, res, next) => {
    const settleNow = options.settleNow;
    if (!settleNow) {
      res.status(409).json({
        error: "settlement_unavailable",
        message: "This process does not run the settlement worker: run `paychan settle-now` where it runs.",
      });
      return;
    }
    settling ??= settleNow().finally(() => (settling = undefined));
    (settling as ReturnType<typeof settleNow>).then((report) => {
      res.json({
        batches: report.decided.length,
        channels: report.decided.reduce((n, b) => n + b.items.length, 0),
        total: report.decided.reduce((sum, b) => sum + b.total, 0n).toString(),
        confirmed: report.transactions.filter((t) => t.action === "confirmed").length,
      });
    }, next);
  });
  api.use((_req, res) => void res.status(404).json({ error: "not_found", message: "No such console endpoint." }));
  api.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof BadRequest) return void res.status(400).json({ error: "invalid_query", message: error.message });
    console.error("console: an endpoint failed:", error);
    res.status(500).json({ error: "console_failed", message: "The console could not read the books; the server's log says why." });
  });
  router.use("/api", api);
  return router;
}

/** The page runs only its own bundled script and draws from its own origin. */
const pageHeaders = {
  "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

class BadRequest extends Error {}

function parse<T extends z.ZodType>(schema: T, query: unknown): z.output<T> {
  const parsed = schema.safeParse(query);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new BadRequest(`${issue.path.join(".")}: ${issue.message}`);
  }
  return parsed.data;
}

function answer(work: (req: Request) => Promise<unknown>): RequestHandler {
  return (req, res, next) => {
    // A synchronous throw (a bad query) and a rejection both go to the error handler.
    Promise.resolve()
      .then(() => work(req))
      .then((body) => res.json(body), next);
  };
}
