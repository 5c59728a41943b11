// Voucher signature checks for the paid-request hot path. viem/noble recovery runs at a few hundred
// per second here; the `secp256k1` package's prebuilt native binding runs at thousands, so it is used
// when it loads, with noble as the fallback. Both apply the escrow's rules exactly: 65 bytes, v of 27
// or 28, low s; anything the contract would refuse is refused here too. Keccak is js-sha3's, about
// three times faster here than noble's (three hashes per voucher).
import { createRequire } from "node:module";
import { secp256k1 } from "@noble/curves/secp256k1";
import { keccak256 as keccak } from "js-sha3";
import { bytesToHex, domainSeparator, hexToBytes, keccak256, toBytes, type Address, type Hex } from "viem";
import { escrowDomain, type EscrowLocation } from "../protocol/Channel.js";

type NativeSecp256k1 = {
  ecdsaRecover(signature: Uint8Array, recid: number, message: Uint8Array, compressed: boolean): Uint8Array;
};

function loadNative(): NativeSecp256k1 | undefined {
  try {
    return createRequire(import.meta.url)("secp256k1/bindings") as NativeSecp256k1;
  } catch {
    return undefined;
  }
}

const native = loadNative();
const HALF_N = secp256k1.CURVE.n / 2n;
const VOUCHER_TYPEHASH = hexToBytes(keccak256(toBytes("Voucher(bytes32 channelId,uint256 cumulativeAmount)")));

export type RecoverBackend = "native" | "js";
export const defaultBackend: RecoverBackend = native ? "native" : "js";

/** Split a 65-byte signature into (r‖s, recovery id), or undefined if the escrow would refuse it. */
function parseSignature(signature: Uint8Array): { compact: Uint8Array; recovery: number } | undefined {
  if (signature.length !== 65) return undefined;
  const v = signature[64]!;
  if (v !== 27 && v !== 28) return undefined;
  const compact = signature.subarray(0, 64);
  const s = BigInt(bytesToHex(compact.subarray(32)));
  if (s === 0n || s > HALF_N) return undefined;
  if (BigInt(bytesToHex(compact.subarray(0, 32))) === 0n) return undefined;
  return { compact, recovery: v - 27 };
}

function keccak_256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(keccak.arrayBuffer(bytes));
}

function addressOf(uncompressed: Uint8Array): Address {
  return `0x${keccak.hex(uncompressed.subarray(1)).slice(24)}` as Address;
}

/** Recovers the signer's address (lowercase hex), or undefined if the signature is not acceptable. */
export function recoverSigner(digest: Uint8Array, signature: Uint8Array, backend = defaultBackend): Address | undefined {
  const parsed = parseSignature(signature);
  if (!parsed) return undefined;
  try {
    if (backend === "native" && native) {
      return addressOf(native.ecdsaRecover(parsed.compact, parsed.recovery, digest, false));
    }
    const sig = secp256k1.Signature.fromCompact(parsed.compact).addRecoveryBit(parsed.recovery);
    return addressOf(sig.recoverPublicKey(digest).toRawBytes(false));
  } catch {
    return undefined;
  }
}

/**
 * Computes voucher digests for one escrow deployment without re-encoding the EIP-712 domain on every
 * call: keccak(0x1901 ‖ domainSeparator ‖ keccak(typehash ‖ channelId ‖ amount)).
 */
export function voucherDigester(location: EscrowLocation): (channelId: Hex, cumulativeAmount: bigint) => Uint8Array {
  const separator = hexToBytes(domainSeparator({ domain: escrowDomain(location) }));
  const struct = new Uint8Array(96);
  struct.set(VOUCHER_TYPEHASH, 0);
  const outer = new Uint8Array(66);
  outer.set([0x19, 0x01], 0);
  outer.set(separator, 2);
  return (channelId, cumulativeAmount) => {
    struct.set(hexToBytes(channelId), 32);
    struct.set(hexToBytes(`0x${cumulativeAmount.toString(16).padStart(64, "0")}`), 64);
    outer.set(keccak_256(struct), 34);
    return keccak_256(outer);
  };
}
