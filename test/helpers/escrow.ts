// Shared fixture for tests that need the escrow on Hardhat's in-process EDR chain.
import { network } from "hardhat";
import { keccak256, toHex, zeroAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { channelId, type ChannelConfig, type EscrowLocation } from "../../src/protocol/Channel.js";

export async function deployEscrow() {
  const connection = await network.create();
  const { viem, networkHelpers } = connection;
  const publicClient = await viem.getPublicClient();
  const [deployer, payer, payee, stranger, operator] = await viem.getWalletClients();
  const escrow = await viem.deployContract("PaychanEscrow");
  const chainId = await publicClient.getChainId();
  const location: EscrowLocation = { chainId, escrow: escrow.address };
  return { connection, viem, networkHelpers, publicClient, deployer, payer, payee, stranger, operator, escrow, location };
}

export type EscrowFixture = Awaited<ReturnType<typeof deployEscrow>>;

let saltCounter = 0;
/** A fresh session key (as the browser would generate) and a channel config using it. */
export function sessionKey(label = `session-${saltCounter++}`) {
  return privateKeyToAccount(keccak256(toHex(label)));
}

export function channelConfig(payer: Address, payee: Address, overrides: Partial<ChannelConfig> = {}): ChannelConfig {
  return {
    payer,
    payee,
    token: zeroAddress,
    signer: zeroAddress,
    withdrawDelay: 3600,
    salt: toHex(++saltCounter, { size: 32 }),
    ...overrides,
  };
}

export function idOf(config: ChannelConfig, location: EscrowLocation): Hex {
  return channelId(config, location);
}
