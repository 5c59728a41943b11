// Express adapter for PaymentGateway: `app.use(paywall(gateway, { "GET /quote": 1000n }))`.
// Routes are matched by an Express Router built from the same patterns, so a path is paywalled
// exactly when Express would route it to the handler (case, trailing slashes, params): there is no
// second matcher to disagree with and be bypassed.
import express, { type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { PaymentError, isPaymentError } from "../protocol/Errors.js";
import { HEADERS, encodeHeader } from "../protocol/wire.js";
import type { Hex } from "viem";
import type { PaymentGateway, Resource } from "./PaymentGateway.js";

/** A fixed price in base units, or one computed from the request. */
export type Price = bigint | ((req: Request) => bigint | Promise<bigint>);
export type RouteSpec = Price | { price: Price; description?: string; mimeType?: string };

const METHODS = ["get", "post", "put", "patch", "delete", "head", "options", "all"] as const;
type Method = (typeof METHODS)[number];

/** `routes` maps "METHOD /path" (Express path syntax; METHOD may be omitted for all) to a price. */
export function paywall(gateway: PaymentGateway, routes: Record<string, RouteSpec>): RequestHandler {
  const router = express.Router();
  for (const [key, spec] of Object.entries(routes)) {
    const [first, second] = key.trim().split(/\s+/, 2);
    const method = (second ? first!.toLowerCase() : "all") as Method;
    const path = second ?? first!;
    if (!METHODS.includes(method)) throw new Error(`paywall: unknown method in route "${key}"`);
    router[method](path, charge(gateway, typeof spec === "object" && "price" in spec ? spec : { price: spec }));
  }
  // A Router answers OPTIONS for its paths by itself; a CORS preflight must reach the app's own handlers.
  const paysOptions = Object.keys(routes).some((key) => /^options\s/i.test(key.trim()));
  return (req, res, next) => (req.method === "OPTIONS" && !paysOptions ? next() : router(req, res, next));
}

/** The middleware for one route; use it directly as `app.get(path, charge(gateway, {price}), handler)`. */
export function charge(
  gateway: PaymentGateway,
  spec: { price: Price; description?: string; mimeType?: string },
): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const resource: Resource = {
      url: `${req.protocol}://${req.get("host") ?? "localhost"}${req.originalUrl}`,
      description: spec.description,
      mimeType: spec.mimeType,
    };
    let price: bigint;
    try {
      price = typeof spec.price === "bigint" ? spec.price : await spec.price(req);
      if (typeof price !== "bigint" || price <= 0n) throw new Error("price must be a positive bigint");
    } catch (cause) {
      return refuse(res, gateway, 0n, resource, new PaymentError("price_unavailable", `No price for this request: ${String(cause)}`));
    }

    let authorization;
    try {
      authorization = await gateway.authorize(req.get(HEADERS.signature), price, resource, req.method);
    } catch (error) {
      if (isPaymentError(error)) return refuse(res, gateway, price, resource, error);
      // The request was fine; the gateway's database or chain was not. Nothing was charged.
      console.error("paywall: could not authorize a payment:", error);
      res.setHeader("Retry-After", "1");
      return refuse(res, gateway, price, resource, new PaymentError("temporarily_unavailable", "The payment service is briefly unavailable; retry in a moment. You were not charged."));
    }

    res.setHeader(HEADERS.response, encodeHeader(authorization.receipt));
    res.setHeader("Access-Control-Expose-Headers", `${HEADERS.response}, ${HEADERS.required}`);
    // A handler failure voids the charge, so its 5xx must not carry a receipt.
    const writeHead = res.writeHead;
    res.writeHead = function (this: Response, ...args: Parameters<Response["writeHead"]>) {
      if (this.statusCode >= 500 || (typeof args[0] === "number" && args[0] >= 500)) this.removeHeader(HEADERS.response);
      return writeHead.apply(this, args);
    } as Response["writeHead"];
    let completed = false;
    const complete = () => {
      if (completed) return;
      completed = true;
      gateway.complete(authorization, res.statusCode).catch((error: unknown) => {
        console.error(`paywall: could not void payment ${authorization.paymentId}:`, error);
      });
    };
    res.once("finish", complete);
    res.once("close", complete);
    next();
  };
}

function refuse(res: Response, gateway: PaymentGateway, price: bigint, resource: Resource, error: PaymentError) {
  const hint = typeof error.details?.channelId === "string" ? (error.details.channelId as Hex) : undefined;
  const body = gateway.paymentRequired(price, resource, error, hint);
  res.setHeader(HEADERS.required, encodeHeader(body));
  res.setHeader("Access-Control-Expose-Headers", HEADERS.required);
  res.status(error.status).json({ error: error.code, message: error.message, ...(error.details && { details: error.details }) });
}
