// Start-up as an operator meets it: `paychan serve` and friends in their own process, against a real
// chain over HTTP, and each way the surroundings can be wrong — a port in use, a Postgres or an RPC
// that never answers or is down, an escrow address that is not an escrow, a PGlite path that is not a
// directory — ends the process at once with a non-zero code and a sentence naming what to fix.
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { connect, createServer, type AddressInfo, type Server } from "node:net";
import { expect } from "chai";
import { getAddress, toHex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { ConfigError, StartupError, loadConfig } from "../../src/config.js";
import { startPaychan } from "../../src/server.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { deployEscrow, type EscrowFixture } from "../helpers/escrow.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";
import { Cli, runCli } from "./helpers.js";

const payee = privateKeyToAccount(generatePrivateKey()).address;

/** A TCP server that accepts connections and never says a word: a hung Postgres or RPC node. */
async function silentServer(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<import("node:net").Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** One raw HTTP/1.1 request (fetch refuses oversized headers itself), read until the server closes. */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on("data", (c) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      resolve({ status: Number(text.split(" ")[1]), body: text.slice(text.indexOf("\r\n\r\n") + 4) });
    });
    const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
    socket.end(`GET /api/quote HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n${lines.join("")}\r\n`);
  });
}

describe("start-up and its failures, in the CLI's own process", function () {
  this.timeout(90_000);
  let chain: EscrowFixture;
  let rpc: RpcServer;
  let env: Record<string, string>;

  before(async () => {
    chain = await deployEscrow();
    rpc = await serveProvider(chain.connection.provider);
    env = { RPC_URL: rpc.url, ESCROW_ADDRESS: chain.escrow.address, PAYEE_ADDRESS: payee, OPERATOR_PORT: "0" };
  });
  after(async () => rpc.close());

  it("serves the gateway and, on a listener of its own, the operator endpoints; answers an oversized header 400 header_too_large; stops on SIGINT with 0", async () => {
    const database = await createPostgresDatabase();
    const serve = new Cli(["serve"], { ...env, PORT: "0", DATABASE_URL: database.url });
    try {
      const [, gateway] = await serve.waitFor(/paychan gateway on (http:\/\/\S+):/);
      const [, operator] = await serve.waitFor(/operator endpoints on (http:\/\/\S+):/);
      expect(new URL(operator!).hostname).to.equal("127.0.0.1");
      expect((await fetch(`${gateway}/reconcile`)).status, "the public app does not serve the books").to.equal(404);
      const books = await fetch(`${operator}/reconcile`);
      expect(books.status).to.equal(200);
      expect(await books.json()).to.have.property("ok", true);

      const oversized = await rawGet(gateway!, { "PAYMENT-SIGNATURE": "A".repeat(20 * 1024) });
      expect(oversized.status, "Node's own answer would be a bare 431").to.equal(400);
      expect(JSON.parse(oversized.body)).to.have.property("error", "header_too_large");
      expect((await fetch(`${gateway}/api/quote`)).status, "the server still serves").to.equal(402);
    } finally {
      const run = await serve.stop("SIGINT");
      await database.drop();
      expect(run.code, run.stderr).to.equal(0);
    }
  });

  it("exits 1 at once, naming PORT, when the port is taken (it used to print its banner and exit 0 later)", async () => {
    const blocker = createHttpServer();
    await new Promise<void>((resolve) => blocker.listen(0, resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const run = await runCli(["serve"], { ...env, PORT: String(port) });
      expect(run.code, run.stdout + run.stderr).to.equal(1);
      expect(run.stderr).to.include(`port ${port}: the port is already in use`).and.to.include("PORT");
      expect(run.stdout).not.to.include("paychan gateway on");
    } finally {
      await new Promise((resolve) => (blocker as HttpServer).close(resolve));
    }
  });

  it("gives up on a Postgres that accepts and never answers after DATABASE_CONNECT_TIMEOUT_MS, naming the URL without its password", async () => {
    const postgres = await silentServer();
    try {
      const url = `postgres://paychan:hunter2@127.0.0.1:${postgres.port}/books`;
      const run = await runCli(["balances"], { ...env, DATABASE_URL: url, DATABASE_CONNECT_TIMEOUT_MS: "300" });
      expect(run.code, run.stderr).to.equal(1);
      expect(run.stderr).to.include(`Postgres at postgres://paychan:***@127.0.0.1:${postgres.port}/books (DATABASE_URL) did not answer within 300 ms (DATABASE_CONNECT_TIMEOUT_MS)`);
      expect(run.stderr).not.to.include("hunter2");
    } finally {
      await postgres.close();
    }
  });

  it("gives up on an RPC that never answers after RPC_TIMEOUT_MS, and names an RPC that is down, hiding an API key in the URL", async () => {
    const node = await silentServer();
    const down = await closedPort();
    try {
      const key = "abcdefghijklmnopqrstuvwxyz012345";
      const [silent, refused] = await Promise.all([
        runCli(["balances"], { ...env, RPC_URL: `http://127.0.0.1:${node.port}/v2/${key}`, RPC_TIMEOUT_MS: "300" }),
        runCli(["serve"], { ...env, RPC_URL: `http://127.0.0.1:${down}`, PORT: "0" }),
      ]);
      expect(silent.code, silent.stderr).to.equal(1);
      expect(silent.stderr).to.include(`the chain at http://127.0.0.1:${node.port}/v2/*** (RPC_URL) did not answer within 300 ms (RPC_TIMEOUT_MS)`);
      expect(silent.stderr).not.to.include(key);
      expect(refused.code, refused.stderr).to.equal(1);
      expect(refused.stderr).to.include(`Cannot reach the chain at http://127.0.0.1:${down} (RPC_URL): connection refused (is the node running?).`);
    } finally {
      await node.close();
    }
  });

  it("refuses an ESCROW_ADDRESS without code, a contract that is not the escrow, and an escrow of another chain", async () => {
    const start = (overrides: Record<string, string>, publicClient = chain.publicClient as PublicClient) =>
      startPaychan(loadConfig({ ...env, ...overrides }), { publicClient }).then(
        async (paychan) => {
          await paychan.close();
          throw new Error("started");
        },
        (error: Error) => error,
      );
    const eoa = getAddress(toHex(7, { size: 20 }));
    const noCode = await start({ ESCROW_ADDRESS: eoa });
    expect(noCode).to.be.instanceOf(StartupError);
    expect(noCode.message).to.include(`ESCROW_ADDRESS ${eoa} has no contract on chain ${chain.location.chainId}`);
    const token = await start({ ESCROW_ADDRESS: chain.token.address });
    expect(token).to.be.instanceOf(StartupError);
    expect(token.message).to.include("is a contract but not a PaychanEscrow");

    // A node that reports another chain than the one the escrow was deployed on.
    const elsewhere = await serveProvider({
      request: (args) => (args.method === "eth_chainId" ? Promise.resolve("0x539") : chain.connection.provider.request(args as never)),
    });
    try {
      const run = await runCli(["reconcile"], { ...env, RPC_URL: elsewhere.url });
      expect(run.code, run.stderr).to.equal(1);
      expect(run.stderr).to.include(`ESCROW_ADDRESS ${getAddress(chain.escrow.address)} signs for chain ${chain.location.chainId}, but RPC_URL serves chain 1337.`);
    } finally {
      await elsewhere.close();
    }
  });

  it("refuses an EXACT_TOKEN that is no EIP-3009 token or a limit of $0, and `serve` with EXACT_TOKEN on PGlite, naming the variables", async () => {
    const start = (overrides: Record<string, string>) =>
      startPaychan(loadConfig({ ...env, ...overrides }), { publicClient: chain.publicClient as PublicClient }).then(
        async (paychan) => {
          await paychan.close();
          throw new Error("started");
        },
        (error: Error) => error,
      );
    const plain = await start({ EXACT_TOKEN: chain.token.address });
    expect(plain).to.be.instanceOf(StartupError);
    expect(plain.message).to.include(`EXACT_TOKEN ${getAddress(chain.token.address)} on chain ${chain.location.chainId} does not implement EIP-3009`);
    const eip3009 = await chain.viem.deployContract("Eip3009Token");
    const nothing = await start({ EXACT_TOKEN: eip3009.address, EXACT_MAX_UNSETTLED_USD: "0" });
    expect(nothing).to.be.instanceOf(ConfigError);
    expect(nothing.message).to.include("EXACT_MAX_UNSETTLED_USD");

    const run = await runCli(["serve"], { ...env, PORT: "0", EXACT_TOKEN: eip3009.address, DATABASE_URL: "pglite:memory" });
    expect(run.code, run.stderr).to.equal(2);
    expect(run.stderr).to.match(/EXACT_TOKEN needs `paychan work` running beside `serve`.*use Postgres \(DATABASE_URL=postgres:/);
  });

  it("refuses pglite:/dev/null with a sentence instead of an unhandled rejection", async () => {
    const run = await runCli(["balances"], { ...env, DATABASE_URL: "pglite:/dev/null" });
    expect(run.code, run.stderr).to.equal(1);
    expect(run.stderr).to.include("paychan: DATABASE_URL=pglite:/dev/null: /dev/null is not a directory.");
    expect(run.stderr).not.to.match(/unhandled|ErrnoError|\n\s+at /i);
  });
});
