// Shared fixture for tests that need the escrow on Hardhat's in-process EDR chain. One connection
// serves every test file; `deployEscrow` reverts it to a snapshot of the freshly deployed fixture, so
// each test starts from the same state without paying for a new chain.
import { network } from "hardhat";
import { keccak256, maxUint256, toHex, zeroAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { channelId, escrowDomain, type ChannelConfig, type EscrowLocation } from "../../src/protocol/Channel.js";
import { signVoucher, voucherTypes } from "../../src/protocol/Voucher.js";

const shared = await network.create();

/** What the payer starts with, in TestToken base units (6 decimals). */
const TOKEN_BALANCE = 1_000_000_000_000n;

async function escrowFixture(connection: typeof shared = shared) {
  const { viem, networkHelpers } = connection;
  const publicClient = await viem.getPublicClient();
  const testClient = await viem.getTestClient();
  const wallets = await viem.getWalletClients();
  const wallet = (index: number) => {
    const client = wallets[index];
    if (client === undefined) throw new Error(`the test network has no account #${index}`);
    return client;
  };
  const [deployer, payer, payee, stranger, operator] = [wallet(0), wallet(1), wallet(2), wallet(3), wallet(4)] as const;
  const escrow = await viem.deployContract("PaychanEscrow");
  const token = await viem.deployContract("TestToken");
  await token.write.mint([payer.account.address, TOKEN_BALANCE]);
  await token.write.approve([escrow.address, maxUint256], { account: payer.account });
  const chainId = await publicClient.getChainId();
  const location: EscrowLocation = { chainId, escrow: escrow.address };
  return {
    connection,
    viem,
    networkHelpers,
    publicClient,
    testClient,
    deployer,
    payer,
    payee,
    stranger,
    operator,
    escrow,
    token,
    location,
  };
}

/** The escrow, a permit-capable TestToken the payer holds and has approved, and five funded accounts. */
export function deployEscrow() {
  return shared.networkHelpers.loadFixture(escrowFixture);
}

/**
 * The same fixture on a chain of its own, whose clock starts at the wall clock's: the shared chain's
 * runs ahead of it once suites have moved its time or mined faster than a block a second, and a
 * suite whose clients sign with the wall clock (x402's stock client) needs the two to agree.
 */
export async function deployEscrowOnNewChain(): Promise<EscrowFixture> {
  return escrowFixture(await network.create());
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

/**
 * Opens a channel from the fixture's payer to its payee, with `key` as its voucher signer unless
 * overridden, and returns what a test needs to claim on it: the config, its id, and `sign(amount)`,
 * which signs with the session key, or with the payer's own account when the config's signer is zero.
 */
export async function openChannel(
  f: EscrowFixture,
  amount: bigint,
  overrides: Partial<ChannelConfig> = {},
  key: PrivateKeyAccount = sessionKey(),
) {
  const cfg = channelConfig(f.payer.account.address, f.payee.account.address, { signer: key.address, ...overrides });
  const id = channelId(cfg, f.location);
  const value = cfg.token === zeroAddress ? amount : 0n;
  const hash = await f.escrow.write.open([cfg, amount], { account: cfg.payer, value });
  const sign = async (cumulativeAmount: bigint): Promise<Hex> => {
    const message = { channelId: id, cumulativeAmount };
    if (cfg.signer !== zeroAddress) return (await signVoucher(key, message, f.location)).signature;
    const payer = await f.viem.getWalletClient(cfg.payer);
    return payer.signTypedData({ domain: escrowDomain(f.location), types: voucherTypes, primaryType: "Voucher", message });
  };
  return { cfg, id, key, sign, hash };
}
