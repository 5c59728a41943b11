// The seller's side of a paid request, free of any HTTP framework: it states the terms (the 402),
// decides whether a PAYMENT-SIGNATURE pays for this request and, if so, has it accepted durably before
// the handler runs, and voids it if the handler fails. Express is a thin adapter over this (paywall.ts).
//
// What is decided where: the header's form, the terms and the voucher's signature here, in memory
// (they depend on nothing that changes); whether the voucher is the channel's next one, within its
// deposit, on a channel neither closed nor closing — in the database, in the accept statement, against
// the row the watcher keeps (PaymentStore.accept). The cache below may only make a refusal faster.
//
// A metered route (a maximum besides its price) prepays the price with the voucher; what the handler
// reports beyond it, up to the maximum, is recorded as the channel's debt once the handler finishes,
// and the channel's next voucher must include it: the payer only ever signs what it was charged.
import { getAddress, hexToBytes, isAddress, zeroAddress, type Address, type Hex } from "viem";
import { channelId, voucherSigner, type ChannelConfig, type EscrowLocation } from "../protocol/Channel.js";
import { PaymentError } from "../protocol/Errors.js";
import { decodeStepUp, stepUpSigner } from "../protocol/StepUp.js";
import type { SignedVoucher } from "../protocol/Voucher.js";
import { SCHEME, networkOf, parsePaychanPayment, type PaymentRequirements, type Receipt } from "../protocol/wire.js";
import { tokenAsset, type Asset } from "../ledger/asset.js";
import type { PriceNote, Quote } from "../policy/prices.js";
import { LruMap, type ChannelCache, type CodeCache, type Seen } from "./ChannelCache.js";
import { GroupCommit, type CommitObserver } from "./GroupCommit.js";
import { exposureLimit, type ExposureCap } from "../ledger/acceptVouchers.js";
import type { AcceptOutcome, ChannelReader, ChannelRecord, ChannelSnapshot, PaymentStore, VoucherCharge } from "./PaymentStore.js";
import type { MeteredCharge, PaidRequest, PaymentHeader, PaymentScheme, Settled } from "./PaymentScheme.js";
import { recoverSigner, voucherDigester } from "./signatures.js";
import { checkAcceptedTerms, requestKeyOf } from "./requestTerms.js";

export type GatewayOptions = {
  chainId: number;
  escrow: Address;
  payee: Address;
  /** The asset charged: `zeroAddress` for native ETH, else the ERC-20's address. */
  asset: Address;
  store: PaymentStore;
  chain: ChannelReader;
  /** Channels whose withdrawal delay is shorter are refused (default one day). */
  minWithdrawDelay?: number;
  /** Stop accepting vouchers this many seconds (of chain time) before a requested withdrawal can
   * finalize, so the settlement worker has time to claim (default one hour). */
  closingMarginSeconds?: number;
  /** How much of a deposit seen at the chain's head but not yet confirmed vouchers may spend, per
   * channel (default: all of it — right when confirmations are 0). */
  pendingDepositCap?: bigint;
  /** How long a payment stays valid: an identical retry within it is served again (default 60). */
  maxTimeoutSeconds?: number;
  /** Channels remembered by this process (default 50,000); beyond it the least recently used go. */
  channelCacheSize?: number;
  /** Told about each accept statement (its batch size and duration), for metrics. */
  onCommit?: CommitObserver;
  /** How long a metered request may run and still charge its usage beyond its price (default 600). */
  meteringLeaseSeconds?: number;
  /** The risk policy's exposure cap: near a withdrawal deadline, what a channel may owe unclaimed
   * (decided in the accept statement). Default: none. */
  exposureCap?: ExposureCap;
  /** Told of a channel refused by the exposure cap that a claim would make room on: wake the
   * settlement worker. The payer is told to retry after `exposureRetryAfterSeconds` (default 5). */
  onExposureCapped?: (channelId: Hex) => void;
  exposureRetryAfterSeconds?: number;
};

export type Authorization = Settled & {
  channelId: Hex;
  price: bigint;
  cumulativeAmount: bigint;
  /** An identical retry of a request already paid: served again, charged nothing more. */
  retried: boolean;
  receipt: Receipt;
  meter?: MeteredCharge;
};

/** How many times one payment is served again to identical retries (the SDK resends at most twice). */
const MAX_RETRIES = 3;

export class PaymentGateway implements PaymentScheme {
  readonly scheme = SCHEME;
  readonly servesResendsOfRefused = true;
  readonly metered = true;
  readonly location: EscrowLocation;
  readonly network: string;
  readonly payee: Address;
  /** The token charged: `zeroAddress` for native ETH. */
  readonly asset: Address;
  /** The same token as the ledger and the price table name it. */
  readonly defaultAsset: Asset;
  readonly minWithdrawDelay: number;
  readonly closingMarginSeconds: number;
  private readonly maxTimeoutSeconds: number;
  private readonly store: PaymentStore;
  private readonly chain: ChannelReader;
  private readonly digest: (channelId: Hex, cumulativeAmount: bigint) => Uint8Array;
  private readonly commits: GroupCommit<VoucherCharge, AcceptOutcome>;
  private readonly channels: ChannelCache;
  /** Whether an address has code, so forged vouchers cannot make every request an RPC call. */
  private readonly contracts: CodeCache;
  /** First sight of a channel reads the chain and writes the store once, however many requests race. */
  private readonly registering = new Map<Hex, Promise<ChannelRecord>>();
  private readonly exposureCap: ExposureCap | undefined;
  private readonly onExposureCapped: GatewayOptions["onExposureCapped"];
  private readonly exposureRetryAfterSeconds: number;

  constructor(options: GatewayOptions) {
    this.location = { chainId: options.chainId, escrow: getAddress(options.escrow) };
    this.network = networkOf(options.chainId);
    this.payee = getAddress(options.payee);
    this.asset = getAddress(options.asset);
    this.defaultAsset = tokenAsset(options.chainId, this.asset);
    this.minWithdrawDelay = options.minWithdrawDelay ?? 86_400;
    this.closingMarginSeconds = options.closingMarginSeconds ?? 3_600;
    this.maxTimeoutSeconds = options.maxTimeoutSeconds ?? 60;
    this.store = options.store;
    this.chain = options.chain;
    this.digest = voucherDigester(this.location);
    this.exposureCap = options.exposureCap;
    this.onExposureCapped = options.onExposureCapped;
    this.exposureRetryAfterSeconds = options.exposureRetryAfterSeconds ?? 5;
    const context = {
      chainId: options.chainId,
      closingMarginSeconds: this.closingMarginSeconds,
      pendingDepositCap: options.pendingDepositCap,
      meteringLeaseSeconds: options.meteringLeaseSeconds,
      exposureCap: options.exposureCap,
    };
    this.commits = new GroupCommit((charges) => this.store.accept(charges, context), (charge) => charge.channelId, undefined, options.onCommit);
    this.channels = new LruMap(options.channelCacheSize ?? 50_000);
    this.contracts = new LruMap(options.channelCacheSize ?? 50_000);
  }

  /** The paychan terms for a route priced `quote`; with a refusal naming a channel, the server's
   * view of that channel, so a client that is behind can resync. */
  requirements(quote: Quote, refusal?: PaymentError, max?: Quote): PaymentRequirements | undefined {
    const price = quote.get(this.defaultAsset);
    if (price === undefined) return undefined;
    const maxAmount = max?.get(this.defaultAsset);
    if (max && maxAmount === undefined) return undefined;
    const hint = typeof refusal?.details?.channelId === "string" ? (refusal.details.channelId as Hex) : undefined;
    const seen = hint ? this.channels.peek(hint)?.seen : undefined;
    return this.terms(price, maxAmount, seen && hint ? { id: hint, ...seen } : undefined, quote.pricing);
  }

  /** The channel's payer, as volume tiers count requests (checksummed), if the payment names one. */
  payerOf(payment: PaymentHeader): string | undefined {
    const payer = (payment.json as { payload?: { channel?: { payer?: unknown } } } | null)?.payload?.channel?.payer;
    return typeof payer === "string" && isAddress(payer, { strict: false }) ? getAddress(payer) : undefined;
  }

  private terms(price: bigint, maxAmount: bigint | undefined, channel?: { id: Hex } & Seen, pricing?: PriceNote): PaymentRequirements {
    return {
      scheme: SCHEME,
      network: this.network,
      amount: price,
      asset: this.asset,
      payTo: this.payee,
      maxTimeoutSeconds: this.maxTimeoutSeconds,
      extra: {
        escrow: this.location.escrow,
        minWithdrawDelay: this.minWithdrawDelay,
        closingMarginSeconds: this.closingMarginSeconds,
        ...(maxAmount !== undefined && { maxAmount }),
        ...(pricing && { price: pricing }),
        ...(channel && {
          channel: {
            channelId: channel.id,
            acceptedCumulative: channel.acceptedCumulative,
            deposit: channel.deposit,
            owed: channel.owed,
            remaining: spendable(channel.deposit, channel.acceptedCumulative + (channel.owed ?? 0n)),
          },
        }),
      },
    };
  }

  /** How many channels this process remembers (at most `channelCacheSize`). */
  get cachedChannels(): number {
    return this.channels.size;
  }

  /**
   * Decides whether `payment` pays this request's price and, if so, has it accepted durably before
   * returning. Rejects with a PaymentError (with a stable code) for every refusal.
   */
  async authorize(payment: PaymentHeader, quote: Quote, request: PaidRequest): Promise<Authorization> {
    const price = quote.get(this.defaultAsset);
    if (price === undefined) throw new PaymentError("unsupported_scheme", `This resource is not priced in ${this.defaultAsset}.`);
    const max = request.max?.get(this.defaultAsset);
    if (request.max && (max === undefined || max < price)) {
      throw new PaymentError("price_unavailable", `This metered resource has no maximum of at least its price ${price} in ${this.defaultAsset}.`);
    }
    const { accepted, payload } = parsePaychanPayment(payment.json);
    const { channel: config, voucher } = payload;
    const requestKey = requestKeyOf(request.method, request.url, payment.header);
    if (request.refusal) {
      // The paywall refuses the price this payment states (it expired, or the payer reached a cheaper
      // tier). If it is the identical resend of a request already charged at that price (its answer
      // was lost), it is served again, charged nothing more; the database says whether it is one.
      const resend = { channelId: voucher.channelId, cumulativeAmount: voucher.cumulativeAmount, signature: voucher.signature, requestKey };
      const earlier = await this.store.claimRetry(resend, this.maxTimeoutSeconds, MAX_RETRIES);
      if (!earlier) throw request.refusal;
      return this.authorization(config, { ...resend, price: earlier.price }, earlier.paymentId, earlier.deposit, true);
    }
    this.checkOffer(accepted, price, max);
    this.checkChannelTerms(config);
    const cached = await this.channelFor(voucher.channelId, config);
    if (cached.final) throw cached.final;
    await this.checkSignature(config, voucher);

    const charge: VoucherCharge = {
      channelId: voucher.channelId,
      cumulativeAmount: voucher.cumulativeAmount,
      price,
      signature: voucher.signature,
      requestKey,
      max,
      ...(quote.pricing && { pricing: quote.pricing.reason }),
    };
    if (request.admit) {
      const stepUp = request.stepUp === undefined ? undefined : await this.checkStepUp(request.stepUp, config, voucher.channelId);
      try {
        request.admit({ account: voucher.channelId, payer: config.payer, cumulative: voucher.cumulativeAmount, deposit: cached.seen?.deposit, canStepUp: true, stepUp });
      } catch (refusal) {
        // The identical resend of a request already paid is no new spending: it is served again,
        // charged nothing, whatever the risk policy says now (refusing it would lose the payer what it
        // paid). Whether it is one, the database says.
        const earlier = await this.store.claimRetry(charge, this.maxTimeoutSeconds, MAX_RETRIES);
        if (earlier && earlier.price === price) return this.authorization(config, charge, earlier.paymentId, earlier.deposit, true);
        throw refusal;
      }
    }
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.commits.submit(charge);
      if (outcome.ok) {
        cached.seen = { acceptedCumulative: voucher.cumulativeAmount, deposit: outcome.deposit, owed: 0n };
        return this.authorization(config, charge, outcome.paymentId, outcome.deposit, false);
      }
      const seen = outcome.channel;
      if (seen) cached.seen = { acceptedCumulative: seen.acceptedCumulative, deposit: seen.deposit, owed: seen.usageOwed };
      switch (outcome.refusal) {
        case "VOUCHER_REPLAYED": {
          const earlier = await this.store.claimRetry(charge, this.maxTimeoutSeconds, MAX_RETRIES);
          if (earlier && earlier.price === price) return this.authorization(config, charge, earlier.paymentId, earlier.deposit, true);
          throw this.mismatch("voucher_replayed", voucher.channelId, outcome.channel!, charge);
        }
        case "EXCEEDS_DEPOSIT":
          // The payer may have topped up since the watcher last wrote the row: read the chain once.
          if (attempt === 0 && (await this.refreshDeposit(voucher.channelId, outcome.channel!))) continue;
          throw new PaymentError(
            "insufficient_deposit",
            max === undefined
              ? `Voucher total ${voucher.cumulativeAmount} exceeds the channel's deposit ${outcome.channel!.deposit}; top up the channel.`
              : `Voucher total ${voucher.cumulativeAmount} plus the most this metered request may add (${max - price}) exceeds the channel's deposit ${outcome.channel!.deposit}; top up the channel.`,
            { channelId: voucher.channelId, deposit: outcome.channel!.deposit.toString(), acceptedCumulative: outcome.channel!.acceptedCumulative.toString() },
          );
        case "CONFLICT":
          if (attempt < 2) continue;
          throw this.mismatch("cumulative_mismatch", voucher.channelId, outcome.channel!, charge);
        case "CUMULATIVE_MISMATCH":
          throw this.mismatch("cumulative_mismatch", voucher.channelId, outcome.channel!, charge);
        case "USAGE_OWED":
          throw new PaymentError(
            "usage_owed",
            `The channel owes ${seen!.usageOwed} for metered usage: the voucher must total ${seen!.acceptedCumulative + seen!.usageOwed + price} (accepted ${seen!.acceptedCumulative}, owed ${seen!.usageOwed}, price ${price}), not ${voucher.cumulativeAmount}.`,
            { channelId: voucher.channelId, acceptedCumulative: seen!.acceptedCumulative.toString(), owed: seen!.usageOwed.toString(), price: price.toString() },
          );
        case "METERED_BUSY":
          throw new PaymentError(
            "metered_request_running",
            "Another metered request on this channel is still running; send metered requests on a channel one at a time.",
            { channelId: voucher.channelId },
          );
        case "TOTAL_HELD":
          throw new PaymentError(
            "cumulative_mismatch",
            `A charge on this channel was voided while a later one stood, so the total ${charge.cumulativeAmount} is already held by a standing voucher; send requests on a channel one at a time, and open a new channel to continue.`,
            { channelId: voucher.channelId, acceptedCumulative: outcome.channel!.acceptedCumulative.toString(), price: charge.price.toString() },
          );
        case "CHANNEL_CLOSED":
          throw (cached.final = new PaymentError("channel_closed", "The channel is closed; open a new one."));
        case "CHANNEL_CLOSING":
          throw (cached.final = new PaymentError(
            "channel_closing",
            "The payer is withdrawing from this channel and its deadline is too close to claim safely; open a new one.",
            { channelId: voucher.channelId, withdrawReadyAt: outcome.channel!.withdrawReadyAt!.toString() },
          ));
        case "CHANNEL_BLOCKED":
          throw new PaymentError(
            "channel_blocked",
            outcome.channel!.blockedReason === "reorg_shortfall"
              ? "A chain reorganization took back funds already spent on this channel; nothing more is served on it. Open a new channel."
              : "This channel's on-chain events could not be booked yet; nothing is served on it until they are. Retry later or open a new channel.",
            { channelId: voucher.channelId },
          );
        case "EXPOSURE_CAPPED": {
          const { deposit, withdrawReadyAt, claimedOnChain } = outcome.channel!;
          const limit = exposureLimit(this.exposureCap!, deposit);
          const details = { channelId: voucher.channelId, claimedOnChain: claimedOnChain.toString(), exposureCap: limit.toString(), withdrawReadyAt: String(withdrawReadyAt) };
          // Once the settlement worker claims what is accepted, only this request's price (and, on a
          // metered route, what it may add), with the usage the channel owes, stays unclaimed.
          if ((max ?? price) + outcome.channel!.usageOwed > limit) {
            throw new PaymentError("risk_denied", `The payer is withdrawing from this channel, and near its deadline the seller lets it owe at most ${limit} unclaimed, less than this request's price ${price}; open a new channel.`, details);
          }
          this.onExposureCapped?.(voucher.channelId);
          throw new PaymentError(
            "exposure_capped",
            `The payer is withdrawing from this channel and ${voucher.cumulativeAmount - claimedOnChain} would be owed unclaimed, over the seller's cap of ${limit} near the deadline; the seller is claiming now: retry in ${this.exposureRetryAfterSeconds} s. You were not charged.`,
            { ...details, retryAfter: this.exposureRetryAfterSeconds },
          );
        }
        case "CHANNEL_NOT_FOUND":
          throw new PaymentError("unknown_channel", "No such channel is open on chain; open it and retry.");
        case "INVALID_PRICE":
          throw new PaymentError("price_unavailable", `No valid price for this request (${price}).`);
      }
    }
  }

  /** Once the handler has answered: a server error voids the charge. */
  private async complete(paymentId: string, channelId: Hex, status: number): Promise<void> {
    if (status < 500) return;
    await this.store.voidPayment(paymentId, `handler answered ${status}`);
    const cached = this.channels.peek(channelId);
    if (cached?.seen) cached.seen = undefined;
  }

  private authorization(config: ChannelConfig, charge: VoucherCharge, paymentId: string, deposit: bigint, retried: boolean): Authorization {
    const { cumulativeAmount } = charge;
    const receipt = (charged: bigint, owed: bigint): Receipt => ({
      success: true,
      scheme: SCHEME,
      network: this.network,
      payer: config.payer,
      transaction: "",
      channelId: charge.channelId,
      paymentId,
      charged,
      cumulativeAmount,
      remaining: spendable(deposit, cumulativeAmount + owed),
      owed,
      ...(charge.max !== undefined && { maxAmount: charge.max }),
    });
    return {
      paymentId,
      account: charge.channelId,
      channelId: charge.channelId,
      price: charge.price,
      cumulativeAmount,
      retried,
      complete: (status) => this.complete(paymentId, charge.channelId, status),
      receipt: receipt(charge.price, 0n),
      ...(charge.max !== undefined && { meter: this.meter(charge, paymentId, receipt) }),
    };
  }

  /** The post-paid part of a metered charge: the handler's usage, clamped to [price, max]. */
  private meter(charge: VoucherCharge, paymentId: string, receipt: (charged: bigint, owed: bigint) => Receipt): MeteredCharge {
    const max = charge.max!;
    const clamp = (amount: bigint) => (amount < charge.price ? charge.price : amount > max ? max : amount);
    return {
      price: charge.price,
      max,
      receipt: (amount) => receipt(clamp(amount), clamp(amount) - charge.price),
      finish: async (amount) => {
        const recorded = await this.store.recordUsage(paymentId, clamp(amount));
        // No charge recorded (its lease is over): the request costs its price alone.
        if (!recorded) return receipt(charge.price, 0n);
        const cached = this.channels.peek(charge.channelId);
        if (cached?.seen) cached.seen = { ...cached.seen, owed: recorded.owed };
        return receipt(recorded.charged, recorded.owed);
      },
    };
  }

  /** The `accepted` entry must be what this gateway offers for this request, field by field. */
  private checkOffer(accepted: PaymentRequirements, price: bigint, maxAmount: bigint | undefined): void {
    if (accepted.network !== this.network) {
      throw new PaymentError("wrong_network", `This gateway is paid on ${this.network}, not ${accepted.network}.`);
    }
    if (accepted.extra.escrow !== this.location.escrow) {
      throw new PaymentError("wrong_escrow", `This gateway uses the escrow at ${this.location.escrow}.`);
    }
    const offered = this.terms(price, maxAmount);
    checkAcceptedTerms([
      ["amount", accepted.amount, offered.amount],
      ["asset", accepted.asset, offered.asset],
      ["payTo", accepted.payTo, offered.payTo],
      ["maxTimeoutSeconds", accepted.maxTimeoutSeconds, offered.maxTimeoutSeconds],
      ["extra.maxAmount", accepted.extra.maxAmount, offered.extra.maxAmount],
      ["extra.minWithdrawDelay", accepted.extra.minWithdrawDelay, offered.extra.minWithdrawDelay],
    ]);
  }

  private checkChannelTerms(config: ChannelConfig): void {
    if (config.payee !== this.payee) {
      throw new PaymentError("wrong_payee", `The channel must pay ${this.payee}.`);
    }
    if (config.token !== this.asset) {
      throw new PaymentError("wrong_asset", `The channel must hold ${this.asset === zeroAddress ? "native ETH" : this.asset}.`);
    }
    if (config.withdrawDelay < this.minWithdrawDelay) {
      throw new PaymentError(
        "withdraw_delay_too_short",
        `The channel's withdrawal delay must be at least ${this.minWithdrawDelay} seconds.`,
      );
    }
  }

  private mismatch(code: "voucher_replayed" | "cumulative_mismatch", id: Hex, channel: ChannelSnapshot, charge: VoucherCharge): PaymentError {
    const owed = channel.usageOwed;
    const details = {
      channelId: id,
      acceptedCumulative: channel.acceptedCumulative.toString(),
      price: charge.price.toString(),
      ...(owed > 0n && { owed: owed.toString() }),
    };
    const next = channel.acceptedCumulative + owed + charge.price;
    if (code === "voucher_replayed") {
      return new PaymentError(
        "voucher_replayed",
        `This voucher (total ${charge.cumulativeAmount}) was already paid for; the next must total ${next}.`,
        details,
      );
    }
    return new PaymentError(
      "cumulative_mismatch",
      `The voucher must total ${next} (accepted so far ${channel.acceptedCumulative}${owed > 0n ? ` plus metered usage owed ${owed}` : ""} plus the price ${charge.price}), not ${charge.cumulativeAmount}.`,
      details,
    );
  }

  /**
   * Only an ECDSA signature by the channel's signer is accepted: the escrow checks ECDSA before
   * ERC-1271, so such a voucher stays claimable whatever the payer's wallet does later. A contract
   * wallet's own ERC-1271 signature could be revoked after the request was served (an owner rotated,
   * a wallet that says "valid" only in eth_call): such a payer must name a session key as signer.
   */
  private async checkSignature(config: ChannelConfig, voucher: SignedVoucher): Promise<void> {
    const signer = voucherSigner(config);
    const recovered = recoverSigner(this.digest(voucher.channelId, voucher.cumulativeAmount), hexToBytes(voucher.signature));
    if (recovered === signer.toLowerCase()) return;
    if (await this.hasCode(signer)) {
      throw new PaymentError(
        "session_key_required",
        `The channel's signer ${signer} is a contract, whose signatures it could revoke after being served: open a channel whose signer is a session key (an EOA).`,
      );
    }
    throw new PaymentError("invalid_signature", "The voucher is not signed by the channel's signer.");
  }

  /**
   * A step-up counts only when the channel's payer signed it (ECDSA): the session key signs every
   * voucher, so an approval it could sign would prove nothing about the payer.
   */
  private async checkStepUp(header: string, config: ChannelConfig, id: Hex): Promise<{ spendingLimit: bigint; validUntil: number }> {
    const stepUp = decodeStepUp(header);
    if (stepUp.channelId !== id.toLowerCase()) throw new PaymentError("step_up_invalid", "The step-up approval is for another channel.");
    const signer = await stepUpSigner(stepUp, this.location);
    if (signer !== getAddress(config.payer)) throw new PaymentError("step_up_invalid", `The step-up approval must be signed by the channel's payer ${config.payer}, not ${signer ?? "an unreadable signature"}.`);
    return { spendingLimit: stepUp.spendingLimit, validUntil: stepUp.validUntil };
  }

  private async hasCode(address: Address): Promise<boolean> {
    let known = this.contracts.get(address);
    if (known === undefined) {
      known = await this.chain.hasCode(address);
      this.contracts.set(address, known);
    }
    return known;
  }

  /** The channel named by a voucher, checked against the terms the client sent. */
  private async channelFor(id: Hex, config: ChannelConfig) {
    let cached = this.channels.get(id);
    if (!cached) {
      const stored = (await this.store.loadChannel(id)) ?? (await this.register(id, config));
      cached = { config: stored.config };
      this.channels.set(id, cached);
    }
    if (!sameConfig(cached.config, config)) {
      throw new PaymentError("channel_id_mismatch", "The channel terms do not match the channel id.");
    }
    return cached;
  }

  private register(id: Hex, config: ChannelConfig): Promise<ChannelRecord> {
    if (channelId(config, this.location) !== id) {
      throw new PaymentError("channel_id_mismatch", "The channel id is not the hash of the channel terms.");
    }
    let registration = this.registering.get(id);
    if (!registration) {
      registration = (async () => {
        const state = await this.chain.readChannel(id);
        if (state.deposit === 0n && !state.closed) {
          throw new PaymentError("unknown_channel", "No such channel is open on chain; open it and retry.");
        }
        return this.store.saveChannel({ id, chainId: this.location.chainId, escrow: this.location.escrow, config, head: state });
      })().finally(() => this.registering.delete(id));
      this.registering.set(id, registration);
    }
    return registration;
  }

  /** Re-reads a channel's deposit from the chain; true if it grew (a top-up the watcher has not written yet). */
  private async refreshDeposit(id: Hex, seen: ChannelSnapshot): Promise<boolean> {
    const stored = await this.store.loadChannel(id);
    if (!stored) return false;
    const head = await this.chain.readChannel(id);
    if (head.deposit <= seen.deposit) return false;
    await this.store.saveChannel({ id, chainId: stored.chainId, escrow: stored.escrow, config: stored.config, head });
    return true;
  }
}


function sameConfig(a: ChannelConfig, b: ChannelConfig): boolean {
  return (
    a.payer === b.payer &&
    a.payee === b.payee &&
    a.token === b.token &&
    a.signer === b.signer &&
    a.withdrawDelay === b.withdrawDelay &&
    a.salt.toLowerCase() === b.salt.toLowerCase()
  );
}

/** What a channel's further vouchers may still spend: its deposit less what is committed, at least 0. */
function spendable(deposit: bigint, committed: bigint): bigint {
  return deposit > committed ? deposit - committed : 0n;
}
