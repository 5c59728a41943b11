// The EIP-3009 mock token (contracts/mocks/Eip3009Token.sol) the `exact` tests pay with: it must
// behave as EIP-3009 and USDC do, or those tests prove nothing. Also: the hand-written slice of the
// interface the gateway calls matches the compiled contract, and start-up reads its domain right.
import { expect } from "chai";
import hre from "hardhat";
import {
  domainSeparator,
  encodeFunctionData,
  getAddress,
  keccak256,
  parseEventLogs,
  parseSignature,
  toHex,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { secp256k1 } from "@noble/curves/secp256k1";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { StartupError } from "../../src/config.js";
import { eip3009Abi, transferWithAuthorizationTypes, type TokenDomain, type TransferAuthorization } from "../../src/x402/exact/eip3009.js";
import { readTokenDomain, transferWithAuthorizationData } from "../../src/x402/exact/Eip3009Token.js";
import { deployEscrow, type EscrowFixture } from "../helpers/escrow.js";

const receiveTypes = { ReceiveWithAuthorization: transferWithAuthorizationTypes.TransferWithAuthorization } as const;
const cancelTypes = { CancelAuthorization: [{ name: "authorizer", type: "address" }, { name: "nonce", type: "bytes32" }] } as const;

describe("Eip3009Token (the mock EIP-3009 token)", () => {
  let f: EscrowFixture;
  let token: Awaited<ReturnType<EscrowFixture["viem"]["deployContract"]>> & { address: Address };
  let domain: TokenDomain;
  let payer: PrivateKeyAccount;
  let nonceCounter = 0;

  beforeEach(async () => {
    f = await deployEscrow();
    token = (await f.viem.deployContract("Eip3009Token")) as typeof token;
    domain = { name: "Test Dollar", version: "1", chainId: f.location.chainId, verifyingContract: getAddress(token.address) };
    payer = privateKeyToAccount(generatePrivateKey());
    await f.deployer.writeContract({ address: token.address, abi: mintAbi, functionName: "mint", args: [payer.address, 1_000_000n] });
  });

  const now = async () => (await f.publicClient.getBlock()).timestamp;

  async function authorize(overrides: Partial<TransferAuthorization> = {}, signer = payer, types: object = transferWithAuthorizationTypes) {
    const authorization: TransferAuthorization = {
      from: payer.address,
      to: f.payee.account.address,
      value: 1_000n,
      validAfter: 0n,
      validBefore: (await now()) + 3600n,
      nonce: keccak256(toHex(`nonce-${nonceCounter++}`)),
      ...overrides,
    };
    const primaryType = Object.keys(types)[0] as "TransferWithAuthorization";
    const signature = await signer.signTypedData({ domain, types: types as typeof transferWithAuthorizationTypes, primaryType, message: authorization });
    return { authorization, signature };
  }

  /** Submits through the interface the gateway uses; anyone may send it (here: a stranger). */
  const submit = (authorization: TransferAuthorization, signature: Hex) =>
    f.stranger.sendTransaction({ to: token.address, data: transferWithAuthorizationData(authorization, signature) });

  const balanceOf = (account: Address) => f.publicClient.readContract({ address: token.address, abi: eip3009Abi, functionName: "balanceOf", args: [account] });
  const used = (authorizer: Address, nonce: Hex) =>
    f.publicClient.readContract({ address: token.address, abi: eip3009Abi, functionName: "authorizationState", args: [authorizer, nonce] });

  async function revertsWith(promise: Promise<unknown>, error: string) {
    const failure = await promise.then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(failure, `expected a revert with ${error}`).to.be.an("error");
    expect(String(failure)).to.include(error);
  }

  it("transfers with the payer's signed authorization, submitted by anyone, and marks its nonce used", async () => {
    const { authorization, signature } = await authorize();
    expect(await used(payer.address, authorization.nonce)).to.equal(false);
    const hash = await submit(authorization, signature);
    const receipt = await f.publicClient.getTransactionReceipt({ hash });
    const events = parseEventLogs({ abi: eip3009Abi, logs: receipt.logs });
    expect(events.map((e) => e.eventName)).to.deep.equal(["AuthorizationUsed", "Transfer"]);
    expect(await balanceOf(f.payee.account.address)).to.equal(1_000n);
    expect(await balanceOf(payer.address)).to.equal(999_000n);
    expect(await used(payer.address, authorization.nonce)).to.equal(true);
  });

  it("refuses the same authorization twice", async () => {
    const { authorization, signature } = await authorize();
    await submit(authorization, signature);
    await revertsWith(submit(authorization, signature), "AuthorizationUsedOrCanceled");
    expect(await balanceOf(f.payee.account.address)).to.equal(1_000n);
  });

  it("refuses an authorization before validAfter and from validBefore on", async () => {
    const t = await now();
    const early = await authorize({ validAfter: t + 100n });
    await revertsWith(submit(early.authorization, early.signature), "AuthorizationNotYetValid");
    const late = await authorize({ validBefore: t + 1n });
    await revertsWith(submit(late.authorization, late.signature), "AuthorizationExpired");
  });

  it("refuses a signature by anyone but `from`, or over other terms", async () => {
    const forged = await authorize({}, privateKeyToAccount(generatePrivateKey()));
    await revertsWith(submit(forged.authorization, forged.signature), "InvalidAuthorizationSignature");
    const signed = await authorize();
    await revertsWith(submit({ ...signed.authorization, value: 2_000n }, signed.signature), "InvalidAuthorizationSignature");
    await revertsWith(submit({ ...signed.authorization, to: f.stranger.account.address }, signed.signature), "InvalidAuthorizationSignature");
  });

  it("refuses the high-s twin of a valid signature", async () => {
    const { authorization, signature } = await authorize();
    const { r, s, yParity } = parseSignature(signature);
    const highS = secp256k1.CURVE.n - BigInt(s);
    const twin = encodeFunctionData({
      abi: eip3009Abi,
      functionName: "transferWithAuthorization",
      args: [authorization.from, authorization.to, authorization.value, authorization.validAfter, authorization.validBefore, authorization.nonce, (1 - yParity) + 27, r, toHex(highS, { size: 32 })],
    });
    await revertsWith(f.stranger.sendTransaction({ to: token.address, data: twin }), "ECDSAInvalidSignatureS");
  });

  it("lets only the payee submit receiveWithAuthorization, and keeps it apart from transfer authorizations", async () => {
    const { authorization, signature } = await authorize({}, payer, receiveTypes);
    const { v, r, s } = parseSignature(signature);
    const args = [authorization.from, authorization.to, authorization.value, authorization.validAfter, authorization.validBefore, authorization.nonce, Number(v), r, s] as const;
    await revertsWith(token.write.receiveWithAuthorization(args as never, { account: f.stranger.account }), "CallerMustBePayee");
    // A receive authorization is not a transfer authorization (another typehash), nor the reverse.
    await revertsWith(submit(authorization, signature), "InvalidAuthorizationSignature");
    await token.write.receiveWithAuthorization(args as never, { account: f.payee.account });
    expect(await balanceOf(f.payee.account.address)).to.equal(1_000n);
  });

  it("cancels an unused authorization, after which it cannot be used", async () => {
    const { authorization, signature } = await authorize();
    const cancel = await payer.signTypedData({ domain, types: cancelTypes, primaryType: "CancelAuthorization", message: { authorizer: payer.address, nonce: authorization.nonce } });
    const { v, r, s } = parseSignature(cancel);
    await token.write.cancelAuthorization([payer.address, authorization.nonce, Number(v), r, s] as never, { account: f.stranger.account });
    expect(await used(payer.address, authorization.nonce)).to.equal(true);
    await revertsWith(submit(authorization, signature), "AuthorizationUsedOrCanceled");
  });

  it("declares every function and event the gateway calls exactly as the compiled contract does", async () => {
    const artifact = await hre.artifacts.readArtifact("Eip3009Token");
    for (const entry of eip3009Abi) {
      const compiled = (artifact.abi as { type: string; name?: string; inputs?: unknown[] }[]).find((e) => e.type === entry.type && e.name === entry.name);
      expect(compiled, `${entry.type} ${entry.name}`).to.not.equal(undefined);
      const shape = (inputs: unknown) => (inputs as { type: string; indexed?: boolean }[]).map((i) => `${i.type}${i.indexed ? " indexed" : ""}`);
      expect(shape(compiled!.inputs), `${entry.name}'s inputs`).to.deep.equal(shape(entry.inputs));
    }
  });

  it("reads the token's EIP-712 domain and decimals at start-up, checked against its DOMAIN_SEPARATOR", async () => {
    const read = await readTokenDomain(f.publicClient as PublicClient, token.address, f.location.chainId);
    expect(read).to.deep.equal({ domain, decimals: 6 });
    expect(domainSeparator({ domain })).to.equal(await token.read.DOMAIN_SEPARATOR());
  });

  it("refuses at start-up a token without EIP-3009, and an address without code, naming EXACT_TOKEN", async () => {
    const refusal = (address: Address) =>
      readTokenDomain(f.publicClient as PublicClient, address, f.location.chainId).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    const plain = await refusal(f.token.address);
    expect(plain).to.be.instanceOf(StartupError);
    expect(plain!.message).to.match(/EXACT_TOKEN .* does not implement EIP-3009/);
    const empty = await refusal(f.stranger.account.address);
    expect(empty).to.be.instanceOf(StartupError);
    expect(empty!.message).to.match(/EXACT_TOKEN .* has no code/);
  });
});

const mintAbi = [
  { type: "function", name: "mint", stateMutability: "nonpayable", inputs: [{ name: "to", type: "address" }, { name: "amount", type: "uint256" }], outputs: [] },
] as const;
