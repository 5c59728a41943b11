// A seller of generated text, charged per token: GET /generate streams server-sent events, one token
// each, and the route is metered — the request prepays PRICE with its voucher, each token sent costs
// TOKEN_PRICE, and the stream stops before it would cost more than MAX_PRICE. Its headers leave with
// the first byte, so the final charge goes out as the stream's last event (`payment-response`); the
// part beyond PRICE is owed until the buyer's next voucher, which includes it.
import type { Express, Request, Response } from "express";
import { meterOf } from "../../src/gateway/index.js";
import { createApp, type Paychan } from "../../src/server.js";

export const TOKEN_PRICE = 10_000_000_000n; // wei per token
export const PRICE = 5n * TOKEN_PRICE; // prepaid: the least a request costs
export const MAX_PRICE = 200n * TOKEN_PRICE; // the most a request may cost

const TEXT = "the quick brown fox jumps over the lazy dog and then it naps in the warm sun".split(" ");

export function generationApp(paychan: Paychan): Express {
  return createApp(
    paychan,
    { "GET /generate": { price: PRICE, maxPrice: MAX_PRICE, description: "Generated text, per token", mimeType: "text/event-stream" } },
    {
      "GET /generate": async (req: Request, res: Response) => {
        const meter = meterOf(res);
        const wanted = Number(req.query.tokens ?? 20);
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        let hungUp = false;
        res.once("close", () => (hungUp = true));
        for (let i = 0; i < wanted && !hungUp && meter.remaining >= TOKEN_PRICE; i++) {
          meter.add(TOKEN_PRICE);
          res.write(`data: ${TEXT[i % TEXT.length]}\n\n`);
          await new Promise((resolve) => setTimeout(resolve, 5)); // a model takes its time
        }
        // Fixes the charge, records the debt durably, and sends the receipt as the last event.
        res.end(await meter.receiptEvent());
      },
    },
  );
}
