// The operator's HTTP endpoints (GET /reconcile, the console at /admin; metrics mount here too)
// live on their own listener, never on the public gateway: by default bound to loopback, and beyond
// loopback only with a bearer token (OPERATOR_TOKEN), compared in constant time. Whoever adds an
// operator endpoint mounts it on the app `createOperatorApp` returns and gets the check for free.
import { createHash, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from "express";
import { messageOf } from "../chain/TxManager.js";
import { ConfigError } from "../config.js";

export type OperatorAccess = {
  /** The bind address. */
  host: string;
  /** Required as `Authorization: Bearer <token>` on every request when set. */
  token?: string;
};

/** Refuses a binding reachable from other machines without a token: the books are not public. */
export function checkOperatorAccess({ host, token }: OperatorAccess): void {
  if (!token && !isLoopback(host)) {
    throw new ConfigError(
      `OPERATOR_HOST=${host} is reachable from other machines, so the operator endpoints need a token: set OPERATOR_TOKEN ` +
        `(at least 16 random characters), or bind them to loopback (OPERATOR_HOST=127.0.0.1).`,
    );
  }
}

export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  const v6 = host.replace(/^\[|\]$/g, "").toLowerCase();
  return v6 === "::1" || v6.startsWith("::ffff:127.");
}

/**
 * An Express app with the access check in front; mount operator endpoints on it. `pages` are mounted
 * before the check: a browser loading a page cannot send a bearer header, so a page (which holds no
 * data) is served to anyone who reaches the listener and guards its own data endpoints with
 * `guard(access)`.
 */
export function createOperatorApp(access: OperatorAccess, pages: { path: string; router: RequestHandler }[] = []): Express {
  checkOperatorAccess(access);
  const app = express();
  app.disable("x-powered-by");
  for (const page of pages) app.use(page.path, page.router);
  if (access.token) app.use(requireToken(access.token));
  return app;
}

/** The check an operator page's data endpoints need: the token when one is configured (on loopback
 * without one, none, like every other operator endpoint). */
export function guard(access: OperatorAccess): RequestHandler {
  return access.token ? requireToken(access.token) : (_req, _res, next) => next();
}

/** Mount last: an endpoint that failed (its chain or database did not answer) answers 503 with the
 * reason as JSON, never Express's HTML page with a stack trace. */
export const answerFailures: ErrorRequestHandler = (error: unknown, _req, res, _next) => {
  res.status(503).json({ error: "unavailable", message: messageOf(error) });
};

/** Requires `Authorization: Bearer <token>`, compared in constant time. */
export function requireToken(token: string): RequestHandler {
  // Compare digests: equal length whatever the caller sent, so the comparison leaks no length.
  const expected = digest(token);
  return (req, res, next) => {
    const presented = /^Bearer (.+)$/i.exec(req.get("authorization") ?? "")?.[1];
    if (presented !== undefined && timingSafeEqual(digest(presented), expected)) return next();
    res.setHeader("WWW-Authenticate", 'Bearer realm="paychan operator"');
    res.status(401).json({ error: "unauthorized", message: "The operator endpoints need Authorization: Bearer <OPERATOR_TOKEN>." });
  };
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}
