// Reconciliation of the fiat rails: the card processor's balance movements for a period (charges,
// refunds, disputes, transfers to sellers and their reversals) against the ledger's top-ups, refunds,
// disputes and payouts, object by object; and the ledger's fiat accounts against the records they
// were booked from. Every difference is named, with the same severities as the chain's report
// (reconcile.ts): `missing` makes `paychan reconcile` exit 1.
//
// The processor's fees are reported, not booked: the books hold credit at its gross card value.
import { accountId } from "./accounts.js";
import { toBigInt } from "./amount.js";
import type { Asset } from "./asset.js";
import { minorToBase } from "./currency.js";
import { balances, type Db } from "./postings.js";
import type { Difference } from "./reconcile.js";

/** One movement of the processor balance, signed (+ in, − out), with the processor's fee. */
export type BalanceMovement = {
  ref: string;
  kind: "charge" | "refund" | "dispute" | "dispute_won" | "transfer" | "transfer_reversal" | "other";
  /** The payment it concerns (charges, refunds, disputes), as webhooks name it. */
  paymentRef?: string;
  /** The transfer it concerns (transfers and their reversals). */
  transferRef?: string;
  currency: string;
  amountMinor: bigint;
  feeMinor: bigint;
  createdAt: Date;
  description: string;
};

export type FiatReport = {
  processor: string;
  asset: Asset;
  period: { from: string; to: string };
  /** What the processor moved in the period, in its minor units. */
  processorTotals: { charges: string; refunds: string; disputes: string; transfers: string; fees: string; movements: number };
  /** The ledger's fiat accounts now, in base units (millionths). */
  ledger: { clearing: string; customerCredit: string; sellerPayable: string; payoutsInTransit: string };
  differences: Difference[];
};

type Side = { charged: bigint; refunded: bigint; disputed: bigint };

export async function reconcileFiat(
  db: Db,
  options: { processor: string; currency: string; asset: Asset; movements: BalanceMovement[]; period: { from: Date; to: Date } },
): Promise<FiatReport> {
  const { processor, currency, asset, movements, period } = options;
  const differences: Difference[] = [];
  const report = (d: Omit<Difference, "asset">) => differences.push({ asset, ...d });
  const base = (minor: bigint) => minorToBase(currency, minor);

  // The processor's side, per payment and per transfer.
  const atProcessor = new Map<string, Side>();
  const transfers = new Map<string, { sent: bigint; reversed: bigint }>();
  const totals = { charges: 0n, refunds: 0n, disputes: 0n, transfers: 0n, fees: 0n };
  for (const m of movements) {
    totals.fees += m.feeMinor;
    if (m.currency !== currency || m.kind === "other" || (m.paymentRef === undefined && m.transferRef === undefined)) {
      report({ severity: "warning", code: "FIAT_UNEXPLAINED_MOVEMENT", expected: "0", actual: `${m.amountMinor} ${m.currency}`,
        cause: `The processor's balance moved ${m.amountMinor} ${m.currency} (${m.ref}: ${m.description}) in a way paychan does not book.` });
      continue;
    }
    if (m.transferRef) {
      const t = transfers.get(m.transferRef) ?? { sent: 0n, reversed: 0n };
      if (m.kind === "transfer") t.sent += -m.amountMinor;
      if (m.kind === "transfer_reversal") t.reversed += m.amountMinor;
      transfers.set(m.transferRef, t);
      if (m.kind === "transfer") totals.transfers += -m.amountMinor;
      continue;
    }
    const p = atProcessor.get(m.paymentRef!) ?? { charged: 0n, refunded: 0n, disputed: 0n };
    if (m.kind === "charge") (p.charged += m.amountMinor), (totals.charges += m.amountMinor);
    if (m.kind === "refund") (p.refunded += -m.amountMinor), (totals.refunds += -m.amountMinor);
    if (m.kind === "dispute" || m.kind === "dispute_won") (p.disputed += -m.amountMinor), (totals.disputes += -m.amountMinor);
    atProcessor.set(m.paymentRef!, p);
  }

  // The ledger's side: top-ups paid in the period, with their refunds and disputes.
  const topUps = await db.$queryRaw<{ id: string; payment_ref: string; amount_minor: string; refunded_minor: string; disputed: string }[]>`
    SELECT t.id, t.payment_ref, t.amount_minor::text, t.refunded_minor::text,
           COALESCE((SELECT sum(CASE e.kind WHEN 'FIAT_DISPUTE' THEN (e.metadata->>'amountMinor')::numeric ELSE -(e.metadata->>'amountMinor')::numeric END)
                     FROM journal_entry e WHERE e.kind IN ('FIAT_DISPUTE', 'FIAT_DISPUTE_WON') AND e.metadata->>'paymentRef' = t.payment_ref), 0)::text AS disputed
    FROM fiat_topup t
    WHERE t.processor = ${processor} AND t.status = 'PAID' AND t.paid_at >= ${period.from} AND t.paid_at < ${period.to}`;
  const inLedger = new Map(topUps.map((t) => [t.payment_ref, { id: t.id, charged: BigInt(t.amount_minor), refunded: BigInt(t.refunded_minor), disputed: BigInt(t.disputed) }]));
  for (const [ref, p] of atProcessor) {
    const l = inLedger.get(ref);
    if (!l) {
      if (p.charged > 0n) {
        report({ severity: "missing", code: "FIAT_CHARGE_NOT_BOOKED", expected: p.charged.toString(), actual: "0",
          cause: `The processor collected ${p.charged} (payment ${ref}) that the ledger never credited: its webhook was not delivered or not verified (check the endpoint and STRIPE_WEBHOOK_SECRET), or the top-up was not paychan's.` });
      }
      continue;
    }
    const compare = (code: Difference["code"], field: keyof Side, what: string) => {
      if (l[field] !== p[field]) {
        report({ severity: "missing", code, expected: p[field].toString(), actual: l[field].toString(),
          cause: `Payment ${ref} (top-up ${l.id}): the processor shows ${p[field]} ${what}, the ledger booked ${l[field]} — a webhook is missing or was not applied.` });
      }
    };
    compare("FIAT_CHARGE_AMOUNT", "charged", "charged");
    compare("FIAT_REFUND_MISMATCH", "refunded", "refunded");
    compare("FIAT_DISPUTE_MISMATCH", "disputed", "taken by disputes");
  }
  for (const [ref, l] of inLedger) {
    if (!atProcessor.has(ref)) {
      report({ severity: "missing", code: "FIAT_TOPUP_NOT_AT_PROCESSOR", expected: "0", actual: l.charged.toString(),
        cause: `The ledger credited top-up ${l.id} (payment ${ref}) with ${l.charged}, but the processor shows no such charge in the period.` });
    }
  }

  // Payouts: a posted one is a transfer; a voided one after its transfer is a transfer and its reversal.
  const payouts = await db.fiatPayout.findMany({ where: { processor, transferRef: { not: null }, createdAt: { gte: period.from, lt: period.to } } });
  for (const p of payouts) {
    const t = transfers.get(p.transferRef!);
    const amount = toBigInt(p.amountMinor);
    const expected = { sent: p.status === "PENDING" ? undefined : amount, reversed: p.status === "VOIDED" ? amount : 0n };
    if (!t) {
      report({ severity: p.status === "PENDING" ? "lag" : "missing", code: "FIAT_PAYOUT_NOT_AT_PROCESSOR", expected: "0", actual: amount.toString(),
        cause: `Payout ${p.id} (${p.status}) names transfer ${p.transferRef}, which the processor does not show in the period.` });
      continue;
    }
    transfers.delete(p.transferRef!);
    if ((expected.sent !== undefined && t.sent !== expected.sent) || t.reversed !== expected.reversed) {
      report({ severity: "missing", code: "FIAT_TRANSFER_MISMATCH", expected: `sent ${expected.sent ?? amount} reversed ${expected.reversed}`, actual: `sent ${t.sent} reversed ${t.reversed}`,
        cause: `Payout ${p.id} is ${p.status} in the ledger, but the processor sent ${t.sent} and took back ${t.reversed} on transfer ${p.transferRef}.` });
    }
  }
  for (const [ref, t] of transfers) {
    report({ severity: "missing", code: "FIAT_TRANSFER_NOT_BOOKED", expected: t.sent.toString(), actual: "0",
      cause: `The processor transferred ${t.sent} (${ref}) to a seller without a payout in the ledger (made by hand, or by another system on the same account).` });
  }

  // The ledger's fiat accounts against what they were booked from.
  const accounts = await balances(db, { asset });
  const sum = (kind: string) => [...accounts.values()].filter((a) => a.kind === kind).reduce((s, a) => s + a.balance, 0n);
  const clearing = accounts.get(accountId.clearing(processor, asset))?.balance ?? 0n;
  const [flows] = await db.$queryRaw<{ paid: string; refunded: string; disputed: string; posted: string; pending: string }[]>`
    SELECT COALESCE((SELECT sum(amount_minor) FROM fiat_topup WHERE processor = ${processor} AND status = 'PAID'), 0)::text AS paid,
           COALESCE((SELECT sum(refunded_minor) FROM fiat_topup WHERE processor = ${processor}), 0)::text AS refunded,
           COALESCE((SELECT sum(CASE e.kind WHEN 'FIAT_DISPUTE' THEN (e.metadata->>'amountMinor')::numeric ELSE -(e.metadata->>'amountMinor')::numeric END)
                     FROM journal_entry e WHERE e.kind IN ('FIAT_DISPUTE', 'FIAT_DISPUTE_WON') AND e.idempotency_key LIKE ${`fiat:%:${processor}:%`}), 0)::text AS disputed,
           COALESCE((SELECT sum(amount) FROM fiat_payout WHERE processor = ${processor} AND status = 'POSTED'), 0)::text AS posted,
           COALESCE((SELECT sum(amount) FROM fiat_payout WHERE processor = ${processor} AND status = 'PENDING'), 0)::text AS pending`;
  const expectedClearing = base(BigInt(flows!.paid) - BigInt(flows!.refunded) - BigInt(flows!.disputed)) - BigInt(flows!.posted);
  if (clearing !== expectedClearing) {
    report({ severity: "missing", code: "FIAT_CLEARING_MISMATCH", expected: expectedClearing.toString(), actual: clearing.toString(),
      cause: `FIAT_CLEARING is ${clearing} but top-ups less refunds, disputes and posted payouts come to ${expectedClearing}: an entry was posted outside the fiat rails.` });
  }
  const inTransit = accounts.get(accountId.payoutsInTransit(processor, asset))?.balance ?? 0n;
  if (inTransit !== BigInt(flows!.pending)) {
    report({ severity: "missing", code: "PAYOUTS_IN_TRANSIT_MISMATCH", expected: flows!.pending, actual: inTransit.toString(),
      cause: `PAYOUTS_IN_TRANSIT is ${inTransit} but the pending payouts add up to ${flows!.pending}.` });
  }
  const pending = await db.fiatPayout.findMany({ where: { processor, status: "PENDING" }, select: { id: true, amount: true, error: true } });
  for (const p of pending) {
    report({ severity: "warning", code: "PAYOUT_PENDING", actual: p.amount.toFixed(),
      cause: `Payout ${p.id} is pending${p.error ? ` (${p.error})` : ""}: the next payout run resumes it with the same idempotency keys.` });
  }
  const credit = await db.$queryRaw<{ id: string; granted: string; spent: string; booked_spent: string; accepted: string }[]>`
    SELECT a.id, a.granted::text, a.spent::text, a.booked_spent::text,
           COALESCE((SELECT sum(p.price) FROM credit_payment p WHERE p.account_id = a.id AND p.status = 'ACCEPTED'), 0)::text AS accepted
    FROM credit_account a WHERE a.asset = ${asset} ORDER BY a.id`;
  for (const a of credit) {
    const [granted, spent, booked, accepted] = [BigInt(a.granted), BigInt(a.spent), BigInt(a.booked_spent), BigInt(a.accepted)];
    const inJournal = accounts.get(accountId.customerCredit(a.id))?.balance ?? 0n;
    if (inJournal !== granted - booked) {
      report({ severity: "missing", code: "CREDIT_BALANCE_MISMATCH", expected: (granted - booked).toString(), actual: inJournal.toString(),
        cause: `Credit account ${a.id}: CUSTOMER_CREDIT is ${inJournal}, but granted ${granted} less booked spending ${booked} is ${granted - booked}.` });
    }
    if (spent !== accepted) {
      report({ severity: "missing", code: "CREDIT_SPENT_TOTAL", expected: accepted.toString(), actual: spent.toString(),
        cause: `Credit account ${a.id} counts ${spent} spent, but its standing payments add up to ${accepted}.` });
    }
    if (spent !== booked) {
      report({ severity: "lag", code: "CREDIT_NOT_BOOKED", expected: spent.toString(), actual: booked.toString(),
        cause: `Credit account ${a.id}: the journal holds ${booked} of the ${spent} spent; the gateway books the rest within a second.` });
    }
    if (granted < spent) {
      report({ severity: "warning", code: "CREDIT_SUSPENDED", expected: "0", actual: (granted - spent).toString(),
        cause: `Credit account ${a.id} is at ${granted - spent} after a refund or dispute of credit already spent: it cannot spend until topped up.` });
    }
  }
  const parked = await db.fiatEvent.findMany({ where: { processor, status: "PARKED" }, select: { id: true, type: true, paymentRef: true } });
  for (const e of parked) {
    report({ severity: "warning", code: "FIAT_EVENT_PARKED",
      cause: `Webhook event ${e.id} (${e.type}) concerns payment ${e.paymentRef}, whose top-up has not arrived: it is applied when it does.` });
  }

  return {
    processor,
    asset,
    period: { from: period.from.toISOString(), to: period.to.toISOString() },
    processorTotals: {
      charges: totals.charges.toString(),
      refunds: totals.refunds.toString(),
      disputes: totals.disputes.toString(),
      transfers: totals.transfers.toString(),
      fees: totals.fees.toString(),
      movements: movements.length,
    },
    ledger: {
      clearing: clearing.toString(),
      customerCredit: sum("CUSTOMER_CREDIT").toString(),
      sellerPayable: sum("SELLER_PAYABLE").toString(),
      payoutsInTransit: inTransit.toString(),
    },
    differences,
  };
}

/** The first top-up's time: the default start of a fiat reconciliation. */
export async function firstFiatActivity(db: Db, processor: string): Promise<Date | undefined> {
  const first = await db.fiatTopUp.findFirst({ where: { processor }, orderBy: { createdAt: "asc" }, select: { createdAt: true } });
  return first?.createdAt;
}
