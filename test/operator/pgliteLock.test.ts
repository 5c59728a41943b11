// PGlite is Postgres inside one process: two processes on one directory silently corrupt each other
// (payments served with a receipt vanished). The first opener locks the directory; any other gets an
// error naming the directory and the holder, and a holder killed with -9 does not lock it for ever.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openDatabase } from "../../src/ledger/db.js";
import { DirectoryLockedError } from "../../src/ledger/directoryLock.js";
import { deployEscrow, type EscrowFixture } from "../helpers/escrow.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";
import { Cli, runCli } from "./helpers.js";

describe("PGlite on disk: one process at a time", function () {
  this.timeout(120_000);
  let dir: string;

  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), "paychan-lock-")), "books");
  });
  afterEach(async () => {
    await rm(join(dir, ".."), { recursive: true, force: true });
  });

  it("refuses a second opener in the same process, naming the directory and the holder, and lets it in once the first closed", async () => {
    const first = await openDatabase({ url: `pglite:${dir}` });
    const refused = await openDatabase({ url: `pglite:${dir}` }).then(() => undefined, (e: Error) => e);
    expect(refused).to.be.instanceOf(DirectoryLockedError);
    expect(refused!.message).to.include(`The database directory ${dir} is in use by process ${process.pid} on `);
    await first.close();
    expect(existsSync(`${dir}.lock`), "closing releases the lock").to.equal(false);
    const second = await openDatabase({ url: `pglite:${dir}` });
    await second.close();
  });

  it("does not take over a lock held from another host, which it cannot check", async () => {
    await writeFile(`${dir}.lock`, JSON.stringify({ pid: 1, host: "other-host.example", command: "src/cli.ts serve", startedAt: "2020-01-01T00:00:00.000Z" }));
    const refused = await openDatabase({ url: `pglite:${dir}` }).then(() => undefined, (e: Error) => e);
    expect(refused).to.be.instanceOf(DirectoryLockedError);
    expect(refused!.message).to.include("in use by process 1 on other-host.example (src/cli.ts serve)").and.to.include(`delete ${dir}.lock`);
  });

  describe("between processes", function () {
    let chain: EscrowFixture;
    let rpc: RpcServer;
    before(async () => {
      chain = await deployEscrow();
      rpc = await serveProvider(chain.connection.provider);
    });
    after(async () => rpc.close());

    it("a second paychan command on the directory `serve` holds fails naming it; after kill -9 of serve the next one takes the stale lock over", async () => {
      const env = {
        DATABASE_URL: `pglite:${dir}`,
        RPC_URL: rpc.url,
        ESCROW_ADDRESS: chain.escrow.address,
        PAYEE_ADDRESS: privateKeyToAccount(generatePrivateKey()).address,
        PORT: "0",
        OPERATOR_PORT: "0",
      };
      const serve = new Cli(["serve"], env);
      try {
        await serve.waitFor(/paychan gateway on/);
        const second = await runCli(["balances"], env);
        expect(second.code, second.stderr).to.equal(1);
        expect(second.stderr).to.match(new RegExp(`The database directory ${dir} is in use by process ${serve.pid} on \\S+ \\([^)]*src/cli.ts serve\\)`));
        expect(second.stderr).to.include("use Postgres (DATABASE_URL=postgres://…) to run several paychan processes");
      } finally {
        await serve.stop("SIGKILL");
      }
      expect(existsSync(`${dir}.lock`), "kill -9 leaves the lock file behind").to.equal(true);
      const after = await runCli(["balances"], env);
      expect(after.code, after.stderr).to.equal(0);
      expect(after.stdout).to.include("trial balance:");
      expect(existsSync(`${dir}.lock`), "and the next holder releases it on exit").to.equal(false);
    });
  });
});
