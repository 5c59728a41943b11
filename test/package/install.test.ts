// Proof from outside the repository: `npm pack`, the tarball installed into a fresh project in a
// temporary directory, and there, as a seller, a buyer and a contract developer would use it:
// - the CLI runs (`paychan --help`) and deploys the escrow from the artifact inside the package;
// - the README's seller (a plain-Node Express app mounting `paywall()`) and buyer (a plain-Node script
//   paying it with `createPaidFetch`), read from README.md's code blocks, run under Node 22 and Node 20
//   against that escrow on an in-process chain, the seller migrating its database from the package;
// - `tsc` type-checks them, and the browser buyer page, against the shipped declarations;
// - the browser page bundles for the browser without server code;
// - `import "paychan/contracts/PaychanEscrow.sol"` compiles, through the package's exports, to the
//   bytecode of the shipped artifact.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { network } from "hardhat";
import { getAddress, parseEther, toHex, type Address } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { bundleForBrowser, kib } from "../../scripts/bundleSize.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));
const manifest = JSON.parse(await readFile(join(repo, "package.json"), "utf8")) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
/** The seller's price for GET /api/quote in the README's example. */
const PRICE = 1_000_000_000_000n;
/** The most the browser bundle of everything `paychan/client` exports may weigh, gzipped. */
const CLIENT_GZIP_BUDGET = 64 * 1024;

type Run = { code: number; stdout: string; stderr: string };

/**
 * Runs a command to completion. It rejects with the command's output when the command outlives
 * `timeoutMs`, or exits non-zero unless `allowFailure`.
 */
function run(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number; allowFailure?: boolean }): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd: options.cwd, env: options.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      if (error && (error.killed || code < 0 || !options.allowFailure)) reject(new Error(`${command} ${args.join(" ")} failed (${error.message}):\n${stdout}\n${stderr}`));
      else resolve({ code, stdout, stderr });
    });
  });
}

/** npm as a user runs it: without the npm_* variables of the `npm test` that started this process. */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) && key !== "INIT_CWD"));
}

/** Finds a Node binary of the given major version: this repository's `node` package, or the machine's. */
async function findNode(major: number): Promise<string> {
  const candidates = [join(repo, "node_modules/.bin/node"), process.execPath, "/usr/bin/node", "/usr/local/bin/node"];
  const which = await run("which", ["-a", "node"], { cwd: repo, env: process.env }).catch(() => ({ stdout: "" }));
  candidates.push(...which.stdout.split("\n").filter(Boolean));
  for (const candidate of candidates) {
    const version = await run(candidate, ["--version"], { cwd: repo, env: process.env }).then((r) => r.stdout.trim(), () => "");
    if (version.startsWith(`v${major}.`)) return candidate;
  }
  throw new Error(`No Node ${major} found (looked at ${candidates.join(", ")}): the package must be proven under Node ${major}.`);
}

/** The README's code blocks marked with a file name (```js seller.js), by name. */
async function readmeFiles(): Promise<Map<string, string>> {
  const readme = await readFile(join(repo, "README.md"), "utf8");
  return new Map([...readme.matchAll(/^```js (\S+)\n([\s\S]*?)^```$/gm)].map((m) => [m[1]!, m[2]!]));
}

describe("the packed package, installed into a project outside the repository", function () {
  const processes = new Set<ChildProcess>();
  /** The temporary directory: the tarball, and the project that installs it. */
  let root: string | undefined;
  let scratch: string;
  let tarball: { filename: string; size: number; unpackedSize: number; entryCount: number; files: { path: string }[] };
  let node22: string;
  let node20: string;
  let rpc: RpcServer;
  let escrow: Address;
  /** `tsc` over the scratch project, started early: it runs while the seller and the buyer do. */
  let typeCheck: Promise<Run>;
  const payeeKey = generatePrivateKey();
  const payee = privateKeyToAccount(payeeKey);
  const payerKey = generatePrivateKey();
  let started = 0;

  /** Runs `args` with `node` in the scratch project, with only PATH, HOME and `env` in its environment. */
  const node = (binary: string, args: string[], env: Record<string, string> = {}) =>
    run(binary, args, { cwd: scratch, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } });

  /** Starts the README's seller with `binary`; resolves with its URL once it listens. */
  function startSeller(binary: string): Promise<{ url: string; child: ChildProcess }> {
    const child = spawn(binary, ["seller.js"], {
      cwd: scratch,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        RPC_URL: rpc.url,
        ESCROW_ADDRESS: escrow,
        PAYEE_ADDRESS: payee.address,
        DATABASE_URL: `pglite:${join(scratch, "books")}`,
        PORT: "0",
      },
    });
    processes.add(child);
    child.once("exit", () => processes.delete(child));
    return new Promise((resolve, reject) => {
      let output = "";
      const timer = setTimeout(() => reject(new Error(`the seller did not start within 60 s:\n${output}`)), 60_000);
      const read = (chunk: Buffer) => {
        output += chunk.toString();
        const port = /selling on .*port: (\d+)/.exec(output)?.[1];
        if (port) {
          clearTimeout(timer);
          resolve({ url: `http://127.0.0.1:${port}`, child });
        }
      };
      child.stdout.on("data", read);
      child.stderr.on("data", read);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the seller exited with ${code}:\n${output}`));
      });
    });
  }

  async function stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  }

  const buy = (binary: string, seller: string) =>
    node(binary, ["buyer.js"], { PAYER_PRIVATE_KEY: payerKey, RPC_URL: rpc.url, RESOURCE_URL: `${seller}/api/quote` });

  before(async function () {
    this.timeout(600_000);
    started = Date.now();
    [node22, node20] = await Promise.all([findNode(22), findNode(20)]);
    root = await mkdtemp(join(tmpdir(), "paychan-package-"));

    // The package, built fresh and packed as `npm publish` would pack it.
    await run("npm", ["run", "build"], { cwd: repo, env: npmEnv(), timeoutMs: 300_000 });
    const packed = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", root], { cwd: repo, env: npmEnv() });
    tarball = (JSON.parse(packed.stdout) as (typeof tarball)[])[0]!;

    // A fresh project that depends on the tarball, as a seller and a buyer would set one up.
    scratch = join(root, "project");
    await mkdir(scratch);
    await writeFile(join(scratch, "package.json"), JSON.stringify({ name: "scratch", private: true, type: "module" }, null, 2));
    const deps = { express: manifest.dependencies.express, viem: manifest.dependencies.viem, "@types/express": manifest.devDependencies["@types/express"], "@types/node": manifest.devDependencies["@types/node"] };
    await run(
      "npm",
      ["install", "--prefer-offline", "--no-audit", "--no-fund", join(root, tarball.filename), ...Object.entries(deps).map(([name, version]) => `${name}@${version}`)],
      { cwd: scratch, env: npmEnv(), timeoutMs: 300_000 },
    );

    const files = await readmeFiles();
    for (const name of ["seller.js", "buyer.js"]) {
      if (!files.has(name)) throw new Error(`README.md has no \`\`\`js ${name} block: the package test runs the README's examples.`);
      await writeFile(join(scratch, name), files.get(name)!);
    }
    await copyFile(join(repo, "examples/browser/app.ts"), join(scratch, "browser.ts"));
    await writeFile(
      join(scratch, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          lib: ["ES2023", "DOM"],
          types: ["node"],
          strict: true,
          allowJs: true,
          checkJs: true,
          noEmit: true,
          skipLibCheck: false,
        },
        include: ["seller.js", "buyer.js", "browser.ts"],
      }),
    );
    typeCheck = run(join(repo, "node_modules/.bin/tsc"), ["-p", "."], { cwd: scratch, env: process.env, timeoutMs: 300_000, allowFailure: true });
    typeCheck.catch(() => {}); // awaited by its test; this only keeps a failure from going unhandled first

    // A chain over HTTP, as `hardhat node` would serve it; the seller (payee) and the payer get ETH.
    const { provider } = await network.create();
    rpc = await serveProvider(provider);
    for (const address of [payee.address, privateKeyToAccount(payerKey).address]) {
      await provider.request({ method: "hardhat_setBalance", params: [address, toHex(parseEther("10"))] });
    }

    // The operator's first step, with the installed CLI: it deploys the artifact inside the package.
    const deployed = await node(node20, ["node_modules/.bin/paychan", "deploy"], { RPC_URL: rpc.url, SETTLER_PRIVATE_KEY: payeeKey });
    const address = /^ESCROW_ADDRESS=(0x[0-9a-fA-F]{40})$/m.exec(deployed.stdout)?.[1];
    if (!address) throw new Error(`paychan deploy printed no ESCROW_ADDRESS:\n${deployed.stdout}\n${deployed.stderr}`);
    escrow = getAddress(address);
  });

  after(async function () {
    this.timeout(60_000);
    await Promise.all([...processes].map(stop));
    await rpc?.close();
    if (root) await rm(root, { recursive: true, force: true });
    console.log(
      `      package: ${tarball ? `${kib(tarball.size)} packed, ${kib(tarball.unpackedSize)} unpacked, ${tarball.entryCount} files; ` : ""}` +
        `this suite took ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
  });

  it("ships the build, the Solidity source and the migrations, and no sources, tests or mocks", () => {
    const paths = tarball.files.map((f) => f.path);
    for (const path of ["dist/cli.js", "dist/client/index.js", "dist/client/index.d.ts", "dist/generated/prisma/client.js", "dist/contracts/PaychanEscrow.json", "dist/contracts/PaychanEscrow.abi.json", "contracts/PaychanEscrow.sol", "prisma/migrations/migration_lock.toml", "README.md", "CHANGELOG.md"]) {
      expect(paths).to.include(path);
    }
    expect(paths.filter((p) => /^(src|test|scripts|artifacts|cache)\/|^contracts\/mocks\/|\.test\.|\.t\.sol$/.test(p))).to.deep.equal([]);
  });

  it("runs the installed CLI under Node 22 and Node 20", async function () {
    this.timeout(60_000);
    for (const binary of [node22, node20]) {
      const help = await node(binary, ["node_modules/.bin/paychan", "--help"]);
      expect(help.stdout).to.match(/Usage: paychan/).and.match(/deploy/);
    }
    const npx = await run("npx", ["--no-install", "paychan", "--help"], { cwd: scratch, env: npmEnv() });
    expect(npx.stdout).to.match(/Usage: paychan/);
  });

  it("serves the README's seller under Node 22 and pays it with the README's buyer under Node 20, then Node 22", async function () {
    this.timeout(180_000);
    const seller = await startSeller(node22);
    const first = await buy(node20, seller.url);
    expect(first.stdout).to.include(`paid ${PRICE}, ${PRICE} in all`).and.match(/^200 \{ quote: '.+' \}$/m);
    // The second run finds the channel and the accepted total on disk: no new channel, the next voucher.
    const second = await buy(node22, seller.url);
    expect(second.stdout).to.include(`paid ${PRICE}, ${2n * PRICE} in all`);
    await stop(seller.child);
  });

  it("keeps the seller's books across a restart under Node 20: the buyer is charged one price, not the total", async function () {
    this.timeout(180_000);
    const seller = await startSeller(node20);
    const third = await buy(node20, seller.url);
    expect(third.stdout).to.include(`paid ${PRICE}, ${3n * PRICE} in all`);
    await stop(seller.child);
  });

  it("type-checks the README's seller and buyer, and the browser buyer page, against the shipped declarations", async function () {
    this.timeout(300_000);
    const { code, stdout: output } = await typeCheck;
    const errors = output.split("\n").filter((line) => /error TS\d+/.test(line));
    // Other packages' declarations are theirs to fix (@electric-sql/pglite's need Emscripten's types);
    // any error in our examples or in paychan's own declarations fails.
    const ours = errors.filter((line) => !line.startsWith("node_modules/") || line.startsWith("node_modules/paychan/"));
    expect(ours, output).to.deep.equal([]);
    if (code !== 0) expect(errors, `tsc exited ${code} without naming an error:\n${output}`).to.not.be.empty;
  });

  it("bundles the browser buyer page and all of paychan/client for the browser, without server code", async function () {
    this.timeout(60_000);
    const page = await bundleForBrowser({ file: "browser.ts" }, scratch);
    const fromPaychan = page.inputs.filter((input) => input.includes("paychan/"));
    expect(fromPaychan).to.not.be.empty;
    expect(fromPaychan.filter((input) => !input.startsWith("node_modules/paychan/dist/")), "bundled from outside the installed package").to.deep.equal([]);
    const client = await bundleForBrowser({ contents: `export * from "paychan/client";` }, scratch);
    expect(client.gzipped, `paychan/client is ${kib(client.gzipped)} gzipped: if that growth is meant, raise CLIENT_GZIP_BUDGET and the README's figure`).to.be.below(CLIENT_GZIP_BUDGET);
    console.log(`      paychan/client for the browser: ${kib(client.bytes)} minified, ${kib(client.gzipped)} gzipped`);
  });

  it("compiles import \"paychan/contracts/PaychanEscrow.sol\" through the package's exports to the shipped artifact's bytecode", async function () {
    this.timeout(120_000);
    const require = createRequire(import.meta.url);
    const solc = require("solc") as { compile(input: string, callbacks: { import(path: string): { contents: string } | { error: string } }): string };
    const project = createRequire(join(scratch, "package.json"));
    const fromPaychan = createRequire(project.resolve("paychan/contracts/PaychanEscrow.sol"));
    const load = (path: string) => {
      try {
        // As Hardhat resolves npm imports: the project's dependencies, then the imported package's own.
        return { contents: readFileSync(path.startsWith("paychan/") ? project.resolve(path) : fromPaychan.resolve(path), "utf8") };
      } catch (error) {
        return { error: String(error) };
      }
    };
    const input = {
      language: "Solidity",
      sources: { "contracts/Mine.sol": { content: `pragma solidity ^0.8.24;\nimport "paychan/contracts/PaychanEscrow.sol";\n` } },
      settings: { optimizer: { enabled: true, runs: 10_000 }, evmVersion: "cancun", outputSelection: { "*": { "*": ["evm.deployedBytecode.object"] } } },
    };
    const output = JSON.parse(solc.compile(JSON.stringify(input), { import: load })) as {
      errors?: { severity: string; formattedMessage: string }[];
      contracts: Record<string, Record<string, { evm: { deployedBytecode: { object: string } } }>>;
    };
    expect((output.errors ?? []).filter((e) => e.severity === "error").map((e) => e.formattedMessage)).to.deep.equal([]);
    const compiled = output.contracts["paychan/contracts/PaychanEscrow.sol"]!.PaychanEscrow!.evm.deployedBytecode.object;
    const artifact = JSON.parse(await readFile(join(scratch, "node_modules/paychan/dist/contracts/PaychanEscrow.json"), "utf8")) as { deployedBytecode: string };
    // The metadata hash at the end names the source files, which differ; the code before it must not.
    const code = (hex: string) => hex.replace(/^0x/, "").slice(0, -(parseInt(hex.slice(-4), 16) + 2) * 2);
    expect(code(compiled)).to.equal(code(artifact.deployedBytecode));
  });
});
