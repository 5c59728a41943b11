// The payer's side of one channel, shared by every client that pays with it (`createPaidFetch` and
// the x402 scheme client): which terms the channel can pay, the next voucher, and what the server
// has accepted — following the server only as far as what this client has itself signed.
//
// Metered terms (`extra.maxAmount`) prepay `amount`; the server then says what the request used
// beyond it (the receipt's `owed`, or a later 402's `extra.channel.owed`), and the next voucher
// includes that. It is followed only up to what this client authorized (`owedLimit`), so the payer
// signs what it was charged and never more than the maximum it agreed to.
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

/** Refusals that a voucher on the (resynced) accepted total can answer; `price_expired` comes with
 * the price now, which `sign` pays only up to `maxPrice`. */
const RETRYABLE: readonly string[] = ["payment_required", "cumulative_mismatch", "voucher_replayed", "usage_owed", "price_expired"];

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

  /** Whether these terms' price (and a metered route's maximum) is within `maxPrice`. */
  affords(requirements: PaymentRequirements): boolean {
    return requirements.amount <= this.maxPrice && (requirements.extra.maxAmount ?? requirements.amount) <= this.maxPrice;
  }

  checkPrice(requirements: PaymentRequirements): void {
    const most = requirements.extra.maxAmount ?? requirements.amount;
    if (!this.affords(requirements)) {
      const why = requirements.extra.price ? ` (${requirements.extra.price.reason})` : "";
      throw new PaymentError("price_above_max", `Price ${most} exceeds maxPrice ${this.maxPrice}${why}; nothing was signed or paid.`, {
        price: most.toString(),
        maxPrice: this.maxPrice.toString(),
      });
    }
    if (most < requirements.amount) {
      throw new PaymentError("payment_required", `The terms' maxAmount ${most} is below their amount ${requirements.amount}.`);
    }
  }

  /**
   * Signs the voucher for `current.accepted` plus the metered usage owed plus the price, remembering
   * it (and, for metered terms, the usage it authorizes) before it can leave.
   */
  async sign(requirements: PaymentRequirements, current: ChannelState): Promise<PaymentPayload> {
    this.checkPrice(requirements);
    const owed = current.owed ?? 0n;
    const cumulativeAmount = current.accepted + owed + requirements.amount;
    const voucher = await signVoucher(this.signer, { channelId: this.channel.id, cumulativeAmount }, this.channel.location);
    // If this voucher is refused, what is owed stays owed; if accepted, this request may owe its usage.
    const metered = requirements.extra.maxAmount;
    const usage = metered === undefined ? 0n : metered - requirements.amount;
    const owedLimit = max(current.owedLimit ?? 0n, owed, usage);
    // Remember the signature before it leaves: the server may claim it even if the response is lost.
    if (cumulativeAmount > current.signedMax || owedLimit !== (current.owedLimit ?? 0n)) {
      await this.store.save(this.channel.id, withOwed({ ...current, signedMax: max(cumulativeAmount, current.signedMax) }, owed, owedLimit));
    }
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
    const owed = server?.channelId === this.channel.id ? (server.owed ?? 0n) : undefined;
    if (owed !== undefined && owed !== (current.owed ?? 0n)) {
      // Pay the usage the server says is owed only as far as this client authorized it.
      if (owed > (current.owedLimit ?? 0n)) return undefined;
      await this.store.save(this.channel.id, withOwed(current, owed, current.owedLimit ?? 0n));
      current.owed = owed;
    }
    if (code === "insufficient_deposit" && server) {
      if (!this.onInsufficientDeposit) return undefined;
      if ((await this.onInsufficientDeposit({ deposit: server.deposit, needed: current.accepted + (current.owed ?? 0n) + (requirements.extra.maxAmount ?? requirements.amount) })) === false) return undefined;
    } else if (code && !RETRYABLE.includes(code)) {
      return undefined;
    }
    return current;
  }

  /**
   * Books a receipt: the server's accepted total is now the receipt's — unless the receipt claims more
   * than this client ever signed. Following that would make the next voucher authorize the difference.
   * Its `owed` (a metered request's usage beyond its price) is followed up to the owed limit; a
   * fixed-price receipt owing nothing ends the limit, since every earlier usage is paid.
   */
  async recordReceipt(receipt: Receipt): Promise<void> {
    const current = await this.state();
    if (receipt.cumulativeAmount > current.signedMax) return;
    const limit = current.owedLimit ?? 0n;
    const owed = receipt.owed !== undefined && receipt.owed <= limit ? receipt.owed : 0n;
    const owedLimit = receipt.maxAmount === undefined && owed === 0n ? 0n : limit;
    await this.store.save(this.channel.id, withOwed({ ...current, accepted: receipt.cumulativeAmount }, owed, owedLimit));
  }
}

/** The state with its metered amounts, which a channel that never paid a metered route does not carry. */
function withOwed(state: ChannelState, owed: bigint, owedLimit: bigint): ChannelState {
  const { owed: _owed, owedLimit: _limit, ...rest } = state;
  return { ...rest, ...(owed > 0n && { owed }), ...(owedLimit > 0n && { owedLimit }) };
}

function max(...values: bigint[]): bigint {
  return values.reduce((a, b) => (a > b ? a : b));
}
