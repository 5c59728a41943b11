// The payer's on-chain side: open a channel (ETH, ERC-20 approve+open, or ERC-20 permit in one
// transaction), top it up, and read its state — through any viem wallet client, including a browser
// EIP-1193 wallet. The wallet signs these transactions; per-request vouchers are signed by the session key.
import {
  erc20Abi,
  getAddress,
  parseSignature,
  toHex,
  zeroAddress,
  type Account,
  type Address,
  type Chain,
  type Hex,
  type PublicClient,
  type Transport,
  type WalletClient,
} from "viem";
import { escrowAbi } from "../contracts/escrowAbi.js";
import { channelId, type ChannelConfig, type EscrowLocation } from "../protocol/Channel.js";

export type Wallet = WalletClient<Transport, Chain | undefined, Account>;

export type OpenChannelOptions = {
  wallet: Wallet;
  publicClient: PublicClient;
  escrow: Address;
  payee: Address;
  /** `zeroAddress` (default) for native ETH. */
  token?: Address;
  /** The session key's address; omit to sign vouchers with the wallet itself. */
  signer?: Address;
  amount: bigint;
  withdrawDelay: number;
  /** Defaults to a random salt, so each open creates a new channel. */
  salt?: Hex;
  /** For ERC-20s with EIP-2612: sign a permit instead of sending an approve transaction. */
  usePermit?: boolean;
};

export type OpenedChannel = { config: ChannelConfig; id: Hex; location: EscrowLocation };

export function randomSalt(): Hex {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

export async function openChannel(options: OpenChannelOptions): Promise<OpenedChannel> {
  const { wallet, publicClient, amount } = options;
  const chainId = await publicClient.getChainId();
  const location = { chainId, escrow: getAddress(options.escrow) };
  const config: ChannelConfig = {
    payer: wallet.account.address,
    payee: getAddress(options.payee),
    token: getAddress(options.token ?? zeroAddress),
    signer: getAddress(options.signer ?? zeroAddress),
    withdrawDelay: options.withdrawDelay,
    salt: options.salt ?? randomSalt(),
  };
  const escrow = { address: location.escrow, abi: escrowAbi } as const;
  let hash: Hex;
  if (config.token === zeroAddress) {
    hash = await wallet.writeContract({ ...escrow, functionName: "open", args: [config, amount], value: amount, chain: wallet.chain });
  } else if (options.usePermit) {
    const { v, r, s, deadline } = await signPermit(wallet, publicClient, config.token, location.escrow, amount);
    hash = await wallet.writeContract({
      ...escrow,
      functionName: "openWithPermit",
      args: [config, amount, deadline, v, r, s],
      chain: wallet.chain,
    });
  } else {
    await approve(wallet, publicClient, config.token, location.escrow, amount);
    hash = await wallet.writeContract({ ...escrow, functionName: "open", args: [config, amount], chain: wallet.chain });
  }
  await confirm(publicClient, hash);
  return { config, id: channelId(config, location), location };
}

export async function topUp(wallet: Wallet, publicClient: PublicClient, channel: OpenedChannel, amount: bigint): Promise<void> {
  const escrow = { address: channel.location.escrow, abi: escrowAbi } as const;
  const native = channel.config.token === zeroAddress;
  if (!native) await approve(wallet, publicClient, channel.config.token, channel.location.escrow, amount);
  const hash = await wallet.writeContract({
    ...escrow,
    functionName: "topUp",
    args: [channel.config, amount],
    ...(native && { value: amount }),
    chain: wallet.chain,
  });
  await confirm(publicClient, hash);
}

/**
 * Starts the payer's timed withdrawal: after the channel's withdrawDelay the payer may finalize and
 * take back everything not claimed. Returns the time (unix seconds, chain time) it becomes ready.
 * The payee may claim until then; sellers stop accepting vouchers some time before (closingMarginSeconds).
 */
export async function requestWithdrawal(wallet: Wallet, publicClient: PublicClient, channel: OpenedChannel): Promise<bigint> {
  const hash = await wallet.writeContract({
    address: channel.location.escrow,
    abi: escrowAbi,
    functionName: "requestWithdrawal",
    args: [channel.config],
    chain: wallet.chain,
  });
  await confirm(publicClient, hash);
  return (await readChannel(publicClient, channel)).withdrawReadyAt;
}

/** Ends a withdrawal whose deadline has passed: the refund (deposit − claimed) goes to the payer. */
export async function finalizeWithdrawal(wallet: Wallet, publicClient: PublicClient, channel: OpenedChannel): Promise<void> {
  const hash = await wallet.writeContract({
    address: channel.location.escrow,
    abi: escrowAbi,
    functionName: "finalizeWithdrawal",
    args: [channel.config],
    chain: wallet.chain,
  });
  await confirm(publicClient, hash);
}

/** `withdrawReadyAt` of a channel that is closed for good (the escrow's CLOSED). */
export const CLOSED = 2n ** 64n - 1n;

export async function readChannel(publicClient: PublicClient, channel: OpenedChannel) {
  return publicClient.readContract({
    address: channel.location.escrow,
    abi: escrowAbi,
    functionName: "getChannel",
    args: [channel.id],
  });
}

async function approve(wallet: Wallet, publicClient: PublicClient, token: Address, spender: Address, amount: bigint) {
  const hash = await wallet.writeContract({ address: token, abi: erc20Abi, functionName: "approve", args: [spender, amount], chain: wallet.chain });
  await confirm(publicClient, hash);
}

async function confirm(publicClient: PublicClient, hash: Hex) {
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`transaction ${hash} reverted`);
}

/** EIP-2612's typed data. */
export const permitTypes = {
  Permit: [
    { name: "owner", type: "address" },
    { name: "spender", type: "address" },
    { name: "value", type: "uint256" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
} as const;

const permitAbi = [
  { type: "function", name: "nonces", stateMutability: "view", inputs: [{ name: "owner", type: "address" }], outputs: [{ type: "uint256" }] },
  { type: "function", name: "name", stateMutability: "view", inputs: [], outputs: [{ type: "string" }] },
  {
    type: "function",
    name: "eip712Domain",
    stateMutability: "view",
    inputs: [],
    outputs: [
      { name: "fields", type: "bytes1" },
      { name: "name", type: "string" },
      { name: "version", type: "string" },
      { name: "chainId", type: "uint256" },
      { name: "verifyingContract", type: "address" },
      { name: "salt", type: "bytes32" },
      { name: "extensions", type: "uint256[]" },
    ],
  },
] as const;

async function signPermit(wallet: Wallet, publicClient: PublicClient, token: Address, spender: Address, value: bigint) {
  const [nonce, domain] = await Promise.all([
    publicClient.readContract({ address: token, abi: permitAbi, functionName: "nonces", args: [wallet.account.address] }),
    publicClient.readContract({ address: token, abi: permitAbi, functionName: "eip712Domain" }),
  ]);
  const deadline = BigInt(Math.floor(Date.now() / 1000) + 3600);
  const signature = await wallet.signTypedData({
    account: wallet.account,
    domain: { name: domain[1], version: domain[2], chainId: Number(domain[3]), verifyingContract: domain[4] },
    types: permitTypes,
    primaryType: "Permit",
    message: { owner: wallet.account.address, spender, value, nonce, deadline },
  });
  const { v, r, s } = parseSignature(signature);
  return { v: Number(v), r, s, deadline };
}
