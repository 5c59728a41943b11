// The Hardhat Ignition module paychan ships (paychan/contracts/ignition) deploys a working escrow from
// the shipped artifact, as a contract developer's `ignition deploy` would.
import { expect } from "chai";
import { network } from "hardhat";
import { domainSeparator } from "viem";
import PaychanEscrowModule from "../../src/contracts/ignition.js";
import { escrowDomain } from "../../src/protocol/Channel.js";

describe("the Ignition module", () => {
  it("deploys an escrow whose EIP-712 domain is paychan's at the deployed address", async () => {
    const { ignition, viem } = await network.create();
    const { escrow } = await ignition.deploy(PaychanEscrowModule);
    const chainId = await (await viem.getPublicClient()).getChainId();
    expect(await escrow.read.domainSeparator()).to.equal(domainSeparator({ domain: escrowDomain({ chainId, escrow: escrow.address }) }));
  });
});
