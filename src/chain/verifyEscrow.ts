// Start-up check that ESCROW_ADDRESS is a PaychanEscrow on the chain RPC_URL serves. Without it a
// wrong address (an EOA, another contract, a deployment on another chain) starts fine and then
// answers every paid request 503: vouchers would be signed for a domain nobody can claim.
import {
  BaseError,
  ContractFunctionRevertedError,
  ContractFunctionZeroDataError,
  ExecutionRevertedError,
  domainSeparator,
  getAddress,
  type Address,
  type PublicClient,
} from "viem";
import { StartupError } from "../config.js";
import { escrowDomain } from "../protocol/Channel.js";
import { escrowAbi } from "../contracts/escrowAbi.js";

/** Throws StartupError unless `escrow` holds code whose EIP-712 domain is paychan's on `chainId`. */
export async function verifyEscrow(client: PublicClient, escrow: Address, chainId: number): Promise<void> {
  const name = `ESCROW_ADDRESS ${escrow}`;
  const code = await client.getCode({ address: escrow });
  if (!code || code === "0x") {
    throw new StartupError(
      `${name} has no contract on chain ${chainId}: deploy the escrow there (paychan deploy), or check that ESCROW_ADDRESS and RPC_URL name the same chain.`,
    );
  }
  const expected = escrowDomain({ chainId, escrow });
  let domain: readonly [`0x${string}`, string, string, bigint, Address, `0x${string}`, readonly bigint[]];
  let separator: `0x${string}`;
  try {
    domain = await client.readContract({ address: escrow, abi: escrowAbi, functionName: "eip712Domain" });
    separator = await client.readContract({ address: escrow, abi: escrowAbi, functionName: "domainSeparator" });
  } catch (error) {
    if (!isNotAnEscrow(error)) throw error;
    throw new StartupError(`${name} is a contract but not a PaychanEscrow: it does not answer eip712Domain() and domainSeparator() like one.`);
  }
  const [, domainName, version, domainChainId, verifyingContract] = domain;
  if (domainName !== expected.name || version !== expected.version) {
    throw new StartupError(`${name} is not a PaychanEscrow: its EIP-712 domain is "${domainName}" version "${version}", not "${expected.name}" version "${expected.version}".`);
  }
  if (domainChainId !== BigInt(chainId)) {
    throw new StartupError(`${name} signs for chain ${domainChainId}, but RPC_URL serves chain ${chainId}.`);
  }
  if (getAddress(verifyingContract) !== getAddress(escrow)) {
    throw new StartupError(`${name} names ${verifyingContract} as its verifying contract: vouchers signed for ${escrow} would not verify there.`);
  }
  if (separator !== domainSeparator({ domain: expected })) {
    throw new StartupError(`${name} has a domain separator that is not the one vouchers are signed with: it is not a compatible PaychanEscrow.`);
  }
}

/** A call the contract refused, or answered with nothing or with something else than the escrow's
 * types: the code is there, the function is not. */
function isNotAnEscrow(error: unknown): boolean {
  return (
    error instanceof BaseError &&
    error.walk(
      (e) =>
        e instanceof ContractFunctionRevertedError ||
        e instanceof ContractFunctionZeroDataError ||
        e instanceof ExecutionRevertedError ||
        (e instanceof BaseError && e.name.startsWith("AbiDecoding")),
    ) !== null
  );
}
