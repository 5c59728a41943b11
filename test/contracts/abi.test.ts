// The SDK's generated ABI (src/chain/escrowAbi.ts) must match the compiled contract; `npm run abi`
// regenerates it.
import { expect } from "chai";
import hre from "hardhat";
import { escrowAbi } from "../../src/chain/escrowAbi.js";

describe("PaychanEscrow ABI", () => {
  it("matches the ABI the SDK ships in src/chain/escrowAbi.ts", async () => {
    const artifact = await hre.artifacts.readArtifact("PaychanEscrow");
    expect(escrowAbi).to.deep.equal(artifact.abi, "src/chain/escrowAbi.ts is stale: run `npm run abi`");
  });
});
