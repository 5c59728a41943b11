// The ABI the SDK ships (src/contracts/escrowAbi.ts, typed for viem, and PaychanEscrow.abi.json for
// other tools) must match the compiled contract; `npm run abi` regenerates both.
import { readFile } from "node:fs/promises";
import { expect } from "chai";
import hre from "hardhat";
import { escrowAbi } from "../../src/contracts/escrowAbi.js";

describe("PaychanEscrow ABI", () => {
  it("matches the ABI the SDK ships in src/contracts/escrowAbi.ts", async () => {
    const artifact = await hre.artifacts.readArtifact("PaychanEscrow");
    expect(escrowAbi).to.deep.equal(artifact.abi, "src/contracts/escrowAbi.ts is stale: run `npm run abi`");
  });

  it("matches the JSON ABI shipped in src/contracts/PaychanEscrow.abi.json", async () => {
    const artifact = await hre.artifacts.readArtifact("PaychanEscrow");
    const json = JSON.parse(await readFile(new URL("../../src/contracts/PaychanEscrow.abi.json", import.meta.url), "utf8"));
    expect(json).to.deep.equal(artifact.abi, "src/contracts/PaychanEscrow.abi.json is stale: run `npm run abi`");
  });
});
