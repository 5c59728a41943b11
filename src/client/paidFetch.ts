// A `fetch` that pays: it answers a 402 by signing the channel's next voucher with the session key
// and retrying, remembers the accepted total between calls, and, once it knows a route's price,
// pays up front so later calls take one round trip instead of two. A paid request whose connection
// fails is sent again unchanged, which the server serves without charging twice. Works in Node and
// browsers.
import type { LocalAccount } from "viem";
import { PaymentError } from "../protocol/Errors.js";
import { signVoucher } from "../protocol/Voucher.js";
import {
  HEADERS,
  X402_VERSION,
  decodePaymentRequired,
  decodeReceipt,
  encodeHeader,
  networkOf,
  type PaymentPayload,
  type PaymentRequirements,
  type Receipt,
} from "../protocol/wire.js";
import type { OpenedChannel } from "./channel.js";
import { MemoryStateStore, type ChannelState, type ChannelStateStore } from "./stateStore.js";

export type PaidFetchOptions = {
  channel: OpenedChannel;
  /** The session key that the channel names as its signer (or the payer's own local account). */
  signer: Pick<LocalAccount, "signTypedData">;
  /** Refuse to pay more than this per request (base units). */
  maxPrice: bigint;
  store?: ChannelStateStore;
  fetch?: typeof globalThis.fetch;
  /** Called when the deposit runs short; top up (e.g. `topUp(...)`) and resolve to retry. */
  onInsufficientDeposit?: (details: { deposit: bigint; needed: bigint }) => Promise<void>;
  /** Called with each receipt (e.g. to top up when `remaining` runs low). */
  onReceipt?: (receipt: Receipt) => void | Promise<void>;
};

export type PaidFetch = typeof globalThis.fetch & { state(): Promise<ChannelState> };

const MAX_ATTEMPTS = 3;
/** Identical resends of a paid request whose connection failed (fetch throws a TypeError). */
const NETWORK_RETRIES = 2;

export function createPaidFetch(options: PaidFetchOptions): PaidFetch {
  const { channel, signer, maxPrice } = options;
  const store = options.store ?? new MemoryStateStore();
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const network = networkOf(channel.location.chainId);
  const knownPrices = new Map<string, PaymentRequirements>();
  let queue: Promise<unknown> = Promise.resolve();

  const state = async (): Promise<ChannelState> => (await store.load(channel.id)) ?? { accepted: 0n, signedMax: 0n };

  const matches = (r: PaymentRequirements) =>
    r.network === network &&
    r.extra.escrow === channel.location.escrow &&
    r.payTo === channel.config.payee &&
    r.asset === channel.config.token;

  async function send(request: Request, requirements: PaymentRequirements, current: ChannelState) {
    if (requirements.amount > maxPrice) {
      throw new PaymentError("payment_required", `Price ${requirements.amount} exceeds maxPrice ${maxPrice}.`);
    }
    const cumulativeAmount = current.accepted + requirements.amount;
    const voucher = await signVoucher(signer, { channelId: channel.id, cumulativeAmount }, channel.location);
    // Remember the signature before it leaves: the server may claim it even if the response is lost.
    if (cumulativeAmount > current.signedMax) await store.save(channel.id, { ...current, signedMax: cumulativeAmount });
    const payload: PaymentPayload = {
      x402Version: X402_VERSION,
      accepted: requirements,
      payload: { channel: channel.config, voucher },
    };
    const headers = new Headers(request.headers);
    headers.set(HEADERS.signature, encodeHeader(payload));
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
    let known = knownPrices.get(route);
    let response = known ? await send(request.clone(), known, await state()) : await fetchImpl(request.clone());

    for (let attempt = 0; response.status === 402 && attempt < MAX_ATTEMPTS; attempt++) {
      const header = response.headers.get(HEADERS.required);
      if (!header) return response;
      const required = decodePaymentRequired(header);
      const requirements = required.accepts.find(matches);
      if (!requirements) return response;
      knownPrices.set(route, requirements);
      const current = await state();
      const server = requirements.extra.channel;
      if (server && server.channelId === channel.id && server.acceptedCumulative !== current.accepted) {
        // Follow the server only as far as what this client actually signed.
        if (server.acceptedCumulative > current.signedMax) return response;
        current.accepted = server.acceptedCumulative;
        await store.save(channel.id, current);
      }
      if (required.code === "insufficient_deposit" && server) {
        if (!options.onInsufficientDeposit) return response;
        await options.onInsufficientDeposit({ deposit: server.deposit, needed: current.accepted + requirements.amount });
      } else if (required.code && !["payment_required", "cumulative_mismatch", "voucher_replayed"].includes(required.code)) {
        return response;
      }
      known = requirements;
      response = await send(request.clone(), requirements, current);
    }

    const receiptHeader = response.headers.get(HEADERS.response);
    if (receiptHeader && response.status < 500) {
      const receipt = decodeReceipt(receiptHeader);
      const current = await state();
      await store.save(channel.id, {
        accepted: receipt.cumulativeAmount,
        signedMax: current.signedMax > receipt.cumulativeAmount ? current.signedMax : receipt.cumulativeAmount,
      });
      await options.onReceipt?.(receipt);
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
  return paidFetch;
}
