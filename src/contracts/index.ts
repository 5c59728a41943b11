// The escrow's bindings for anyone who talks to the contract: the payer's SDK, the seller's chain
// room, and other projects (`paychan/contracts`). Browser-safe: no I/O. The package also exports the
// same ABI as JSON, the compiled artifact, the Solidity source and a Hardhat Ignition module.
export { escrowAbi } from "./escrowAbi.js";
