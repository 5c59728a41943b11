// Gas used by each PaychanEscrow operation on a fresh deployment, from transaction receipts, printed as
// a markdown table. Inputs are realistic: every channel has its own random salt and its own session
// key, the payee already holds both ETH and the token, and transactions are sent one by one as they
// would be on a live chain. Run with `npm run gas`.
import { randomBytes } from "node:crypto";
import { network } from "hardhat";
import { encodeFunctionData, maxUint256, parseSignature, toHex, zeroAddress, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { batchClaimOf } from "../src/chain/SettlementWorker.js";
import { channelId, type ChannelConfig } from "../src/protocol/Channel.js";
import { signVoucher } from "../src/protocol/Voucher.js";
import { permitTypes } from "../src/client/channel.js";
import { transferWithAuthorizationTypes } from "../src/x402/exact/eip3009.js";
import { transferWithAuthorizationData } from "../src/x402/exact/Eip3009Token.js";

const INTRINSIC_GAS = 21_000n;
/** ContractWallet.Mode.ReturnBomb */
const RETURN_BOMB = 3;
const DEPOSIT = 100_000_000n;

const connection = await network.create();
const { viem, networkConfig } = connection;
const publicClient = await viem.getPublicClient();
const [, payee, ...payers] = await viem.getWalletClients();
if (payee === undefined || payers.length === 0) throw new Error("the network needs funded accounts");
const payeeAddress: Address = payee.account.address;

const escrow = await viem.deployContract("PaychanEscrow");
const token = await viem.deployContract("TestToken");
const location = { chainId: await publicClient.getChainId(), escrow: escrow.address };

type Row = { operation: string; gasUsed: bigint; execution: bigint; channels?: number };
const rows: Row[] = [];

/** Calldata cost before EIP-7623's floor: 4 gas per zero byte, 16 per nonzero byte. */
function calldataGas(input: Hex): bigint {
  let gas = 0n;
  for (let i = 2; i < input.length; i += 2) gas += input.slice(i, i + 2) === "00" ? 4n : 16n;
  return gas;
}

async function measure(operation: string, send: Promise<Hex>, channels?: number) {
  const hash = await send;
  const [receipt, tx] = await Promise.all([
    publicClient.waitForTransactionReceipt({ hash }),
    publicClient.getTransaction({ hash }),
  ]);
  if (receipt.status !== "success") throw new Error(`${operation} reverted`);
  rows.push({ operation, gasUsed: receipt.gasUsed, execution: receipt.gasUsed - INTRINSIC_GAS - calldataGas(tx.input), channels });
}

function payerAt(i: number) {
  const payer = payers[i % payers.length];
  if (payer === undefined) throw new Error("no payer");
  return payer;
}

type Opened = { cfg: ChannelConfig; key: PrivateKeyAccount; id: Hex };

function newChannel(payer: Address, asset: Address): Opened {
  const key = privateKeyToAccount(generatePrivateKey());
  const cfg: ChannelConfig = {
    payer,
    payee: payeeAddress,
    token: asset,
    signer: key.address,
    withdrawDelay: 86_400,
    salt: toHex(randomBytes(32)),
  };
  return { cfg, key, id: channelId(cfg, location) };
}

async function open(payerIndex: number, asset: Address, label?: string): Promise<Opened> {
  const payer = payerAt(payerIndex);
  const channel = newChannel(payer.account.address, asset);
  const value = asset === zeroAddress ? DEPOSIT : 0n;
  const send = escrow.write.open([channel.cfg, DEPOSIT], { account: payer.account, value });
  if (label === undefined) await publicClient.waitForTransactionReceipt({ hash: await send });
  else await measure(label, send);
  return channel;
}

async function voucher(channel: Opened, amount: bigint) {
  return (await signVoucher(channel.key, { channelId: channel.id, cumulativeAmount: amount }, location)).signature;
}

// Every payer holds tokens and has approved the escrow, as a wallet would before its first open;
// the payee already holds a token balance, so claims do not pay for creating it.
for (const payer of payers) {
  await token.write.mint([payer.account.address, 1_000n * DEPOSIT]);
  await token.write.approve([escrow.address, maxUint256], { account: payer.account });
}
await token.write.mint([payee.account.address, 1n]);

// Opening and funding. The first ERC-20 open is the escrow's first deposit of that token.
const erc20Channel = await open(0, token.address, "open ERC-20 (first deposit of the token, allowance set)");
const ethChannel = await open(1, zeroAddress, "open ETH");
{
  const permitPayer = payerAt(2);
  await token.write.approve([escrow.address, 0n], { account: permitPayer.account });
  const channel = newChannel(permitPayer.account.address, token.address);
  const signature = await permitPayer.signTypedData({
    domain: { name: "Test USD", version: "1", chainId: location.chainId, verifyingContract: token.address },
    types: permitTypes,
    primaryType: "Permit",
    message: { owner: permitPayer.account.address, spender: escrow.address, value: DEPOSIT, nonce: 0n, deadline: maxUint256 },
  });
  const { v, r, s } = parseSignature(signature);
  await measure(
    "open ERC-20 with EIP-2612 permit",
    escrow.write.openWithPermit([channel.cfg, DEPOSIT, maxUint256, Number(v), r, s], { account: permitPayer.account }),
  );
  await token.write.approve([escrow.address, maxUint256], { account: permitPayer.account });
}
await measure("top-up ERC-20", escrow.write.topUp([erc20Channel.cfg, DEPOSIT], { account: payerAt(0).account }));
await measure("top-up ETH", escrow.write.topUp([ethChannel.cfg, DEPOSIT], { account: payerAt(1).account, value: DEPOSIT }));

// Single claims: the first claim on a channel, paying an EOA that already holds the asset.
await measure(
  "claim ETH (single)",
  escrow.write.claim([ethChannel.cfg, 1_000n, await voucher(ethChannel, 1_000n)], { account: payee.account }),
);
await measure(
  "claim ERC-20 (single)",
  escrow.write.claim([erc20Channel.cfg, 1_000n, await voucher(erc20Channel, 1_000n)], { account: payee.account }),
);

// Batch claims of ERC-20 channels, each opened by one of many payers with its own key and salt.
for (const size of [1, 10, 100]) {
  const channels: Opened[] = [];
  for (let i = 0; i < size; i++) channels.push(await open(i, token.address));
  const claims = await Promise.all(
    channels.map(async (channel) => {
      const amount = 1_000n + BigInt(Math.floor(Math.random() * 1_000_000));
      return batchClaimOf(channel.cfg, { cumulativeAmount: amount, signature: await voucher(channel, amount) });
    }),
  );
  await measure(
    `claimBatch ERC-20, ${size} channel${size === 1 ? "" : "s"}`,
    escrow.write.claimBatch([payee.account.address, token.address, claims], { account: payee.account }),
    size,
  );
}

// Ending channels.
await measure(
  "cooperative close ERC-20 (final voucher + refund)",
  escrow.write.close([erc20Channel.cfg, 5_000n, await voucher(erc20Channel, 5_000n)], { account: payee.account }),
);
await measure(
  "cooperative close ETH (final voucher + refund to an EOA)",
  escrow.write.close([ethChannel.cfg, 5_000n, await voucher(ethChannel, 5_000n)], { account: payee.account }),
);
{
  // A payer contract that answers its refund with ~180 KB of return data, all its 100k gas cap buys:
  // the close pays for the payer's own memory, not for copying the answer.
  const owner = payerAt(4);
  const wallet = await viem.deployContract("ContractWallet", [owner.account.address]);
  await owner.sendTransaction({ to: wallet.address, value: DEPOSIT });
  const channel = newChannel(wallet.address, zeroAddress);
  const open = encodeFunctionData({ abi: escrow.abi, functionName: "open", args: [channel.cfg, DEPOSIT] });
  await publicClient.waitForTransactionReceipt({ hash: await wallet.write.execute([escrow.address, DEPOSIT, open], { account: owner.account }) });
  await publicClient.waitForTransactionReceipt({ hash: await wallet.write.setMode([RETURN_BOMB], { account: owner.account }) });
  await measure(
    "cooperative close ETH (payer answers its refund with 180 KB)",
    escrow.write.close([channel.cfg, 5_000n, await voucher(channel, 5_000n)], { account: payee.account }),
  );
}
const withdrawing = await open(3, token.address);
await measure("withdrawal request", escrow.write.requestWithdrawal([withdrawing.cfg], { account: payerAt(3).account }));
await connection.networkHelpers.time.increase(withdrawing.cfg.withdrawDelay);
await measure("withdrawal finalize ERC-20", escrow.write.finalizeWithdrawal([withdrawing.cfg], { account: payerAt(3).account }));

// x402 exact: each request paid this way is one transferWithAuthorization, sent by the settlement
// key, to a payee that already holds the token (OpenZeppelin's ERC-20 underneath; USDC's differs).
const dollar = await viem.deployContract("Eip3009Token");
const buyer = privateKeyToAccount(generatePrivateKey());
await dollar.write.mint([buyer.address, DEPOSIT]);
await dollar.write.mint([payeeAddress, DEPOSIT]);
const authorization = {
  from: buyer.address,
  to: payeeAddress,
  value: 1_000n,
  validAfter: 0n,
  validBefore: (await publicClient.getBlock()).timestamp + 300n,
  nonce: toHex(randomBytes(32)),
};
const authorizationSignature = await buyer.signTypedData({
  domain: { name: "Test Dollar", version: "1", chainId: location.chainId, verifyingContract: dollar.address },
  types: transferWithAuthorizationTypes,
  primaryType: "TransferWithAuthorization",
  message: authorization,
});
await measure(
  "x402 exact: transferWithAuthorization (EIP-3009 mock)",
  payerAt(4).sendTransaction({ to: dollar.address, data: transferWithAuthorizationData(authorization, authorizationSignature) }),
);

const format = (n: bigint) => n.toLocaleString("en-US");
console.log(`PaychanEscrow gas (hardfork ${networkConfig.type === "edr-simulated" ? networkConfig.hardfork : "?"})\n`);
console.log("| operation | gasUsed | execution gas | gasUsed / channel | execution / channel |");
console.log("|---|---:|---:|---:|---:|");
for (const row of rows) {
  const perChannel = (gas: bigint) => (row.channels === undefined ? "" : format(gas / BigInt(row.channels)));
  console.log(
    `| ${row.operation} | ${format(row.gasUsed)} | ${format(row.execution)} | ${perChannel(row.gasUsed)} | ${perChannel(row.execution)} |`,
  );
}
console.log(
  "\nexecution gas = gasUsed - 21,000 intrinsic - calldata (4 per zero byte, 16 per nonzero byte)." +
    "\nAnchors (gasUsed): x402 batch settlement 40,252 single claim, ~19,200 per channel in a 10-channel claim," +
    " 111,738 first ERC-20 deposit; µRaiden 120,090 to open." +
    "\nTargets: ≤ 30,000 single claim, ≤ 12,000 per channel in a batch of 100.",
);
