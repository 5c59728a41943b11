// `paychan set-operator`: the payee approves (or revokes) the settlement key on the escrow from the
// command line, signed with PAYEE_PRIVATE_KEY or with SETTLER_PRIVATE_KEY when that is the payee's key.
import { expect } from "chai";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { deployEscrow, type EscrowFixture } from "../helpers/escrow.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";
import { fundedKey, runCli } from "./helpers.js";

describe("paychan set-operator", function () {
  this.timeout(90_000);
  let chain: EscrowFixture;
  let rpc: RpcServer;

  before(async () => {
    chain = await deployEscrow();
    rpc = await serveProvider(chain.connection.provider);
  });
  after(async () => rpc.close());

  it("approves the settlement key with the payee's key, revokes it with the settler key when that is the payee's, and refuses any other key", async () => {
    const payee = await fundedKey(chain);
    const operatorKey = generatePrivateKey();
    const operator = privateKeyToAccount(operatorKey).address;
    const base = { RPC_URL: rpc.url, ESCROW_ADDRESS: chain.escrow.address, PAYEE_ADDRESS: payee.account.address };
    const isOperator = () => chain.escrow.read.isOperator([payee.account.address, operator]);

    const approved = await runCli(["set-operator"], { ...base, PAYEE_PRIVATE_KEY: payee.key, SETTLER_PRIVATE_KEY: operatorKey });
    expect(approved.code, approved.stderr).to.equal(0);
    expect(approved.stdout).to.include(`${operator} may claim for the payee ${payee.account.address}`);
    expect(await isOperator()).to.equal(true);

    const revoked = await runCli(["set-operator", operator, "--revoke"], { ...base, SETTLER_PRIVATE_KEY: payee.key });
    expect(revoked.code, revoked.stderr).to.equal(0);
    expect(revoked.stdout).to.include(`${operator} may no longer claim for the payee ${payee.account.address}`);
    expect(await isOperator()).to.equal(false);

    const [stranger, keyless] = await Promise.all([
      runCli(["set-operator", operator], { ...base, PAYEE_PRIVATE_KEY: operatorKey }),
      runCli(["set-operator", operator], { ...base, SETTLER_PRIVATE_KEY: operatorKey }),
    ]);
    expect(stranger.code).to.equal(2);
    expect(stranger.stderr).to.include(`PAYEE_PRIVATE_KEY is the key of ${operator}, not of PAYEE_ADDRESS ${payee.account.address}`);
    expect(keyless.code).to.equal(2);
    expect(keyless.stderr).to.include("set-operator is signed by the payee: set PAYEE_PRIVATE_KEY");
    expect(await isOperator()).to.equal(false);
  });
});
