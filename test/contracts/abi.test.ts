// The ABI the SDK ships (src/contracts/escrowAbi.ts, typed for viem, and PaychanEscrow.abi.json for
// other tools) must match the compiled contract; `npm run abi` regenerates both. The batch entry's
// layout is fenced here too.
import { readFile } from "node:fs/promises";
import { expect } from "chai";
import hre from "hardhat";
import { escrowAbi } from "../../src/contracts/escrowAbi.js";

async function artifactAbi() {
  return (await hre.artifacts.readArtifact("PaychanEscrow")).abi;
}

describe("PaychanEscrow ABI", () => {
  it("matches the ABI the SDK ships in src/contracts/escrowAbi.ts and src/contracts/PaychanEscrow.abi.json", async () => {
    const abi = await artifactAbi();
    expect(escrowAbi).to.deep.equal(abi, "src/contracts/escrowAbi.ts is stale: run `npm run abi`");
    const json = JSON.parse(await readFile(new URL("../../src/contracts/PaychanEscrow.abi.json", import.meta.url), "utf8"));
    expect(json).to.deep.equal(abi, "src/contracts/PaychanEscrow.abi.json is stale: run `npm run abi`");
  });

  it("keeps BatchClaim's field order and types, which _batchChannelId reads from calldata by offset", async () => {
    const claimBatch = (await artifactAbi()).find((item) => item.type === "function" && item.name === "claimBatch");
    const entries = claimBatch?.inputs[2];
    expect(entries?.type).to.equal("tuple[]");
    const layout = (entries?.components ?? []).map((field: { type: string; name: string }) => `${field.type} ${field.name}`);
    expect(layout).to.deep.equal(
      ["address payer", "address signer", "uint32 withdrawDelay", "bytes32 salt", "uint256 cumulativeAmount", "bytes32 r", "bytes32 vs"],
      "BatchClaim changed: _batchChannelId in contracts/PaychanEscrow.sol reads payer at offset 0x00 and signer, " +
        "withdrawDelay and salt at 0x20..0x80 of each entry; update it (and this list) together",
    );
  });
});
