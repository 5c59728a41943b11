// What a payer, the gateway and an EIP-3009 token must agree on for x402's `exact` scheme on EVM: the
// signed `TransferWithAuthorization` (EIP-712 under the token's own domain), the slice of the
// token's interface paychan calls, and the x402 v2 wire format of an `exact` payment, as the stock
// `@x402/evm` client writes it. No I/O.
import { hashTypedData, hexToBytes, parseAbi, type Address, type Hex } from "viem";
import * as z from "zod";
import { fields } from "../../protocol/wire.js";

export const EXACT = "exact";

/** The token's EIP-712 domain: its name and version (the 402 tells clients), chain and address. */
export type TokenDomain = { name: string; version: string; chainId: number; verifyingContract: Address };

export type TransferAuthorization = {
  from: Address;
  to: Address;
  value: bigint;
  /** Unix seconds; the token accepts it strictly after validAfter and strictly before validBefore. */
  validAfter: bigint;
  validBefore: bigint;
  /** 32 random bytes: single-use per `from` on the token. */
  nonce: Hex;
};

export const transferWithAuthorizationTypes = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
} as const;

/** The digest the payer signs, as bytes for the gateway's signature check (src/gateway/signatures.ts). */
export function authorizationDigest(domain: TokenDomain, authorization: TransferAuthorization): Uint8Array {
  return hexToBytes(
    hashTypedData({ domain, types: transferWithAuthorizationTypes, primaryType: "TransferWithAuthorization", message: authorization }),
  );
}

/** The part of an EIP-3009 token (USDC's FiatToken v2, contracts/mocks/Eip3009Token.sol) paychan uses. */
export const eip3009Abi = parseAbi([
  "function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)",
  "function authorizationState(address authorizer, bytes32 nonce) view returns (bool)",
  "function balanceOf(address account) view returns (uint256)",
  "function decimals() view returns (uint8)",
  "function name() view returns (string)",
  "function version() view returns (string)",
  "function DOMAIN_SEPARATOR() view returns (bytes32)",
  "event Transfer(address indexed from, address indexed to, uint256 value)",
  "event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce)",
]);

/** One `exact` entry of a 402's `accepts`: the token is `asset`, its EIP-712 name and version in `extra`. */
export const exactRequirementsSchema = z.object({
  scheme: z.literal(EXACT),
  network: fields.network,
  amount: fields.amount,
  asset: fields.address,
  payTo: fields.address,
  maxTimeoutSeconds: z.number().int().positive(),
  extra: z.looseObject({ name: z.string(), version: z.string() }),
});

/** A PAYMENT-SIGNATURE of the `exact` scheme paying with an EIP-3009 authorization. */
export const exactPaymentSchema = z.object({
  x402Version: z.literal(2),
  accepted: exactRequirementsSchema,
  payload: z.object({
    authorization: z.object({
      from: fields.address,
      to: fields.address,
      value: fields.amount,
      validAfter: fields.amount,
      validBefore: fields.amount,
      nonce: fields.bytes32,
    }),
    signature: fields.signature,
  }),
});

export type ExactRequirements = z.output<typeof exactRequirementsSchema>;
export type ExactPayment = z.output<typeof exactPaymentSchema>;

/**
 * The PAYMENT-RESPONSE of an `exact` payment: x402's SettleResponse, served before the transfer is
 * final (docs/PROTOCOL.md §8), so `transaction` is empty and `paymentId` names the payment.
 */
export type ExactReceipt = {
  success: true;
  scheme: typeof EXACT;
  network: string;
  payer: Address;
  transaction: "";
  amount: bigint;
  paymentId: string;
};
