// Amounts for people: base units (bigint, or their decimal string) in the asset's unit.
import { formatUnits, zeroAddress, type Address } from "viem";
import type { AssetUnit } from "./store.js";

export function formatAmount(value: bigint | string, unit: AssetUnit): string {
  return `${formatUnits(BigInt(value), unit.decimals)} ${unit.symbol}`;
}

/** Native ETH, or an ERC-20 whose symbol and decimals the caller read from the token. */
export function nativeOr(token: Address, erc20: AssetUnit): AssetUnit {
  return token === zeroAddress ? { symbol: "ETH", decimals: 18 } : erc20;
}

export function shortHex(hex: string, chars = 6): string {
  return hex.length <= 2 + chars * 2 ? hex : `${hex.slice(0, 2 + chars)}…${hex.slice(-chars)}`;
}

/** "3 h 05 min", "4 min 09 s", "12 s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const [d, h, m, r] = [Math.floor(s / 86_400), Math.floor((s % 86_400) / 3_600), Math.floor((s % 3_600) / 60), s % 60];
  const two = (n: number) => String(n).padStart(2, "0");
  if (d > 0) return `${d} d ${two(h)} h`;
  if (h > 0) return `${h} h ${two(m)} min`;
  if (m > 0) return `${m} min ${two(r)} s`;
  return `${r} s`;
}
