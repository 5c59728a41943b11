// Builds the package into dist/: the TypeScript compiled to ESM with declarations and source maps
// (tsconfig.build.json), plus the escrow's compiled artifact and JSON ABI in dist/contracts and the
// browser apps' bundles in dist/web/bundles. Run through
// `npm run build` (which compiles the contracts and generates the Prisma client first); `npm pack`
// runs it by itself. It refuses to package an artifact whose ABI differs from the one the SDK is typed
// with, so the shipped bytecode and bindings always agree.
import { execFileSync } from "node:child_process";
import { isDeepStrictEqual } from "node:util";
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { buildBundle, prebuiltPath } from "../src/web/bundle.js";

const artifactPath = "artifacts/contracts/PaychanEscrow.sol/PaychanEscrow.json";
const abiPath = "src/contracts/PaychanEscrow.abi.json";

await rm("dist", { recursive: true, force: true });
execFileSync("node_modules/.bin/tsc", ["-p", "tsconfig.build.json"], { stdio: "inherit" });

const artifact = JSON.parse(await readFile(artifactPath, "utf8"));
const abi = JSON.parse(await readFile(abiPath, "utf8"));
if (!isDeepStrictEqual(artifact.abi, abi)) {
  throw new Error(`${abiPath} differs from the compiled escrow's ABI: run \`npm run abi\`.`);
}
// Hardhat's build-info id and input source name point into this repository's build cache; a user of
// the artifact has neither, so they are left out.
const { buildInfoId: _buildInfoId, inputSourceName: _inputSourceName, ...shipped } = artifact;
await writeFile("dist/contracts/PaychanEscrow.json", `${JSON.stringify(shipped, null, 2)}\n`);
await copyFile(abiPath, "dist/contracts/PaychanEscrow.abi.json");
await chmod("dist/cli.js", 0o755);
// The browser apps, bundled once here so that an installed package serves them without esbuild.
for (const entry of ["wallet/wallet.ts", "articles/articles.ts", "console/console.ts"]) {
  const built = await buildBundle(entry);
  const base = prebuiltPath(entry).pathname.replace(`${process.cwd()}/src/`, "dist/");
  await mkdir(dirname(base), { recursive: true });
  await writeFile(`${base}.js`, built.js);
  if (built.css) await writeFile(`${base}.css`, built.css);
}
console.log("built dist/");
