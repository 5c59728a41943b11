// What a metered route's handler reports: the usage of its request (tokens generated, bytes sent) in
// base units of the paying asset. The request prepaid its route's price; the meter keeps the running
// total within the route's maximum, and `finish` fixes the charge — durably, the part beyond the price
// becoming the channel's debt — before the payer is told it (the paywall calls it before the
// response ends, a streaming handler before its final event).
import { RECEIPT_EVENT, encodeHeader } from "../protocol/wire.js";
import type { MeteredCharge } from "./PaymentScheme.js";

export class UsageMeter {
  /** The usage reported so far, at most `max`. */
  private total = 0n;
  private finishing: Promise<unknown> | undefined;

  constructor(private readonly charge: MeteredCharge) {}

  /** What the request prepaid: it costs at least this. */
  get price(): bigint {
    return this.charge.price;
  }

  /** The most the request may cost. */
  get max(): bigint {
    return this.charge.max;
  }

  /** The usage reported so far (at most `max`). */
  get reported(): bigint {
    return this.total;
  }

  /** The charge so far: the price until the usage reported exceeds it. */
  get charged(): bigint {
    return this.total < this.charge.price ? this.charge.price : this.total;
  }

  /** How much more usage may be reported before the maximum. */
  get remaining(): bigint {
    return this.charge.max - this.total;
  }

  /** Whether the charge is fixed (no more usage counts). */
  get finished(): boolean {
    return this.finishing !== undefined;
  }

  /**
   * Sets the request's usage so far to `amount` (what it used in all, not an increment); more than
   * `max` is capped at `max`. Returns false when it was capped. Ignored once finished.
   */
  report(amount: bigint): boolean {
    if (this.finishing) return false;
    if (amount < 0n) throw new RangeError("usage cannot be negative");
    const next = amount > this.total ? amount : this.total;
    this.total = next > this.charge.max ? this.charge.max : next;
    return next <= this.charge.max;
  }

  /** Adds `amount` of usage (a chunk sent); false, adding only up to `max`, when it did not fit. */
  add(amount: bigint): boolean {
    if (amount < 0n) throw new RangeError("usage cannot be negative");
    return this.report(this.total + amount);
  }

  /** The receipt for the charge so far (not yet final). */
  receipt(): unknown {
    return this.charge.receipt(this.total);
  }

  /** Fixes the charge at the usage reported and records it durably; resolves with the final receipt.
   * Later calls return the same receipt. */
  finish(): Promise<unknown> {
    this.finishing ??= this.charge.finish(this.total);
    return this.finishing;
  }

  /** For a server-sent event stream: finishes, and returns the final receipt as its last event
   * (`event: payment-response`, data encoded as the PAYMENT-RESPONSE header is). */
  async receiptEvent(): Promise<string> {
    return `event: ${RECEIPT_EVENT}\ndata: ${encodeHeader(await this.finish())}\n\n`;
  }
}
