// Reads of the EIP-3009 token x402's `exact` scheme is paid in: at start-up, that it is one and what
// its EIP-712 domain is; per payment, whether the authorization would transfer now and how much the
// payer holds. Nothing here sends a transaction: transfers go through the outbox (ExactSettlement.ts).
import {
  domainSeparator,
  encodeFunctionData,
  getAddress,
  parseSignature,
  zeroAddress,
  zeroHash,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { isRevert, messageOf } from "../../chain/TxManager.js";
import { StartupError } from "../../config.js";
import { eip3009Abi, type TokenDomain, type TransferAuthorization } from "./eip3009.js";

/** What the `exact` scheme reads from the chain per payment. */
export interface AuthorizationReader {
  /** Whether the token would carry out the transfer now (an eth_call), and if not, the token's reason. */
  simulate(authorization: TransferAuthorization, signature: Hex): Promise<{ ok: true } | { ok: false; reason: string }>;
  balanceOf(account: Address): Promise<bigint>;
  /** Whether `authorizer` used or cancelled `nonce` already. */
  isUsed(authorizer: Address, nonce: Hex): Promise<boolean>;
}

/** The calldata of transferWithAuthorization, the 65-byte signature split into v, r, s. */
export function transferWithAuthorizationData(authorization: TransferAuthorization, signature: Hex): Hex {
  const { r, s, yParity } = parseSignature(signature);
  const { from, to, value, validAfter, validBefore, nonce } = authorization;
  return encodeFunctionData({
    abi: eip3009Abi,
    functionName: "transferWithAuthorization",
    args: [from, to, value, validAfter, validBefore, nonce, yParity + 27, r, s],
  });
}

export class Eip3009Token implements AuthorizationReader {
  constructor(
    private readonly client: PublicClient,
    readonly address: Address,
  ) {}

  async simulate(authorization: TransferAuthorization, signature: Hex): Promise<{ ok: true } | { ok: false; reason: string }> {
    try {
      await this.client.call({ to: this.address, data: transferWithAuthorizationData(authorization, signature) });
      return { ok: true };
    } catch (error) {
      if (!isRevert(error)) throw error;
      return { ok: false, reason: messageOf(error) };
    }
  }

  balanceOf(account: Address): Promise<bigint> {
    return this.client.readContract({ address: this.address, abi: eip3009Abi, functionName: "balanceOf", args: [account] });
  }

  isUsed(authorizer: Address, nonce: Hex): Promise<boolean> {
    return this.client.readContract({ address: this.address, abi: eip3009Abi, functionName: "authorizationState", args: [authorizer, nonce] });
  }
}

/**
 * Checks that `address` on this chain is an EIP-3009 token and learns what clients must sign with:
 * its EIP-712 name and version (name() and version(), checked against DOMAIN_SEPARATOR() when the
 * token has one) and its decimals. Fails with a StartupError naming EXACT_TOKEN.
 */
export async function readTokenDomain(client: PublicClient, address: Address, chainId: number): Promise<{ domain: TokenDomain; decimals: number }> {
  const token = getAddress(address);
  const where = `EXACT_TOKEN ${token} on chain ${chainId}`;
  const code = await client.getCode({ address: token });
  if (!code || code === "0x") throw new StartupError(`${where} has no code: set it to an EIP-3009 token (e.g. USDC) deployed there.`);
  const read = <T>(call: Promise<T>) => call.then((value) => ({ value }), (error: unknown) => ({ error }));
  const [name, version, decimals, used, separator] = await Promise.all([
    read(client.readContract({ address: token, abi: eip3009Abi, functionName: "name" })),
    read(client.readContract({ address: token, abi: eip3009Abi, functionName: "version" })),
    read(client.readContract({ address: token, abi: eip3009Abi, functionName: "decimals" })),
    read(client.readContract({ address: token, abi: eip3009Abi, functionName: "authorizationState", args: [zeroAddress, zeroHash] })),
    read(client.readContract({ address: token, abi: eip3009Abi, functionName: "DOMAIN_SEPARATOR" })),
  ]);
  if ("error" in used) throw new StartupError(`${where} does not implement EIP-3009 (authorizationState reverts): it cannot be paid with x402 \`exact\`.`);
  if ("error" in name || "error" in version) {
    throw new StartupError(`${where} does not tell its EIP-712 name and version (name(), version()), which x402 \`exact\` clients sign with.`);
  }
  if ("error" in decimals) throw new StartupError(`${where} does not tell its decimals().`);
  const domain: TokenDomain = { name: name.value, version: version.value, chainId, verifyingContract: token };
  if ("value" in separator && separator.value !== domainSeparator({ domain })) {
    throw new StartupError(
      `${where}: its DOMAIN_SEPARATOR() is not the EIP-712 domain of its name "${domain.name}" and version "${domain.version}"; clients would sign for the wrong domain.`,
    );
  }
  return { domain, decimals: decimals.value };
}
