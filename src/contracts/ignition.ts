// A Hardhat Ignition module that deploys the escrow from the artifact paychan ships, so a contract
// developer deploys exactly the bytecode paychan was tested with, without compiling it:
// `m.useModule(PaychanEscrowModule)` in their own module, or `export { default } from
// "paychan/contracts/ignition"` in a file under ignition/modules.
import { buildModule } from "@nomicfoundation/hardhat-ignition/modules";
import { loadEscrowArtifact } from "./artifact.js";

export default buildModule("PaychanEscrow", (m) => {
  const escrow = m.contract("PaychanEscrow", loadEscrowArtifact());
  return { escrow };
});
