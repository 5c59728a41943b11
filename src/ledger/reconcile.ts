// Reconciliation: proves that the chain, the ledger and the voucher store agree, or says where and why
// they do not. It is what an operator reads each morning (`paychan reconcile`, GET /reconcile).
//
// Per channel of our payee it compares
// - the ledger with the chain as of the watcher's cursor (the state the ledger mirrors): the deposit
//   and the claims it booked, and CHANNEL_OWED = accepted − claimed, CHANNEL_AVAILABLE = deposit −
//   max(accepted, claimed) − refunded (both 0 once closed);
// - the voucher store with itself and with the chain: accepted_cumulative = Σ accepted prices, a held
//   voucher for exactly that total whose signature verifies for the channel's signer, within the
//   deposit, and claimable (not past a withdrawal deadline, not closed with vouchers unclaimed);
// - the gateway's channel view with the chain's latest state.
// Globally: the trial balance per asset, account totals against their postings, ESCROW_HOLDINGS
// against Σ CHANNEL_AVAILABLE + CHANNEL_OWED and against Σ (deposit − claimed) on chain, the watcher's
// lag and the settlement transactions that failed or are stuck. The payee's x402 `exact` payments are
// compared too (src/ledger/exactPayments.ts): each one served and never paid is money missing.
//
// Each difference carries a severity: `missing` — money the books and the chain disagree about, for
// no reason the report can name (the CLI exits non-zero); `lag` — a difference explained by blocks not
// yet confirmed or mirrored, which resolves by itself; `warning` — nothing is wrong yet, but someone
// should look (a withdrawal with unclaimed vouchers, a failed claim transaction).
import { getAddress, hexToBytes, type Address, type Hex } from "viem";
import { recoverSigner, voucherDigester } from "../gateway/signatures.js";
import { voucherSigner, type ChannelConfig } from "../protocol/Channel.js";
import { accountId } from "./accounts.js";
import type { Asset } from "./asset.js";
import { readCursor, type MirrorScope } from "./chainMirror.js";
import { accountsOutOfBalance, balances, trialBalance, type Db } from "./postings.js";
import type { ChannelChainState } from "./channels.js";
import { reconcileExact, type ExactTotals } from "./exactPayments.js";

/** What reconciliation needs from the chain (src/chain/escrowState.ts implements it). */
export type ChainView = {
  head(): Promise<{ number: bigint; timestamp: bigint }>;
  channels(ids: Hex[], blockNumber?: bigint): Promise<Map<Hex, ChannelChainState>>;
};

export type Severity = "missing" | "lag" | "warning";

export type DifferenceCode =
  | "LEDGER_UNBALANCED"
  | "ACCOUNT_TOTALS"
  | "ESCROW_INVARIANT"
  | "ESCROW_HOLDINGS"
  | "DEPOSIT_UNCONFIRMED"
  | "DEPOSIT_NOT_ON_CHAIN"
  | "DEPOSIT_NOT_BOOKED"
  | "CLAIM_NOT_ON_CHAIN"
  | "CLAIM_NOT_BOOKED"
  | "OWED_MISMATCH"
  | "AVAILABLE_MISMATCH"
  | "ACCEPTED_TOTAL"
  | "VOUCHERS_NOT_BOOKED"
  | "NO_VOUCHER_FOR_ACCEPTED"
  | "VOUCHER_SIGNATURE_INVALID"
  | "VOUCHER_EXCEEDS_DEPOSIT"
  | "UNCLAIMED_AT_CLOSE"
  | "CLAIM_WINDOW_MISSED"
  | "WITHDRAWAL_UNCLAIMED"
  | "VIEW_STALE"
  | "WATCHER_NOT_STARTED"
  | "WATCHER_BEHIND"
  | "STATE_UNAVAILABLE"
  | "TX_FAILED"
  | "TX_STUCK"
  | "EXACT_RECEIVABLE"
  | "EXACT_NOT_SUBMITTED"
  | "EXACT_NOT_FINAL"
  | "EXACT_UNPAID";

export type Difference = {
  severity: Severity;
  code: DifferenceCode;
  channelId?: Hex;
  asset?: string;
  expected?: string;
  actual?: string;
  /** What differs and the likely cause, as a sentence an operator can act on. */
  cause: string;
};

export type AssetTotals = {
  asset: string;
  channels: number;
  escrowHoldingsLedger: string;
  escrowHoldingsChain: string;
  deposited: string;
  accepted: string;
  claimed: string;
  /** Accepted and not yet claimed on chain. */
  unclaimed: string;
  owed: string;
  available: string;
  revenue: string;
};

export type ReconcileReport = {
  /** True when nothing is `missing`. */
  ok: boolean;
  generatedAt: string;
  scope: { chainId: number; escrow: Address; payee: Address };
  blocks: { head: string; mirrored: string | null; comparedAt: string };
  channels: { total: number; open: number; withdrawing: number; closed: number };
  assets: AssetTotals[];
  trialBalance: { asset: string; debits: string; credits: string }[];
  /** The payee's x402 `exact` payments by state, per token. */
  exact: ExactTotals[];
  differences: Difference[];
};

export type ReconcileOptions = {
  scope: MirrorScope;
  chain: ChainView;
  confirmations: number;
  /** A transaction pending or queued longer than this is reported as stuck (default 600). */
  stuckAfterSeconds?: number;
};

type ChannelRow = {
  id: string;
  escrow: string;
  payer: string;
  payee: string;
  token: string;
  signer: string;
  withdraw_delay: number;
  salt: string;
  asset: string;
  deposit: string;
  claimed_on_chain: string;
  withdraw_ready_at: bigint | null;
  closed: boolean;
  accepted_cumulative: string;
  booked_cumulative: string;
  accepted_sum: string;
  voucher_amount: string | null;
  voucher_signature: string | null;
};

type Booked = { deposited: bigint; claimed: bigint; refunded: bigint };

export async function reconcile(db: Db, options: ReconcileOptions): Promise<ReconcileReport> {
  const { scope, chain } = options;
  const differences: Difference[] = [];
  const report = (d: Difference) => differences.push(d);

  const head = await chain.head();
  const cursor = await readCursor(db, scope, { blockNumber: -1n, blockHash: null });
  const mirrored = cursor.blockNumber >= 0n ? cursor.blockNumber : null;
  if (mirrored === null) {
    report({ severity: "warning", code: "WATCHER_NOT_STARTED", cause: "The chain watcher has not mirrored any block yet: the ledger only holds what the gateway booked." });
  } else if (head.number - mirrored > BigInt(options.confirmations) + 5n) {
    report({
      severity: "warning",
      code: "WATCHER_BEHIND",
      expected: (head.number - BigInt(options.confirmations)).toString(),
      actual: mirrored.toString(),
      cause: `The chain watcher is ${head.number - mirrored} blocks behind the head: is \`paychan work\` running?`,
    });
  }

  const rows = await channelRows(db, scope);
  const ids = rows.map((r) => r.id as Hex);
  const latest = await chain.channels(ids);
  let comparedAt = mirrored ?? head.number;
  let mirroredState = latest;
  if (mirrored !== null && mirrored !== head.number) {
    try {
      mirroredState = await chain.channels(ids, mirrored);
    } catch (error) {
      comparedAt = head.number;
      report({
        severity: "warning",
        code: "STATE_UNAVAILABLE",
        cause: `The node cannot serve state as of block ${mirrored} (${String(error)}); comparing with the latest block, so recent activity may show as differences.`,
      });
    }
  }
  const booked = await bookedPerChannel(db);
  const ledger = await balances(db, { idPrefix: "channel:" });
  const balanceOf = (account: string) => ledger.get(account)?.balance ?? 0n;
  const digest = voucherDigester({ chainId: scope.chainId, escrow: scope.escrow });

  const sums = new Map<string, { channels: number; chainHoldings: bigint; deposited: bigint; accepted: bigint; claimed: bigint; unclaimed: bigint; owed: bigint; available: bigint; depositLag: bigint }>();
  const counts = { total: rows.length, open: 0, withdrawing: 0, closed: 0 };

  for (const row of rows) {
    const id = row.id as Hex;
    const at = (state: ChannelChainState | undefined) => state ?? { deposit: 0n, claimedOnChain: 0n, withdrawReadyAt: null, closed: false };
    const c = at(mirroredState.get(id));
    const h = at(latest.get(id));
    const b = booked.get(id) ?? { deposited: 0n, claimed: 0n, refunded: 0n };
    const accepted = BigInt(row.accepted_cumulative);
    const available = balanceOf(accountId.channelAvailable(id));
    const owed = balanceOf(accountId.channelOwed(id));
    const asset = row.asset;
    const channel = { channelId: id, asset };
    const s = sums.get(asset) ?? { channels: 0, chainHoldings: 0n, deposited: 0n, accepted: 0n, claimed: 0n, unclaimed: 0n, owed: 0n, available: 0n, depositLag: 0n };
    sums.set(asset, s);
    s.channels++;
    s.chainHoldings += c.deposit - c.claimedOnChain;
    s.deposited += b.deposited;
    s.accepted += accepted;
    s.claimed += b.claimed;
    s.unclaimed += accepted > c.claimedOnChain ? accepted - c.claimedOnChain : 0n;
    s.owed += owed;
    s.available += available;
    if (h.closed) counts.closed++;
    else if (h.withdrawReadyAt !== null) counts.withdrawing++;
    else counts.open++;

    // The ledger against the chain as mirrored.
    if (!c.closed && b.deposited !== c.deposit) {
      if (b.deposited > c.deposit && b.deposited <= h.deposit) {
        s.depositLag += b.deposited - c.deposit;
        report({ severity: "lag", code: "DEPOSIT_UNCONFIRMED", ...channel, expected: c.deposit.toString(), actual: b.deposited.toString(),
          cause: `The gateway booked a deposit of ${b.deposited} at first sight; the chain has it but not yet with ${options.confirmations} confirmations.` });
      } else if (b.deposited > c.deposit) {
        report({ severity: "missing", code: "DEPOSIT_NOT_ON_CHAIN", ...channel, expected: c.deposit.toString(), actual: b.deposited.toString(),
          cause: `The ledger books ${b.deposited - c.deposit} more deposit than the escrow holds for this channel (a reorg dropped a top-up the gateway had booked, or a stray DEPOSIT entry).` });
      } else {
        report({ severity: "missing", code: "DEPOSIT_NOT_BOOKED", ...channel, expected: c.deposit.toString(), actual: b.deposited.toString(),
          cause: `The escrow holds ${c.deposit - b.deposited} more deposit than the ledger booked (the watcher started after the channel opened, or missed an event).` });
      }
    }
    if (b.claimed !== c.claimedOnChain) {
      const more = b.claimed > c.claimedOnChain;
      report({ severity: "missing", code: more ? "CLAIM_NOT_ON_CHAIN" : "CLAIM_NOT_BOOKED", ...channel, expected: c.claimedOnChain.toString(), actual: b.claimed.toString(),
        cause: more
          ? `The ledger books ${b.claimed - c.claimedOnChain} of claims the escrow never paid (a stray CLAIM entry, or a reorg the watcher has not undone).`
          : `The escrow paid ${c.claimedOnChain - b.claimed} that the ledger has not booked as revenue (an unbooked Claimed event).` });
    }
    // The journal books accepted vouchers per channel in aggregate (booking.ts): it holds `booked` of
    // the `accepted` total; the rest is booked within a second, or by the next sweep.
    const bookedVouchers = BigInt(row.booked_cumulative);
    if (bookedVouchers !== accepted) {
      report({ severity: "lag", code: "VOUCHERS_NOT_BOOKED", ...channel, expected: accepted.toString(), actual: bookedVouchers.toString(),
        cause: `The journal holds ${bookedVouchers} of the ${accepted} accepted on this channel; the rest is booked by the gateway within a second, or by the next sweep of \`paychan work\`.` });
    }
    const expectedOwed = c.closed ? 0n : bookedVouchers > b.claimed ? bookedVouchers - b.claimed : 0n;
    if (owed !== expectedOwed) {
      report({ severity: "missing", code: "OWED_MISMATCH", ...channel, expected: expectedOwed.toString(), actual: owed.toString(),
        cause: `CHANNEL_OWED is ${owed} but the vouchers booked (${bookedVouchers}) less what was claimed (${b.claimed}) is ${expectedOwed}: an entry or a payment changed outside the store.` });
    }
    const spent = bookedVouchers > b.claimed ? bookedVouchers : b.claimed;
    const expectedAvailable = c.closed ? 0n : b.deposited - spent - b.refunded;
    if (available !== expectedAvailable) {
      report({ severity: "missing", code: "AVAILABLE_MISMATCH", ...channel, expected: expectedAvailable.toString(), actual: available.toString(),
        cause: `CHANNEL_AVAILABLE is ${available} but deposit ${b.deposited} − max(booked ${bookedVouchers}, claimed ${b.claimed}) − refunded ${b.refunded} is ${expectedAvailable}.` });
    }

    // The voucher store: its totals, its voucher, and whether the voucher can still be claimed.
    const acceptedSum = BigInt(row.accepted_sum);
    if (acceptedSum !== accepted) {
      report({ severity: "missing", code: "ACCEPTED_TOTAL", ...channel, expected: acceptedSum.toString(), actual: accepted.toString(),
        cause: `The channel's accepted total is ${accepted} but its accepted payments add up to ${acceptedSum}.` });
    }
    const voucher = row.voucher_amount === null ? 0n : BigInt(row.voucher_amount);
    if (accepted > 0n && voucher !== accepted) {
      report({ severity: "missing", code: "NO_VOUCHER_FOR_ACCEPTED", ...channel, expected: accepted.toString(), actual: voucher.toString(),
        cause: `No accepted payment holds a voucher for the accepted total ${accepted}; the highest claimable is ${voucher} (a charge was voided in the middle, or a row was changed).` });
    }
    if (row.voucher_signature !== null && voucher > 0n && !verifies(row, voucher, row.voucher_signature as Hex, digest)) {
      report({ severity: "missing", code: "VOUCHER_SIGNATURE_INVALID", ...channel, expected: voucherSigner(configOf(row)), actual: row.voucher_signature,
        cause: `The voucher for ${voucher} is not signed by the channel's signer: the escrow will refuse it.` });
    }
    if (!h.closed && accepted > h.deposit) {
      report({ severity: "missing", code: "VOUCHER_EXCEEDS_DEPOSIT", ...channel, expected: h.deposit.toString(), actual: accepted.toString(),
        cause: `The gateway accepted ${accepted} on a channel whose deposit is ${h.deposit}: the escrow pays at most the deposit.` });
    }
    const unclaimed = accepted > h.claimedOnChain ? accepted - h.claimedOnChain : 0n;
    if (h.closed && unclaimed > 0n) {
      report({ severity: "missing", code: "UNCLAIMED_AT_CLOSE", ...channel, expected: accepted.toString(), actual: h.claimedOnChain.toString(),
        cause: `The channel closed having paid ${h.claimedOnChain} of the ${accepted} accepted: the payer took back ${unclaimed} of vouchers never claimed.` });
    } else if (h.withdrawReadyAt !== null && unclaimed > 0n) {
      const left = h.withdrawReadyAt - head.timestamp;
      report(left <= 0n
        ? { severity: "missing", code: "CLAIM_WINDOW_MISSED", ...channel, expected: accepted.toString(), actual: h.claimedOnChain.toString(),
            cause: `The payer's withdrawal deadline passed with ${unclaimed} accepted and unclaimed: the escrow no longer pays these vouchers.` }
        : { severity: "warning", code: "WITHDRAWAL_UNCLAIMED", ...channel, expected: accepted.toString(), actual: h.claimedOnChain.toString(),
            cause: `The payer is withdrawing; ${unclaimed} is still unclaimed with ${left} seconds left: the settlement worker must claim it.` });
    }

    // The gateway's view against the latest chain state.
    const view = { deposit: BigInt(row.deposit), claimed: BigInt(row.claimed_on_chain), readyAt: row.withdraw_ready_at === null ? null : BigInt(row.withdraw_ready_at), closed: row.closed };
    const stale = [
      !h.closed && view.deposit !== h.deposit && `deposit ${view.deposit} (chain ${h.deposit})`,
      view.claimed !== h.claimedOnChain && `claimed ${view.claimed} (chain ${h.claimedOnChain})`,
      view.readyAt !== h.withdrawReadyAt && `withdrawal ready at ${view.readyAt ?? "none"} (chain ${h.withdrawReadyAt ?? "none"})`,
      view.closed !== h.closed && `closed ${view.closed} (chain ${h.closed})`,
    ].filter(Boolean);
    if (stale.length > 0) {
      report({ severity: "lag", code: "VIEW_STALE", ...channel, cause: `The gateway's view is behind the chain: ${stale.join(", ")}; the watcher updates it once the blocks are confirmed.` });
    }
  }

  // Ledger-wide checks.
  const trial = await trialBalance(db);
  for (const [asset, t] of trial) {
    if (t.debits !== t.credits) {
      report({ severity: "missing", code: "LEDGER_UNBALANCED", asset, expected: t.debits.toString(), actual: t.credits.toString(),
        cause: `Postings in ${asset} do not balance: debits ${t.debits}, credits ${t.credits}.` });
    }
  }
  for (const account of await accountsOutOfBalance(db)) {
    report({ severity: "missing", code: "ACCOUNT_TOTALS", cause: `Account ${account}'s running totals differ from the sum of its postings (written around the ledger's triggers).` });
  }
  const everyChannel = await channelsOfEscrow(db, scope);
  const assets: AssetTotals[] = [];
  for (const [asset, s] of sums) {
    const escrowAccount = accountId.escrow(scope.escrow, asset as Asset);
    const holdings = (await balances(db, { accounts: [escrowAccount] })).get(escrowAccount)?.balance ?? 0n;
    const inChannels = (everyChannel.get(asset) ?? []).reduce((sum, id) => sum + balanceOf(accountId.channelAvailable(id)) + balanceOf(accountId.channelOwed(id)), 0n);
    if (holdings !== inChannels) {
      report({ severity: "missing", code: "ESCROW_INVARIANT", asset, expected: inChannels.toString(), actual: holdings.toString(),
        cause: `ESCROW_HOLDINGS is ${holdings} but the channels' AVAILABLE + OWED add up to ${inChannels}: an entry touched one side only.` });
    }
    // ESCROW_HOLDINGS covers every payee's channels in this database; ours are compared with the chain.
    const ours = (everyChannel.get(asset)?.length ?? 0) === s.channels ? holdings : s.owed + s.available;
    if (ours !== s.chainHoldings) {
      const explained = ours - s.chainHoldings === s.depositLag;
      report({ severity: explained ? "lag" : "missing", code: "ESCROW_HOLDINGS", asset, expected: s.chainHoldings.toString(), actual: ours.toString(),
        cause: explained
          ? `The ledger's escrow holdings are ahead of the chain by ${s.depositLag} of deposits awaiting confirmation.`
          : `The ledger holds ${ours} in our channels but they hold ${s.chainHoldings} (deposit − claimed) on chain as of block ${comparedAt}.` });
    }
    const revenueAccount = accountId.revenue(scope.payee, asset as Asset);
    const revenue = (await balances(db, { accounts: [revenueAccount] })).get(revenueAccount)?.balance ?? 0n;
    assets.push({
      asset,
      channels: s.channels,
      escrowHoldingsLedger: holdings.toString(),
      escrowHoldingsChain: s.chainHoldings.toString(),
      deposited: s.deposited.toString(),
      accepted: s.accepted.toString(),
      claimed: s.claimed.toString(),
      unclaimed: s.unclaimed.toString(),
      owed: s.owed.toString(),
      available: s.available.toString(),
      revenue: revenue.toString(),
    });
  }
  differences.push(...(await transactionWarnings(db, scope, options.stuckAfterSeconds ?? 600)));
  const exact = await reconcileExact(db, scope.payee, scope.chainId);
  differences.push(...exact.differences);

  return {
    ok: !differences.some((d) => d.severity === "missing"),
    generatedAt: new Date().toISOString(),
    scope: { chainId: scope.chainId, escrow: scope.escrow, payee: scope.payee },
    blocks: { head: head.number.toString(), mirrored: mirrored?.toString() ?? null, comparedAt: comparedAt.toString() },
    channels: counts,
    assets,
    trialBalance: [...trial].map(([asset, t]) => ({ asset, debits: t.debits.toString(), credits: t.credits.toString() })),
    exact: exact.totals,
    differences,
  };
}

async function channelRows(db: Db, scope: MirrorScope): Promise<ChannelRow[]> {
  return db.$queryRaw<ChannelRow[]>`
    SELECT c.id, c.escrow, c.payer, c.payee, c.token, c.signer, c.withdraw_delay, c.salt, c.asset, c.deposit::text,
           c.claimed_on_chain::text, c.withdraw_ready_at, c.closed, c.accepted_cumulative::text,
           c.booked_cumulative::text, COALESCE(s.total, 0)::text AS accepted_sum, v.cumulative_amount::text AS voucher_amount, v.signature AS voucher_signature
    FROM channel c
    LEFT JOIN LATERAL (SELECT sum(p.price) AS total FROM payment p WHERE p.channel_id = c.id AND p.status = 'ACCEPTED') s ON true
    LEFT JOIN LATERAL (
      SELECT p.cumulative_amount, p.signature FROM payment p
      WHERE p.channel_id = c.id AND p.status = 'ACCEPTED' AND p.cumulative_amount <= c.accepted_cumulative
      ORDER BY p.cumulative_amount DESC LIMIT 1) v ON true
    WHERE c.chain_id = ${BigInt(scope.chainId)} AND lower(c.escrow) = ${scope.escrow.toLowerCase()} AND lower(c.payee) = ${scope.payee.toLowerCase()}
    ORDER BY c.id`;
}

/** Every channel of the escrow in the ledger (any payee), by asset: ESCROW_HOLDINGS covers them all. */
async function channelsOfEscrow(db: Db, scope: MirrorScope): Promise<Map<string, Hex[]>> {
  const rows = await db.$queryRaw<{ id: string; asset: string }[]>`
    SELECT id, asset FROM channel WHERE chain_id = ${BigInt(scope.chainId)} AND lower(escrow) = ${scope.escrow.toLowerCase()}`;
  const byAsset = new Map<string, Hex[]>();
  for (const r of rows) byAsset.set(r.asset, [...(byAsset.get(r.asset) ?? []), r.id as Hex]);
  return byAsset;
}

/** Per channel, what its DEPOSIT, CLAIM and REFUND entries (net of reversals) moved. */
async function bookedPerChannel(db: Db): Promise<Map<Hex, Booked>> {
  const rows = await db.$queryRaw<{ account_id: string; kind: string; net_credit: string }[]>`
    SELECT p.account_id, COALESCE(r.kind, e.kind)::text AS kind,
           SUM(CASE p.side WHEN 'CREDIT' THEN p.amount ELSE -p.amount END)::text AS net_credit
    FROM posting p
    JOIN journal_entry e ON e.id = p.entry_id
    LEFT JOIN journal_entry r ON r.id = e.reverses_entry_id
    WHERE COALESCE(r.kind, e.kind) IN ('DEPOSIT', 'CLAIM', 'REFUND') AND p.account_id LIKE 'channel:%'
    GROUP BY p.account_id, COALESCE(r.kind, e.kind)`;
  const booked = new Map<Hex, Booked>();
  for (const row of rows) {
    const id = row.account_id.split(":")[1] as Hex;
    const b = booked.get(id) ?? { deposited: 0n, claimed: 0n, refunded: 0n };
    const net = BigInt(row.net_credit);
    if (row.kind === "DEPOSIT") b.deposited += net;
    if (row.kind === "CLAIM") b.claimed -= net;
    if (row.kind === "REFUND") b.refunded -= net;
    booked.set(id, b);
  }
  return booked;
}

/** Only an ECDSA signature by the effective signer is certain to be paid: an ERC-1271 answer can
 * change before the claim lands (docs/PROTOCOL.md §6.2). */
function verifies(row: ChannelRow, amount: bigint, signature: Hex, digest: ReturnType<typeof voucherDigester>): boolean {
  const recovered = recoverSigner(digest(row.id as Hex, amount), hexToBytes(signature));
  return recovered === voucherSigner(configOf(row)).toLowerCase();
}

function configOf(row: ChannelRow): ChannelConfig {
  return {
    payer: getAddress(row.payer),
    payee: getAddress(row.payee),
    token: getAddress(row.token),
    signer: getAddress(row.signer),
    withdrawDelay: row.withdraw_delay,
    salt: row.salt as Hex,
  };
}

async function transactionWarnings(db: Db, scope: MirrorScope, stuckAfterSeconds: number): Promise<Difference[]> {
  const rows = await db.$queryRaw<{ id: string; status: string; purpose: string; error: string | null; tx_hash: string | null; age: number }[]>`
    SELECT t.id, t.status::text, t.purpose, t.error, t.tx_hash, EXTRACT(EPOCH FROM now() - t.updated_at)::float8 AS age
    FROM chain_tx t JOIN settlement_batch b ON b.chain_tx_id = t.id
    WHERE b.escrow = ${scope.escrow.toLowerCase()} AND b.payee = ${scope.payee.toLowerCase()}
      AND ((t.status = 'FAILED' AND t.updated_at > now() - interval '1 day')
           OR (t.status IN ('QUEUED', 'PENDING') AND t.updated_at < now() - make_interval(secs => ${stuckAfterSeconds})))
    ORDER BY t.created_at`;
  return rows.map((r) =>
    r.status === "FAILED"
      ? { severity: "warning", code: "TX_FAILED", cause: `Settlement transaction ${r.tx_hash ?? r.id} (${r.purpose}) failed: ${r.error ?? "unknown"}; its channels are claimed again in the next round.` }
      : { severity: "warning", code: "TX_STUCK", cause: `Settlement transaction ${r.id} (${r.purpose}) has been ${r.status.toLowerCase()} for ${Math.round(r.age)} s: is \`paychan work\` running, and is the settlement key funded?` },
  );
}

/** The report as text, for the CLI: totals first, then every difference with its cause. */
export function formatReport(report: ReconcileReport): string {
  const lines: string[] = [];
  lines.push(`Reconciliation of ${report.scope.payee} on escrow ${report.scope.escrow} (chain ${report.scope.chainId}) at ${report.generatedAt}`);
  lines.push(`blocks: head ${report.blocks.head}, mirrored up to ${report.blocks.mirrored ?? "none"}, ledger compared with block ${report.blocks.comparedAt}`);
  const c = report.channels;
  lines.push(`channels: ${c.total} (${c.open} open, ${c.withdrawing} withdrawing, ${c.closed} closed)`);
  for (const a of report.assets) {
    lines.push(`\n${a.asset} — ${a.channels} channels`);
    lines.push(`  escrow holdings   ledger ${a.escrowHoldingsLedger}   chain ${a.escrowHoldingsChain}`);
    lines.push(`  deposited ${a.deposited}   accepted ${a.accepted}   claimed ${a.claimed}   unclaimed ${a.unclaimed}`);
    lines.push(`  owed ${a.owed}   available ${a.available}   revenue ${a.revenue}`);
  }
  for (const e of report.exact) {
    lines.push(`\n${e.asset} — x402 exact payments`);
    lines.push(`  awaiting submission ${e.awaitingSubmission}   submitted ${e.submitted}   settled ${e.settled}   unpaid ${e.unpaid}   voided ${e.voided}`);
  }
  lines.push("\ntrial balance:");
  for (const t of report.trialBalance) lines.push(`  ${t.asset}: debits ${t.debits} credits ${t.credits}${t.debits === t.credits ? "" : "  UNBALANCED"}`);
  const bySeverity = (s: Severity) => report.differences.filter((d) => d.severity === s);
  lines.push("");
  if (report.differences.length === 0) lines.push("No differences: chain, ledger and voucher store agree.");
  for (const [severity, title] of [["missing", "MONEY MISSING"], ["warning", "needs attention"], ["lag", "lag (resolves by itself)"]] as const) {
    const found = bySeverity(severity);
    if (found.length === 0) continue;
    lines.push(`${title}: ${found.length}`);
    for (const d of found) {
      const where = d.channelId ? ` channel ${d.channelId}` : d.asset ? ` ${d.asset}` : "";
      const values = d.expected !== undefined ? ` (expected ${d.expected}, found ${d.actual})` : "";
      lines.push(`  ${d.code}${where}${values}\n    ${d.cause}`);
    }
  }
  return lines.join("\n");
}
