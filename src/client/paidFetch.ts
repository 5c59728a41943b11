// A `fetch` that pays: it answers a 402 by signing the channel's next voucher with the session key
// and retrying, remembers the accepted total between calls, and, once it knows a route's price,
// pays up front so later calls take one round trip instead of two. A paid request whose connection
// fails is sent again unchanged, which the server serves without charging twice. When the seller's
// risk policy asks for a step-up, `onStepUp` has the payer's wallet sign one, and it is sent with
// every request while it holds. Works in Node and browsers.
import {
  HEADERS,
  decodePaymentRequired,
  decodeReceipt,
  encodeHeader,
  type PaymentRequirements,
  type Receipt,
} from "../protocol/wire.js";
import { STEP_UP_HEADER, encodeStepUp, type SignedStepUp, type StepUpRequest } from "../protocol/StepUp.js";
import { ChannelPayer, type ChannelPayerOptions } from "./ChannelPayer.js";
import { LowBalanceWatch, type AutoTopUpOptions, type LowBalanceOptions } from "./lowBalance.js";
import type { ChannelState } from "./stateStore.js";

export type PaidFetchOptions = ChannelPayerOptions & {
  fetch?: typeof globalThis.fetch;
  /** Called with each receipt (e.g. to top up when `remaining` runs low). */
  onReceipt?: (receipt: Receipt) => void | Promise<void>;
  /** Call `onLowBalance` once each time a receipt's `remaining` falls below `threshold` (off by default). */
  lowBalance?: LowBalanceOptions;
  /** Top the channel up on chain by `amount` when it runs low (below `lowBalance.threshold`, or a
   * request refused for the deposit), at most `cap` per `period` seconds (off by default). */
  autoTopUp?: AutoTopUpOptions;
  /**
   * Called when the seller asks for a step-up (`step_up_required`): have the payer's wallet — not the
   * session key — sign a StepUp (`signStepUp(wallet, { channelId, spendingLimit, validUntil },
   * channel.location)`), e.g. after prompting its owner; resolve to undefined to decline.
   */
  onStepUp?: (request: StepUpRequest & { message: string }) => Promise<SignedStepUp | undefined>;
};

export type PaidFetch = typeof globalThis.fetch & {
  state(): Promise<ChannelState>;
  /** Books a receipt that came in a response's body: a metered stream's final event, whose charge
   * was fixed after the headers left. The next voucher then pays it without a 402 first. */
  recordReceipt(receipt: Receipt): Promise<void>;
};

const MAX_ATTEMPTS = 3;
/** Identical resends of a paid request whose connection failed (fetch throws a TypeError). */
const NETWORK_RETRIES = 2;

export function createPaidFetch(options: PaidFetchOptions): PaidFetch {
  // The payer and the watch need each other: the payer asks the watch for a top-up when a request is
  // refused for the deposit, and the watch keeps its spending in the payer's store.
  const watch: LowBalanceWatch = new LowBalanceWatch(options.channel, { state: () => payer.state(), save: (s) => payer.save(s) }, options.lowBalance, options.autoTopUp);
  const payer: ChannelPayer = new ChannelPayer({
    ...options,
    onInsufficientDeposit: options.onInsufficientDeposit ?? (options.autoTopUp && (() => watch.onInsufficientDeposit())),
  });
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const knownPrices = new Map<string, PaymentRequirements>();
  let queue: Promise<unknown> = Promise.resolve();
  /** The payer's latest step-up approval, sent with every paid request until it expires. */
  let stepUp: SignedStepUp | undefined;

  const state = (): Promise<ChannelState> => payer.state();

  /** Books a receipt, from a response's header or a stream's last event, the same way. */
  async function recordReceipt(receipt: Receipt): Promise<void> {
    await payer.recordReceipt(receipt);
    await options.onReceipt?.(receipt);
    await watch.observe(receipt.remaining);
  }

  async function send(request: Request, requirements: PaymentRequirements, current: ChannelState) {
    const payload = await payer.sign(requirements, current);
    const headers = new Headers(request.headers);
    headers.set(HEADERS.signature, encodeHeader(payload));
    if (stepUp && stepUp.validUntil * 1000 > Date.now()) headers.set(STEP_UP_HEADER, encodeStepUp(stepUp));
    return sendPaid(new Request(request, { headers }));
  }

  /**
   * Sends a paid request; if the connection fails (the server may have committed the payment and
   * died before answering), sends the identical request again: the server serves an identical retry
   * within the payment's validity with the original receipt and charges it once.
   */
  async function sendPaid(paid: Request): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fetchImpl(paid.clone());
      } catch (error) {
        if (attempt >= NETWORK_RETRIES || !(error instanceof TypeError)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100 * 3 ** attempt));
      }
    }
  }

  async function pay(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const request = new Request(input, init);
    const route = `${request.method} ${new URL(request.url).origin}${new URL(request.url).pathname}`;
    // A remembered price above maxPrice is asked for again: the route's price may have come down.
    let known = knownPrices.get(route);
    if (known && !payer.affords(known)) known = undefined;
    let response = known ? await send(request.clone(), known, await state()) : await fetchImpl(request.clone());
    let steppedUp = false;

    for (let attempt = 0; response.status === 402 && attempt < MAX_ATTEMPTS; attempt++) {
      const header = response.headers.get(HEADERS.required);
      if (!header) return response;
      const required = decodePaymentRequired(header);
      const requirements = required.accepts.find(payer.matches);
      if (!requirements) return response;
      knownPrices.set(route, requirements);
      if (required.code === "step_up_required") {
        if (!options.onStepUp || steppedUp) return response;
        steppedUp = true;
        const { details } = (await response.clone().json().catch(() => ({}))) as { details?: Record<string, string> };
        const signed = await options.onStepUp({
          channelId: payer.channel.id,
          cumulativeAmount: /^[0-9]{1,78}$/.test(String(details?.cumulativeAmount)) ? BigInt(details!.cumulativeAmount!) : 0n,
          reasons: String(details?.reasons ?? ""),
          message: required.error ?? "The seller asks the payer's wallet to approve this spending.",
        });
        if (!signed) return response;
        stepUp = signed;
        response = await send(request.clone(), requirements, await state());
        continue;
      }
      const current = await payer.recover(required.code, requirements);
      if (!current) return response;
      known = requirements;
      response = await send(request.clone(), requirements, current);
    }

    const receiptHeader = response.headers.get(HEADERS.response);
    if (receiptHeader && response.status < 500) {
      await recordReceipt(decodeReceipt(receiptHeader));
    }
    return response;
  }

  const paidFetch = ((input: RequestInfo | URL, init?: RequestInit) => {
    // One request at a time per channel: each voucher builds on the previous accepted total.
    const result = queue.then(() => pay(input, init));
    queue = result.catch(() => undefined);
    return result;
  }) as PaidFetch;
  paidFetch.state = state;
  paidFetch.recordReceipt = recordReceipt;
  return paidFetch;
}
