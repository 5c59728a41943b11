// The environment is paychan's whole configuration, so it must be discoverable from the command line:
// `paychan --help` and `paychan config` list every variable of the zod schema with its meaning and
// default (generated from the schema, so a variable without a meaning fails here), and secrets and
// credentials never appear, only whether they are set.
import { expect } from "chai";
import { generatePrivateKey } from "viem/accounts";
import { configSchema, configVariables, describeConfig, loadConfig, redactUrl } from "../../src/config.js";
import { runCli } from "./helpers.js";

describe("configuration on the command line", function () {
  it("gives every variable of the schema a meaning, and `paychan --help` lists each with its default", async () => {
    const variables = configVariables();
    expect(variables.map((v) => v.name)).to.deep.equal(Object.keys(configSchema.shape));
    for (const v of variables) expect(v.description, v.name).to.have.length.above(10);
    expect(variables.filter((v) => v.secret).map((v) => v.name)).to.have.members(["OPERATOR_TOKEN", "SETTLER_PRIVATE_KEY", "PAYEE_PRIVATE_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "CREDIT_NOTICE_WEBHOOK_SECRET"]);

    const help = await runCli(["--help"], {});
    expect(help.code, help.stderr).to.equal(0);
    const text = help.stdout.replace(/\s+/g, " ");
    for (const v of variables) {
      expect(text, v.name).to.include(`${v.name} ${v.description}`);
      if (v.default !== undefined && !v.secret) expect(text, v.name).to.match(new RegExp(`${v.name} [^\\n]*\\(default `));
    }
    expect(text).to.include("POLL_INTERVAL_MS how often `work` reads the chain and runs a settlement round (default 2000)");
  });

  it("`paychan config` shows each value, secrets only as set or not set, URLs without credentials, and exits 2 on an invalid one", async () => {
    const key = generatePrivateKey();
    const run = await runCli(["config"], {
      SETTLER_PRIVATE_KEY: key,
      DATABASE_URL: "postgres://paychan:hunter2@db.internal:5432/books",
      RPC_URL: "https://eth.example/v2/abcdefghijklmnopqrstuvwxyz012345",
      PORT: "8080",
    });
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.include("SETTLER_PRIVATE_KEY=(set)");
    expect(run.stdout).to.include("OPERATOR_TOKEN=(not set)");
    expect(run.stdout).to.include("DATABASE_URL=postgres://paychan:***@db.internal:5432/books  [default pglite:memory]");
    expect(run.stdout).to.include("RPC_URL=https://eth.example/v2/***");
    expect(run.stdout).to.include("PORT=8080  [default 4021]");
    expect(run.stdout).to.include("CONFIRMATIONS=(not set)\n    blocks on top before an event or a claim counts; unset: 0 on a dev chain");
    for (const secret of [key.slice(2), "hunter2", "abcdefghijklmnopqrstuvwxyz012345"]) expect(run.stdout).not.to.include(secret);

    const invalid = await runCli(["config"], { PORT: "eighty", SETTLER_PRIVATE_KEY: "0x1234" });
    expect(invalid.code).to.equal(2);
    expect(invalid.stdout).to.include("PORT: ");
    expect(invalid.stdout).to.include("SETTLER_PRIVATE_KEY: must be a 0x-prefixed 32-byte hex private key");
    expect(invalid.stdout).not.to.include("0x1234");
  });

  it("describes a configuration for a log line without its secrets", () => {
    const key = generatePrivateKey();
    const shown = describeConfig(loadConfig({ SETTLER_PRIVATE_KEY: key, OPERATOR_TOKEN: "a-long-operator-token", DATABASE_URL: "postgres://u:pw@h/db" }));
    expect(shown).to.include({ SETTLER_PRIVATE_KEY: "(set)", OPERATOR_TOKEN: "(set)", PAYEE_PRIVATE_KEY: "(not set)", DATABASE_URL: "postgres://u:***@h/db" });
    expect(JSON.stringify(shown)).not.to.include(key.slice(2)).and.not.to.include("a-long-operator-token");
  });

  it("redacts passwords, query values and key-like path segments from URLs, and leaves plain ones alone", () => {
    expect(redactUrl("http://127.0.0.1:8545")).to.equal("http://127.0.0.1:8545");
    expect(redactUrl("postgres://u:p%40ss@h:5432/db")).to.equal("postgres://u:***@h:5432/db");
    expect(redactUrl("https://x.io/v3/0123456789abcdef0123456789abcdef")).to.equal("https://x.io/v3/***");
    expect(redactUrl("https://x.io/rpc?apikey=secret&chain=1")).to.equal("https://x.io/rpc?apikey=***&chain=***");
    expect(redactUrl("pglite:/var/lib/paychan")).to.equal("pglite:/var/lib/paychan");
    expect(redactUrl("postgres://u:pw@h/paychan_books_of_the_year_2026")).to.equal("postgres://u:***@h/paychan_books_of_the_year_2026");
  });
});
