// JSON Schemas of the x402 headers of the `paychan` scheme, generated from the validators the gateway
// and the SDK use, as the JSON is sent (amounts as decimal strings). docs/schemas/ holds them.
import * as z from "zod";
import { paymentPayloadSchema, paymentRequiredSchema, receiptSchema, requirementsSchema } from "./wire.js";

export function headerSchemas(): Record<"payment-required" | "payment-signature" | "payment-response", unknown> {
  const of = (title: string, description: string, schema: z.ZodType) => ({
    title,
    description,
    ...z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }),
  });
  return {
    "payment-required": of(
      "PAYMENT-REQUIRED",
      "The 402's terms (x402 v2 PaymentRequired). `accepts` lists every scheme the route takes; entries of schemes other than paychan have their own shape.",
      paymentRequiredSchema.extend({ accepts: z.array(z.union([requirementsSchema, z.looseObject({ scheme: z.string() })])) }),
    ),
    "payment-signature": of("PAYMENT-SIGNATURE", "A paid request of the paychan scheme (x402 v2 PaymentPayload).", paymentPayloadSchema),
    "payment-response": of("PAYMENT-RESPONSE", "The receipt of a paid request of the paychan scheme.", receiptSchema),
  };
}
