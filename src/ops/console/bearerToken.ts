// A bearer-token check for the console's endpoints, for `npm run dev` and the tests, until the
// operator listener's own check (src/ops/operatorApp.ts, OPERATOR_TOKEN) is on this branch: it is the
// same rule — `Authorization: Bearer <token>`, compared as digests in constant time — and should be
// replaced by it, not grow next to it.
import { createHash, timingSafeEqual } from "node:crypto";
import type { RequestHandler } from "express";

export function requireBearerToken(token: string): RequestHandler {
  if (token.length < 16) throw new Error("The console token must be at least 16 characters.");
  const expected = digest(token);
  return (req, res, next) => {
    const presented = /^Bearer (.+)$/i.exec(req.get("authorization") ?? "")?.[1];
    if (presented !== undefined && timingSafeEqual(digest(presented), expected)) return next();
    res.setHeader("WWW-Authenticate", 'Bearer realm="paychan operator"');
    res.status(401).json({ error: "unauthorized", message: "The console needs Authorization: Bearer <operator token>." });
  };
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}
