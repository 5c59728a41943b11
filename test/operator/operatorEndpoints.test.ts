// The operator endpoints (GET /reconcile, and what later mounts beside it) are not the public
// gateway's: they listen on OPERATOR_HOST (loopback by default), need OPERATOR_TOKEN as a bearer token
// when one is set, and refuse to start reachable from other machines without one.
import { expect } from "chai";
import { createPublicClient, http, type PublicClient } from "viem";
import { ConfigError } from "../../src/config.js";
import { listen, type Listener } from "../../src/ops/http.js";
import { isLoopback } from "../../src/ops/operatorApp.js";
import { createOperatorEndpoints } from "../../src/server.js";
import { serveProvider } from "../helpers/rpcServer.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import { deployEscrow, startTestPaychan, type EscrowFixture, type TestPaychan } from "../settlement/helpers.js";
import { runCli } from "./helpers.js";

const TOKEN = "correct-horse-battery-staple-42";

describe("operator endpoints [postgres]", function () {
  let chain: EscrowFixture;
  let database: { url: string; drop(): Promise<void> };
  const opened: TestPaychan[] = [];
  const listeners: Listener[] = [];

  before(async () => {
    chain = await deployEscrow();
    database = await createPostgresDatabase();
  });
  after(async () => {
    await Promise.all(listeners.map((l) => l.close()));
    for (const test of opened) await test.paychan.close();
    await database.drop();
  });

  async function operatorUrl(env: Record<string, string>): Promise<string> {
    const test = await startTestPaychan(chain, database.url, { env });
    opened.push(test);
    const listener = await listen(createOperatorEndpoints(test.paychan), { host: "127.0.0.1", port: 0, portVariable: "OPERATOR_PORT" });
    listeners.push(listener);
    return listener.url;
  }

  it("serves the books on loopback without a token when none is configured", async () => {
    const url = await operatorUrl({});
    const response = await fetch(`${url}/reconcile`);
    expect(response.status).to.equal(200);
    expect(await response.json()).to.have.property("ok", true);
  });

  it("with OPERATOR_TOKEN set, answers 401 to a missing, wrong or differently shaped token and 200 to the right bearer token", async () => {
    const url = await operatorUrl({ OPERATOR_TOKEN: TOKEN });
    for (const authorization of [undefined, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Basic ${TOKEN}`, TOKEN, "Bearer "]) {
      const response = await fetch(`${url}/reconcile`, { headers: authorization === undefined ? {} : { authorization } });
      expect(response.status, String(authorization)).to.equal(401);
      expect(response.headers.get("www-authenticate")).to.match(/^Bearer/);
      expect(await response.json()).to.have.property("error", "unauthorized");
    }
    const ok = await fetch(`${url}/reconcile`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).to.equal(200);
    expect(await ok.json()).to.have.property("ok", true);
  });

  it("refuses to bind beyond loopback without a token, in the app and in `paychan serve` (exit 2, naming OPERATOR_TOKEN)", async () => {
    const test = await startTestPaychan(chain, database.url, { env: { OPERATOR_HOST: "0.0.0.0" } });
    opened.push(test);
    expect(() => createOperatorEndpoints(test.paychan)).to.throw(ConfigError, "OPERATOR_TOKEN");

    const run = await runCli(["serve"], { OPERATOR_HOST: "0.0.0.0", PORT: "0", OPERATOR_PORT: "0" });
    expect(run.code, run.stderr).to.equal(2);
    expect(run.stderr).to.include("OPERATOR_HOST=0.0.0.0 is reachable from other machines, so the operator endpoints need a token: set OPERATOR_TOKEN");
  });

  it("answers 503 with the reason as JSON, not a stack trace, when the chain does not answer", async () => {
    let down = false;
    const node = await serveProvider({
      request: (args) => (down ? Promise.reject(Object.assign(new Error("the node is down"), { code: -32603 })) : chain.connection.provider.request(args as never)),
    });
    try {
      const publicClient = createPublicClient({ transport: http(node.url, { retryCount: 0 }) }) as PublicClient;
      const test = await startTestPaychan(chain, database.url, { publicClient });
      opened.push(test);
      const listener = await listen(createOperatorEndpoints(test.paychan), { host: "127.0.0.1", port: 0, portVariable: "OPERATOR_PORT" });
      listeners.push(listener);
      down = true;
      const response = await fetch(`${listener.url}/reconcile`);
      expect(response.status).to.equal(503);
      const body = (await response.json()) as { error: string; message: string };
      expect(body.error).to.equal("unavailable");
      expect(body.message).to.include("the node is down").and.not.to.match(/\n\s+at /);
    } finally {
      await node.close();
    }
  });

  it("knows loopback addresses from the others", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"]) expect(isLoopback(host), host).to.equal(true);
    for (const host of ["0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "example.com", "128.0.0.1"]) expect(isLoopback(host), host).to.equal(false);
  });
});
