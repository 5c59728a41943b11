// The seller's side of a paid request, free of any HTTP framework: it states the terms (the 402),
// decides whether a PAYMENT-SIGNATURE pays for this request, records the payment durably before the
// handler runs, and voids it if the handler fails. Express is a thin adapter over this (paywall.ts).
import { getAddress, hexToBytes, zeroAddress, type Address, type Hex } from "viem";
import { channelId, voucherSigner, type ChannelConfig, type EscrowLocation } from "../protocol/Channel.js";
import { PaymentError } from "../protocol/Errors.js";
import {
  SCHEME,
  X402_VERSION,
  decodePaymentSignature,
  networkOf,
  type PaymentRequired,
  type PaymentRequirements,
  type Receipt,
} from "../protocol/wire.js";
import type { SignedVoucher } from "../protocol/Voucher.js";
import { GroupCommit } from "./GroupCommit.js";
import type { AcceptRequest, AcceptResult, ChannelReader, ChannelRecord, PaymentStore } from "./PaymentStore.js";
import { recoverSigner, voucherDigester } from "./signatures.js";

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
  /** Stop accepting vouchers this many seconds before a requested withdrawal can finalize, so the
   * settlement worker has time to claim (default one hour). */
  closingMarginSeconds?: number;
  maxTimeoutSeconds?: number;
  /** Clock in seconds; tests move it. */
  now?: () => number;
};

export type Resource = { url: string; description?: string; mimeType?: string };

export type Authorization = {
  paymentId: string;
  channelId: Hex;
  price: bigint;
  cumulativeAmount: bigint;
  receipt: Receipt;
};

export class PaymentGateway {
  readonly location: EscrowLocation;
  readonly network: string;
  readonly payee: Address;
  readonly asset: Address;
  readonly minWithdrawDelay: number;
  private readonly closingMargin: bigint;
  private readonly maxTimeoutSeconds: number;
  private readonly store: PaymentStore;
  private readonly chain: ChannelReader;
  private readonly now: () => number;
  private readonly digest: (channelId: Hex, cumulativeAmount: bigint) => Uint8Array;
  private readonly commits: GroupCommit<AcceptRequest, AcceptResult>;
  /** Channel records this process has seen. The database stays the authority: acceptance is a
   * compare-and-set there, and a stale entry only costs one reload. */
  private readonly channels = new Map<Hex, ChannelRecord>();
  /** Whether a payer has code (an ERC-1271 wallet), so forged vouchers cannot make every request an RPC call. */
  private readonly contractWallets = new Map<Address, boolean>();
  /** First sight of a channel reads the chain and writes the store once, however many requests race. */
  private readonly registering = new Map<Hex, Promise<ChannelRecord>>();

  constructor(options: GatewayOptions) {
    this.location = { chainId: options.chainId, escrow: getAddress(options.escrow) };
    this.network = networkOf(options.chainId);
    this.payee = getAddress(options.payee);
    this.asset = getAddress(options.asset);
    this.minWithdrawDelay = options.minWithdrawDelay ?? 86_400;
    this.closingMargin = BigInt(options.closingMarginSeconds ?? 3_600);
    this.maxTimeoutSeconds = options.maxTimeoutSeconds ?? 60;
    this.store = options.store;
    this.chain = options.chain;
    this.now = options.now ?? (() => Math.floor(Date.now() / 1000));
    this.digest = voucherDigester(this.location);
    this.commits = new GroupCommit((requests) => this.store.acceptBatch(requests));
  }

  /** The terms for one request, with the server's view of the client's channel when it is known. */
  requirements(price: bigint, channel?: ChannelRecord): PaymentRequirements {
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
        ...(channel && {
          channel: { channelId: channel.id, acceptedCumulative: channel.acceptedCumulative, deposit: channel.deposit },
        }),
      },
    };
  }

  /** The body of a PAYMENT-REQUIRED header for a refused or unpaid request. */
  paymentRequired(price: bigint, resource: Resource, error?: PaymentError, channelIdHint?: Hex): PaymentRequired {
    const channel = channelIdHint ? this.channels.get(channelIdHint) : undefined;
    return {
      x402Version: X402_VERSION,
      ...(error && { error: error.message, code: error.code }),
      resource: { url: resource.url, description: resource.description ?? "", mimeType: resource.mimeType ?? "" },
      accepts: [this.requirements(price, channel)],
    };
  }

  /**
   * Decides whether `header` pays `price` for this request and, if so, commits the payment durably
   * before returning. Throws a PaymentError (with a stable code) for every refusal.
   */
  async authorize(header: string | undefined, price: bigint, resource: Resource): Promise<Authorization> {
    if (header === undefined || header === "") {
      throw new PaymentError("payment_required", "This resource requires payment: send a PAYMENT-SIGNATURE header.");
    }
    const payment = decodePaymentSignature(header);
    this.checkTerms(payment.accepted.network, payment.accepted.extra.escrow, payment.payload.channel);
    const { channel: config, voucher } = payment.payload;
    let channel = await this.channelFor(voucher.channelId, config);

    for (let attempt = 0; ; attempt++) {
      this.checkOpen(channel);
      const expected = channel.acceptedCumulative;
      if (voucher.cumulativeAmount !== expected + price) {
        if (attempt === 0) {
          channel = await this.reload(channel);
          continue;
        }
        throw this.mismatch(channel, voucher.cumulativeAmount, price);
      }
      if (voucher.cumulativeAmount > channel.deposit) {
        if (attempt === 0) {
          channel = await this.refreshFromChain(channel);
          continue;
        }
        throw new PaymentError(
          "insufficient_deposit",
          `Voucher total ${voucher.cumulativeAmount} exceeds the channel's deposit ${channel.deposit}; top up the channel.`,
          { channelId: channel.id, deposit: channel.deposit.toString(), acceptedCumulative: expected.toString() },
        );
      }
      await this.checkSignature(config, voucher);
      const result = await this.commits.submit({
        channel,
        expectedCumulative: expected,
        price,
        voucher,
        resource: resource.url,
      });
      if (!result.ok) {
        channel = this.remember(result.current);
        if (attempt === 0) continue;
        throw this.mismatch(channel, voucher.cumulativeAmount, price);
      }
      channel = this.remember({ ...channel, acceptedCumulative: voucher.cumulativeAmount });
      return {
        paymentId: result.paymentId,
        channelId: channel.id,
        price,
        cumulativeAmount: voucher.cumulativeAmount,
        receipt: {
          success: true,
          scheme: SCHEME,
          network: this.network,
          payer: config.payer,
          transaction: "",
          channelId: channel.id,
          paymentId: result.paymentId,
          charged: price,
          cumulativeAmount: voucher.cumulativeAmount,
          remaining: channel.deposit - voucher.cumulativeAmount,
        },
      };
    }
  }

  /** Called once the handler has answered: a server error voids the charge. */
  async complete(authorization: Authorization, status: number): Promise<void> {
    if (status < 500) return;
    await this.store.voidPayment(authorization.paymentId, `handler answered ${status}`);
    const stored = await this.store.loadChannel(authorization.channelId);
    if (stored) this.remember(stored);
  }

  /** Refreshes a channel's chain state (used by the chain watcher and on a suspected top-up). */
  async refreshFromChain(channel: ChannelRecord): Promise<ChannelRecord> {
    const state = await this.chain.readChannel(channel.id);
    return this.remember(await this.store.upsertChannel({ ...channel, ...state }));
  }

  private checkTerms(network: string, escrow: Address, config: ChannelConfig): void {
    if (network !== this.network) {
      throw new PaymentError("wrong_network", `This gateway is paid on ${this.network}, not ${network}.`);
    }
    if (escrow !== this.location.escrow) {
      throw new PaymentError("wrong_escrow", `This gateway uses the escrow at ${this.location.escrow}.`);
    }
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

  private checkOpen(channel: ChannelRecord): void {
    if (channel.closed) throw new PaymentError("channel_closed", "The channel is closed; open a new one.");
    const readyAt = channel.withdrawReadyAt;
    if (readyAt !== undefined && BigInt(this.now()) + this.closingMargin >= readyAt) {
      throw new PaymentError("channel_closing", "The payer is withdrawing from this channel; open a new one.", {
        channelId: channel.id,
        withdrawReadyAt: readyAt.toString(),
      });
    }
  }

  private mismatch(channel: ChannelRecord, cumulative: bigint, price: bigint): PaymentError {
    const details = { channelId: channel.id, acceptedCumulative: channel.acceptedCumulative.toString(), price: price.toString() };
    if (cumulative <= channel.acceptedCumulative) {
      return new PaymentError(
        "voucher_replayed",
        `This voucher (total ${cumulative}) was already paid for; the next must total ${channel.acceptedCumulative + price}.`,
        details,
      );
    }
    return new PaymentError(
      "cumulative_mismatch",
      `The voucher must total ${channel.acceptedCumulative + price} (accepted so far ${channel.acceptedCumulative} plus the price ${price}), not ${cumulative}.`,
      details,
    );
  }

  private async checkSignature(config: ChannelConfig, voucher: SignedVoucher): Promise<void> {
    const signer = voucherSigner(config).toLowerCase();
    const recovered = recoverSigner(this.digest(voucher.channelId, voucher.cumulativeAmount), hexToBytes(voucher.signature));
    if (recovered === signer) return;
    // A payer that signs for itself may be an ERC-1271 wallet: only the escrow can judge that.
    const contractWallet = config.signer === zeroAddress && (await this.isContractWallet(config.payer));
    if (contractWallet && (await this.chain.isValidVoucher(config, voucher.cumulativeAmount, voucher.signature))) return;
    throw new PaymentError("invalid_signature", "The voucher is not signed by the channel's signer.");
  }

  private async isContractWallet(payer: Address): Promise<boolean> {
    let known = this.contractWallets.get(payer);
    if (known === undefined) {
      known = await this.chain.hasCode(payer);
      this.contractWallets.set(payer, known);
    }
    return known;
  }

  /** The channel named by a voucher, checked against the configuration the client sent. */
  private async channelFor(id: Hex, config: ChannelConfig): Promise<ChannelRecord> {
    const known = this.channels.get(id) ?? (await this.store.loadChannel(id));
    if (known) {
      if (!sameConfig(known.config, config)) {
        throw new PaymentError("channel_id_mismatch", "The channel terms do not match the channel id.");
      }
      return this.remember(known);
    }
    if (channelId(config, this.location) !== id) {
      throw new PaymentError("channel_id_mismatch", "The channel id is not the hash of the channel terms.");
    }
    let registration = this.registering.get(id);
    if (!registration) {
      registration = this.register(id, config).finally(() => this.registering.delete(id));
      this.registering.set(id, registration);
    }
    return registration;
  }

  private async register(id: Hex, config: ChannelConfig): Promise<ChannelRecord> {
    const state = await this.chain.readChannel(id);
    if (state.deposit === 0n && !state.closed) {
      throw new PaymentError("unknown_channel", "No such channel is open on chain; open it and retry.");
    }
    return this.remember(
      await this.store.upsertChannel({
        id,
        chainId: this.location.chainId,
        escrow: this.location.escrow,
        config,
        acceptedCumulative: 0n,
        ...state,
      }),
    );
  }

  private async reload(channel: ChannelRecord): Promise<ChannelRecord> {
    return this.remember((await this.store.loadChannel(channel.id)) ?? channel);
  }

  private remember(channel: ChannelRecord): ChannelRecord {
    this.channels.set(channel.id, channel);
    return channel;
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
