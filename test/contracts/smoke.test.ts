import { expect } from "chai";
import { parseEther } from "viem";
import { channelConfig, deployEscrow, sessionKey } from "../helpers/escrow.js";
import { channelId } from "../../src/protocol/Channel.js";
import { signVoucher } from "../../src/protocol/Voucher.js";

describe("smoke", () => {
  it("opens an ETH channel and claims a TypeScript-signed voucher", async () => {
    const f = await deployEscrow();
    const key = sessionKey();
    const cfg = channelConfig(f.payer.account.address, f.payee.account.address, { signer: key.address });
    const id = channelId(cfg, f.location);
    expect(await f.escrow.read.channelIdOf([cfg])).to.equal(id);
    await f.escrow.write.open([cfg, parseEther("1")], { account: f.payer.account, value: parseEther("1") });
    const v = await signVoucher(key, { channelId: id, cumulativeAmount: 1000n }, f.location);
    const before = await f.publicClient.getBalance({ address: f.escrow.address });
    const hash = await f.escrow.write.claim([cfg, v.cumulativeAmount, v.signature], { account: f.payee.account });
    const receipt = await f.publicClient.waitForTransactionReceipt({ hash });
    console.log("claim gas", receipt.gasUsed);
    expect(before - (await f.publicClient.getBalance({ address: f.escrow.address }))).to.equal(1000n);
  });
});
