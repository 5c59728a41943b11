// Step-up: when the gateway's risk policy finds a channel's spending unusual it refuses with
// `step_up_required`, and the payer's wallet — not the session key, which a compromised client holds —
// signs an EIP-712 `StepUp(bytes32 channelId, uint256 spendingLimit, uint64 validUntil)` under the
// escrow's domain: "I, the payer, approve this channel spending up to `spendingLimit` in total until
// `validUntil`". The client sends it in the PAYMENT-STEP-UP header with each request while it holds;
// the gateway verifies it every time, so it keeps no state about it.
//
// The escrow never sees this type: it binds nothing on chain, only the gateway's willingness to serve.
import { hashTypedData, recoverTypedDataAddress, type Address, type Hex } from "viem";
import * as z from "zod";
import { escrowDomain, type EscrowLocation } from "./Channel.js";
import { PaymentError } from "./Errors.js";
import { MAX_HEADER_BYTES, encodeHeader } from "./wire.js";

export const STEP_UP_HEADER = "PAYMENT-STEP-UP";

export type StepUp = { channelId: Hex; spendingLimit: bigint; validUntil: number };
export type SignedStepUp = StepUp & { signature: Hex };

/** What a `step_up_required` refusal asks the payer's wallet to approve (its `details`). */
export type StepUpRequest = { channelId: Hex; cumulativeAmount: bigint; reasons: string };

export const stepUpTypes = {
  StepUp: [
    { name: "channelId", type: "bytes32" },
    { name: "spendingLimit", type: "uint256" },
    { name: "validUntil", type: "uint64" },
  ],
} as const;

/** Signs with the payer's wallet (any viem account or wallet client that signs typed data). */
export async function signStepUp(
  wallet: { signTypedData(args: { domain: ReturnType<typeof escrowDomain>; types: typeof stepUpTypes; primaryType: "StepUp"; message: { channelId: Hex; spendingLimit: bigint; validUntil: bigint } }): Promise<Hex> },
  stepUp: StepUp,
  location: EscrowLocation,
): Promise<SignedStepUp> {
  const signature = await wallet.signTypedData({ domain: escrowDomain(location), types: stepUpTypes, primaryType: "StepUp", message: { ...stepUp, validUntil: BigInt(stepUp.validUntil) } });
  return { ...stepUp, signature };
}

export function stepUpDigest(stepUp: StepUp, location: EscrowLocation): Hex {
  return hashTypedData({ domain: escrowDomain(location), types: stepUpTypes, primaryType: "StepUp", message: { ...stepUp, validUntil: BigInt(stepUp.validUntil) } });
}

/** The address that signed `stepUp` (ECDSA), or undefined for a signature that is not one. */
export async function stepUpSigner(stepUp: SignedStepUp, location: EscrowLocation): Promise<Address | undefined> {
  try {
    return await recoverTypedDataAddress({
      domain: escrowDomain(location),
      types: stepUpTypes,
      primaryType: "StepUp",
      message: { channelId: stepUp.channelId, spendingLimit: stepUp.spendingLimit, validUntil: BigInt(stepUp.validUntil) },
      signature: stepUp.signature,
    });
  } catch {
    return undefined;
  }
}

const stepUpSchema = z.object({
  channelId: z.string().regex(/^0x[0-9a-fA-F]{64}$/).transform((s) => s.toLowerCase() as Hex),
  spendingLimit: z.string().regex(/^[0-9]{1,78}$/).transform((s) => BigInt(s)),
  validUntil: z.number().int().min(0).max(2 ** 53 - 1),
  signature: z.string().regex(/^0x[0-9a-fA-F]{130}$/).transform((s) => s as Hex),
});

export function encodeStepUp(stepUp: SignedStepUp): string {
  return encodeHeader(stepUp);
}

/** Decodes a PAYMENT-STEP-UP header; a malformed one is refused with `step_up_invalid`. */
export function decodeStepUp(header: string): SignedStepUp {
  let json: unknown;
  try {
    if (header.length > MAX_HEADER_BYTES) throw new RangeError("too large");
    json = JSON.parse(atob(header));
  } catch {
    throw new PaymentError("step_up_invalid", "The PAYMENT-STEP-UP header is not base64 JSON (at most 8 KB).");
  }
  const parsed = stepUpSchema.safeParse(json);
  if (!parsed.success) throw new PaymentError("step_up_invalid", `The PAYMENT-STEP-UP header is malformed: ${parsed.error.issues[0]?.path.join(".")} ${parsed.error.issues[0]?.message}.`);
  return parsed.data;
}
