#!/usr/bin/env -S npx tsx
// paychan's operator command line. Every command reads the same configuration as the server (the
// environment, parsed by src/config.ts) and assembles paychan through the composition root.
//
//   paychan deploy        deploy the escrow with SETTLER_PRIVATE_KEY
//   paychan serve         the gateway with a sample paywalled route (GET /api/quote), and GET /reconcile
//   paychan work          the chain watcher and the settlement worker, until interrupted
//   paychan settle-now    claim every accepted voucher now and wait until the ledger mirrors it
//   paychan reconcile     compare chain, ledger and voucher store; exits 1 when money is missing
//   paychan balances      the ledger's balances by kind, and its trial balance
//   paychan channels      our channels and what is accepted, claimed and unclaimed on each
//   paychan dashboard     what the operator console shows, as text or JSON
import { readFile } from "node:fs/promises";
import { Command, Option } from "commander";
import { createPublicClient, createWalletClient, getAddress, http, type Abi, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { messageOf } from "./chain/TxManager.js";
import { ConfigError, describeConfig, loadConfig, type Config } from "./config.js";
import { toBigInt } from "./ledger/amount.js";
import { LedgerError } from "./ledger/errors.js";
import { balances, trialBalance } from "./ledger/postings.js";
import { formatReport } from "./ledger/reconcile.js";
import { dashboard, formatDashboard } from "./ops/dashboard.js";
import { createApp, createSettlement, reconcilePaychan, scopeOf, startPaychan, type Paychan } from "./server.js";

const program = new Command("paychan")
  .description("Payment-channel micropayments: operate the gateway, its settlement and its books.")
  .showHelpAfterError();

program
  .command("deploy")
  .description("deploy PaychanEscrow from artifacts/ with SETTLER_PRIVATE_KEY; prints ESCROW_ADDRESS and WATCH_FROM_BLOCK")
  .action(async () => {
    const config = loadConfig();
    if (!config.SETTLER_PRIVATE_KEY) throw new ConfigError("SETTLER_PRIVATE_KEY is not set: the key that pays for the deployment.");
    const account = privateKeyToAccount(config.SETTLER_PRIVATE_KEY);
    const artifactUrl = new URL("../artifacts/contracts/PaychanEscrow.sol/PaychanEscrow.json", import.meta.url);
    const artifact = await readFile(artifactUrl, "utf8").then(
      (text) => JSON.parse(text) as { abi: Abi; bytecode: Hex },
      () => {
        throw new ConfigError("The escrow is not compiled: run `npm run build:contracts` first.");
      },
    );
    const publicClient = createPublicClient({ transport: http(config.RPC_URL) });
    const wallet = createWalletClient({ account, transport: http(config.RPC_URL) });
    const hash = await wallet.deployContract({ abi: artifact.abi, bytecode: artifact.bytecode, chain: null });
    console.error(`deploying from ${account.address} (transaction ${hash})…`);
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    if (!receipt.contractAddress || receipt.status !== "success") throw new Error(`The deployment ${hash} reverted.`);
    console.log(`ESCROW_ADDRESS=${getAddress(receipt.contractAddress)}`);
    console.log(`WATCH_FROM_BLOCK=${receipt.blockNumber}`);
    if (config.PAYEE_ADDRESS && config.PAYEE_ADDRESS !== account.address) {
      console.error(`The payee ${config.PAYEE_ADDRESS} must let the settlement key claim: setOperator(${account.address}, true) on the escrow.`);
    }
  });

program
  .command("serve")
  .description("run the gateway: GET /api/quote costs PRICE, GET /reconcile reports the books")
  .action(async () => {
    const config = loadConfig();
    warnIfEphemeral(config);
    const paychan = await startPaychan(config);
    const route = "GET /api/quote";
    const app = createApp(paychan, { [route]: config.PRICE }, {
      [route]: (_req, res) => void res.json({ quote: "the price of everything and the value of nothing", at: new Date().toISOString() }),
    });
    const server = app.listen(config.PORT, () => {
      console.log(`paychan gateway on http://localhost:${config.PORT}: ${route} costs ${config.PRICE}; GET /reconcile; GET /healthz`);
      console.log(describeLine(config));
    });
    await untilInterrupted();
    await new Promise((resolve) => server.close(resolve));
    await paychan.close();
  });

program
  .command("work")
  .description("run the chain watcher and the settlement worker until interrupted")
  .action(async () => {
    const config = loadConfig();
    warnIfEphemeral(config);
    await withPaychan(config, async (paychan) => {
      const settlement = createSettlement(paychan, { log: (line) => console.log(`${new Date().toISOString()} ${line}`) });
      await settlement.worker.checkAuthorized();
      console.log(describeLine(config));
      settlement.start();
      await untilInterrupted();
      console.log("stopping after the current round…");
      await settlement.stop();
    });
  });

program
  .command("settle-now")
  .description("claim every accepted voucher now, whatever the policy, and wait until the claims are final and mirrored")
  .addOption(new Option("--timeout <seconds>", "give up after this long").default("300"))
  .action(async (options: { timeout: string }) => {
    const config = loadConfig();
    await withPaychan(config, async (paychan) => {
      const settlement = createSettlement(paychan, { log: (line) => console.error(line) });
      await settlement.worker.checkAuthorized();
      const report = await settlement.settleNow({ timeoutMs: Number(options.timeout) * 1000 });
      const channels = report.decided.reduce((n, b) => n + b.items.length, 0);
      const total = report.decided.reduce((sum, b) => sum + b.total, 0n);
      const confirmed = report.transactions.filter((t) => t.action === "confirmed").length;
      console.log(`${report.decided.length} batch(es), ${channels} channel(s), ${total} claimed; ${confirmed} transaction(s) confirmed`);
    });
  });

program
  .command("reconcile")
  .description("compare chain, ledger and voucher store; exits 1 when money is missing")
  .option("--json", "print the report as JSON")
  .action(async (options: { json?: boolean }) => {
    const config = loadConfig();
    await withPaychan(config, async (paychan) => {
      const report = await reconcilePaychan(paychan);
      console.log(options.json ? JSON.stringify(report, null, 2) : formatReport(report));
      if (!report.ok) process.exitCode = 1;
    });
  });

program
  .command("balances")
  .description("the ledger's balances by account kind and asset, and its trial balance")
  .option("--accounts", "list every account, not only the totals per kind")
  .action(async (options: { accounts?: boolean }) => {
    const config = loadConfig();
    await withPaychan(config, async (paychan) => {
      const all = [...(await balances(paychan.db.prisma)).values()];
      const byKind = new Map<string, { kind: string; asset: string; accounts: number; balance: bigint }>();
      for (const a of all) {
        const key = `${a.kind} ${a.asset}`;
        const row = byKind.get(key) ?? { kind: a.kind, asset: a.asset, accounts: 0, balance: 0n };
        row.accounts++;
        row.balance += a.balance;
        byKind.set(key, row);
      }
      printTable(
        ["kind", "asset", "accounts", "balance"],
        [...byKind.values()].map((r) => [r.kind, r.asset, String(r.accounts), r.balance.toString()]),
      );
      if (options.accounts) {
        console.log("");
        printTable(["account", "asset", "balance"], all.map((a) => [a.account, a.asset, a.balance.toString()]));
      }
      console.log("\ntrial balance:");
      for (const [asset, t] of await trialBalance(paychan.db.prisma)) {
        console.log(`  ${asset}: debits ${t.debits} credits ${t.credits}${t.debits === t.credits ? "" : "  UNBALANCED"}`);
      }
    });
  });

program
  .command("channels")
  .description("our channels: deposit, accepted, claimed on chain, unclaimed and state")
  .option("--limit <n>", "show at most this many, largest unclaimed first", "50")
  .action(async (options: { limit: string }) => {
    const config = loadConfig();
    await withPaychan(config, async (paychan) => {
      const scope = scopeOf(paychan);
      const rows = await paychan.db.prisma.channel.findMany({ where: { chainId: BigInt(scope.chainId), payee: scope.payee } });
      const channels = rows
        .map((r) => {
          const accepted = toBigInt(r.acceptedCumulative);
          const claimed = toBigInt(r.claimedOnChain);
          const state = r.closed ? "closed" : r.withdrawReadyAt !== null ? `withdrawing (ready at ${new Date(Number(r.withdrawReadyAt) * 1000).toISOString()})` : "open";
          return { id: r.id, payer: r.payer, deposit: toBigInt(r.deposit), accepted, claimed, unclaimed: accepted > claimed ? accepted - claimed : 0n, state };
        })
        .sort((a, b) => (a.unclaimed === b.unclaimed ? 0 : a.unclaimed > b.unclaimed ? -1 : 1));
      const shown = channels.slice(0, Number(options.limit));
      printTable(
        ["channel", "payer", "deposit", "accepted", "claimed", "unclaimed", "state"],
        shown.map((c) => [c.id, c.payer, c.deposit.toString(), c.accepted.toString(), c.claimed.toString(), c.unclaimed.toString(), c.state]),
      );
      const unclaimed = channels.reduce((sum, c) => sum + c.unclaimed, 0n);
      console.log(`\n${channels.length} channel(s)${shown.length < channels.length ? ` (${shown.length} shown)` : ""}; ${unclaimed} accepted and not yet claimed`);
    });
  });

program
  .command("dashboard")
  .description("what the operator console shows: exposure by risk, revenue, settlements and their gas, watcher lag, queue")
  .option("--json", "print it as JSON (amounts as decimal strings of base units)")
  .action(async (options: { json?: boolean }) => {
    const config = loadConfig();
    await withPaychan(config, async (paychan) => {
      const report = await dashboard(paychan.db.sql, scopeOf(paychan), { confirmations: config.CONFIRMATIONS });
      console.log(options.json ? JSON.stringify(report, null, 2) : formatDashboard(report));
    });
  });

async function withPaychan(config: Config, fn: (paychan: Paychan) => Promise<void>): Promise<void> {
  const paychan = await startPaychan(config);
  try {
    await fn(paychan);
  } finally {
    await paychan.close();
  }
}

function warnIfEphemeral(config: Config): void {
  if (config.DATABASE_URL === "pglite:memory") {
    console.error("warning: DATABASE_URL is not set, so the books live in memory and vanish on exit (use pglite:<dir> or postgres://…).");
  }
}

function describeLine(config: Config): string {
  return Object.entries(describeConfig(config))
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

function untilInterrupted(): Promise<void> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

program.parseAsync().catch((error: unknown) => {
  // Mistakes in the configuration or refusals of the ledger are the operator's to fix: no stack trace.
  if (error instanceof ConfigError || error instanceof LedgerError) console.error(error.message);
  else {
    console.error(`paychan: ${messageOf(error)}`);
    if (process.env.PAYCHAN_DEBUG) console.error(error);
  }
  process.exitCode = error instanceof ConfigError ? 2 : 1;
});
