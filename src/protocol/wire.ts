// The HTTP wire format: x402 v2's transport (PAYMENT-REQUIRED / PAYMENT-SIGNATURE / PAYMENT-RESPONSE
// headers carrying base64 JSON) with paychan's own scheme, "paychan". docs/PROTOCOL.md is the prose
// version of this file. Amounts are decimal strings of base units; they become bigint here.
// Runs in Node and in browsers (no Buffer).
import { getAddress, type Hex } from "viem";
import * as z from "zod";
import { PaymentError } from "./Errors.js";
import type { ChannelConfig } from "./Channel.js";
import type { SignedVoucher } from "./Voucher.js";

export const X402_VERSION = 2;
export const SCHEME = "paychan";
export const HEADERS = {
  required: "PAYMENT-REQUIRED",
  signature: "PAYMENT-SIGNATURE",
  response: "PAYMENT-RESPONSE",
} as const;
/** The server-sent event that carries a metered stream's final receipt, encoded as PAYMENT-RESPONSE is:
 * its headers left before the charge was known. */
export const RECEIPT_EVENT = "payment-response";
/** Larger PAYMENT-SIGNATURE headers are refused before any decoding (a real one is ~1.2 KB). */
export const MAX_HEADER_BYTES = 8 * 1024;

const MAX_UINT256 = 2n ** 256n - 1n;

// Patterns rather than predicates where a pattern says it all, so that the JSON Schemas generated from
// these (docs/schemas, `npm run schemas`) state every rule a client must follow.
const address = z
  .string()
  .regex(/^0x[0-9a-fA-F]{40}$/, "must be a 20-byte hex address")
  .transform((s) => getAddress(s));
const bytes32 = z
  .string()
  .regex(/^0x[0-9a-fA-F]{64}$/, "must be 32 bytes of 0x-hex")
  .transform((s) => s.toLowerCase() as Hex);
// Whole bytes only: "0x" + an odd number of digits is not a byte string. viem would pad it on the left
// and verify it, so the gateway would serve and store a signature no other encoder reads the same way.
const signature = z
  .string()
  .regex(/^0x(?:[0-9a-fA-F]{2}){1,1024}$/, "must be 0x-hex of whole bytes")
  .transform((s) => s as Hex);
const amount = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,77})$/, "must be a decimal string of base units")
  .transform((s) => BigInt(s))
  .refine((n) => n <= MAX_UINT256, "must fit in uint256");
const network = z.string().regex(/^eip155:[1-9][0-9]{0,15}$/, "must be eip155:<chainId>");

/** The field schemas every scheme's wire format shares (x402 `exact` reuses them). */
export const fields = { address, bytes32, signature, amount, network };

export const channelConfigSchema = z.object({
  payer: address,
  payee: address,
  token: address,
  signer: address,
  withdrawDelay: z.number().int().min(0).max(2 ** 32 - 1),
  salt: bytes32,
});

/** One entry of `accepts`: what this route costs and how to pay it with a paychan channel. */
export const requirementsSchema = z.object({
  scheme: z.literal(SCHEME),
  network,
  amount,
  asset: address,
  payTo: address,
  maxTimeoutSeconds: z.number().int().positive(),
  extra: z.object({
    escrow: address,
    /** The shortest withdrawal delay this gateway accepts on a channel. */
    minWithdrawDelay: z.number().int().min(0),
    /** Vouchers are refused once a requested withdrawal finalizes within this many seconds (chain time). */
    closingMarginSeconds: z.number().int().min(0).optional(),
    /** A metered route: `amount` is prepaid with the voucher, and the request's usage costs up to this
     * much in all; the part beyond `amount` is included in the channel's next voucher. */
    maxAmount: amount.optional(),
    /** Present when the route's price moves (a pricing policy): why it is what it is, and the Unix
     * second until which a payment at it is honoured (absent: it does not expire). */
    price: z.object({ reason: z.string(), validUntil: z.number().int().optional() }).optional(),
    /** Present when the request named a channel: the server's view, so a client can resync. `owed` is
     * the metered usage its next voucher must include; `remaining` (deposit − accepted − owed, added in
     * 0.2.0) is what further vouchers may still spend. */
    channel: z
      .object({ channelId: bytes32, acceptedCumulative: amount, deposit: amount, owed: amount.optional(), remaining: amount.optional() })
      .optional(),
  }),
});

export const paymentRequiredSchema = z.object({
  x402Version: z.literal(X402_VERSION),
  error: z.string().optional(),
  code: z.string().optional(),
  resource: z.object({ url: z.string(), description: z.string(), mimeType: z.string() }),
  accepts: z.array(z.unknown()),
});

/** Just enough of a payload to tell which version and scheme it claims to be. */
const envelopeSchema = z.object({
  x402Version: z.number(),
  accepted: z.object({ scheme: z.string() }).passthrough().optional().default({ scheme: "" }),
});

export const paymentPayloadSchema = z.object({
  x402Version: z.literal(X402_VERSION),
  accepted: requirementsSchema,
  payload: z.object({
    channel: channelConfigSchema,
    voucher: z.object({ channelId: bytes32, cumulativeAmount: amount, signature }),
  }),
});

export const receiptSchema = z.object({
  success: z.literal(true),
  scheme: z.literal(SCHEME),
  network,
  payer: address,
  /** Channel payments settle later, in batches: there is no per-request transaction. */
  transaction: z.literal(""),
  channelId: bytes32,
  paymentId: z.string(),
  charged: amount,
  cumulativeAmount: amount,
  remaining: amount,
  /** The metered usage the channel owes after this request: its next voucher includes it. */
  owed: amount.optional(),
  /** For a metered request: the most it could cost (its terms' `maxAmount`). */
  maxAmount: amount.optional(),
});

export type PaymentRequirements = z.output<typeof requirementsSchema>;
export type PaymentRequired = Omit<z.output<typeof paymentRequiredSchema>, "accepts"> & {
  accepts: PaymentRequirements[];
};
export type PaymentPayload = {
  x402Version: typeof X402_VERSION;
  accepted: PaymentRequirements;
  payload: { channel: ChannelConfig; voucher: SignedVoucher };
};
export type Receipt = z.output<typeof receiptSchema>;

/** JSON with bigints as decimal strings, then base64. */
export function encodeHeader(value: unknown): string {
  const bytes = utf8Encoder.encode(JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? v.toString() : v)));
  // btoa takes one character per byte; converting in chunks is several times faster than per byte.
  let binary = "";
  for (let i = 0; i < bytes.length; i += 4096) binary += String.fromCharCode(...bytes.subarray(i, i + 4096));
  return btoa(binary);
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

function decodeJson(header: string): unknown {
  if (header.length > MAX_HEADER_BYTES) {
    throw new PaymentError("header_too_large", `Payment header is larger than ${MAX_HEADER_BYTES} bytes.`);
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(header)) {
    throw new PaymentError("malformed_payment", "Payment header is not base64.");
  }
  try {
    const binary = atob(header);
    // A plain loop: Uint8Array.from with a mapping function costs about as much as the JSON parse.
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return JSON.parse(utf8Decoder.decode(bytes));
  } catch {
    throw new PaymentError("malformed_payment", "Payment header is not base64-encoded JSON.");
  }
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  return issue ? `${issue.path.join(".") || "(root)"}: ${issue.message}` : "invalid";
}

/**
 * A PAYMENT-SIGNATURE header decoded as far as every scheme shares: base64 JSON of x402 version 2,
 * and the scheme it pays with (`accepted.scheme`). Throws a PaymentError that says what is wrong.
 */
export function decodePaymentEnvelope(header: string): { scheme: string; json: unknown } {
  const json = decodeJson(header);
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success) {
    throw new PaymentError("malformed_payment", `Payment payload is invalid at ${describe(envelope.error)}.`);
  }
  if (envelope.data.x402Version !== X402_VERSION) {
    throw new PaymentError("unsupported_version", `Only x402Version ${X402_VERSION} is supported.`);
  }
  return { scheme: envelope.data.accepted.scheme, json };
}

/** A decoded payload of the paychan scheme, checked in full, or a PaymentError that says what is wrong. */
export function parsePaychanPayment(json: unknown): PaymentPayload {
  const parsed = paymentPayloadSchema.safeParse(json);
  if (!parsed.success) {
    throw new PaymentError("malformed_payment", `Payment payload is invalid at ${describe(parsed.error)}.`);
  }
  return parsed.data;
}

/** Decodes a PAYMENT-SIGNATURE header of the paychan scheme, or throws a PaymentError that says what is wrong. */
export function decodePaymentSignature(header: string): PaymentPayload {
  const { scheme, json } = decodePaymentEnvelope(header);
  if (scheme !== SCHEME) throw new PaymentError("unsupported_scheme", `Only the "${SCHEME}" scheme is accepted here.`);
  return parsePaychanPayment(json);
}

/** Decodes a PAYMENT-REQUIRED header; entries of schemes other than ours are dropped. */
export function decodePaymentRequired(header: string): PaymentRequired {
  const parsed = paymentRequiredSchema.safeParse(decodeJson(header));
  if (!parsed.success) {
    throw new PaymentError("malformed_payment", `PAYMENT-REQUIRED is invalid at ${describe(parsed.error)}.`);
  }
  const accepts = parsed.data.accepts.flatMap((entry) => {
    const r = requirementsSchema.safeParse(entry);
    return r.success ? [r.data] : [];
  });
  return { ...parsed.data, accepts };
}

export function decodeReceipt(header: string): Receipt {
  const parsed = receiptSchema.safeParse(decodeJson(header));
  if (!parsed.success) {
    throw new PaymentError("malformed_payment", `PAYMENT-RESPONSE is invalid at ${describe(parsed.error)}.`);
  }
  return parsed.data;
}

export function networkOf(chainId: number): string {
  return `eip155:${chainId}`;
}

export function chainIdOf(network: string): number {
  return Number(network.slice("eip155:".length));
}

