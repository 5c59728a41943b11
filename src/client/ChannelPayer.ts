// The payer's side of one channel, shared by every client that pays with it (`createPaidFetch` and
// the x402 scheme client): which terms the channel can pay, the next voucher, and what the server
// has accepted — following the server only as far as what this client has itself signed.
import type { LocalAccount } from "viem";
import { PaymentError, type PaymentErrorCode } from "../protocol/Errors.js";
import { signVoucher } from "../protocol/Voucher.js";
import { X402_VERSION, networkOf, type PaymentPayload, type PaymentRequirements, type Receipt } from "../protocol/wire.js";
import type { OpenedChannel } from "./channel.js";
import { MemoryStateStore, type ChannelState, type ChannelStateStore } from "./stateStore.js";

export type ChannelPayerOptions = {
  channel: OpenedChannel;
  /** The session key that the channel names as its signer (or the payer's own local account). */
  signer: Pick<LocalAccount, "signTypedData">;
  /** Refuse to pay more than this per request (base units). */
  maxPrice: bigint;
  store?: ChannelStateStore;
  /** Called when the deposit runs short; top up (e.g. `topUp(...)`) and resolve to retry, or resolve
   * `false` when no top-up was made (the refusal is then returned as it is). */
  onInsufficientDeposit?: (details: { deposit: bigint; needed: bigint }) => Promise<void | boolean>;
};

/** Refusals that a voucher on the (resynced) accepted total can answer. */
const RETRYABLE: readonly string[] = ["payment_required", "cumulative_mismatch", "voucher_replayed"];

export class ChannelPayer {
  readonly channel: OpenedChannel;
  readonly network: string;
  private readonly signer: ChannelPayerOptions["signer"];
  private readonly maxPrice: bigint;
  private readonly store: ChannelStateStore;
  private readonly onInsufficientDeposit: ChannelPayerOptions["onInsufficientDeposit"];

  constructor(options: ChannelPayerOptions) {
    this.channel = options.channel;
    this.network = networkOf(options.channel.location.chainId);
    this.signer = options.signer;
    this.maxPrice = options.maxPrice;
    this.store = options.store ?? new MemoryStateStore();
    this.onInsufficientDeposit = options.onInsufficientDeposit;
  }

  /** Saves a state for this channel (lowBalance.ts keeps its top-up spending there). */
  async save(state: ChannelState): Promise<void> {
    await this.store.save(this.channel.id, state);
  }

  async state(): Promise<ChannelState> {
    return (await this.store.load(this.channel.id)) ?? { accepted: 0n, signedMax: 0n };
  }

  /** Why this channel cannot pay these terms, or undefined when it can. */
  mismatch(requirements: PaymentRequirements): PaymentErrorCode | undefined {
    if (requirements.network !== this.network) return "wrong_network";
    if (requirements.extra.escrow !== this.channel.location.escrow) return "wrong_escrow";
    if (requirements.payTo !== this.channel.config.payee) return "wrong_payee";
    if (requirements.asset !== this.channel.config.token) return "wrong_asset";
    return undefined;
  }

  matches = (requirements: PaymentRequirements): boolean => this.mismatch(requirements) === undefined;

  checkPrice(requirements: PaymentRequirements): void {
    if (requirements.amount > this.maxPrice) {
      throw new PaymentError("payment_required", `Price ${requirements.amount} exceeds maxPrice ${this.maxPrice}.`);
    }
  }

  /** Signs the voucher for `current.accepted` plus the price, remembering it before it can leave. */
  async sign(requirements: PaymentRequirements, current: ChannelState): Promise<PaymentPayload> {
    this.checkPrice(requirements);
    const cumulativeAmount = current.accepted + requirements.amount;
    const voucher = await signVoucher(this.signer, { channelId: this.channel.id, cumulativeAmount }, this.channel.location);
    // Remember the signature before it leaves: the server may claim it even if the response is lost.
    if (cumulativeAmount > current.signedMax) await this.store.save(this.channel.id, { ...current, signedMax: cumulativeAmount });
    return {
      x402Version: X402_VERSION,
      accepted: requirements,
      payload: { channel: this.channel.config, voucher },
    };
  }

  /**
   * After a refusal with `code` on these terms: adopts the server's accepted total when it differs
   * (only up to what this client signed), asks for a top-up when the deposit is short, and returns
   * the state to sign the next voucher on — or undefined when paying again cannot help.
   */
  async recover(code: string | undefined, requirements: PaymentRequirements): Promise<ChannelState | undefined> {
    const current = await this.state();
    const server = requirements.extra.channel;
    if (server && server.channelId === this.channel.id && server.acceptedCumulative !== current.accepted) {
      // Follow the server only as far as what this client actually signed.
      if (server.acceptedCumulative > current.signedMax) return undefined;
      current.accepted = server.acceptedCumulative;
      await this.store.save(this.channel.id, current);
    }
    if (code === "insufficient_deposit" && server) {
      if (!this.onInsufficientDeposit) return undefined;
      if ((await this.onInsufficientDeposit({ deposit: server.deposit, needed: current.accepted + requirements.amount })) === false) return undefined;
    } else if (code && !RETRYABLE.includes(code)) {
      return undefined;
    }
    return current;
  }

  /**
   * Books a receipt: the server's accepted total is now the receipt's — unless the receipt claims more
   * than this client ever signed. Following that would make the next voucher authorize the difference.
   */
  async recordReceipt(receipt: Receipt): Promise<void> {
    const current = await this.state();
    if (receipt.cumulativeAmount > current.signedMax) return;
    await this.store.save(this.channel.id, { ...current, accepted: receipt.cumulativeAmount });
  }
}
