// Every way a payment can be refused, each with a stable machine code, the HTTP status the gateway
// answers with, and a sentence a person can act on. Clients switch on `code`, never on messages.

export const errorStatus = {
  payment_required: 402,
  malformed_payment: 400,
  header_too_large: 400,
  unsupported_version: 400,
  unsupported_scheme: 402,
  wrong_network: 402,
  wrong_escrow: 402,
  wrong_payee: 402,
  wrong_asset: 402,
  terms_mismatch: 402,
  channel_id_mismatch: 400,
  withdraw_delay_too_short: 402,
  invalid_signature: 402,
  session_key_required: 402,
  unknown_channel: 402,
  channel_closing: 402,
  channel_closed: 402,
  channel_blocked: 402,
  insufficient_deposit: 402,
  cumulative_mismatch: 402,
  voucher_replayed: 402,
  usage_owed: 402,
  metered_request_running: 402,
  credit_key_invalid: 401,
  credit_key_revoked: 401,
  credit_key_out_of_scope: 403,
  insufficient_credit: 402,
  credit_suspended: 402,
  credit_request_replayed: 402,
  authorization_used: 402,
  authorization_expired: 402,
  authorization_not_yet_valid: 402,
  authorization_rejected: 402,
  insufficient_balance: 402,
  /** The payment is at a price no longer honoured (it expired, or the payer reached a cheaper volume
   * tier): the 402 states the price now. */
  price_expired: 402,
  /** Client side: the price asked is above the buyer's `maxPrice`; nothing was signed. */
  price_above_max: 402,
  rate_limited: 429,
  step_up_required: 402,
  step_up_invalid: 402,
  risk_denied: 403,
  exposure_capped: 429,
  price_unavailable: 500,
  temporarily_unavailable: 503,
} as const;

export type PaymentErrorCode = keyof typeof errorStatus;

export class PaymentError extends Error {
  readonly code: PaymentErrorCode;
  readonly status: number;
  /** Machine-readable context, e.g. the server's accepted total so a client can resync. */
  readonly details: Record<string, string | number | boolean> | undefined;

  constructor(code: PaymentErrorCode, message: string, details?: Record<string, string | number | boolean>) {
    super(message);
    this.name = "PaymentError";
    this.code = code;
    this.status = errorStatus[code];
    this.details = details;
  }
}

export function isPaymentError(error: unknown): error is PaymentError {
  return error instanceof PaymentError;
}
