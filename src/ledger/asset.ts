// Asset identifiers, CAIP-19 in spirit: `eip155:<chainId>/native`, `eip155:<chainId>/erc20:<address>`
// (checksummed), `fiat:<ISO 4217 code>`. An account holds exactly one asset.
import { getAddress, isAddress, zeroAddress, type Address } from "viem";

export type Asset = `eip155:${number}/native` | `eip155:${number}/erc20:${Address}` | `fiat:${string}`;

const pattern = /^(?:eip155:[1-9]\d*\/(?:native|erc20:0x[0-9a-fA-F]{40})|fiat:[A-Z]{3})$/;

/** The asset a channel moves: `zeroAddress` is the chain's native coin, as in the escrow. */
export function tokenAsset(chainId: number | bigint, token: Address): Asset {
  if (token === zeroAddress) return nativeAsset(chainId);
  return `eip155:${chainId}/erc20:${getAddress(token)}` as Asset;
}

export function nativeAsset(chainId: number | bigint): Asset {
  return `eip155:${chainId}/native` as Asset;
}

export function fiatAsset(currency: string): Asset {
  return `fiat:${currency}`;
}

/** True for a well-formed asset whose ERC-20 address, if any, is checksummed. */
export function isAsset(value: string): value is Asset {
  if (!pattern.test(value)) return false;
  const erc20 = value.split("/erc20:")[1];
  return erc20 === undefined || (isAddress(erc20) && getAddress(erc20) === erc20);
}
