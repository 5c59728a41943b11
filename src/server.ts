// The composition root: configuration → database (ledger + voucher store) → chain → gateway, and the
// settlement (watcher, settlement worker, transaction manager) over the same pieces. The CLI, the demo
// and the tests all assemble paychan through here.
import express, { type Express, type RequestHandler, type Router } from "express";
import { createPublicClient, http, type LocalAccount, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { ChainChannelReader } from "./chain/ChainChannelReader.js";
import { ChainWatcher, type SyncReport } from "./chain/ChainWatcher.js";
import { escrowChainView } from "./chain/escrowState.js";
import { PollingLoop } from "./chain/PollingLoop.js";
import { SettlementWorker, recordSettlementReceipt, type SettlementRound } from "./chain/SettlementWorker.js";
import type { SettlementPolicy } from "./chain/settlementPolicy.js";
import { TxManager, messageOf, type TxEvent, type TxManagerOptions } from "./chain/TxManager.js";
import { ConfigError, type Config } from "./config.js";
import { PaymentGateway } from "./gateway/PaymentGateway.js";
import { paywall, type RouteSpec } from "./gateway/paywall.js";
import type { MirrorScope } from "./ledger/chainMirror.js";
import { openDatabase, type Database } from "./ledger/db.js";
import { bookAccepted } from "./ledger/booking.js";
import { LedgerPaymentStore } from "./ledger/LedgerPaymentStore.js";
import { reconcile, type ReconcileReport } from "./ledger/reconcile.js";
import type { DecidedBatch } from "./ledger/settlementStore.js";
import { consoleRouter } from "./ops/console/consoleRouter.js";

export type Paychan = {
  config: Config;
  db: Database;
  publicClient: PublicClient;
  gateway: PaymentGateway;
  close(): Promise<void>;
};

/** Opens the database (migrating it) and builds the gateway. `publicClient` defaults to RPC_URL. */
export async function startPaychan(config: Config, options: { publicClient?: PublicClient } = {}): Promise<Paychan> {
  if (!config.ESCROW_ADDRESS) throw new ConfigError("ESCROW_ADDRESS is not set: deploy the escrow first (paychan deploy).");
  if (!config.PAYEE_ADDRESS) throw new ConfigError("PAYEE_ADDRESS is not set: the address vouchers pay.");
  const publicClient = options.publicClient ?? (createPublicClient({ transport: http(config.RPC_URL) }) as PublicClient);
  const chainId = await publicClient.getChainId();
  const db = await openDatabase({ url: config.DATABASE_URL });
  // Vouchers a previous process accepted but did not live to book.
  await bookAccepted(db.sql);
  const store = new LedgerPaymentStore(db, { onBookingError: (error) => console.error(`paychan: booking accepted vouchers failed, retrying: ${String(error)}`) });
  const gateway = new PaymentGateway({
    chainId,
    escrow: config.ESCROW_ADDRESS,
    payee: config.PAYEE_ADDRESS,
    asset: config.ASSET,
    store,
    chain: new ChainChannelReader(publicClient, config.ESCROW_ADDRESS),
    minWithdrawDelay: config.MIN_WITHDRAW_DELAY,
    closingMarginSeconds: config.CLOSING_MARGIN_SECONDS,
  });
  return {
    config,
    db,
    publicClient,
    gateway,
    async close() {
      await store.close();
      await db.close();
    },
  };
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
  // The operator's books, unauthenticated: serve it on an internal interface or behind a proxy that checks.
  app.get("/reconcile", (_req, res, next) => {
    reconcilePaychan(paychan).then((report) => res.json(report), next);
  });
  app.use(paywall(paychan.gateway, routes));
  for (const [key, handler] of Object.entries(handlers)) {
    const [method, path] = key.split(/\s+/, 2) as [string, string];
    app[method.toLowerCase() as "get"](path, handler);
  }
  return app;
}

/** Whose books the settlement keeps: this gateway's escrow and payee. */
export function scopeOf(paychan: Paychan): MirrorScope {
  const { location, payee } = paychan.gateway;
  return { chainId: location.chainId, escrow: location.escrow, payee };
}

export function policyOf(config: Config): SettlementPolicy {
  return {
    intervalSeconds: config.SETTLE_INTERVAL_SECONDS,
    threshold: config.SETTLE_THRESHOLD,
    gasMultiplier: config.SETTLE_GAS_MULTIPLIER,
    watchtowerMarginSeconds: config.WATCHTOWER_MARGIN_SECONDS,
    batchSize: config.SETTLE_BATCH_SIZE,
  };
}

/** Chain, ledger and voucher store compared; `ok` is false when money is missing. */
export async function reconcilePaychan(paychan: Paychan): Promise<ReconcileReport> {
  const scope = scopeOf(paychan);
  await bookAccepted(paychan.db.sql);
  return reconcile(paychan.db.prisma, {
    scope,
    chain: escrowChainView(paychan.publicClient, scope.escrow),
    confirmations: paychan.config.CONFIRMATIONS,
  });
}

export type SettlementOptions = {
  /** The settlement key: the payee or an operator it approved. Defaults to SETTLER_PRIVATE_KEY. */
  account?: LocalAccount;
  /** Progress and errors of the background loops and of long work, one line each. */
  log?: (line: string) => void;
  faults?: TxManagerOptions["faults"];
};

export type SettleNowReport = { decided: DecidedBatch[]; transactions: TxEvent[]; synced: SyncReport[] };

export type Settlement = {
  watcher: ChainWatcher;
  worker: SettlementWorker;
  txManager: TxManager;
  /** Mirrors the confirmed blocks, then one settlement round by the policy (decide, send, follow). */
  runOnce(): Promise<{ sync: SyncReport; round: SettlementRound }>;
  /** Claims every accepted voucher now, whatever the policy, and waits until each claim is final and
   * mirrored in the ledger (on an automining dev chain, run with CONFIRMATIONS=0). */
  settleNow(options?: { timeoutMs?: number }): Promise<SettleNowReport>;
  /** Starts the watcher and settlement loops (every POLL_INTERVAL_MS); a withdrawal wakes the settler. */
  start(): void;
  stop(): Promise<void>;
};

const BOOKING_SWEEP_MS = 60_000;

export function createSettlement(paychan: Paychan, options: SettlementOptions = {}): Settlement {
  const { config, db, publicClient: client } = paychan;
  const account = options.account ?? (config.SETTLER_PRIVATE_KEY && privateKeyToAccount(config.SETTLER_PRIVATE_KEY));
  if (!account) throw new ConfigError("SETTLER_PRIVATE_KEY is not set: the key that sends claims (the payee, or an operator it approved).");
  const log = options.log ?? (() => {});
  const scope = scopeOf(paychan);
  const txManager = new TxManager({
    prisma: db.prisma,
    client,
    account,
    chainId: scope.chainId,
    confirmations: config.CONFIRMATIONS,
    bumpAfterSeconds: config.FEE_BUMP_AFTER_SECONDS,
    onFinal: recordSettlementReceipt,
    faults: options.faults,
  });
  const worker = new SettlementWorker({ prisma: db.prisma, client, txManager, scope, policy: policyOf(config) });
  // Books what gateways accepted and did not live to book (they book their own within a second).
  let sweptAt = 0;
  const settleLoop = new PollingLoop(
    async () => {
      if (Date.now() - sweptAt >= BOOKING_SWEEP_MS) {
        const { booked, failed } = await bookAccepted(db.sql);
        sweptAt = Date.now();
        if (booked > 0) log(`booked accepted vouchers of ${booked} channel(s) that no gateway had booked`);
        for (const f of failed) log(`cannot book the accepted vouchers of channel ${f.channelId}: ${f.reason} (reconcile names it)`);
      }
      const round = await worker.settleOnce();
      for (const batch of round.decided) log(`decided a ${batch.trigger} batch of ${batch.items.length} channels claiming ${batch.total}`);
      for (const e of round.transactions) if (e.action !== "waiting") log(`claim transaction ${e.hash ?? e.chainTxId}: ${e.action}${e.detail ? ` (${e.detail})` : ""}`);
    },
    config.POLL_INTERVAL_MS,
    (error) => log(`settlement: ${messageOf(error)}`),
  );
  const watcher = new ChainWatcher({
    prisma: db.prisma,
    client,
    scope,
    confirmations: config.CONFIRMATIONS,
    fromBlock: config.WATCH_FROM_BLOCK,
    blockRange: BigInt(config.LOG_BLOCK_RANGE),
    onWithdrawalRequested: (ids) => {
      log(`withdrawal started on ${ids.length} channel(s): claiming them now`);
      settleLoop.wake();
    },
    onProgress: ({ to, target, events }) => {
      if (target - to > 0n || events > 0) log(`mirrored blocks up to ${to} of ${target} (${events} events)`);
    },
  });
  const watchLoop = new PollingLoop(
    async () => {
      const report = await watcher.syncOnce();
      if (report.reorg) log(`reorg: rewound from block ${report.reorg.from} to ${report.reorg.to}, reversed ${report.reorg.reversedEntries} entries`);
    },
    config.POLL_INTERVAL_MS,
    (error) => log(`watcher: ${messageOf(error)}`),
  );

  return {
    watcher,
    worker,
    txManager,
    async runOnce() {
      const sync = await watcher.syncOnce();
      const round = await worker.settleOnce();
      return { sync, round };
    },
    async settleNow({ timeoutMs = 120_000 } = {}) {
      const deadline = Date.now() + timeoutMs;
      const synced = [await watcher.syncOnce()];
      const decided = await worker.decide({ manual: true });
      for (const batch of decided) log(`batch of ${batch.items.length} channels claiming ${batch.total}`);
      const transactions: TxEvent[] = [];
      let landedAt = -1n;
      for (;;) {
        const events = await txManager.process();
        transactions.push(...events);
        for (const e of events) {
          if (e.action !== "waiting") log(`claim transaction ${e.hash ?? e.chainTxId}: ${e.action}${e.detail ? ` (${e.detail})` : ""}`);
          if ((e.action === "confirmed" || e.action === "failed") && e.blockNumber !== undefined && e.blockNumber > landedAt) landedAt = e.blockNumber;
        }
        const sync = await watcher.syncOnce();
        synced.push(sync);
        if ((await txManager.inFlight()) === 0 && sync.to >= landedAt) break;
        if (Date.now() > deadline) throw new Error(`settle-now timed out after ${timeoutMs} ms with claims still in flight (waiting for ${config.CONFIRMATIONS} confirmations?).`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(config.POLL_INTERVAL_MS, 1_000)));
      }
      return { decided, transactions, synced };
    },
    start() {
      watchLoop.start();
      settleLoop.start();
    },
    async stop() {
      await Promise.all([watchLoop.stop(), settleLoop.stop()]);
    },
  };
}

/** For scripts and the demo: claims every accepted voucher now and waits until the ledger mirrors it. */
export function runSettlementOnce(paychan: Paychan, account?: LocalAccount, options: { timeoutMs?: number } = {}): Promise<SettleNowReport> {
  return createSettlement(paychan, { account }).settleNow(options);
}

/**
 * The operator console (a page and its JSON endpoints over this gateway's books), for the operator
 * listener, never the public app: `authenticate` guards the endpoints (the operator token). Pass the
 * `settlement` this process runs, if any, so the console can settle now.
 */
export function createConsole(paychan: Paychan, options: { authenticate: RequestHandler; settlement?: Settlement; explorerTxUrl?: string }): Router {
  const { settlement } = options;
  return consoleRouter({
    sql: paychan.db.sql,
    scope: scopeOf(paychan),
    confirmations: paychan.config.CONFIRMATIONS,
    authenticate: options.authenticate,
    reconcile: () => reconcilePaychan(paychan),
    settleNow: settlement && (() => settlement.settleNow()),
    explorerTxUrl: options.explorerTxUrl,
  });
}
