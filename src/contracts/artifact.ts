// The escrow's compiled artifact (Hardhat's format: ABI, creation and runtime bytecode), for deploying
// it. The package ships it next to this module (the build copies it into dist/contracts); in the
// repository it is Hardhat's own output.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Hex } from "viem";
import { escrowAbi } from "./escrowAbi.js";

export type EscrowArtifact = {
  _format: string;
  contractName: string;
  sourceName: string;
  abi: typeof escrowAbi;
  bytecode: Hex;
  deployedBytecode: Hex;
  linkReferences: Record<string, never>;
  deployedLinkReferences: Record<string, never>;
};

const locations = [
  new URL("./PaychanEscrow.json", import.meta.url),
  new URL("../../artifacts/contracts/PaychanEscrow.sol/PaychanEscrow.json", import.meta.url),
];

export function loadEscrowArtifact(): EscrowArtifact {
  for (const location of locations) {
    let text: string;
    try {
      text = readFileSync(location, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw error;
    }
    return JSON.parse(text) as EscrowArtifact;
  }
  throw new Error(
    `The escrow is not compiled (no ${locations.map((l) => fileURLToPath(l)).join(" or ")}): run \`npm run build:contracts\` first.`,
  );
}
