// Express adapter for payment schemes: `app.use(paywall(gateway, { "GET /quote": 1000n }))`, or with
// several schemes and one price table, `paywall([gateway, credit], { "GET /quote": { usd: "0.001" } },
// { prices })`. An unpaid request gets a 402 listing every scheme's terms; a paid one goes to the
// scheme its PAYMENT-SIGNATURE names.
//
// Routes are matched by an Express Router built from the same patterns, so a path is paywalled
// exactly when Express would route it to the handler (case, trailing slashes, params): there is no
// second matcher to disagree with and be bypassed.
//
// A route's price may be a pricing policy (RoutePricing: demand pricing, volume tiers; see
// src/policy/pricing.ts): the 402 then states the price now and until when it is honoured, and a paid
// request is charged the price its payment states if that price is still honoured for its payer.
//
// Each decision is handed to `onDecision` (the composition root turns it into a log line and
// metrics); the paywall itself neither logs nor counts.
//
// A metered route (`{ price, maxPrice }`) prepays `price` and charges what its handler reports through
// `meterOf(res)`, up to `maxPrice`: the charge is fixed and recorded (a 5xx's voided) before the
// response ends, so its PAYMENT-RESPONSE states it (a streaming handler, whose headers are long gone, calls `finish` itself
// and sends the receipt in its last event). Only schemes that can meter are offered on such a route.
//
// With a `risk` gate, each scheme asks it about a payment whose signature checked out, before
// recording the payment (RiskGate.ts).
import express, { type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { PaymentError, isPaymentError } from "../protocol/Errors.js";
import { STEP_UP_HEADER } from "../protocol/StepUp.js";
import { HEADERS, X402_VERSION, decodePaymentEnvelope, encodeHeader } from "../protocol/wire.js";
import { PriceError, PriceTable, type PriceSpec, type Quote } from "../policy/prices.js";
import { RoutePricing } from "../policy/pricing.js";
import type { PayerFacts, PaymentHeader, PaymentScheme, Requirements, Settled } from "./PaymentScheme.js";
import type { RiskGate } from "./RiskGate.js";
import { UsageMeter } from "./UsageMeter.js";

/** A price stated for the route (see PriceSpec), or computed from the request. */
type FixedPrice = PriceSpec | ((req: Request) => PriceSpec | Promise<PriceSpec>);
/** A route's price: fixed, computed from the request, or a pricing policy. */
export type Price = FixedPrice | RoutePricing;
/** `maxPrice` makes the route metered: `price` is prepaid, and the handler's usage (`meterOf(res)`)
 * is charged up to `maxPrice`. */
export type RouteSpec = Price | RouteObject;
type RouteObject = { price: Price; maxPrice?: FixedPrice; description?: string; mimeType?: string; route?: string };

const meters = new WeakMap<Response, UsageMeter>();

/** The usage meter of a paid request on a metered route; throws on any other route. */
export function meterOf(res: Response): UsageMeter {
  const meter = meters.get(res);
  if (!meter) throw new Error("meterOf: this response is not a paid request on a metered route (give the route a maxPrice)");
  return meter;
}

export type PaywallOptions = {
  /** Converts USD prices per asset; by default bare bigints are in the first scheme's asset. */
  prices?: PriceTable;
  /** Where failures of the payment service (its database or chain) are reported; by default one
   * line on stderr, without a stack trace. */
  onError?: (message: string, error: unknown, req?: Request) => void;
  /** Told every decision on a request to a paywalled route, once it is made. */
  onDecision?: (decision: PaymentDecision, req: Request, res: Response) => void;
  /** The seller's risk policy (velocity limits, anomaly score, step-up); none by default. */
  risk?: RiskGate;
};

/** What the paywall decided about one request. */
export type PaymentDecision = {
  /** The scheme that decided; undefined when the request named none of this paywall's schemes. */
  scheme?: string;
  /** `voided`: a paid request whose handler answered 5xx, so its charge was voided. */
  outcome: "paid" | "refused" | "voided";
  /** `ok` for a new charge, `retry` for an identical retry served again (charged nothing more),
   * `handler_failed` for a void, else the refusal's stable code. */
  code: string;
  /** Who paid or tried to: the channel or the account, when known. */
  account?: string;
  /** The route's price in the scheme's asset, in base units. */
  amount?: bigint;
  asset?: string;
  /** Why the price is what it is, for a route with a pricing policy. */
  pricing?: string;
  /** From reading the PAYMENT-SIGNATURE to the decision; undefined when none was sent. */
  seconds?: number;
  /** The handler's status, for a void. */
  status?: number;
};

const METHODS = ["get", "post", "put", "patch", "delete", "head", "options", "all"] as const;
type Method = (typeof METHODS)[number];

type Resource = { url: string; description?: string; mimeType?: string };

/** `routes` maps "METHOD /path" (Express path syntax; METHOD may be omitted for all) to a price. */
export function paywall(schemes: PaymentScheme | PaymentScheme[], routes: Record<string, RouteSpec>, options: PaywallOptions = {}): RequestHandler {
  const charge = payments(schemes, options);
  const router = express.Router();
  for (const [key, spec] of Object.entries(routes)) {
    const [first, second] = key.trim().split(/\s+/, 2);
    const method = (second ? first!.toLowerCase() : "all") as Method;
    const path = second ?? first!;
    if (!METHODS.includes(method)) throw new Error(`paywall: unknown method in route "${key}"`);
    // The route as the risk policy's per-route limits name it: "GET /api/quote", or the bare path.
    const route = second ? `${first!.toUpperCase()} ${path}` : path;
    router[method](path, charge({ ...(isRouteObject(spec) ? spec : { price: spec }), route }));
  }
  // A Router answers OPTIONS for its paths by itself; a CORS preflight must reach the app's own handlers.
  const paysOptions = Object.keys(routes).some((key) => /^options\s/i.test(key.trim()));
  return (req, res, next) => (req.method === "OPTIONS" && !paysOptions ? next() : router(req, res, next));
}

/**
 * The middleware factory for single routes: `const pay = payments(gateway); app.get(path,
 * pay({ price }), handler)`.
 */
export function payments(schemes: PaymentScheme | PaymentScheme[], options: PaywallOptions = {}) {
  const list = Array.isArray(schemes) ? schemes : [schemes];
  if (list.length === 0) throw new Error("paywall: give at least one payment scheme");
  const defaultAsset = list.find((s) => s.defaultAsset)?.defaultAsset;
  const prices = options.prices ?? (defaultAsset ? new PriceTable(defaultAsset) : undefined);
  if (!prices) throw new Error("paywall: no scheme names a default asset; pass a PriceTable");
  const onError = options.onError ?? ((message: string, error: unknown) => console.error(`${message} ${error instanceof Error ? error.message : String(error)}`));
  const decided = options.onDecision;
  const byName = new Map(list.map((s) => [s.scheme, s]));
  const risk = options.risk?.policy.active ? options.risk : undefined;

  return (spec: RouteObject): RequestHandler => {
    checkMetered(spec, list);
    const schemes = spec.maxPrice === undefined ? list : list.filter((s) => s.metered);
    const policy = spec.price instanceof RoutePricing ? spec.price : undefined;
    policy?.check(prices);
    return async (req: Request, res: Response, next: NextFunction) => {
      const resource: Resource = {
        url: `${req.protocol}://${req.get("host") ?? "localhost"}${req.originalUrl}`,
        description: spec.description,
        mimeType: spec.mimeType,
      };
      if (policy) measureDemand(policy, res);
      let quote: Quote;
      let max: Quote | undefined;
      try {
        quote = policy ? await policy.quote(prices) : prices.quote(typeof spec.price === "function" ? await spec.price(req) : (spec.price as PriceSpec));
        if (spec.maxPrice !== undefined) max = prices.quote(typeof spec.maxPrice === "function" ? await spec.maxPrice(req) : spec.maxPrice);
      } catch (cause) {
        const reason = cause instanceof PriceError ? cause.message : String(cause);
        decided?.({ outcome: "refused", code: "price_unavailable" }, req, res);
        return refuse(res, schemes, new Map(), undefined, resource, new PaymentError("price_unavailable", `No price for this request: ${reason}`));
      }

      let settled: Settled;
      let handler: PaymentScheme | undefined;
      let started: number | undefined;
      let payer: string | undefined;
      let refusal: PaymentError | undefined;
      let release: (() => void) | undefined;
      try {
        started = performance.now();
        const { scheme, header, json } = paymentOf(req, schemes);
        handler = byName.get(scheme);
        if (!handler || !schemes.includes(handler) || !handler.requirements(quote, undefined, max)) {
          const offered = schemes.filter((s) => s.requirements(quote, undefined, max)).map((s) => `"${s.scheme}"`).join(", ");
          throw new PaymentError("unsupported_scheme", `This resource is not paid with "${scheme}" here; it accepts ${offered}.`);
        }
        if (policy) {
          payer = handler.payerOf?.({ header, json });
          const priced = await pricedFor(policy, prices, handler, { header, json }, payer);
          quote = priced.quote;
          refusal = priced.refusal;
        }
        const payee = handler;
        const charged = quote;
        const admit =
          risk &&
          ((facts: PayerFacts) => {
            // A metered request is counted at the most it may cost, which the payer may owe after it.
            const { amount = 0n, asset = "" } = priceIn(payee, max ?? charged);
            release = risk.admit({ ...facts, route: spec.route ?? `${req.method} ${req.route?.path ?? req.path}`, scheme, client: req.ip ?? "", amount, asset });
          });
        // A payment at a price no longer honoured may still be the identical resend of one already
        // charged: the scheme decides that from the database, before refusing it.
        if (refusal && !handler.servesResendsOfRefused) throw refusal;
        settled = await handler.authorize({ header, json }, quote, {
          method: req.method,
          url: resource.url,
          ...(max && { max }),
          ...(refusal ? { refusal } : { admit }),
          stepUp: req.get(STEP_UP_HEADER),
        });
      } catch (error) {
        release?.();
        const sent = started !== undefined && !(isPaymentError(error) && error.code === "payment_required");
        const seconds = sent ? (performance.now() - started!) / 1000 : undefined;
        if (isPaymentError(error)) {
          const channelId = error.details?.channelId;
          decided?.({ scheme: handler?.scheme, outcome: "refused", code: error.code, account: typeof channelId === "string" ? channelId : undefined, seconds, ...priceIn(handler, quote) }, req, res);
          return refuse(res, schemes, quote, max, resource, error);
        }
        // The request was fine; the gateway's database or chain was not. Nothing was charged.
        onError("paywall: could not authorize a payment:", error, req);
        decided?.({ scheme: handler?.scheme, outcome: "refused", code: "temporarily_unavailable", seconds, ...priceIn(handler, quote) }, req, res);
        res.setHeader("Retry-After", "1");
        return refuse(res, schemes, quote, max, resource, new PaymentError("temporarily_unavailable", "The payment service is briefly unavailable; retry in a moment. You were not charged."));
      }
      // A resend served again is no new spending: take back what the risk gate counted for it.
      if (settled.retried) release?.();
      else policy?.paid(payer);
      // Only an `onDecision` reads the decision: without one, a paid request builds none of it.
      const paid = decided && { scheme: handler.scheme, account: settled.account, ...priceIn(handler, quote) };
      decided?.({ ...paid, outcome: "paid", code: settled.retried ? "retry" : "ok", seconds: (performance.now() - started!) / 1000 }, req, res);

      res.setHeader(HEADERS.response, encodeHeader(settled.receipt));
      res.setHeader("Access-Control-Expose-Headers", `${HEADERS.response}, ${HEADERS.required}`);
      // A handler failure voids the charge, so its 5xx must not carry a receipt.
      const writeHead = res.writeHead;
      res.writeHead = function (this: Response, ...args: Parameters<Response["writeHead"]>) {
        if (this.statusCode >= 500 || (typeof args[0] === "number" && args[0] >= 500)) this.removeHeader(HEADERS.response);
        return writeHead.apply(this, args);
      } as Response["writeHead"];
      let completing: Promise<void> | undefined;
      const settle = (status: number) => (completing ??= settled.complete(status));
      const meter = settled.meter && new UsageMeter(settled.meter);
      if (meter) meters.set(res, meter);
      // A charge is voided (a 5xx) — and a metered one fixed and recorded — before the response ends:
      // the payer's next voucher then finds the channel where it left it, and a metered receipt can
      // state the charge.
      const end = res.end;
      res.end = function (this: Response, ...args: unknown[]) {
        const ended = () => end.apply(this, args as Parameters<Response["end"]>);
        if (meter?.finished) return ended();
        if (this.statusCode >= 500) {
          settle(this.statusCode).catch(() => undefined).finally(ended);
          return this;
        }
        if (!meter) return ended();
        meter.finish().then(
          (receipt) => !this.headersSent && this.setHeader(HEADERS.response, encodeHeader(receipt)),
          (error: unknown) => onError(`paywall: could not record the usage of payment ${settled.paymentId}:`, error, req),
        ).finally(ended);
        return this;
      } as Response["end"];
      let completed = false;
      const complete = () => {
        if (completed) return;
        completed = true;
        const status = res.statusCode;
        // A client that hung up mid-stream is charged what it was sent.
        if (meter && status < 500 && !meter.finished) {
          meter.finish().catch((error: unknown) => onError(`paywall: could not record the usage of payment ${settled.paymentId}:`, error, req));
        }
        settle(status).then(
          () => status >= 500 && decided?.({ ...paid, outcome: "voided", code: "handler_failed", status }, req, res),
          (error: unknown) => onError(`paywall: could not void payment ${settled.paymentId}:`, error, req),
        );
      };
      res.once("finish", complete);
      res.once("close", complete);
      next();
    };
  };
}

/** A metered route needs a scheme that can meter, and a maximum no lower than its price. */
function checkMetered(spec: RouteObject, schemes: PaymentScheme[]): void {
  if (spec.maxPrice === undefined) return;
  if (!schemes.some((s) => s.metered)) {
    throw new Error(`paywall: a route has a maxPrice (it is metered), but none of the schemes ${schemes.map((s) => `"${s.scheme}"`).join(", ")} can meter; add the paychan gateway`);
  }
  // A moving price could rise above the maximum and leave the route unpayable at peak demand.
  if (spec.price instanceof RoutePricing) {
    throw new Error("paywall: a metered route's price must be fixed, not a pricing policy: its maxPrice bounds what a request may cost");
  }
  if (typeof spec.price === "bigint" && typeof spec.maxPrice === "bigint" && (spec.maxPrice < spec.price || spec.price <= 0n)) {
    throw new Error(`paywall: a metered route's price must be at least 1 and its maxPrice at least its price (price ${spec.price}, maxPrice ${spec.maxPrice})`);
  }
}

/** Counts the request into the route's demand while it is in flight. */
function measureDemand(policy: RoutePricing, res: Response): void {
  policy.meter.started(policy.now());
  let done = false;
  const finished = () => {
    if (done) return;
    done = true;
    policy.meter.finished();
  };
  res.once("finish", finished);
  res.once("close", finished);
}

/**
 * The quote a paid request on a priced route is charged: the one its payment states, if that price is
 * still honoured for its payer; else the price now, with the refusal that states it. A payment that
 * states no amount (a bearer credit key) pays the price now.
 */
async function pricedFor(policy: RoutePricing, prices: PriceTable, scheme: PaymentScheme, payment: PaymentHeader, payer: string | undefined): Promise<{ quote: Quote; refusal?: PaymentError }> {
  const stated = statedAmount(payment.json);
  if (stated === undefined) return { quote: await policy.quote(prices, payer) };
  const honoured = await policy.honoured(prices, payer, (quote) => scheme.requirements(quote)?.amount, stated);
  if (honoured) return { quote: honoured };
  const quote = await policy.quote(prices, payer);
  const now = scheme.requirements(quote)?.amount;
  return {
    quote,
    refusal: new PaymentError(
      "price_expired",
      `The payment is at ${stated}, a price no longer honoured; the price now is ${now} (${quote.pricing?.reason}). Pay the terms of this 402.`,
      { price: String(now) },
    ),
  };
}

const DECIMAL = /^[0-9]{1,78}$/;
const BEARER = /^Bearer (\S+)$/i;

/** The amount a payment says it accepts (`accepted.amount`), if it states one. */
function statedAmount(json: unknown): bigint | undefined {
  const amount = (json as { accepted?: { amount?: unknown } } | null)?.accepted?.amount;
  if (typeof amount === "string" && DECIMAL.test(amount)) return BigInt(amount);
  if (typeof amount === "number" && Number.isSafeInteger(amount) && amount >= 0) return BigInt(amount);
  return undefined;
}

/** The payment a request carries: its PAYMENT-SIGNATURE, or else a bearer token a scheme takes. */
function paymentOf(req: Request, schemes: PaymentScheme[]): { scheme: string; header: string; json: unknown } {
  const header = req.get(HEADERS.signature);
  if (header !== undefined && header !== "") return { ...decodePaymentEnvelope(header), header };
  const token = BEARER.exec(req.get("authorization") ?? "")?.[1];
  if (token !== undefined) {
    for (const s of schemes) {
      const payment = s.fromAuthorization?.(token, req.get("idempotency-key"));
      if (payment) return { scheme: s.scheme, ...payment };
    }
  }
  throw new PaymentError("payment_required", "This resource requires payment: send a PAYMENT-SIGNATURE header.");
}

function refuse(res: Response, schemes: PaymentScheme[], quote: Quote, max: Quote | undefined, resource: Resource, error: PaymentError) {
  const accepts: Requirements[] = schemes.flatMap((s) => s.requirements(quote, error, max) ?? []);
  const body = {
    x402Version: X402_VERSION,
    error: error.message,
    code: error.code,
    resource: { url: resource.url, description: resource.description ?? "", mimeType: resource.mimeType ?? "" },
    accepts,
  };
  res.setHeader(HEADERS.required, encodeHeader(body));
  const retryAfter = error.details?.retryAfter;
  if (typeof retryAfter === "number") res.setHeader("Retry-After", String(retryAfter));
  res.setHeader("Access-Control-Expose-Headers", typeof retryAfter === "number" ? `${HEADERS.required}, Retry-After` : HEADERS.required);
  res.status(error.status).json({ error: error.code, message: error.message, ...(error.details && { details: error.details }) });
}

/** The route's price in the scheme's own asset. */
function priceIn(scheme: PaymentScheme | undefined, quote: Quote): { amount?: bigint; asset?: string; pricing?: string } {
  const pricing = quote.pricing && { pricing: quote.pricing.reason };
  if (!scheme) return { ...pricing };
  if (scheme.defaultAsset) return { amount: quote.get(scheme.defaultAsset), asset: scheme.defaultAsset, ...pricing };
  const terms = scheme.requirements(quote);
  return terms ? { amount: terms.amount, asset: `${terms.network}/${terms.asset}`, ...pricing } : { ...pricing };
}

function isRouteObject(spec: RouteSpec): spec is RouteObject {
  return typeof spec === "object" && spec !== null && "price" in spec;
}
