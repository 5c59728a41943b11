// The composition root: configuration → database (ledger + voucher store) → chain → gateway, and the
// settlement (watcher, settlement worker, transaction manager) over the same pieces. The CLI, the demo
// and the tests all assemble paychan through here. It is also where the rooms' observer callbacks
// become log lines and metrics (src/ops): no other room logs or counts by itself.
import express, { type Express, type Request, type RequestHandler, type Response, type Router } from "express";
import {
  BaseError,
  HttpRequestError,
  TimeoutError,
  createPublicClient,
  erc20Abi,
  http,
  zeroAddress,
  type Hex,
  type LocalAccount,
  type PublicClient,
  type Transport,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { ChainChannelReader } from "./chain/ChainChannelReader.js";
import { ChainWatcher, type SyncReport } from "./chain/ChainWatcher.js";
import { escrowChainView } from "./chain/escrowState.js";
import { PollingLoop } from "./chain/PollingLoop.js";
import { SettlementWorker, recordSettlementReceipt, type SettlementRound, type Unprofitable } from "./chain/SettlementWorker.js";
import type { SettlementPolicy } from "./chain/settlementPolicy.js";
import { TxManager, messageOf, type TxEvent, type TxManagerOptions } from "./chain/TxManager.js";
import { verifyEscrow } from "./chain/verifyEscrow.js";
import { ConfigError, StartupError, confirmationsFor, isDevChain, pendingDepositCapFor, redactUrl, type Config } from "./config.js";
import { CreditScheme } from "./gateway/CreditScheme.js";
import { PaymentGateway } from "./gateway/PaymentGateway.js";
import type { PaymentScheme } from "./gateway/PaymentScheme.js";
import { paywall, type PaymentDecision, type PaywallOptions, type RouteSpec } from "./gateway/paywall.js";
import { RiskGate } from "./gateway/RiskGate.js";
import type { ExposureCap } from "./ledger/acceptVouchers.js";
import { RiskDecisionLog, recentRiskDecisions } from "./ledger/riskDecisions.js";
import { RiskPolicy, type Limits, type RiskRecord, type RiskRules, type VelocityLimits } from "./policy/risk.js";
import { bookCredit } from "./ledger/creditBooking.js";
import { FIAT_DECIMALS, parseMajor, minorToBase } from "./ledger/currency.js";
import { LedgerCreditStore } from "./ledger/LedgerCreditStore.js";
import { setSellerDestination } from "./ledger/payouts.js";
import { Dunning, type DunningOptions } from "./rails/Dunning.js";
import { FiatRails } from "./rails/FiatRails.js";
import { TOP_UP_PATH, operatorFiatRoutes, publicFiatRoutes } from "./rails/http.js";
import type { Rail } from "./rails/Rail.js";
import { StripeRail } from "./rails/StripeRail.js";
import { cursorIdOf, type MirrorScope } from "./ledger/chainMirror.js";
import { openDatabase, type Database } from "./ledger/db.js";
import { bookAccepted } from "./ledger/booking.js";
import { LedgerPaymentStore } from "./ledger/LedgerPaymentStore.js";
import { reconcile, type ReconcileReport } from "./ledger/reconcile.js";
import { toBigInt } from "./ledger/amount.js";
import { batchIdOf, claimCandidates, type DecidedBatch } from "./ledger/settlementStore.js";
import { nativeAsset } from "./ledger/asset.js";
import { postgresError } from "./ledger/errors.js";
import { claimsInFlight, exposureByAsset, gasSpentByAsset, mirroredBlock, oldestUnclaimed, settlementLags } from "./ledger/exposure.js";
import { QuietLog } from "./ops/log.js";
import { answerFailures, createOperatorApp, guard } from "./ops/operatorApp.js";
import { consoleRouter } from "./ops/console/consoleRouter.js";
import { PriceError, PriceTable, type Rate } from "./policy/prices.js";
import type { VolumeCounter } from "./policy/pricing.js";
import { PayerVolume } from "./ledger/payerVolume.js";
import { tokenAsset, type Asset } from "./ledger/asset.js";
import { Eip3009Token, readTokenDomain } from "./x402/exact/Eip3009Token.js";
import { ExactScheme, databaseExactStore } from "./x402/exact/ExactScheme.js";
import { ExactSettlement } from "./x402/exact/ExactSettlement.js";
import { createLogger, errorFields, secretsOf, type Logger } from "./ops/logger.js";
import { Metrics } from "./ops/metrics.js";
import { requestIdOf, requestIds } from "./ops/requestId.js";
import { SCHEME } from "./protocol/wire.js";

export type Paychan = {
  /** The configuration, CONFIRMATIONS resolved for the chain. */
  config: Config;
  db: Database;
  publicClient: PublicClient;
  gateway: PaymentGateway;
  /** The fiat rails and the `credit` scheme, when STRIPE_SECRET_KEY (or a rail) is given. */
  fiat?: FiatRails;
  credit?: CreditScheme;
  /** Low-balance notices and auto-recharge for credit (`paychan work` runs it), when configured. */
  dunning?: Dunning;
  /** x402 `exact` (EIP-3009) beside the channels, when EXACT_TOKEN is set. */
  exact?: ExactScheme;
  /** Every payment scheme a route is offered in, in the 402's order: the channel, credit, exact.
   * `paywall(paychan.schemes, routes, { prices: paychan.prices })`. */
  schemes: PaymentScheme[];
  /** The one price table: bare bigints in ASSET; dollars converted with ASSET_USD, CREDIT_USD_RATE and EXACT_TOKEN_USD. */
  prices: PriceTable;
  /** The database's count of a payer's paid requests this month, for volume tiers on a route:
   * `new RoutePricing({ price, tiers, volume: paychan.volume })` (src/policy/pricing.ts). */
  volume: VolumeCounter;
  /** Blocks on top before an event or a claim counts: CONFIRMATIONS, or the chain's default. */
  confirmations: number;
  /** Counters, histograms and figures read from the database at scrape time: GET /metrics on the
   * operator listener (createOperatorEndpoints). */
  metrics: Metrics;
  /** The structured log (LOG_LEVEL, LOG_FORMAT), secrets scrubbed. */
  log: Logger;
  /** Options for `paywall()`: the price table, and callbacks that log and count each payment
   * decision (createApp passes them): `paywall(paychan.schemes, routes, paychan.paywallOptions)`. */
  paywallOptions: PaywallOptions;
  /** The seller's risk policy (RISK_*), when one is configured; its decisions go to `riskDecisions`. */
  risk?: RiskGate;
  riskDecisions: RiskDecisionLog;
  /** Settlement loops running in this process (createSettlement adds its own): a channel refused by
   * the exposure cap wakes them to claim it. A `work` process elsewhere claims it on its next poll. */
  settlementWakers: Set<() => void>;
  close(): Promise<void>;
};

export type StartOptions = {
  /** Default: a client for RPC_URL whose failed requests paychan_rpc_errors_total counts. */
  publicClient?: PublicClient;
  /** Default: a logger on stdout configured by LOG_LEVEL and LOG_FORMAT. */
  logger?: Logger;
  metrics?: Metrics;
  /** Default: Stripe when STRIPE_SECRET_KEY is set, else no fiat rails. */
  rail?: Rail;
};

/** A client for RPC_URL whose every request gives up after RPC_TIMEOUT_MS (viem retries 3 times);
 * `onError` hears the method of each request that failed in the end. */
export function createRpcClient(
  config: Config,
  { retryCount, onError }: { retryCount?: number; onError?: (method: string, error: unknown) => void } = {},
): PublicClient {
  const transport = http(config.RPC_URL, { timeout: config.RPC_TIMEOUT_MS, retryCount });
  return createPublicClient({ transport: onError ? reportingFailures(transport, onError) : transport }) as PublicClient;
}

/** The transport, telling `onError` about every request that failed (after its retries). */
function reportingFailures(transport: Transport, onError: (method: string, error: unknown) => void): Transport {
  return (params) => {
    const inner = transport(params);
    const request = (async (args: { method: string }, options?: unknown) => {
      try {
        return await (inner.request as (args: unknown, options?: unknown) => Promise<unknown>)(args, options);
      } catch (error) {
        onError(args.method, error);
        throw error;
      }
    }) as typeof inner.request;
    return { ...inner, request };
  };
}

/** A logger as LOG_LEVEL and LOG_FORMAT say, scrubbing every secret of `config`; on stdout unless
 * `destination` says otherwise (one-shot commands log on stderr, beside their report on stdout). */
export function loggerFor(config: Config, destination: number | { write(line: string): unknown } = 1): Logger {
  return createLogger({ level: config.LOG_LEVEL, format: config.LOG_FORMAT, secrets: secretsOf(config), destination });
}

/** Whether a failure came from the database (as opposed to the chain, whose JSON-RPC failures the
 * transport counts, or a bug): a Postgres error, a Prisma error, or a lost connection. */
export function isDatabaseFailure(error: unknown): boolean {
  if (error instanceof BaseError) return false;
  if (postgresError(error)) return true;
  for (let e: unknown = error, depth = 0; e && typeof e === "object" && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const { name, code, message } = e as { name?: unknown; code?: unknown; message?: unknown };
    if (typeof name === "string" && name.startsWith("PrismaClient")) return true;
    if (typeof code === "string" && code in networkErrors) return true;
    if (typeof message === "string" && /connection terminated|connection (is )?(closed|ended)|pglite is closed|timeout exceeded when trying to connect/i.test(message)) return true;
  }
  return false;
}

/**
 * Checks the chain (answers within RPC_TIMEOUT_MS, holds a PaychanEscrow at ESCROW_ADDRESS), opens
 * the database (migrating it) and builds the gateway. `publicClient` defaults to RPC_URL.
 */
export async function startPaychan(config: Config, options: StartOptions = {}): Promise<Paychan> {
  if (!config.ESCROW_ADDRESS) throw new ConfigError("ESCROW_ADDRESS is not set: deploy the escrow first (paychan deploy).");
  if (!config.PAYEE_ADDRESS) throw new ConfigError("PAYEE_ADDRESS is not set: the address vouchers pay.");
  const rail = options.rail ?? stripeRailOf(config);
  const keeping = keepingBuyersOf(config, rail !== undefined);
  const log = options.logger ?? loggerFor(config);
  const metrics =
    options.metrics ??
    new Metrics({
      onCollectorError: (collector, error) => {
        if (isDatabaseFailure(error)) metrics.databaseError("metrics");
        log.warn({ collector, ...errorFields(log, error) }, "metrics: a scrape-time collector failed");
      },
    });
  const publicClient = options.publicClient ?? createRpcClient(config, { onError: (method) => metrics.rpcError(method) });
  const chainId = await checkChain(config, options.publicClient);
  const confirmations = confirmationsFor(config, chainId);
  const db = await openDatabase({ url: config.DATABASE_URL, connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS });
  // Vouchers a previous process accepted but did not live to book.
  await bookAccepted(db.sql);
  const settlementWakers = new Set<() => void>();
  const store = new LedgerPaymentStore(db, {
    onBookingError: (error) => {
      if (isDatabaseFailure(error)) metrics.databaseError("booking");
      log.warn(errorFields(log, error), "booking accepted vouchers failed; retrying within a second");
    },
  });
  const gateway = new PaymentGateway({
    chainId,
    escrow: config.ESCROW_ADDRESS,
    payee: config.PAYEE_ADDRESS,
    asset: config.ASSET,
    store,
    chain: new ChainChannelReader(publicClient, config.ESCROW_ADDRESS),
    minWithdrawDelay: config.MIN_WITHDRAW_DELAY,
    pendingDepositCap: pendingDepositCapFor(config, confirmations),
    closingMarginSeconds: config.CLOSING_MARGIN_SECONDS,
    onCommit: (batch) => metrics.commit(batch),
    exposureCap: exposureCapOf(config),
    onExposureCapped: () => {
      for (const wake of settlementWakers) wake();
    },
  });
  let fiat: FiatRails | undefined;
  let credit: CreditScheme | undefined;
  let creditStore: LedgerCreditStore | undefined;
  let dunning: Dunning | undefined;
  const extraRates: Partial<Record<Asset, Rate>> = {};
  if (rail) {
    fiat = new FiatRails({
      db,
      rail,
      currency: config.CREDIT_CURRENCY,
      payoutThreshold: minorToBase(config.CREDIT_CURRENCY, parseMajor(config.CREDIT_CURRENCY, config.PAYOUT_THRESHOLD)),
      successUrl: config.TOPUP_SUCCESS_URL,
      cancelUrl: config.TOPUP_CANCEL_URL,
      saveCards: keeping.recharge !== undefined,
    });
    dunning = new Dunning({ db, rail, currency: fiat.currency, asset: fiat.asset, ...keeping, log: (line, level = "info") => log[level](line) });
    // Credit a previous process spent but did not live to book.
    await bookCredit(db.sql);
    creditStore = new LedgerCreditStore(db, {
      lowBalance: keeping.notices && keeping.threshold,
      onBookingError: (error) => {
        if (isDatabaseFailure(error)) metrics.databaseError("booking");
        log.warn(errorFields(log, error), "booking spent credit failed; retrying within a second");
      },
    });
    credit = new CreditScheme({ store: creditStore, seller: gateway.payee, asset: fiat.asset, topUpPath: TOP_UP_PATH });
    if (config.STRIPE_SELLER_ACCOUNT) await setSellerDestination(db.prisma, gateway.payee, config.STRIPE_SELLER_ACCOUNT);
    extraRates[fiat.asset] = { usd: config.CREDIT_USD_RATE, decimals: FIAT_DECIMALS };
  }
  const { prices, exact } = await pricesAndExact(config, chainId, publicClient, db, gateway, extraRates).catch(async (error: unknown) => {
    await store.close();
    await db.close();
    throw error;
  });
  const riskDecisions = new RiskDecisionLog(db.sql, {
    onError: (error, dropped) => {
      if (isDatabaseFailure(error)) metrics.databaseError("risk");
      log.warn({ dropped, ...errorFields(log, error) }, "risk: could not record decisions; they are only in this log");
    },
  });
  const policy = new RiskPolicy(riskRulesOf(config, gateway.defaultAsset));
  const risk = policy.active
    ? new RiskGate(policy, {
        onDecision: (record) => {
          logRisk(log, record);
          riskDecisions.record(record);
        },
      })
    : undefined;
  const scope: MirrorScope = { chainId, escrow: gateway.location.escrow, payee: gateway.payee };
  collectFromDatabase(metrics, { db, publicClient, scope, fromBlock: config.WATCH_FROM_BLOCK, asset: gateway.defaultAsset });
  return {
    config: { ...config, CONFIRMATIONS: confirmations },
    db,
    publicClient,
    gateway,
    fiat,
    credit,
    dunning,
    exact,
    schemes: [gateway, ...(credit ? [credit] : []), ...(exact ? [exact] : [])],
    prices,
    volume: new PayerVolume(db.sql),
    confirmations,
    metrics,
    log,
    risk,
    riskDecisions,
    settlementWakers,
    paywallOptions: {
      prices,
      risk,
      onError: (message, error, req) => {
        if (isDatabaseFailure(error)) metrics.databaseError("paywall");
        log.error({ reqId: req?.res && requestIdOf(req.res), ...errorFields(log, error) }, message.replace(/:$/, ""));
      },
      onDecision: (decision, req, res) => {
        metrics.payment(decision.outcome, decision);
        logDecision(log, decision, req, res);
      },
    },
    async close() {
      await riskDecisions.close();
      await store.close();
      await creditStore?.close();
      await db.close();
    },
  };
}

/**
 * The seller's policies for keeping credit buyers (README "Keeping buyers"), each off unless set: the
 * low-balance threshold, where notices go, and the auto-recharge with its retry schedule.
 */
function keepingBuyersOf(config: Config, fiat: boolean): Pick<DunningOptions, "notices" | "recharge"> & { threshold?: bigint } {
  const named = (["CREDIT_LOW_BALANCE", "CREDIT_NOTICE_WEBHOOK_URL", "CREDIT_AUTO_RECHARGE"] as const).filter((name) => config[name] !== undefined);
  if (named.length === 0) return {};
  if (!fiat) throw new ConfigError(`${named.join(", ")} ${named.length > 1 ? "apply" : "applies"} to prepaid credit, which is off: set STRIPE_SECRET_KEY too.`);
  if (config.CREDIT_NOTICE_WEBHOOK_URL && !config.CREDIT_NOTICE_WEBHOOK_SECRET) {
    throw new ConfigError("CREDIT_NOTICE_WEBHOOK_SECRET is not set: with CREDIT_NOTICE_WEBHOOK_URL, each notice is signed with it so the seller's system can tell it from a forgery.");
  }
  if (config.CREDIT_AUTO_RECHARGE && !config.CREDIT_LOW_BALANCE) {
    throw new ConfigError("CREDIT_LOW_BALANCE is not set: CREDIT_AUTO_RECHARGE recharges a saved card when the balance falls below it.");
  }
  const currency = config.CREDIT_CURRENCY;
  const minor = (name: "CREDIT_LOW_BALANCE" | "CREDIT_AUTO_RECHARGE", text: string) => {
    let value: bigint;
    try {
      value = parseMajor(currency, text);
    } catch (error) {
      throw new ConfigError(`${name}: ${(error as Error).message}`);
    }
    if (value <= 0n) throw new ConfigError(`${name} must be more than 0 ${currency}.`);
    return value;
  };
  const threshold = config.CREDIT_LOW_BALANCE === undefined ? undefined : minorToBase(currency, minor("CREDIT_LOW_BALANCE", config.CREDIT_LOW_BALANCE));
  const retrySchedule = config.CREDIT_RECHARGE_RETRIES.split(",").map((w) => Number(w.slice(0, -1)) * { s: 1, m: 60, h: 3600, d: 86_400 }[w.slice(-1) as "s" | "m" | "h" | "d"]);
  const recharge = config.CREDIT_AUTO_RECHARGE === undefined ? undefined : minor("CREDIT_AUTO_RECHARGE", config.CREDIT_AUTO_RECHARGE);
  // A recharge that left the balance below the threshold would open the next one at once.
  if (recharge !== undefined && threshold !== undefined && minorToBase(currency, recharge) < threshold) {
    throw new ConfigError(`CREDIT_AUTO_RECHARGE (${config.CREDIT_AUTO_RECHARGE}) must be at least CREDIT_LOW_BALANCE (${config.CREDIT_LOW_BALANCE}): one recharge must lift a balance back above it.`);
  }
  return {
    threshold,
    ...(config.CREDIT_NOTICE_WEBHOOK_URL && { notices: { url: config.CREDIT_NOTICE_WEBHOOK_URL, secret: config.CREDIT_NOTICE_WEBHOOK_SECRET! } }),
    ...(recharge !== undefined && threshold !== undefined && { recharge: { threshold, amountMinor: recharge, retrySchedule } }),
  };
}

/** Stripe behind the Rail interface when STRIPE_SECRET_KEY is set; fiat stays off otherwise. */
function stripeRailOf(config: Config): Rail | undefined {
  if (!config.STRIPE_SECRET_KEY) return undefined;
  if (!config.STRIPE_WEBHOOK_SECRET) {
    throw new ConfigError("STRIPE_WEBHOOK_SECRET is not set: with STRIPE_SECRET_KEY, credit is granted only from webhooks verified with the endpoint's signing secret (whsec_…).");
  }
  return new StripeRail({
    secretKey: config.STRIPE_SECRET_KEY,
    webhookSecret: config.STRIPE_WEBHOOK_SECRET,
    apiBase: config.STRIPE_API_BASE,
    webhookToleranceSeconds: config.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
    timeoutMs: config.STRIPE_TIMEOUT_MS,
  });
}

/**
 * The price table (ASSET, and the dollar rates configured) and, with EXACT_TOKEN, the `exact` scheme:
 * the token is checked to be an EIP-3009 token and its EIP-712 domain read from it.
 */
async function pricesAndExact(
  config: Config,
  chainId: number,
  client: PublicClient,
  db: Database,
  gateway: PaymentGateway,
  extraRates: Partial<Record<Asset, Rate>> = {},
): Promise<{ prices: PriceTable; exact?: ExactScheme }> {
  const rates: Partial<Record<Asset, Rate>> = { ...extraRates };
  if (config.ASSET_USD) {
    const decimals = config.ASSET === zeroAddress ? 18 : await client.readContract({ address: config.ASSET, abi: erc20Abi, functionName: "decimals" });
    rates[gateway.defaultAsset] = { usd: config.ASSET_USD, decimals };
  }
  const token = config.EXACT_TOKEN ? await readTokenDomain(client, config.EXACT_TOKEN, chainId) : undefined;
  const exactAsset = token && tokenAsset(chainId, token.domain.verifyingContract);
  if (token && exactAsset) rates[exactAsset] = { usd: config.EXACT_TOKEN_USD, decimals: token.decimals };
  const prices = configuredPrice(() => new PriceTable(gateway.defaultAsset, rates));
  if (!token || !exactAsset) return { prices };
  const exact = new ExactScheme({
    domain: token.domain,
    payee: gateway.payee,
    store: databaseExactStore(db),
    token: new Eip3009Token(client, token.domain.verifyingContract),
    maxUnsettled: configuredPrice(() => prices.quote({ usd: config.EXACT_MAX_UNSETTLED_USD }).get(exactAsset)!),
  });
  return { prices, exact };
}

/** A rate or an amount in dollars the configuration states, or a ConfigError naming the variables. */
function configuredPrice<T>(compute: () => T): T {
  try {
    return compute();
  } catch (error) {
    if (error instanceof PriceError) throw new ConfigError(`${error.message} (ASSET_USD, EXACT_TOKEN_USD, EXACT_MAX_UNSETTLED_USD)`);
    throw error;
  }
}

/** The figures the metrics read from the database (and the chain's head) at every scrape; see
 * src/ledger/exposure.ts for why each stays cheap with millions of channels. */
function collectFromDatabase(
  metrics: Metrics,
  { db, publicClient, scope, fromBlock, asset }: { db: Database; publicClient: PublicClient; scope: MirrorScope; fromBlock: bigint; asset: string },
): void {
  metrics.collect("exposure", async () => {
    const rows = await exposureByAsset(db.sql);
    // The gateway's own asset is always listed, at 0 when nothing is owed.
    if (!rows.some((r) => r.asset === asset)) rows.unshift({ asset, channels: 0, owed: 0n });
    return [
      {
        name: "paychan_exposure",
        help: "Accepted and not yet claimed on chain (Σ CHANNEL_OWED as booked), in base units of the asset",
        type: "gauge",
        samples: rows.map((r) => ({ labels: { asset: r.asset }, value: r.owed })),
      },
      {
        name: "paychan_unclaimed_channels",
        help: "Channels with accepted vouchers not yet claimed on chain",
        type: "gauge",
        samples: rows.map((r) => ({ labels: { asset: r.asset }, value: r.channels })),
      },
    ];
  });
  metrics.collect("unclaimed_age", async () => [
    {
      name: "paychan_unclaimed_oldest_age_seconds",
      help: "Age of the oldest accepted voucher not yet claimed on chain (the settlement lag so far); absent when nothing is owed",
      type: "gauge",
      samples: (await oldestUnclaimed(db.sql)).map((r) => ({ labels: { asset: r.asset }, value: r.seconds })),
    },
  ]);
  metrics.collect("gas", async () => {
    const rows = await gasSpentByAsset(db.sql);
    const native = nativeAsset(scope.chainId);
    if (!rows.some((r) => r.asset === native)) rows.unshift({ asset: native, spent: 0n });
    return [
      {
        name: "paychan_gas_spent",
        help: "Native coin the settlement keys spent on transaction fees (Σ GAS_EXPENSE), in base units",
        type: "gauge",
        samples: rows.map((r) => ({ labels: { asset: r.asset }, value: r.spent })),
      },
    ];
  });
  metrics.collect("claims", async () => {
    const { count, oldestSeconds } = await claimsInFlight(db.sql);
    return [
      { name: "paychan_claims_in_flight", help: "Claim transactions queued or sent and not yet final", type: "gauge", samples: [{ value: count }] },
      {
        name: "paychan_claim_in_flight_oldest_age_seconds",
        help: "Age of the oldest claim transaction not yet final",
        type: "gauge",
        samples: oldestSeconds === undefined ? [] : [{ value: oldestSeconds }],
      },
    ];
  });
  metrics.collect("watcher", async () => {
    const [head, cursor] = await Promise.all([publicClient.getBlockNumber({ cacheTime: 0 }), mirroredBlock(db.sql, cursorIdOf(scope))]);
    const mirrored = cursor ?? fromBlock - 1n;
    return [
      { name: "paychan_chain_head_block", help: "The chain's newest block at RPC_URL", type: "gauge", samples: [{ value: head }] },
      { name: "paychan_watcher_mirrored_block", help: "The newest block the chain watcher has mirrored into the ledger", type: "gauge", samples: [{ value: mirrored }] },
      {
        name: "paychan_watcher_head_lag_blocks",
        help: "Blocks the watcher is behind the chain's head (at least CONFIRMATIONS when it keeps up)",
        type: "gauge",
        samples: [{ value: head > mirrored ? head - mirrored : 0n }],
      },
    ];
  });
}

/** The risk rules RISK_* configure (value limits in `asset`, the channel's); none by default. */
export function riskRulesOf(config: Config, asset: Asset): RiskRules {
  const limits = (requestsPerMinute: number | undefined, valuePerHour: bigint | undefined): Limits | undefined =>
    requestsPerMinute === undefined && valuePerHour === undefined
      ? undefined
      : { ...(requestsPerMinute !== undefined && { requestsPerMinute }), ...(valuePerHour !== undefined && { valuePerHour: { [asset]: valuePerHour } }) };
  const velocity = (entries: [keyof VelocityLimits, Limits | undefined][]): VelocityLimits => Object.fromEntries(entries.filter(([, l]) => l !== undefined));
  const routes = Object.fromEntries(
    Object.entries(config.RISK_ROUTES ?? {}).map(([route, byDimension]) => [
      route.trim().replace(/\s+/, " ").replace(/^[a-z]+(?= )/, (m) => m.toUpperCase()),
      velocity(Object.entries(byDimension).map(([d, l]) => [d as keyof VelocityLimits, limits(l?.requestsPerMinute, l?.valuePerHour === undefined ? undefined : BigInt(l.valuePerHour))])),
    ]),
  );
  return {
    limits: velocity([
      ["channel", limits(config.RISK_CHANNEL_REQUESTS_PER_MINUTE, config.RISK_CHANNEL_VALUE_PER_HOUR)],
      ["payer", limits(config.RISK_PAYER_REQUESTS_PER_MINUTE, config.RISK_PAYER_VALUE_PER_HOUR)],
      ["client", limits(config.RISK_CLIENT_REQUESTS_PER_MINUTE, config.RISK_CLIENT_VALUE_PER_HOUR)],
    ]),
    routes,
    ...(config.RISK_ANOMALY === "on" && {
      anomaly: {
        stepUpScore: config.RISK_STEP_UP_SCORE,
        denyScore: config.RISK_DENY_SCORE,
        burst: { factor: 10, minRequests: 60, points: 50 },
        freshDrain: { withinSeconds: 60, percent: 50, points: 60 },
        payerFanout: { channels: 100, points: 40 },
      },
    }),
  };
}

/** One line per risk decision that had a reason, with every reason spelled out. */
function logRisk(log: Logger, record: RiskRecord): void {
  const { route, scheme, account, payer, client, action, code, score, reasons, steppedUp } = record;
  const fields = { route, scheme, [scheme === SCHEME ? "channel" : "account"]: account, payer, client, action, code, score, steppedUp, reasons: reasons.map((r) => `${r.rule}: ${r.message}`) };
  if (action === "allow") log.info(fields, "risk: allowed with reasons");
  else log.warn(fields, `risk: ${action}`);
}

/** One line per payment decision: scheme, channel or account, amount, code and latency. The level is
 * chosen first so that a line that will not be written (every 402 challenge at the default level)
 * costs no fields object on the request path. */
function logDecision(log: Logger, decision: PaymentDecision, req: Request, res: Response): void {
  const { scheme, outcome, code, account, amount, asset, pricing, seconds, status } = decision;
  const level = code === "payment_required" ? "debug" : code === "temporarily_unavailable" ? "warn" : "info";
  if (!log.isLevelEnabled(level)) return;
  const fields = {
    reqId: requestIdOf(res),
    method: req.method,
    // Without the query: a seller's query strings may carry its own users' keys.
    path: req.originalUrl.split("?", 1)[0],
    scheme,
    code,
    ...(account && { [scheme === SCHEME ? "channel" : "account"]: account }),
    ...(amount !== undefined && { amount: amount.toString(), asset }),
    ...(pricing !== undefined && { pricing }),
    ...(seconds !== undefined && { latencyMs: Math.round(seconds * 1e6) / 1e3 }),
    ...(status !== undefined && { status }),
  };
  log[level](fields, outcome === "paid" ? "payment accepted" : outcome === "voided" ? "payment voided" : "payment refused");
}

/**
 * The chain id at RPC_URL, after checking that ESCROW_ADDRESS holds a PaychanEscrow there. Each
 * request is tried once, not viem's four times: a chain that is down is reported within
 * RPC_TIMEOUT_MS, as a StartupError naming RPC_URL (without credentials).
 */
export async function checkChain(config: Config, client: PublicClient = createRpcClient(config, { retryCount: 0 })): Promise<number> {
  const chainId = await client.getChainId().catch((error: unknown) => {
    throw unreachableChain(config, error);
  });
  if (config.ESCROW_ADDRESS) {
    await verifyEscrow(client, config.ESCROW_ADDRESS, chainId).catch((error: unknown) => {
      throw error instanceof StartupError ? error : unreachableChain(config, error);
    });
  }
  return chainId;
}

/** Why the chain at RPC_URL cannot be used, naming the URL (without credentials) and the variable. */
function unreachableChain(config: Config, error: unknown): StartupError {
  const where = `the chain at ${redactUrl(config.RPC_URL)} (RPC_URL)`;
  if (error instanceof BaseError && error.walk((e) => e instanceof TimeoutError)) {
    return new StartupError(`${where} did not answer within ${config.RPC_TIMEOUT_MS} ms (RPC_TIMEOUT_MS).`);
  }
  return new StartupError(`Cannot reach ${where}: ${reasonOf(error)}.`);
}

const networkErrors: Record<string, string> = {
  ECONNREFUSED: "connection refused (is the node running?)",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  ETIMEDOUT: "connection timed out",
};

function reasonOf(error: unknown): string {
  for (let e: unknown = error; e; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && networkErrors[code]) return networkErrors[code]!;
    if (e instanceof HttpRequestError && e.status) return `HTTP ${e.status}`;
  }
  return messageOf(error);
}

/** An Express app with the paywall in front of `handlers` (keyed like the routes). */
export function createApp(
  paychan: Paychan,
  routes: Record<string, RouteSpec>,
  handlers: Record<string, RequestHandler>,
): Express {
  const app = express();
  app.disable("x-powered-by");
  app.use(requestIds());
  app.get("/healthz", (_req, res) => res.json({ ok: true }));
  // The processor's webhook needs the raw body: before anything that parses one.
  if (paychan.fiat) app.use(publicFiatRoutes(paychan.fiat));
  app.use(paywall(paychan.schemes, routes, paychan.paywallOptions));
  for (const [key, handler] of Object.entries(handlers)) {
    const [method, path] = key.split(/\s+/, 2) as [string, string];
    app[method.toLowerCase() as "get"](path, handler);
  }
  return app;
}

/**
 * The operator's endpoints, for their own listener (OPERATOR_HOST, OPERATOR_PORT), behind
 * OPERATOR_TOKEN when set: GET /reconcile (the books compared with the chain and the card
 * processor), GET /metrics (the Prometheus text format) and GET /healthz; with fiat, credit accounts
 * and keys and payout runs (src/rails/http.ts).
 */
export function createOperatorEndpoints(paychan: Paychan, options: { settlement?: Settlement } = {}): Express {
  const access = { host: paychan.config.OPERATOR_HOST, token: paychan.config.OPERATOR_TOKEN };
  const console = createConsole(paychan, { authenticate: guard(access), settlement: options.settlement });
  const app = createOperatorApp(access, [{ path: "/admin", router: console }]);
  app.get("/healthz", (_req, res) => res.json({ ok: true }));
  app.get("/reconcile", (_req, res, next) => {
    reconcilePaychan(paychan).then((report) => res.json(report), next);
  });
  app.get("/metrics", (_req, res, next) => {
    paychan.metrics.render().then((body) => res.setHeader("Content-Type", paychan.metrics.contentType).send(body), next);
  });
  app.get("/risk/decisions", (req, res, next) => {
    const limit = Number(req.query.limit ?? 100);
    const account = typeof req.query.account === "string" ? req.query.account.toLowerCase() : undefined;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return void res.status(400).json({ error: "bad_request", message: "limit must be a whole number from 1 to 1000." });
    recentRiskDecisions(paychan.db.sql, { limit, account }).then((rows) => res.json({ decisions: rows.map((d) => ({ ...d, amount: d.amount.toString() })) }), next);
  });
  if (paychan.fiat) app.use(operatorFiatRoutes(paychan.fiat));
  app.use(answerFailures);
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
    exposureCap: exposureCapOf(config),
  };
}

/** RISK_EXPOSURE_*: the cap on what a withdrawing channel may owe unclaimed near its deadline; none by default. */
export function exposureCapOf(config: Config): ExposureCap | undefined {
  if (config.RISK_EXPOSURE_WINDOW_SECONDS === undefined) return undefined;
  return { windowSeconds: config.RISK_EXPOSURE_WINDOW_SECONDS, percent: config.RISK_EXPOSURE_PERCENT, absolute: config.RISK_EXPOSURE_CAP };
}

/** Chain, ledger and voucher store compared; `ok` is false when money is missing. */
export async function reconcilePaychan(paychan: Paychan): Promise<ReconcileReport> {
  const scope = scopeOf(paychan);
  await bookAccepted(paychan.db.sql);
  const report = await reconcile(paychan.db.prisma, {
    scope,
    chain: escrowChainView(paychan.publicClient, scope.escrow),
    confirmations: paychan.confirmations,
  });
  if (!paychan.fiat) {
    paychan.metrics.reconciled(report.differences);
    return report;
  }
  await bookCredit(paychan.db.sql);
  const fiat = await paychan.fiat.reconcile();
  const differences = [...report.differences, ...fiat.differences];
  paychan.metrics.reconciled(differences);
  return { ...report, ok: report.ok && !fiat.differences.some((d) => d.severity === "missing" || d.severity === "loss"), differences, fiat };
}

export type SettlementOptions = {
  /** The settlement key: the payee or an operator it approved. Defaults to SETTLER_PRIVATE_KEY. */
  account?: LocalAccount;
  /** Progress and errors of the background loops and of long work, one line each, none repeated;
   * `warn` for failures and stalls. */
  log?: (line: string, level?: "info" | "warn") => void;
  faults?: TxManagerOptions["faults"];
};

export type SettleNowReport = {
  decided: DecidedBatch[];
  transactions: TxEvent[];
  synced: SyncReport[];
  /** What the escrow did with each decided claim: claimed (with the amount), or skipped and why. */
  claimed: { channelId: Hex; amount: bigint }[];
  skipped: { channelId: Hex; reason: string }[];
  /** Channels left out because their claim would cost more gas than it pays (`onlyProfitable`). */
  unprofitable: Unprofitable[];
};

/** What `work` reports in its heartbeat. */
export type SettlementStatus = {
  head: bigint;
  /** The newest block mirrored into the ledger. */
  mirrored: bigint;
  /** Claim transactions queued or waiting to be final. */
  inFlight: number;
  /** Channels with accepted vouchers not yet claimed nor in flight, and what they hold. */
  unclaimedChannels: number;
  unclaimed: bigint;
};

export type Settlement = {
  watcher: ChainWatcher;
  worker: SettlementWorker;
  txManager: TxManager;
  /** Mirrors the confirmed blocks, then one settlement round by the policy (decide, send, follow). */
  runOnce(): Promise<{ sync: SyncReport; round: SettlementRound }>;
  /**
   * Claims every accepted voucher now, whatever the policy — with `onlyProfitable`, only those whose
   * value covers their gas — and waits until each claim is final and mirrored in the ledger. On a dev
   * chain that mines only on demand with CONFIRMATIONS above 0 it fails at once, saying so.
   */
  settleNow(options?: { timeoutMs?: number; onlyProfitable?: boolean }): Promise<SettleNowReport>;
  /** Starts the watcher and settlement loops (every POLL_INTERVAL_MS); a withdrawal wakes the settler.
   * With a log, a heartbeat line every HEARTBEAT_SECONDS. */
  start(): void;
  stop(): Promise<void>;
  status(): Promise<SettlementStatus>;
};

const BOOKING_SWEEP_MS = 60_000;

export function createSettlement(paychan: Paychan, options: SettlementOptions = {}): Settlement {
  const { config, db, publicClient: client, confirmations } = paychan;
  const account = options.account ?? (config.SETTLER_PRIVATE_KEY && privateKeyToAccount(config.SETTLER_PRIVATE_KEY));
  if (!account) throw new ConfigError("SETTLER_PRIVATE_KEY is not set: the key that sends claims (the payee, or an operator it approved).");
  const log = options.log ?? (() => {});
  const warn = (line: string) => log(line, "warn");
  const quiet = new QuietLog(log);
  const failing = new QuietLog(warn);
  const { metrics } = paychan;
  const failed = (component: string, error: unknown) => {
    if (isDatabaseFailure(error)) metrics.databaseError(component);
    failing.say(component, `${component}: ${messageOf(error)}`);
  };
  const scope = scopeOf(paychan);
  let exact: ExactSettlement | undefined;
  const txManager = new TxManager({
    prisma: db.prisma,
    client,
    account,
    chainId: scope.chainId,
    confirmations,
    bumpAfterSeconds: config.FEE_BUMP_AFTER_SECONDS,
    onFinal: async (tx, final) => (await exact?.onFinal(tx, final)) ?? recordSettlementReceipt(tx, final),
    onFailed: async (tx, failed) => exact?.onFailed(tx, failed),
    faults: options.faults,
  });
  if (paychan.exact) {
    exact = new ExactSettlement({ prisma: db.prisma, txManager, scope: { chainId: scope.chainId, token: paychan.exact.tokenAddress, payee: scope.payee } });
  }
  /** Served exact payments to the outbox, before each pass of the TxManager. */
  const submitExact = async () => {
    const done = await exact?.submitDue();
    if (done?.submitted) log(`submitting ${done.submitted} exact payment(s)`);
    if (done?.expired) log(`${done.expired} exact payment(s) expired before they could be submitted: served unpaid (reconcile names them)`);
  };
  const worker = new SettlementWorker({ prisma: db.prisma, client, txManager, scope, policy: policyOf(config) });
  // Books what gateways accepted and did not live to book (they book their own within a second).
  let sweptAt = 0;
  const report = (e: TxEvent) => {
    const line = describeTxEvent(e, confirmations);
    const topic = `tx:${e.chainTxId}`;
    if (line) (e.action === "failed" || e.action === "error" ? failing : quiet).say(topic, line);
    if (e.action === "confirmed" || e.action === "failed") {
      quiet.end(topic);
      failing.end(topic);
    }
  };
  // Counts what happened to each claim transaction and, once one is confirmed, how long the vouchers
  // it claimed waited. A failure here is the metrics' own: it must not fail the settlement round.
  const observe = async (events: TxEvent[]) => {
    for (const e of events) {
      if (e.action !== "waiting") metrics.claimTransaction(e.action);
      const batchId = e.action === "confirmed" ? batchIdOf(e.purpose) : undefined;
      if (batchId) {
        await settlementLags(db.sql, batchId).then(
          (lags) => metrics.settled(lags),
          (error: unknown) => failed("metrics", error),
        );
      }
    }
  };
  const settleLoop = new PollingLoop(
    async () => {
      if (Date.now() - sweptAt >= BOOKING_SWEEP_MS) {
        const { booked, failed: unbooked } = await bookAccepted(db.sql);
        sweptAt = Date.now();
        if (booked > 0) log(`booked accepted vouchers of ${booked} channel(s) that no gateway had booked`);
        for (const f of unbooked) warn(`cannot book the accepted vouchers of channel ${f.channelId}: ${f.reason} (reconcile names it)`);
      }
      await submitExact();
      const round = await worker.settleOnce();
      failing.end("settlement", "settlement: working again");
      for (const batch of round.decided) log(`decided a ${batch.trigger} batch of ${batch.items.length} channels claiming ${batch.total}`);
      round.transactions.forEach(report);
      await observe(round.transactions);
    },
    config.POLL_INTERVAL_MS,
    (error) => failed("settlement", error),
  );
  const wakeForExposure = () => settleLoop.wake();
  paychan.settlementWakers.add(wakeForExposure);
  let catchingUp = false;
  let progressAt = 0;
  const watcher = new ChainWatcher({
    prisma: db.prisma,
    client,
    scope,
    confirmations,
    fromBlock: config.WATCH_FROM_BLOCK,
    blockRange: BigInt(config.LOG_BLOCK_RANGE),
    sender: account.address,
    onWithdrawalRequested: (ids) => {
      log(`withdrawal started on ${ids.length} channel(s): claiming them now`);
      settleLoop.wake();
    },
    onTransactionsDropped: (count) => {
      log(`reorg: ${count} of our transaction(s) left the chain; their gas is reversed and they are sent again now`);
      settleLoop.wake();
    },
    onProgress: ({ from, to, target, events }) => {
      if (to < target) {
        // A long catch-up says how far it is, every few seconds rather than every range.
        if (!catchingUp || Date.now() - progressAt >= 5_000) {
          log(`catching up: mirrored to block ${to} of ${target} (${percent(to - config.WATCH_FROM_BLOCK, target - config.WATCH_FROM_BLOCK)}%)`);
          progressAt = Date.now();
        }
        catchingUp = true;
      } else if (catchingUp) {
        log(`caught up at block ${to}`);
        catchingUp = false;
      }
      if (events > 0) log(`mirrored ${events} escrow event(s) from blocks ${from}–${to}`);
    },
  });
  const watchLoop = new PollingLoop(
    async () => {
      const sync = await watcher.syncOnce();
      failing.end("watcher", "watcher: working again");
      if (sync.reorg) {
        warn(`reorg: rewound from block ${sync.reorg.from} to ${sync.reorg.to}, reversed ${sync.reorg.reversedEntries} entries`);
        for (const s of sync.reorg.shortfalls) {
          warn(`reorg: channel ${s.channelId} had spent ${s.amount} that the chain no longer holds; it is blocked and \`reconcile\` names the loss`);
        }
      }
      for (const f of sync.failed) failing.say(`mirror:${f.channelId}`, `watcher: cannot book channel ${f.channelId} (${f.reason}); its events are kept and retried, every other channel goes on`);
      for (const id of sync.recovered) {
        failing.end(`mirror:${id}`);
        log(`watcher: booked the kept events of channel ${id}`);
      }
    },
    config.POLL_INTERVAL_MS,
    (error) => failed("watcher", error),
  );

  const status = async (): Promise<SettlementStatus> => {
    const [head, cursor, inFlight, candidates] = await Promise.all([
      client.getBlockNumber({ cacheTime: 0 }),
      watcher.cursor(),
      txManager.inFlight(),
      claimCandidates(db.prisma, scope),
    ]);
    const waiting = candidates.filter((c) => c.unclaimed > 0n);
    return { head, mirrored: cursor.blockNumber, inFlight, unclaimedChannels: waiting.length, unclaimed: waiting.reduce((sum, c) => sum + c.unclaimed, 0n) };
  };
  let lastHead: bigint | undefined;
  const heartbeatLoop = new PollingLoop(
    async () => {
      const now = await status();
      log(
        `heartbeat: head ${now.head}, mirrored to block ${now.mirrored} (CONFIRMATIONS=${confirmations}), ${now.inFlight} claim transaction(s) in flight, ` +
          `${now.unclaimedChannels} channel(s) with ${now.unclaimed} accepted and not yet claimed`,
      );
      const waitingForBlocks = confirmations > 0 && (now.inFlight > 0 || now.mirrored < now.head);
      if (now.head === lastHead && waitingForBlocks) {
        failing.say("stall", `the chain made no new block since the last heartbeat: ${stalledChainAdvice(scope.chainId, confirmations)}`);
      } else if (now.head !== lastHead) failing.end("stall");
      lastHead = now.head;
    },
    config.HEARTBEAT_SECONDS * 1000,
    (error) => failed("heartbeat", error),
  );

  return {
    watcher,
    worker,
    txManager,
    status,
    async runOnce() {
      const sync = await watcher.syncOnce();
      await submitExact();
      const round = await worker.settleOnce();
      await observe(round.transactions);
      return { sync, round };
    },
    async settleNow({ timeoutMs = 120_000, onlyProfitable = false } = {}) {
      const deadline = Date.now() + timeoutMs;
      const synced = [await watcher.syncOnce()];
      await submitExact();
      const unprofitable = onlyProfitable ? await worker.unprofitable() : [];
      const decided = await worker.decide({ manual: true, exclude: new Set(unprofitable.map((u) => u.candidate.channelId)) });
      for (const batch of decided) log(`claiming ${batch.items.length} channel(s) worth ${batch.total} in one transaction`);
      const transactions: TxEvent[] = [];
      let landedAt = -1n;
      let lastHead: bigint | undefined;
      let stalledRounds = 0;
      for (;;) {
        const events = await txManager.process();
        transactions.push(...events);
        for (const e of events) {
          report(e);
          if ((e.action === "confirmed" || e.action === "failed") && e.blockNumber !== undefined && e.blockNumber > landedAt) landedAt = e.blockNumber;
        }
        await observe(events);
        const sync = await watcher.syncOnce();
        synced.push(sync);
        const inFlight = await txManager.inFlight();
        if (inFlight === 0 && sync.to >= landedAt) break;
        const head = sync.target + BigInt(confirmations);
        quiet.say("settle-now", `waiting: ${inFlight} claim transaction(s) in flight; head ${head}, mirrored to block ${sync.to}`);
        stalledRounds = head === lastHead ? stalledRounds + 1 : 0;
        lastHead = head;
        // A dev chain makes a block only when a transaction arrives: the confirmations never come.
        if (confirmations > 0 && stalledRounds >= 3 && isDevChain(scope.chainId)) {
          throw new StartupError(`settle-now cannot finish: ${stalledChainAdvice(scope.chainId, confirmations)}`);
        }
        if (Date.now() > deadline) {
          const hint = stalledRounds > 0 && confirmations > 0 ? ` No new block for a while: ${stalledChainAdvice(scope.chainId, confirmations)}` : "";
          throw new Error(`settle-now timed out after ${timeoutMs} ms with ${inFlight} claim transaction(s) still in flight.${hint}`);
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(config.POLL_INTERVAL_MS, 1_000)));
      }
      quiet.end("settle-now");
      // The batches decided now and any decided earlier whose transactions became final meanwhile.
      const batchIds = new Set(decided.map((b) => b.batchId));
      for (const e of transactions) if (e.action === "confirmed" || e.action === "failed") batchIds.add(batchIdOf(e.purpose) ?? "");
      batchIds.delete("");
      return { decided, transactions, synced, unprofitable, ...(await outcomesOf(paychan, [...batchIds])) };
    },
    start() {
      watchLoop.start();
      settleLoop.start();
      if (options.log && config.HEARTBEAT_SECONDS > 0) heartbeatLoop.start();
    },
    async stop() {
      paychan.settlementWakers.delete(wakeForExposure);
      await Promise.all([watchLoop.stop(), settleLoop.stop(), heartbeatLoop.stop()]);
    },
  };
}

/** One line for what happened to a claim transaction; nothing for a transaction still waiting. */
function describeTxEvent(e: TxEvent, confirmations: number): string | undefined {
  const name = `${e.purpose.startsWith("exact:") ? "exact transfer" : "claim transaction"} ${e.hash ?? e.chainTxId}`;
  const refusal = e.detail ? ` (the node said: ${e.detail})` : "";
  switch (e.action) {
    case "waiting":
      return undefined;
    case "sent":
      return `${name} sent with nonce ${e.nonce}${refusal}`;
    case "rebroadcast":
      return `${name} rebroadcast: the node had lost it${refusal}`;
    case "bumped":
      return `${name} replaces a claim not mined in time, fees +12.5%${refusal}`;
    case "mined":
      return `${name} mined in block ${e.blockNumber}; waiting for ${confirmations} confirmation(s)`;
    case "confirmed":
      return `${name} in block ${e.blockNumber}: ${e.detail ?? "confirmed"}`;
    case "failed":
      return `${name} failed: ${e.detail ?? "reverted"}`;
    case "error":
      return `${name}: ${e.detail}`;
  }
}

function stalledChainAdvice(chainId: number, confirmations: number): string {
  const kind = isDevChain(chainId) ? `chain ${chainId} is a development chain that makes a block only when a transaction arrives` : `chain ${chainId} is not making blocks`;
  return `${kind}, so the ${confirmations} confirmation(s) claims and events wait for (CONFIRMATIONS=${confirmations}) do not come. Set CONFIRMATIONS=0 on a dev chain (its default there), or make it mine blocks.`;
}

function percent(done: bigint, total: bigint): string {
  return total <= 0n ? "100" : ((done * 100n) / total).toString();
}

/** What the escrow did with the claims of these batches, from the outcomes their final receipts recorded. */
async function outcomesOf(paychan: Paychan, batchIds: string[]): Promise<Pick<SettleNowReport, "claimed" | "skipped">> {
  const items = await paychan.db.prisma.settlementItem.findMany({ where: { batchId: { in: batchIds } }, orderBy: { channelId: "asc" } });
  return {
    claimed: items
      .filter((i) => i.outcome === "CLAIMED")
      .map((i) => ({ channelId: i.channelId as Hex, amount: toBigInt(i.cumulativeAmount) - toBigInt(i.claimedBefore) })),
    skipped: items.filter((i) => i.outcome === "SKIPPED").map((i) => ({ channelId: i.channelId as Hex, reason: i.skipReason ?? "unknown" })),
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
    confirmations: paychan.confirmations,
    authenticate: options.authenticate,
    reconcile: () => reconcilePaychan(paychan),
    settleNow: settlement && (() => settlement.settleNow()),
    explorerTxUrl: options.explorerTxUrl,
  });
}
