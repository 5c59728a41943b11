// Every request gets an id that its log lines carry and its response echoes (X-Request-Id), so an
// operator can find the lines of the request a buyer or a proxy complains about. A proxy's own id is
// kept when it sends one; one that could forge or break a log line (too long, odd characters) is
// replaced by a fresh one.
import { randomUUID } from "node:crypto";
import type { RequestHandler, Response } from "express";

export const REQUEST_ID_HEADER = "X-Request-Id";

const acceptable = /^[A-Za-z0-9._:@+=\/-]{1,128}$/;

export function requestIds(): RequestHandler {
  return (req, res, next) => {
    const given = req.get(REQUEST_ID_HEADER);
    const id = given !== undefined && acceptable.test(given) ? given : randomUUID();
    res.locals.requestId = id;
    res.setHeader(REQUEST_ID_HEADER, id);
    next();
  };
}

/** The id `requestIds` gave this request's response, if it ran. */
export function requestIdOf(res: Response): string | undefined {
  const id: unknown = res.locals.requestId;
  return typeof id === "string" ? id : undefined;
}
