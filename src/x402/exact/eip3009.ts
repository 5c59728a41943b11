// What a payer, the gateway and an EIP-3009 token must agree on for x402's `exact` scheme on EVM: the
// signed `TransferWithAuthorization` (EIP-712 under the token's own domain), the slice of the
// token's interface paychan calls, and the x402 v2 wire format of an `exact` payment, as the stock
// `@x402/evm` client writes it. No I/O.
import { hashTypedData, hexToBytes, type Address, type Hex } from "viem";
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
export const eip3009Abi = [
  {
    type: "function",
    name: "transferWithAuthorization",
    stateMutability: "nonpayable",
    inputs: [
      { name: "from", type: "address" },
      { name: "to", type: "address" },
      { name: "value", type: "uint256" },
      { name: "validAfter", type: "uint256" },
      { name: "validBefore", type: "uint256" },
      { name: "nonce", type: "bytes32" },
      { name: "v", type: "uint8" },
      { name: "r", type: "bytes32" },
      { name: "s", type: "bytes32" },
    ],
    outputs: [],
  },
  {
    type: "function",
    name: "authorizationState",
    stateMutability: "view",
    inputs: [
      { name: "authorizer", type: "address" },
      { name: "nonce", type: "bytes32" },
    ],
    outputs: [{ name: "", type: "bool" }],
  },
  { type: "function", name: "balanceOf", stateMutability: "view", inputs: [{ name: "account", type: "address" }], outputs: [{ name: "", type: "uint256" }] },
  { type: "function", name: "decimals", stateMutability: "view", inputs: [], outputs: [{ name: "", type: "uint8" }] },
  { type: "function", name: "name", stateMutability: "view", inputs: [], outputs: [{ name: "", type: "string" }] },
  { type: "function", name: "version", stateMutability: "view", inputs: [], outputs: [{ name: "", type: "string" }] },
  { type: "function", name: "DOMAIN_SEPARATOR", stateMutability: "view", inputs: [], outputs: [{ name: "", type: "bytes32" }] },
  {
    type: "event",
    name: "Transfer",
    anonymous: false,
    inputs: [
      { name: "from", type: "address", indexed: true },
      { name: "to", type: "address", indexed: true },
      { name: "value", type: "uint256", indexed: false },
    ],
  },
  {
    type: "event",
    name: "AuthorizationUsed",
    anonymous: false,
    inputs: [
      { name: "authorizer", type: "address", indexed: true },
      { name: "nonce", type: "bytes32", indexed: true },
    ],
  },
] as const;

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
