#!/usr/bin/env node
// paychan's operator command line. Every command reads the same configuration as the server (the
// environment, parsed by src/config.ts) and assembles paychan through the composition root.
//
//   paychan deploy          deploy the escrow with SETTLER_PRIVATE_KEY
//   paychan set-operator    let a settlement key claim for the payee (signed by the payee's key)
//   paychan serve           the gateway with a sample paywalled route (GET /api/quote); operator
//                           endpoints (GET /reconcile, GET /metrics) on their own listener
//   paychan work            the chain watcher and the settlement worker (and credit notices and recharges), until interrupted
//   paychan settle-now      claim every accepted voucher worth its gas now and wait until the ledger mirrors it
//   paychan reconcile       compare chain, ledger and voucher store; exits 1 when money is missing
//   paychan balances        the ledger's balances by kind, and its trial balance
//   paychan channels        our channels and what is accepted, claimed, unclaimed and lost on each
//   paychan credit …        prepaid credit (fiat rails): open an account, issue or revoke its keys, show it
//   paychan payouts         pay out every seller whose credit earnings passed PAYOUT_THRESHOLD
//   paychan config          every environment variable: its value, default and meaning
//   paychan dashboard       what the operator console shows, as text or JSON
import type { RequestListener } from "node:http";
import { Command, Option } from "commander";
import { createWalletClient, getAddress, http, isAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { escrowAbi } from "./contracts/escrowAbi.js";
import { PollingLoop } from "./chain/PollingLoop.js";
import { skipMeaning } from "./chain/SettlementWorker.js";
import { messageOf } from "./chain/TxManager.js";
import {
  ConfigError,
  StartupError,
  configSchema,
  configVariables,
  describeConfig,
  isDevChain,
  loadConfig,
  redactUrl,
  showValue,
  type Config,
  type ConfigKey,
} from "./config.js";
import { toBigInt } from "./ledger/amount.js";
import { DirectoryLockedError } from "./ledger/directoryLock.js";
import { LedgerError } from "./ledger/errors.js";
import { balances, trialBalance } from "./ledger/postings.js";
import { formatReport } from "./ledger/reconcile.js";
import { loadEscrowArtifact } from "./contracts/artifact.js";
import { listen, type Listener } from "./ops/http.js";
import { LeaderLock } from "./ops/leader.js";
import type { Logger } from "./ops/logger.js";
import { checkOperatorAccess } from "./ops/operatorApp.js";
import { TOP_UP_PATH, webhookPath } from "./rails/http.js";
import { createCreditAccount, creditBalance, issueCreditKey, revokeCreditKey } from "./ledger/credit.js";
import { formatBase } from "./ledger/currency.js";
import { multiplyPrice, type PriceSpec } from "./policy/prices.js";
import { RoutePricing } from "./policy/pricing.js";
import {
  checkChain,
  createApp,
  createOperatorEndpoints,
  createRpcClient,
  createSettlement,
  loggerFor,
  reconcilePaychan,
  scopeOf,
  startPaychan,
  type Paychan,
} from "./server.js";
import { dashboard, formatDashboard } from "./ops/dashboard.js";

// `serve` and `work` log on stdout (their output is their log); the one-shot commands log on stderr,
// so that stdout carries only their report.
const STDOUT = 1;
const STDERR = 2;

const program = new Command("paychan")
  .description("Payment-channel micropayments: operate the gateway, its settlement and its books.")
  .addHelpText("after", () => `\n${environmentHelp()}`)
  .showHelpAfterError();

program
  .command("config")
  .description("list every environment variable: its value here (secrets only as set / not set), its default and its meaning")
  .action(() => {
    const parsed = configSchema.safeParse(Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== undefined && v !== "")));
    for (const v of configVariables()) {
      const raw = process.env[v.name];
      const value = raw ? showValue(v.name, raw) : "(not set)";
      console.log(`${v.name}=${value}${v.default === undefined ? "" : `  [default ${showValue(v.name, v.default)}]`}`);
      console.log(`    ${v.description}`);
    }
    if (!parsed.success) {
      console.log(`\nInvalid:\n${parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`).join("\n")}`);
      process.exitCode = 2;
    }
  });

program
  .command("deploy")
  .description("deploy PaychanEscrow (the compiled artifact paychan ships) with SETTLER_PRIVATE_KEY (which pays the gas); prints ESCROW_ADDRESS and WATCH_FROM_BLOCK")
  .action(async () => {
    const config = loadConfig();
    if (!config.SETTLER_PRIVATE_KEY) throw new ConfigError("SETTLER_PRIVATE_KEY is not set: the key that pays for the deployment.");
    const account = privateKeyToAccount(config.SETTLER_PRIVATE_KEY);
    const artifact = loadEscrowArtifact();
    const publicClient = createRpcClient(config);
    await checkChain({ ...config, ESCROW_ADDRESS: undefined });
    const wallet = createWalletClient({ account, transport: http(config.RPC_URL, { timeout: config.RPC_TIMEOUT_MS }) });
    const hash = await wallet.deployContract({ abi: artifact.abi, bytecode: artifact.bytecode, chain: null });
    console.error(`deploying from ${account.address} (transaction ${hash})…`);
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    if (!receipt.contractAddress || receipt.status !== "success") throw new Error(`The deployment ${hash} reverted.`);
    console.log(`ESCROW_ADDRESS=${getAddress(receipt.contractAddress)}`);
    console.log(`WATCH_FROM_BLOCK=${receipt.blockNumber}`);
    if (config.PAYEE_ADDRESS && config.PAYEE_ADDRESS !== account.address) {
      console.error(`The payee ${config.PAYEE_ADDRESS} must let the settlement key claim: paychan set-operator ${account.address} (signed with PAYEE_PRIVATE_KEY).`);
    }
  });

program
  .command("set-operator")
  .description(
    "let a settlement key claim for the payee: setOperator(address, true) on the escrow, signed with PAYEE_PRIVATE_KEY " +
      "(or SETTLER_PRIVATE_KEY when it is the payee's key); address defaults to SETTLER_PRIVATE_KEY's",
  )
  .argument("[address]", "the operator to approve or revoke")
  .option("--revoke", "withdraw the approval instead")
  .action(async (operatorArg: string | undefined, options: { revoke?: boolean }) => {
    const config = loadConfig();
    if (!config.ESCROW_ADDRESS) throw new ConfigError("ESCROW_ADDRESS is not set: the escrow whose operator list to change.");
    const settler = config.SETTLER_PRIVATE_KEY && privateKeyToAccount(config.SETTLER_PRIVATE_KEY);
    const payeeKey = config.PAYEE_PRIVATE_KEY ?? (settler && config.PAYEE_ADDRESS === settler.address ? config.SETTLER_PRIVATE_KEY : undefined);
    if (!payeeKey) {
      throw new ConfigError("set-operator is signed by the payee: set PAYEE_PRIVATE_KEY to the key of PAYEE_ADDRESS (it is used for nothing else).");
    }
    const payee = privateKeyToAccount(payeeKey);
    if (config.PAYEE_ADDRESS && config.PAYEE_ADDRESS !== payee.address) {
      throw new ConfigError(`PAYEE_PRIVATE_KEY is the key of ${payee.address}, not of PAYEE_ADDRESS ${config.PAYEE_ADDRESS}.`);
    }
    const target = operatorArg ?? settler?.address;
    if (!target) throw new ConfigError("Name the operator to approve (paychan set-operator <address>), or set SETTLER_PRIVATE_KEY.");
    if (!isAddress(target, { strict: false })) throw new ConfigError(`${target} is not an address (0x followed by 40 hex digits).`);
    const operator = getAddress(target) as Address;
    const approve = !options.revoke;
    await checkChain(config);
    const publicClient = createRpcClient(config);
    const wallet = createWalletClient({ account: payee, transport: http(config.RPC_URL, { timeout: config.RPC_TIMEOUT_MS }) });
    const hash = await wallet.writeContract({ address: config.ESCROW_ADDRESS, abi: escrowAbi, functionName: "setOperator", args: [operator, approve], chain: null });
    console.error(`setOperator(${operator}, ${approve}) from ${payee.address} (transaction ${hash})…`);
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`setOperator ${hash} reverted.`);
    const now = await publicClient.readContract({ address: config.ESCROW_ADDRESS, abi: escrowAbi, functionName: "isOperator", args: [payee.address, operator] });
    console.log(`${operator} ${now ? "may claim" : "may no longer claim"} for the payee ${payee.address}`);
  });

program
  .command("serve")
  .description("run the gateway on PORT (GET /api/quote costs PRICE) and the operator endpoints (GET /reconcile, GET /metrics) on OPERATOR_HOST:OPERATOR_PORT")
  .action(async () => {
    const config = loadConfig();
    const log = loggerFor(config, STDOUT);
    checkOperatorAccess({ host: config.OPERATOR_HOST, token: config.OPERATOR_TOKEN });
    if (config.EXACT_TOKEN && !/^postgres(ql)?:\/\//.test(config.DATABASE_URL)) {
      // Each exact authorization must be submitted by `work` within minutes; PGlite admits one process.
      throw new ConfigError(
        "EXACT_TOKEN needs `paychan work` running beside `serve` to submit each exact transfer while its authorization is valid, and PGlite serves one process: use Postgres (DATABASE_URL=postgres://…).",
      );
    }
    warnIfEphemeral(log, config);
    // Bind both ports first: a port in use fails the start at once, not after the database opened.
    // Until paychan is ready, both answer 503.
    let gatewayApp: RequestListener = starting;
    let operatorApp: RequestListener = starting;
    const listeners: Listener[] = [];
    try {
      listeners.push(await listen((req, res) => gatewayApp(req, res), { port: config.PORT, portVariable: "PORT" }));
      listeners.push(
        await listen((req, res) => operatorApp(req, res), {
          host: config.OPERATOR_HOST,
          port: config.OPERATOR_PORT,
          hostVariable: "OPERATOR_HOST",
          portVariable: "OPERATOR_PORT",
        }),
      );
      await withPaychan(config, log, async (paychan) => {
        warnIfDevChainWaits(paychan);
        const route = "GET /api/quote";
        // One price for every rail: PRICE_USD converted per asset with its rate; without ASSET_USD the
        // channel keeps PRICE base units.
        const usd = config.PRICE_USD ?? (paychan.fiat ? "0.001" : undefined);
        const price = usd ? { usd, ...(config.ASSET_USD ? {} : { amounts: { [paychan.gateway.defaultAsset]: config.PRICE } }) } : config.PRICE;
        gatewayApp = createApp(paychan, { [route]: samplePricing(config, paychan, price) }, {
          [route]: (_req, res) => void res.json({ quote: "the price of everything and the value of nothing", at: new Date().toISOString() }),
        });
        operatorApp = createOperatorEndpoints(paychan);
        const [gateway, operator] = listeners as [Listener, Listener];
        let quote;
        try {
          quote = paychan.prices.quote(price);
        } catch (error) {
          throw new ConfigError(`PRICE_USD=${usd}: ${messageOf(error)} Set ASSET_USD (for paychan) or EXACT_TOKEN (for exact).`);
        }
        const offers = paychan.schemes.flatMap((scheme) => {
          const terms = scheme.requirements(quote);
          return terms ? [`${terms.amount} of ${terms.asset} (${scheme.scheme})`] : [];
        });
        log.info(`paychan gateway on ${gateway.url}: ${route} costs ${offers.join(" or ")}; GET /healthz`);
        if (paychan.fiat) log.info(`fiat rails on: webhook POST ${gateway.url}${webhookPath(paychan.fiat.rail.name)}, top-ups POST ${gateway.url}${TOP_UP_PATH}`);
        log.info(`operator endpoints on ${operator.url}: GET /reconcile, GET /metrics${config.OPERATOR_TOKEN ? " (Authorization: Bearer OPERATOR_TOKEN)" : ""}`);
        log.info(describeLine(paychan.config));
        await untilInterrupted();
      });
    } finally {
      await Promise.all(listeners.map((l) => l.close()));
    }
  });

program
  .command("work")
  .description("run the chain watcher and the settlement worker until interrupted; on Postgres one process per settlement key leads, others stand by")
  .action(async () => {
    const config = loadConfig();
    const logger = loggerFor(config, STDOUT);
    warnIfEphemeral(logger, config);
    // Bound before the database opens, like serve's ports: a port in use fails the start at once.
    const endpoints = config.WORK_OPERATOR_PORT === undefined ? undefined : await listenForOperator(config, config.WORK_OPERATOR_PORT, "WORK_OPERATOR_PORT");
    await withPaychan(config, logger, async (paychan) => {
      if (endpoints) {
        endpoints.serve(createOperatorEndpoints(paychan));
        logger.info(`operator endpoints on ${endpoints.listener.url}: GET /metrics, GET /reconcile${config.OPERATOR_TOKEN ? " (Authorization: Bearer OPERATOR_TOKEN)" : ""}`);
      }
      const log = (line: string, level: "info" | "warn" = "info") => logger[level](line);
      const settlement = createSettlement(paychan, { log });
      await settlement.worker.checkAuthorized();
      warnIfDevChainWaits(paychan);
      const { chainId, escrow, payee } = scopeOf(paychan);
      const settler = settlement.txManager.sender.address;
      const now = await settlement.status();
      log(
        `watching escrow ${escrow} on chain ${chainId} at ${redactUrl(config.RPC_URL)} for payee ${payee}; settlement key ${settler} ` +
          `(${settler === payee ? "the payee's own" : "an operator the payee approved"}); head ${now.head}, mirrored to block ${now.mirrored}, ` +
          `CONFIRMATIONS=${paychan.confirmations}, every ${config.POLL_INTERVAL_MS} ms`,
      );
      log(describeLine(paychan.config));
      // Credit notices and auto-recharges: leased rows in the database, so every process may run them.
      const dunning = paychan.dunning;
      const keeping = dunning?.enabled
        ? new PollingLoop(async () => void (await dunning.runOnce()), config.POLL_INTERVAL_MS, (error) => log(`credit notices and recharges: a round failed (${messageOf(error)}); retrying`, "warn"))
        : undefined;
      keeping?.start();
      const stop = new AbortController();
      void untilInterrupted().then(() => {
        log("stopping after the current round…");
        stop.abort();
      });
      if (paychan.db.kind !== "postgres") {
        // PGlite on disk admits one process (its directory lock), so there is nobody to lead.
        settlement.start();
        await new Promise((resolve) => stop.signal.addEventListener("abort", resolve, { once: true }));
        await settlement.stop();
        await keeping?.stop();
        return;
      }
      const leader = new LeaderLock({
        url: config.DATABASE_URL,
        key: leaderKey(chainId, settler),
        intervalMs: config.POLL_INTERVAL_MS,
        connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
        log,
      });
      try {
        while (await leader.acquire(stop.signal)) {
          log(`leading: this process watches and settles for ${settler}`);
          settlement.start();
          const lost = await leader.held(stop.signal);
          await settlement.stop();
          if (!lost) break;
          log(`lost the lead: ${lost}; stopped settling, standing by`);
        }
      } finally {
        await leader.close();
        await keeping?.stop();
      }
    }).finally(() => endpoints?.listener.close());
  });

program
  .command("settle-now")
  .description("claim now every accepted voucher whose value covers its gas, whatever the policy, and wait until the claims are final and mirrored")
  .addOption(new Option("--timeout <seconds>", "give up after this long").default("300"))
  .option("--force", "claim channels whose claim costs more gas than it brings in, too")
  .action(async (options: { timeout: string; force?: boolean }) => {
    const config = loadConfig();
    const log = loggerFor(config, STDERR);
    await withPaychan(config, log, async (paychan) => {
      const settlement = createSettlement(paychan, { log: (line, level = "info") => log[level](line) });
      await settlement.worker.checkAuthorized();
      warnIfDevChainWaits(paychan);
      const leader = await leadOnce(paychan, settlement.txManager.sender.address);
      try {
        const report = await settlement.settleNow({ timeoutMs: Number(options.timeout) * 1000, onlyProfitable: !options.force });
        const claimed = report.claimed.reduce((sum, c) => sum + c.amount, 0n);
        const sent = report.decided.length;
        console.log(
          report.decided.length === 0 && report.unprofitable.length === 0
            ? "nothing to claim"
            : `claimed ${report.claimed.length} channel(s) for ${claimed} in ${sent} transaction(s)`,
        );
        if (report.skipped.length > 0) {
          console.log(`the escrow skipped ${report.skipped.length} channel(s), nothing was claimed on them:`);
          for (const s of report.skipped) console.log(`  ${s.channelId} ${s.reason}: ${skipMeaning[s.reason] ?? "see the escrow's SkipReason"}`);
        }
        if (report.unprofitable.length > 0) {
          console.error(`warning: left ${report.unprofitable.length} channel(s) unclaimed: claiming them would cost more gas than they bring in`);
          for (const u of report.unprofitable) console.error(`  ${u.candidate.channelId} brings ${u.candidate.unclaimed}, its claim costs about ${u.gasCost} in gas`);
          console.error("run `paychan settle-now --force` to claim them anyway");
        }
      } finally {
        await leader?.close();
      }
    });
  });

program
  .command("reconcile")
  .description("compare chain, ledger and voucher store; exits 1 when money is missing")
  .option("--json", "print the report as JSON")
  .action(async (options: { json?: boolean }) => {
    const config = loadConfig();
    await withPaychan(config, loggerFor(config, STDERR), async (paychan) => {
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
    await withPaychan(config, loggerFor(config, STDERR), async (paychan) => {
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
      const gas = all.filter((a) => a.kind === "GAS_EXPENSE" && a.balance !== 0n);
      const negative = all.filter((a) => a.kind === "PAYEE_WALLET" && a.balance < 0n);
      if (gas.length > 0 || negative.length > 0) console.log("");
      for (const g of gas) console.log(`${g.account}: ${g.balance} of native coin spent on transaction fees (claims) by that key.`);
      for (const w of negative) {
        console.log(
          `${w.account} is ${w.balance}: that key paid more in gas than claims brought into it. The gas came out of the key's own ` +
            `native balance, which was funded outside the books, so the books show the difference as a negative wallet.`,
        );
      }
      console.log("\ntrial balance:");
      for (const [asset, t] of await trialBalance(paychan.db.prisma)) {
        console.log(`  ${asset}: debits ${t.debits} credits ${t.credits}${t.debits === t.credits ? "" : "  UNBALANCED"}`);
      }
    });
  });

program
  .command("channels")
  .description("our channels: deposit, accepted, claimed on chain, unclaimed, lost (closed before it was claimed) and state")
  .option("--limit <n>", "show at most this many, largest unclaimed first", "50")
  .action(async (options: { limit: string }) => {
    const config = loadConfig();
    await withPaychan(config, loggerFor(config, STDERR), async (paychan) => {
      const scope = scopeOf(paychan);
      const rows = await paychan.db.prisma.channel.findMany({ where: { chainId: BigInt(scope.chainId), payee: scope.payee } });
      const channels = rows
        .map((r) => {
          const accepted = toBigInt(r.acceptedCumulative);
          const claimed = toBigInt(r.claimedOnChain);
          const short = accepted > claimed ? accepted - claimed : 0n;
          // A closed channel can never be claimed again: what was accepted beyond its claims went back to the payer.
          const [unclaimed, lost] = r.closed ? [0n, short] : [short, 0n];
          const state = r.closed
            ? lost > 0n
              ? "closed: the payer got back the accepted but unclaimed amount"
              : "closed"
            : r.withdrawReadyAt !== null
              ? `withdrawing (claimable until ${new Date(Number(r.withdrawReadyAt) * 1000).toISOString()})`
              : "open";
          return { id: r.id, payer: r.payer, deposit: toBigInt(r.deposit), accepted, claimed, unclaimed, lost, state };
        })
        .sort((a, b) => (a.unclaimed === b.unclaimed ? 0 : a.unclaimed > b.unclaimed ? -1 : 1));
      const shown = channels.slice(0, Number(options.limit));
      printTable(
        ["channel", "payer", "deposit", "accepted", "claimed", "unclaimed", "lost", "state"],
        shown.map((c) => [c.id, c.payer, c.deposit.toString(), c.accepted.toString(), c.claimed.toString(), c.unclaimed.toString(), c.lost.toString(), c.state]),
      );
      const unclaimed = channels.reduce((sum, c) => sum + c.unclaimed, 0n);
      const lost = channels.filter((c) => c.lost > 0n);
      console.log(`\n${channels.length} channel(s)${shown.length < channels.length ? ` (${shown.length} shown)` : ""}; ${unclaimed} accepted and not yet claimed`);
      if (lost.length > 0) {
        const total = lost.reduce((sum, c) => sum + c.lost, 0n);
        console.log(`${total} lost on ${lost.length} closed channel(s): accepted, but not claimed before the channel closed, so the escrow refunded it to the payer`);
      }
    });
  });

program
  .command("dashboard")
  .description("what the operator console shows: exposure by risk, revenue, settlements and their gas, watcher lag, queue")
  .option("--json", "print it as JSON (amounts as decimal strings of base units)")
  .action(async (options: { json?: boolean }) => {
    const config = loadConfig();
    await withPaychan(config, loggerFor(config, STDERR), async (paychan) => {
      const report = await dashboard(paychan.db.sql, scopeOf(paychan), { confirmations: paychan.confirmations });
      console.log(options.json ? JSON.stringify(report, null, 2) : formatDashboard(report));
    });
  });

const credit = program.command("credit").description("prepaid credit topped up by card (needs STRIPE_SECRET_KEY): accounts and their API keys");

credit
  .command("account")
  .description("open a credit account and issue its first key (shown once: only its hash is kept)")
  .option("--label <text>", "the operator's name for the buyer")
  .option("--path-prefix <prefix...>", "let the key pay only for these URL path prefixes")
  .action(async (options: { label?: string; pathPrefix?: string[] }) => {
    await withFiat(async (paychan) => {
      const { id } = await createCreditAccount(paychan.db.prisma, { currency: paychan.fiat!.currency, label: options.label });
      const { keyId, key } = await issueCreditKey(paychan.db.prisma, id, { pathPrefixes: options.pathPrefix });
      console.log(`CREDIT_ACCOUNT=${id}\nCREDIT_KEY_ID=${keyId}\nCREDIT_KEY=${key}`);
      console.error("The key is shown once; top up with POST /credit/topups (Authorization: Bearer <key>).");
    });
  });

credit
  .command("key")
  .description("issue another key for a credit account (shown once)")
  .argument("<account>", "the credit account (ca_…)")
  .option("--path-prefix <prefix...>", "let the key pay only for these URL path prefixes")
  .action(async (account: string, options: { pathPrefix?: string[] }) => {
    await withFiat(async (paychan) => {
      await balanceOf(paychan, account);
      const { keyId, key } = await issueCreditKey(paychan.db.prisma, account, { pathPrefixes: options.pathPrefix });
      console.log(`CREDIT_KEY_ID=${keyId}\nCREDIT_KEY=${key}`);
    });
  });

credit
  .command("revoke")
  .description("revoke a key at once, for every gateway")
  .argument("<keyId>", "the key's id (ck_…)")
  .action(async (keyId: string) => {
    await withFiat(async (paychan) => {
      if (!(await revokeCreditKey(paychan.db.prisma, keyId))) throw new ConfigError(`There is no key ${keyId}.`);
      console.log(`${keyId} revoked`);
    });
  });

credit
  .command("show")
  .description("a credit account's balance: granted by top-ups less refunds and disputes, spent, left")
  .argument("<account>", "the credit account (ca_…)")
  .action(async (account: string) => {
    await withFiat(async (paychan) => {
      const b = await balanceOf(paychan, account);
      const unit = paychan.fiat!.currency;
      console.log(`${account}: granted ${formatBase(b.granted)} ${unit}, spent ${formatBase(b.spent)} ${unit}, balance ${formatBase(b.balance)} ${unit}${b.suspended ? ` (suspended until topped up${b.suspendedReason ? `: ${b.suspendedReason}` : ""})` : ""}`);
    });
  });

program
  .command("payouts")
  .description("pay out every seller whose credit earnings reached PAYOUT_THRESHOLD (Stripe Connect transfer + payout); resumes a pending one first")
  .action(async () => {
    await withFiat(async (paychan) => {
      const outcomes = await paychan.fiat!.runPayouts();
      if (outcomes.length === 0) console.log("no seller has a payout destination (STRIPE_SELLER_ACCOUNT)");
      for (const o of outcomes) {
        const what = "payout" in o ? ` ${o.payout.id}: ${formatBase(o.payout.amount)} ${o.payout.currency}` : "";
        console.log(`${o.seller}: ${o.outcome}${what}${"reason" in o ? ` (${o.reason})` : ""}`);
        if (o.outcome === "pending") process.exitCode = 1;
      }
    });
  });

async function withFiat(fn: (paychan: Paychan) => Promise<void>): Promise<void> {
  const config = loadConfig();
  if (!config.STRIPE_SECRET_KEY) throw new ConfigError("STRIPE_SECRET_KEY is not set: the fiat rails are off.");
  await withPaychan(config, loggerFor(config, STDERR), fn);
}

/** A credit account's balance; a ConfigError naming it when there is no such account. */
async function balanceOf(paychan: Paychan, account: string) {
  const balance = await creditBalance(paychan.db.prisma, account);
  if (!balance) throw new ConfigError(`There is no credit account ${account}.`);
  return balance;
}

const starting: RequestListener = (_req, res) => {
  res.writeHead(503, { "content-type": "application/json", "retry-after": "1" }).end(JSON.stringify({ error: "starting", message: "paychan is starting." }));
};

/** Binds the operator endpoints' port at once; it answers 503 until `serve` hands it the app. */
async function listenForOperator(config: Config, port: number, portVariable: string): Promise<{ listener: Listener; serve(app: RequestListener): void }> {
  checkOperatorAccess({ host: config.OPERATOR_HOST, token: config.OPERATOR_TOKEN });
  let app: RequestListener = starting;
  const listener = await listen((req, res) => app(req, res), { host: config.OPERATOR_HOST, port, hostVariable: "OPERATOR_HOST", portVariable });
  return { listener, serve: (next) => void (app = next) };
}

async function withPaychan(config: Config, logger: Logger, fn: (paychan: Paychan) => Promise<void>): Promise<void> {
  const paychan = await startPaychan(config, { logger });
  try {
    await fn(paychan);
  } finally {
    await paychan.close();
  }
}

/** The advisory lock `work` processes sharing a settlement key elect their leader with. */
function leaderKey(chainId: number, settler: Address): string {
  return `paychan:work:${chainId}:${settler.toLowerCase()}`;
}

/** settle-now sends with the settlement key too: it runs only while no `work` leads for that key. */
async function leadOnce(paychan: Paychan, settler: Address): Promise<LeaderLock | undefined> {
  if (paychan.db.kind !== "postgres") return undefined;
  const { config } = paychan;
  const leader = new LeaderLock({
    url: config.DATABASE_URL,
    key: leaderKey(paychan.gateway.location.chainId, settler),
    intervalMs: config.POLL_INTERVAL_MS,
    connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
    log: () => {},
  });
  const holder = await leader.tryAcquire().catch(async (error: unknown) => {
    await leader.close();
    throw error;
  });
  if (holder === undefined) return leader;
  await leader.close();
  throw new StartupError(
    `${holder} is settling with the key ${settler} right now; two senders on one key fight over nonces. ` +
      `It claims by the policy (SETTLE_* variables); stop it to run settle-now.`,
  );
}

/** The sample route's price: fixed, or a pricing policy when PRICE_CEILING_MULTIPLE or VOLUME_TIERS is set. */
function samplePricing(config: Config, paychan: Paychan, price: PriceSpec): PriceSpec | RoutePricing {
  const multiple = config.PRICE_CEILING_MULTIPLE;
  if (multiple === undefined && !config.VOLUME_TIERS) return price;
  try {
    const pricing = new RoutePricing({
      ...(multiple === undefined
        ? { price }
        : {
            demand: {
              floor: price,
              ceiling: multiplyPrice(price, BigInt(multiple)),
              ceilingAtRequestsPerSecond: config.PRICE_CEILING_AT_RPS,
              ceilingAtConcurrency: config.PRICE_CEILING_AT_CONCURRENCY,
              recomputeSeconds: config.PRICE_RECOMPUTE_SECONDS,
              graceSeconds: config.PRICE_GRACE_SECONDS,
            },
          }),
      ...(config.VOLUME_TIERS && { tiers: config.VOLUME_TIERS, volume: paychan.volume }),
    });
    pricing.check(paychan.prices);
    return pricing;
  } catch (error) {
    throw new ConfigError(`PRICE_CEILING_MULTIPLE / VOLUME_TIERS: ${messageOf(error)}`);
  }
}

function warnIfEphemeral(log: Logger, config: Config): void {
  if (config.DATABASE_URL === "pglite:memory") {
    log.warn("DATABASE_URL is not set, so the books live in memory and vanish on exit (use pglite:<dir> or postgres://…).");
  }
}

function warnIfDevChainWaits(paychan: Paychan): void {
  const { chainId } = paychan.gateway.location;
  if (isDevChain(chainId) && paychan.confirmations > 0) {
    paychan.log.warn(
      `CONFIRMATIONS=${paychan.confirmations} on chain ${chainId}, a development chain that makes a block only when a transaction ` +
        `arrives: events and claims wait for blocks that may never come. Leave CONFIRMATIONS unset (0 on dev chains) unless the node mines on an interval.`,
    );
  }
}

function describeLine(config: Config): string {
  return Object.entries(describeConfig(config))
    .filter(([, v]) => v !== "")
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

/** The environment variables for `--help`: each with its default and meaning, from the schema. */
function environmentHelp(): string {
  const variables = configVariables();
  const width = Math.max(...variables.map((v) => v.name.length));
  const lines = variables.map((v) => {
    const fallback = v.secret ? " (secret)" : v.default === undefined ? "" : ` (default ${showValue(v.name as ConfigKey, v.default)})`;
    return `  ${v.name.padEnd(width)}  ${v.description}${fallback}`;
  });
  return `Environment variables (\`paychan config\` shows their values here):\n${lines.join("\n")}`;
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

// Expected failures are the operator's to fix: a sentence, no stack trace (PAYCHAN_DEBUG=1 shows it).
const expected = (error: unknown) =>
  error instanceof ConfigError || error instanceof StartupError || error instanceof LedgerError || error instanceof DirectoryLockedError;

function fail(error: unknown): void {
  console.error(expected(error) ? (error as Error).message : `paychan: ${messageOf(error)}`);
  if (process.env.PAYCHAN_DEBUG) console.error(error);
  process.exitCode = error instanceof ConfigError ? 2 : 1;
}

process.on("unhandledRejection", (error) => {
  fail(error);
  process.exit();
});

// Exit at once on failure: a half-started server or an open database handle must not keep a
// failed command alive (or let it exit 0 later).
program.parseAsync().catch((error: unknown) => {
  fail(error);
  process.exit();
});
