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
// no reason the report can name (the CLI exits non-zero); `loss` — a realised loss the books record
// correctly (a reorg took away money a channel had already spent: its CHANNEL_SHORTFALL); `lag` — a
// difference explained by blocks not yet confirmed or mirrored, or by a head view the running watcher
// refreshes at its next poll; `warning` — nothing is wrong yet, but someone should look (a withdrawal
// with unclaimed vouchers, a failed claim transaction, deposits served before they were confirmed).
import { getAddress, hexToBytes, type Address, type Hex } from "viem";
import { recoverSigner, voucherDigester } from "../gateway/signatures.js";
import { voucherSigner, type ChannelConfig } from "../protocol/Channel.js";
import { accountId } from "./accounts.js";
import { nativeAsset, type Asset } from "./asset.js";
import { cursorIdOf, readCursor, type MirrorScope } from "./chainMirror.js";
import { accountsOutOfBalance, balances, trialBalance, type Db } from "./postings.js";
import type { ChannelChainState } from "./channels.js";
import type { FiatReport } from "./fiatReconcile.js";
import { reconcileExact, type ExactTotals } from "./exactPayments.js";

/** What reconciliation needs from the chain (src/chain/escrowState.ts implements it). */
export type ChainView = {
  head(): Promise<{ number: bigint; timestamp: bigint }>;
  channels(ids: Hex[], blockNumber?: bigint): Promise<Map<Hex, ChannelChainState>>;
  /** A transaction's receipt as the chain has it now, or undefined if it is in no block. */
  receipt(hash: Hex): Promise<{ blockHash: Hex; gasUsed: bigint; effectiveGasPrice: bigint } | undefined>;
};

export type Severity = "missing" | "loss" | "lag" | "warning";

export type DifferenceCode =
  | "LEDGER_UNBALANCED"
  | "ACCOUNT_TOTALS"
  | "ESCROW_INVARIANT"
  | "ESCROW_HOLDINGS"
  | "DEPOSIT_PENDING"
  | "DEPOSIT_VIEW"
  | "REORG_SHORTFALL"
  | "MIRROR_FAILED"
  | "GAS_NOT_ON_CHAIN"
  | "GAS_MISMATCH"
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
  // The fiat rails (fiatReconcile.ts).
  | "FIAT_UNEXPLAINED_MOVEMENT"
  | "FIAT_CHARGE_NOT_BOOKED"
  | "FIAT_TOPUP_NOT_AT_PROCESSOR"
  | "FIAT_CHARGE_AMOUNT"
  | "FIAT_REFUND_MISMATCH"
  | "FIAT_DISPUTE_MISMATCH"
  | "FIAT_PAYOUT_NOT_AT_PROCESSOR"
  | "FIAT_TRANSFER_MISMATCH"
  | "FIAT_TRANSFER_NOT_BOOKED"
  | "FIAT_CLEARING_MISMATCH"
  | "PAYOUTS_IN_TRANSIT_MISMATCH"
  | "PAYOUT_PENDING"
  | "CREDIT_BALANCE_MISMATCH"
  | "CREDIT_SPENT_TOTAL"
  | "CREDIT_NOT_BOOKED"
  | "CREDIT_SUSPENDED"
  | "FIAT_EVENT_PARKED"
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
  /** Confirmed deposits, and deposits seen but not yet confirmed. */
  deposited: string;
  pending: string;
  accepted: string;
  claimed: string;
  /** Accepted and not yet claimed on chain. */
  unclaimed: string;
  owed: string;
  available: string;
  /** Realised reorg losses (Σ CHANNEL_SHORTFALL). */
  shortfall: string;
  revenue: string;
};

export type ReconcileReport = {
  /** True when nothing is `missing` and no loss was realised. */
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
  /** The fiat rails, when configured: their differences are also in `differences`. */
  fiat?: FiatReport;
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
  pending_booked: string;
  deposit_seen: string;
  withdraw_ready_at_seen: bigint | null;
  closed_seen: boolean;
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
  const failures = await mirrorFailures(db, scope);

  type Sums = { channels: number; chainHoldings: bigint; deposited: bigint; pending: bigint; accepted: bigint; claimed: bigint; unclaimed: bigint; owed: bigint; available: bigint; shortfall: bigint };
  const sums = new Map<string, Sums>();
  const counts = { total: rows.length, open: 0, withdrawing: 0, closed: 0 };

  for (const row of rows) {
    const id = row.id as Hex;
    const at = (state: ChannelChainState | undefined) => state ?? { deposit: 0n, claimedOnChain: 0n, withdrawReadyAt: null, closed: false };
    const c = at(mirroredState.get(id));
    const h = at(latest.get(id));
    const b = booked.get(id) ?? { deposited: 0n, claimed: 0n, refunded: 0n };
    const accepted = BigInt(row.accepted_cumulative);
    const confirmedDeposit = BigInt(row.deposit);
    const pending = BigInt(row.pending_booked);
    const available = balanceOf(accountId.channelAvailable(id));
    const owed = balanceOf(accountId.channelOwed(id));
    const shortfall = balanceOf(accountId.channelShortfall(id));
    const asset = row.asset;
    const channel = { channelId: id, asset };
    const s = sums.get(asset) ?? { channels: 0, chainHoldings: 0n, deposited: 0n, pending: 0n, accepted: 0n, claimed: 0n, unclaimed: 0n, owed: 0n, available: 0n, shortfall: 0n };
    sums.set(asset, s);
    s.channels++;
    s.chainHoldings += c.deposit - c.claimedOnChain;
    s.deposited += confirmedDeposit;
    s.pending += pending;
    s.accepted += accepted;
    s.claimed += b.claimed;
    s.unclaimed += accepted > c.claimedOnChain ? accepted - c.claimedOnChain : 0n;
    s.owed += owed;
    s.available += available;
    s.shortfall += shortfall;
    if (h.closed) counts.closed++;
    else if (h.withdrawReadyAt !== null) counts.withdrawing++;
    else counts.open++;

    // The confirmed state against the chain as mirrored, and the deposits the journal holds.
    if (!c.closed && confirmedDeposit !== c.deposit) {
      report({ severity: "missing", code: "DEPOSIT_VIEW", ...channel, expected: c.deposit.toString(), actual: confirmedDeposit.toString(),
        cause: `The mirror confirmed a deposit of ${confirmedDeposit} but the escrow held ${c.deposit} for this channel at block ${comparedAt}.` });
    }
    const expectedDeposits = (c.closed ? confirmedDeposit : c.deposit) + pending;
    if (!c.closed && b.deposited !== expectedDeposits) {
      const more = b.deposited > expectedDeposits;
      report({ severity: "missing", code: more ? "DEPOSIT_NOT_ON_CHAIN" : "DEPOSIT_NOT_BOOKED", ...channel, expected: expectedDeposits.toString(), actual: b.deposited.toString(),
        cause: more
          ? `The journal credits the channel with ${b.deposited - expectedDeposits} more deposit than the escrow's ${c.deposit} confirmed plus ${pending} pending (a stray DEPOSIT entry?).`
          : `The escrow holds ${expectedDeposits - b.deposited} more deposit than the journal credits (the watcher started after the channel opened, or missed an event).` });
    }
    if (pending > 0n) {
      const served = accepted > confirmedDeposit ? accepted - confirmedDeposit : 0n;
      report({ severity: served > 0n ? "warning" : "lag", code: "DEPOSIT_PENDING", ...channel, expected: confirmedDeposit.toString(), actual: (confirmedDeposit + pending).toString(),
        cause: `${pending} of this channel's deposit is seen on chain but not yet ${options.confirmations} blocks deep` +
          (served > 0n ? `; ${served} of it was already spent, which a reorg dropping the deposit would turn into a loss.` : "; it is confirmed in a few blocks.") });
    }
    if (shortfall > 0n) {
      report({ severity: "loss", code: "REORG_SHORTFALL", ...channel, expected: "0", actual: shortfall.toString(),
        cause: `A reorg took away ${shortfall} of deposit that vouchers accepted on this channel had already spent: a realised loss, booked to its CHANNEL_SHORTFALL; the channel serves nothing more (recovered if the deposit is mined again).` });
    }
    const failure = failures.get(id);
    if (failure) {
      report({ severity: "missing", code: "MIRROR_FAILED", ...channel, expected: "0", actual: failure.events.toString(),
        cause: `The mirror could not book ${failure.events} event(s) of this channel (${failure.error}); they are kept and retried every poll, the channel is blocked, and every other channel goes on.` });
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
    // What the journal credited as deposits (confirmed and pending, net of voids) plus what a reorg left
    // as shortfall = what is there plus what went out.
    const spent = bookedVouchers > b.claimed ? bookedVouchers : b.claimed;
    const expectedAvailable = c.closed ? 0n : b.deposited + shortfall - spent - b.refunded;
    if (available !== expectedAvailable) {
      report({ severity: "missing", code: "AVAILABLE_MISMATCH", ...channel, expected: expectedAvailable.toString(), actual: available.toString(),
        cause: `CHANNEL_AVAILABLE is ${available} but deposits ${b.deposited} + shortfall ${shortfall} − max(booked ${bookedVouchers}, claimed ${b.claimed}) − refunded ${b.refunded} is ${expectedAvailable}.` });
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
    if (!h.closed && shortfall === 0n && accepted > h.deposit) {
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

    // The head view (what acceptance reads for deposits, withdrawals and closes) against the chain now.
    const view = {
      deposit: BigInt(row.deposit_seen),
      readyAt: row.withdraw_ready_at_seen === null ? null : BigInt(row.withdraw_ready_at_seen),
      closed: row.closed_seen,
    };
    const stale = [
      !h.closed && view.deposit !== h.deposit && `deposit ${view.deposit} (chain ${h.deposit})`,
      !h.closed && view.readyAt !== h.withdrawReadyAt && `withdrawal ready at ${view.readyAt ?? "none"} (chain ${h.withdrawReadyAt ?? "none"})`,
      view.closed !== h.closed && `closed ${view.closed} (chain ${h.closed})`,
    ].filter(Boolean);
    if (stale.length > 0) {
      report({ severity: "lag", code: "VIEW_STALE", ...channel,
        cause: `The head view acceptance reads is behind the chain: ${stale.join(", ")}. A running \`paychan work\` refreshes it at its next poll; if it stays, the watcher is not running (see WATCHER_BEHIND).` });
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
    const holdingsAccount = accountId.escrow(scope.escrow, asset as Asset);
    const pendingAccount = accountId.escrowPending(scope.escrow, asset as Asset);
    const escrowBalances = await balances(db, { accounts: [holdingsAccount, pendingAccount] });
    const holdings = escrowBalances.get(holdingsAccount)?.balance ?? 0n;
    const pendingHeld = escrowBalances.get(pendingAccount)?.balance ?? 0n;
    const ids = everyChannel.get(asset) ?? [];
    const inChannels = ids.reduce((sum, id) => sum + balanceOf(accountId.channelAvailable(id)) + balanceOf(accountId.channelOwed(id)), 0n);
    const shortfalls = ids.reduce((sum, id) => sum + balanceOf(accountId.channelShortfall(id)), 0n);
    if (holdings + pendingHeld + shortfalls !== inChannels) {
      report({ severity: "missing", code: "ESCROW_INVARIANT", asset, expected: inChannels.toString(), actual: (holdings + pendingHeld + shortfalls).toString(),
        cause: `ESCROW_HOLDINGS ${holdings} + ESCROW_PENDING ${pendingHeld} + shortfalls ${shortfalls} differ from the channels' AVAILABLE + OWED (${inChannels}): an entry touched one side only.` });
    }
    // ESCROW_HOLDINGS covers every payee's channels in this database; ours are compared with the chain.
    const ours = ids.length === s.channels ? holdings : s.owed + s.available - s.pending - s.shortfall;
    if (ours !== s.chainHoldings) {
      report({ severity: "missing", code: "ESCROW_HOLDINGS", asset, expected: s.chainHoldings.toString(), actual: ours.toString(),
        cause: `The ledger's confirmed escrow holdings for our channels are ${ours} but they hold ${s.chainHoldings} (deposit − claimed) on chain as of block ${comparedAt}.` });
    }
    const revenueAccount = accountId.revenue(scope.payee, asset as Asset);
    const revenue = (await balances(db, { accounts: [revenueAccount] })).get(revenueAccount)?.balance ?? 0n;
    assets.push({
      asset,
      channels: s.channels,
      escrowHoldingsLedger: holdings.toString(),
      escrowHoldingsChain: s.chainHoldings.toString(),
      deposited: s.deposited.toString(),
      pending: s.pending.toString(),
      accepted: s.accepted.toString(),
      claimed: s.claimed.toString(),
      unclaimed: s.unclaimed.toString(),
      owed: s.owed.toString(),
      available: s.available.toString(),
      shortfall: s.shortfall.toString(),
      revenue: revenue.toString(),
    });
  }
  differences.push(...(await gasDifferences(db, scope, chain)));
  differences.push(...(await transactionWarnings(db, scope, options.stuckAfterSeconds ?? 600)));
  const exact = await reconcileExact(db, scope.payee, scope.chainId);
  differences.push(...exact.differences);

  return {
    ok: !differences.some((d) => d.severity === "missing" || d.severity === "loss"),
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
           c.booked_cumulative::text, c.pending_booked::text, c.deposit_seen::text, c.withdraw_ready_at_seen, c.closed_seen, COALESCE(s.total, 0)::text AS accepted_sum, v.cumulative_amount::text AS voucher_amount, v.signature AS voucher_signature
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
    WHERE COALESCE(r.kind, e.kind) IN ('DEPOSIT', 'DEPOSIT_PENDING', 'DEPOSIT_VOIDED', 'CLAIM', 'REFUND') AND p.account_id LIKE 'channel:%'
    GROUP BY p.account_id, COALESCE(r.kind, e.kind)`;
  const booked = new Map<Hex, Booked>();
  for (const row of rows) {
    const id = row.account_id.split(":")[1] as Hex;
    const b = booked.get(id) ?? { deposited: 0n, claimed: 0n, refunded: 0n };
    const net = BigInt(row.net_credit);
    // Deposits confirmed or pending, net of voids and reorgs; a shortfall booked against one counts as
    // taken back (its debit is on the channel's SHORTFALL account).
    if (row.kind === "DEPOSIT" || row.kind === "DEPOSIT_PENDING" || row.kind === "DEPOSIT_VOIDED") b.deposited += net;
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
    lines.push(`  deposited ${a.deposited} (+ ${a.pending} pending)   accepted ${a.accepted}   claimed ${a.claimed}   unclaimed ${a.unclaimed}`);
    lines.push(`  owed ${a.owed}   available ${a.available}   revenue ${a.revenue}${a.shortfall === "0" ? "" : `   REORG SHORTFALL ${a.shortfall}`}`);
  }
  if (report.fiat) {
    const f = report.fiat;
    lines.push(`\n${f.asset} — fiat rails (${f.processor}, ${f.period.from} to ${f.period.to}; processor amounts in minor units, ledger in millionths)`);
    lines.push(`  processor: ${f.processorTotals.movements} movements; charges ${f.processorTotals.charges}   refunds ${f.processorTotals.refunds}   disputes ${f.processorTotals.disputes}   transfers ${f.processorTotals.transfers}   fees ${f.processorTotals.fees}`);
    lines.push(`  ledger: clearing ${f.ledger.clearing}   customer credit ${f.ledger.customerCredit}   seller payable ${f.ledger.sellerPayable}   payouts in transit ${f.ledger.payoutsInTransit}`);
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
  for (const [severity, title] of [["missing", "MONEY MISSING"], ["loss", "REALISED LOSS"], ["warning", "needs attention"], ["lag", "lag (resolves while `paychan work` runs)"]] as const) {
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

/** Channels with events the mirror could not book (chain_event_failure), with how many and why. */
async function mirrorFailures(db: Db, scope: MirrorScope): Promise<Map<Hex, { events: number; error: string }>> {
  const rows = await db.$queryRawUnsafe<{ channel_id: string; events: number; error: string }[]>(
    `SELECT channel_id, count(*)::int AS events, max(error) AS error FROM chain_event_failure
     WHERE cursor_id = $1 AND resolved_at IS NULL GROUP BY channel_id`,
    cursorIdOf(scope),
  );
  return new Map(rows.map((r) => [r.channel_id as Hex, { events: r.events, error: r.error }]));
}

/**
 * Gas booked against the receipts the chain holds now, for our recent final transactions (the last
 * 200): a transaction no longer in its block, a different block, or another fee than booked is named;
 * and the GAS_FEE entries standing must add up to the fees of the transactions still final.
 */
async function gasDifferences(db: Db, scope: MirrorScope, chain: ChainView): Promise<Difference[]> {
  const found: Difference[] = [];
  const txs = await db.$queryRawUnsafe<{ id: string; tx_hash: string | null; block_hash: string | null; fee: string | null; sender: string }[]>(
    `SELECT t.id::text, t.tx_hash, t.block_hash, t.fee::text, t.sender FROM chain_tx t JOIN settlement_batch b ON b.chain_tx_id = t.id
     WHERE b.escrow = $1 AND b.payee = $2 AND t.status IN ('CONFIRMED', 'FAILED') AND t.tx_hash IS NOT NULL
     ORDER BY t.updated_at DESC LIMIT 200`,
    scope.escrow.toLowerCase(),
    scope.payee.toLowerCase(),
  );
  for (const tx of txs) {
    const receipt = await chain.receipt(tx.tx_hash as Hex);
    const fee = tx.fee === null ? 0n : BigInt(tx.fee);
    if (!receipt) {
      found.push({ severity: "missing", code: "GAS_NOT_ON_CHAIN", expected: "a receipt", actual: tx.tx_hash!,
        cause: `Transaction ${tx.tx_hash} is booked final with ${fee} of gas, but the chain has no receipt for it (a reorg the watcher has not undone yet).` });
    } else if (receipt.blockHash.toLowerCase() !== tx.block_hash || receipt.gasUsed * receipt.effectiveGasPrice !== fee) {
      found.push({ severity: "missing", code: "GAS_MISMATCH", expected: (receipt.gasUsed * receipt.effectiveGasPrice).toString(), actual: fee.toString(),
        cause: `Transaction ${tx.tx_hash}'s gas was booked from block ${tx.block_hash} but its receipt is now in block ${receipt.blockHash} for ${receipt.gasUsed * receipt.effectiveGasPrice}.` });
    }
  }
  const senders = [...new Set(txs.map((t) => t.sender))];
  for (const sender of senders) {
    const [row] = await db.$queryRawUnsafe<{ booked: string; fees: string }[]>(
      `SELECT
         (SELECT COALESCE(sum(CASE p.side WHEN 'DEBIT' THEN p.amount ELSE -p.amount END), 0) FROM posting p
          WHERE p.account_id = $1)::text AS booked,
         (SELECT COALESCE(sum(fee), 0) FROM chain_tx WHERE sender = $2 AND chain_id = $3 AND status IN ('CONFIRMED', 'FAILED'))::text AS fees`,
      accountId.gas(getAddress(sender), nativeAsset(scope.chainId)),
      sender,
      BigInt(scope.chainId),
    );
    if (row && row.booked !== row.fees) {
      found.push({ severity: "missing", code: "GAS_MISMATCH", expected: row.fees, actual: row.booked,
        cause: `GAS_EXPENSE of ${sender} books ${row.booked} but its final transactions' receipts add up to ${row.fees} (gas of a dropped transaction still booked?).` });
    }
  }
  return found;
}
