// paychan's scheme for stock x402 clients. Registered on an `@x402/core` `x402Client`, it lets
// `@x402/fetch`'s `wrapFetchWithPayment` (or any transport built on the core client) pay paychan
// routes with vouchers on one channel, keeping the channel's cumulative state through the same
// ChannelPayer as `createPaidFetch`: the accepted total, the highest total signed, resyncs only up
// to what was signed, and one payment at a time.
//
// The stock transport owns the request loop, so this class works through the core client's hooks:
// `createPaymentPayload` signs the next voucher, and the scheme's `onPaymentResponse` hook books the
// PAYMENT-RESPONSE receipt, or, on a refusal, resyncs from the 402's `extra.channel` and asks the
// transport for its one retry (`{ recovered: true }`).
import type { PaymentResponseContext } from "@x402/core/client";
import type {
  DefaultAsset,
  Network,
  PaymentPayloadResult,
  PaymentRequirements as X402Requirements,
  SchemeClientHooks,
  SchemeNetworkClient,
} from "@x402/core/types";
import { zeroAddress } from "viem";
import { ChannelPayer } from "../client/ChannelPayer.js";
import type { PaidFetchOptions } from "../client/paidFetch.js";
import { PaymentError } from "../protocol/Errors.js";
import type { SignedVoucher } from "../protocol/Voucher.js";
import {
  SCHEME,
  X402_VERSION,
  paymentRequiredSchema,
  receiptSchema,
  requirementsSchema,
  type PaymentRequirements,
} from "../protocol/wire.js";

/** `createPaidFetch`'s options, less its transport (the stock client brings its own) and its
 * low-balance watch (it follows receipts the stock transport owns). */
export type PaychanSchemeClientOptions = Omit<PaidFetchOptions, "fetch" | "lowBalance" | "autoTopUp">;

export class PaychanSchemeClient implements SchemeNetworkClient {
  readonly scheme = SCHEME;
  readonly schemeHooks: SchemeClientHooks;
  private readonly payer: ChannelPayer;
  private readonly onReceipt: PaychanSchemeClientOptions["onReceipt"];
  /** Settles when the payment ahead of the next one has its outcome (or has timed out). */
  private turn: Promise<void> = Promise.resolve();
  /** Signed vouchers whose response has not been seen yet, by signature: each one's end of turn. */
  private readonly inFlight = new Map<string, () => void>();

  constructor(options: PaychanSchemeClientOptions) {
    this.payer = new ChannelPayer(options);
    this.onReceipt = options.onReceipt;
    this.schemeHooks = { onPaymentResponse: (context) => this.onPaymentResponse(context) };
  }

  /**
   * The stock client's spend controls only pay assets they recognise ("default assets", valued in
   * USD) unless told otherwise. The buyer chose this channel's asset by funding it, and this scheme
   * never pays in another, so native ETH — whose decimals are known — is recognised here. The stock
   * "$1 per payment" cap then reads as one ETH; `maxPrice` is the cap that binds. An ERC-20 channel's
   * decimals are not known to the channel, so list its token in the stock client's
   * `spendControls.allowedAssets` (with an atomic `maxAmountPerPayment` if you like).
   */
  findDefaultAsset = (asset: string, network: Network): DefaultAsset | undefined =>
    network === this.payer.network && this.payer.channel.config.token === zeroAddress && asset.toLowerCase() === zeroAddress
      ? { asset, decimals: 18, symbol: "ETH" }
      : undefined;

  async createPaymentPayload(x402Version: number, raw: X402Requirements): Promise<PaymentPayloadResult> {
    if (x402Version !== X402_VERSION) {
      throw new PaymentError("unsupported_version", `paychan pays x402 version ${X402_VERSION} terms only, not ${x402Version}.`);
    }
    const parsed = requirementsSchema.safeParse(raw);
    if (!parsed.success) throw new PaymentError("malformed_payment", "These paychan terms are malformed.");
    const requirements = parsed.data;
    const mismatch = this.payer.mismatch(requirements);
    if (mismatch) throw new PaymentError(mismatch, `This channel cannot pay these terms (${mismatch}).`);
    this.payer.checkPrice(requirements);

    const endTurn = await this.takeTurn(requirements);
    try {
      const { voucher } = (await this.payer.sign(requirements, await this.payer.state())).payload;
      this.inFlight.set(voucher.signature, endTurn);
      return { x402Version: X402_VERSION, payload: { channel: this.payer.channel.config, voucher: wireVoucher(voucher) } };
    } catch (error) {
      endTurn();
      throw error;
    }
  }

  /**
   * Each voucher builds on the previous accepted total, so a payment waits for the outcome of the one
   * before it. The transport reports that outcome through `onPaymentResponse`, except when the paid
   * request itself throws (a lost connection); then the turn ends after the terms' `maxTimeoutSeconds`,
   * and if the server did accept that voucher, its next refusal carries the total to resync to.
   */
  private async takeTurn(requirements: PaymentRequirements): Promise<() => void> {
    const previous = this.turn;
    let release!: () => void;
    this.turn = new Promise<void>((resolve) => (release = resolve));
    await previous;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const end = () => {
      clearTimeout(timer);
      for (const [signature, ending] of this.inFlight) if (ending === end) this.inFlight.delete(signature);
      release();
    };
    timer = setTimeout(end, requirements.maxTimeoutSeconds * 1000);
    return end;
  }

  private async onPaymentResponse(context: PaymentResponseContext): Promise<void | { recovered: true }> {
    const voucher = context.paymentPayload.payload.voucher as Partial<SignedVoucher> | undefined;
    const endTurn = typeof voucher?.signature === "string" ? this.inFlight.get(voucher.signature) : undefined;
    // Not a voucher this client is waiting on: another channel's, or one whose turn timed out and
    // whose late outcome must not overwrite what the payment after it learned.
    if (!endTurn) return;
    try {
      const receipt = receiptSchema.safeParse(context.settleResponse);
      if (receipt.success) {
        await this.payer.recordReceipt(receipt.data);
        await this.onReceipt?.(receipt.data);
        return;
      }
      return await this.afterRefusal(context.paymentRequired);
    } finally {
      endTurn();
    }
  }

  /** A paid request came back 402: resync and let the transport retry when that can help. */
  private async afterRefusal(raw: unknown): Promise<void | { recovered: true }> {
    const required = paymentRequiredSchema.safeParse(raw);
    if (!required.success) return;
    const requirements = required.data.accepts
      .map((entry) => requirementsSchema.safeParse(entry))
      .flatMap((entry) => (entry.success ? [entry.data] : []))
      .find(this.payer.matches);
    if (!requirements) return;
    const current = await this.payer.recover(required.data.code, requirements);
    return current ? { recovered: true } : undefined;
  }
}

/** The voucher as the wire carries it: the stock client serialises with plain JSON.stringify. */
function wireVoucher(voucher: SignedVoucher) {
  return { channelId: voucher.channelId, cumulativeAmount: voucher.cumulativeAmount.toString(), signature: voucher.signature };
}
