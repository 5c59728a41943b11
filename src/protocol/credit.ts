// The `credit` payment scheme on the wire: a request paid from a prepaid credit account (topped up
// by card) with an API key. Two ways to carry the key, for two kinds of client:
//
// - an x402 client sends PAYMENT-SIGNATURE, base64 JSON of
//   { x402Version: 2, accepted: <the 402's "credit" entry>, payload: { key, nonce } }; the nonce is
//   fresh per request, so a byte-identical header is a retry of the same request;
// - a plain HTTP client sends `Authorization: Bearer <key>`, and `Idempotency-Key: <unique>` to make
//   its retries safe (without one, every request is a new charge).
//
// Amounts are decimal strings of the credit asset's base units (`fiat:USD` counts micro-dollars).
import * as z from "zod";
import { PaymentError } from "./Errors.js";
import { X402_VERSION, encodeHeader } from "./wire.js";

export const CREDIT_SCHEME = "credit";
/** Not a chain: prepaid fiat credit held by the seller's operator. */
export const CREDIT_NETWORK = "fiat";
export const CREDIT_KEY_PREFIX = "pck_";

const amount = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,77})$/, "must be a decimal string of base units")
  .transform((s) => BigInt(s));

/** One entry of `accepts` for the credit scheme. */
export const creditRequirementsSchema = z.object({
  scheme: z.literal(CREDIT_SCHEME),
  network: z.literal(CREDIT_NETWORK),
  amount,
  /** `fiat:<ISO code>`; base units are millionths of its unit (`extra.decimals`). */
  asset: z.string().regex(/^fiat:[A-Z]{3}$/),
  payTo: z.string().min(1),
  maxTimeoutSeconds: z.number().int().positive(),
  extra: z.object({
    decimals: z.number().int().min(0),
    /** Where a key's holder starts a card top-up (POST, Authorization: Bearer <key>). */
    topUp: z.string().optional(),
    /** As paychan's (wire.ts): why the price is what it is, and until when it is honoured. */
    price: z.object({ reason: z.string(), validUntil: z.number().int().optional() }).optional(),
    /** Present when the refusal read the paying account (added in 0.2.0): its balance, at least 0. */
    remaining: amount.optional(),
  }),
});

export const creditPayloadSchema = z.object({
  x402Version: z.literal(X402_VERSION),
  /** The accepts entry being paid; when it names an amount, it must be this request's price. */
  accepted: z.object({ scheme: z.literal(CREDIT_SCHEME), amount: amount.optional() }).passthrough(),
  payload: z.object({
    key: z.string().startsWith(CREDIT_KEY_PREFIX).max(200),
    nonce: z.string().min(8).max(128),
  }),
});

export const creditReceiptSchema = z.object({
  success: z.literal(true),
  scheme: z.literal(CREDIT_SCHEME),
  network: z.literal(CREDIT_NETWORK),
  /** The credit account that paid. */
  payer: z.string(),
  transaction: z.literal(""),
  paymentId: z.string(),
  asset: z.string(),
  charged: amount,
  /** The account's balance after this charge. */
  remaining: amount,
});

export type CreditRequirements = z.output<typeof creditRequirementsSchema>;
export type CreditPayload = z.output<typeof creditPayloadSchema>;
export type CreditReceipt = z.output<typeof creditReceiptSchema>;

export function parseCreditPayment(json: unknown): CreditPayload {
  const parsed = creditPayloadSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PaymentError("malformed_payment", `Credit payment payload is invalid at ${issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "(root)"}.`);
  }
  return parsed.data;
}

/** A PAYMENT-SIGNATURE paying with a credit key; `nonce` must be fresh for each new request. */
export function encodeCreditPayment(key: string, nonce: string, accepted?: CreditRequirements): string {
  return encodeHeader({ x402Version: X402_VERSION, accepted: accepted ?? { scheme: CREDIT_SCHEME }, payload: { key, nonce } });
}
