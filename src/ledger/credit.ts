// Prepaid credit in the books: credit accounts and the API keys that spend them, card top-ups, and
// what the card processor's webhook events do to them. The processor is named (its ledger accounts
// are `clearing:<processor>:…`), never known: src/rails turns its webhooks into the FiatEvents below.
//
// Credit is granted only by a verified webhook event (`topup.paid`), once per top-up, and every
// event is recorded once by its id, so duplicates are answered without effect. Events may arrive in
// any order: one about a payment whose top-up has not arrived yet (a refund first) is PARKED and
// applied when the top-up is booked. Refunds are booked from the processor's cumulative refunded
// total, so a late or repeated refund event books nothing twice.
import { createHash, randomBytes } from "node:crypto";
import { accountId, chartOfAccounts } from "./accounts.js";
import { toBigInt } from "./amount.js";
import type { Asset } from "./asset.js";
import { creditAsset, currencyCode, minorToBase } from "./currency.js";
import { cardReversal, cardTopUp, disputeWon } from "./flows.js";
import { inTransaction, postEntry, type Db, type Json, type Tx } from "./postings.js";
import type { Sql } from "./sql.js";

/** A webhook event, as src/rails parsed and verified it; amounts in the processor's minor units. */
export type FiatEvent = { id: string; processor: string } & (
  /** `customerRef`: the processor's customer whose card was saved for off-session recharges. */
  | { type: "topup.paid"; topUpId: string; paymentRef: string; currency: string; amountMinor: bigint; customerRef?: string }
  /** `refundedMinor` is the payment's refunded total so far (cumulative). */
  | { type: "payment.refunded"; paymentRef: string; currency: string; refundedMinor: bigint }
  | { type: "dispute.opened" | "dispute.won"; disputeRef: string; paymentRef: string; currency: string; amountMinor: bigint }
  /** An event paychan does not act on (still recorded once). */
  | { type: "ignored"; name: string }
);

export type EventOutcome = "applied" | "parked" | "ignored" | "duplicate";

export type CreditKeyScope = {
  /** Sellers the key may pay (any when absent). */
  sellers?: string[];
  /** URL path prefixes the key may pay for, e.g. "/api/" (any when absent). */
  pathPrefixes?: string[];
};

export type CreditKeyRecord = CreditKeyScope & { id: string; accountId: string; asset: Asset; revoked: boolean };

/** The prefix of every credit key: lets a gateway tell its keys from other bearer tokens. */
export const KEY_PREFIX = "pck_";

export function hashKey(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** Opens a credit account in `currency`, with its CUSTOMER_CREDIT ledger account. */
export async function createCreditAccount(db: Db, options: { currency: string; label?: string }): Promise<{ id: string; asset: Asset }> {
  const id = `ca_${randomBytes(8).toString("hex")}`;
  const asset = creditAsset(options.currency);
  await inTransaction(db, async (tx) => {
    await tx.creditAccount.create({ data: { id, asset, label: options.label ?? null } });
    await tx.ledgerAccount.create({ data: { id: accountId.customerCredit(id), asset, kind: "CUSTOMER_CREDIT", ...chartOfAccounts.CUSTOMER_CREDIT } });
  });
  return { id, asset };
}

/**
 * Issues a key for a credit account: 256 random bits, returned once; only its sha256 is stored.
 * The key reads `pck_<keyId>_<secret>`; `keyId` names it for listing and revoking.
 */
export async function issueCreditKey(db: Db, account: string, scope: CreditKeyScope & { label?: string } = {}): Promise<{ keyId: string; key: string }> {
  const keyId = `ck_${randomBytes(6).toString("hex")}`;
  const key = `${KEY_PREFIX}${keyId.slice(3)}_${randomBytes(32).toString("base64url")}`;
  const found = await db.creditAccount.findUnique({ where: { id: account }, select: { id: true } });
  if (!found) throw new RangeError(`There is no credit account ${account}.`);
  await db.creditKey.create({
    data: {
      id: keyId,
      accountId: account,
      secretHash: hashKey(key),
      sellers: scope.sellers ?? [],
      pathPrefixes: scope.pathPrefixes ?? [],
      label: scope.label ?? null,
    },
  });
  return { keyId, key };
}

/** Revokes a key at once for every gateway (the spend statement reads it); false if unknown. */
export async function revokeCreditKey(db: Db, keyId: string): Promise<boolean> {
  const { count } = await db.creditKey.updateMany({ where: { id: keyId, revokedAt: null }, data: { revokedAt: new Date() } });
  if (count > 0) return true;
  return (await db.creditKey.count({ where: { id: keyId } })) > 0;
}

/** The key a secret names, by its hash; undefined for an unknown one. */
export async function findCreditKey(sql: Sql, secret: string): Promise<CreditKeyRecord | undefined> {
  const [row] = await sql.query<{ id: string; account_id: string; asset: string; sellers: string[] | null; path_prefixes: string[] | null; revoked: boolean }>(
    `SELECT k.id, k.account_id, a.asset, k.sellers, k.path_prefixes, k.revoked_at IS NOT NULL AS revoked
     FROM credit_key k JOIN credit_account a ON a.id = k.account_id WHERE k.secret_hash = $1`,
    [hashKey(secret)],
    "paychan_find_credit_key",
  );
  if (!row) return undefined;
  return {
    id: row.id,
    accountId: row.account_id,
    asset: row.asset as Asset,
    revoked: row.revoked,
    ...(row.sellers?.length ? { sellers: row.sellers } : {}),
    ...(row.path_prefixes?.length ? { pathPrefixes: row.path_prefixes } : {}),
  };
}

export type CreditBalance = {
  accountId: string;
  asset: Asset;
  granted: bigint;
  spent: bigint;
  balance: bigint;
  /** No spending: the balance is below zero, or auto-recharge kept failing (`suspendedReason`). */
  suspended: boolean;
  suspendedReason?: string;
  /** A card is saved for auto-recharge. */
  cardSaved: boolean;
};

export async function creditBalance(db: Db, account: string): Promise<CreditBalance | undefined> {
  const row = await db.creditAccount.findUnique({ where: { id: account } });
  if (!row) return undefined;
  const granted = toBigInt(row.granted);
  const spent = toBigInt(row.spent);
  return {
    accountId: row.id,
    asset: row.asset as Asset,
    granted,
    spent,
    balance: granted - spent,
    suspended: granted < spent || row.suspendedAt !== null,
    ...(row.suspendedReason && { suspendedReason: row.suspendedReason }),
    cardSaved: row.cardCustomerRef !== null,
  };
}

/** Records a top-up before the processor is asked for it, so its webhook always finds it. */
export async function recordTopUp(
  db: Db,
  topUp: { id: string; accountId: string; processor: string; currency: string; amountMinor: bigint },
): Promise<void> {
  await db.fiatTopUp.create({
    data: {
      id: topUp.id,
      accountId: topUp.accountId,
      processor: topUp.processor,
      currency: currencyCode(topUp.currency),
      amountMinor: topUp.amountMinor.toString(),
    },
  });
}

/** The processor's checkout for a recorded top-up. */
export async function noteTopUpSession(db: Db, id: string, sessionRef: string): Promise<void> {
  await db.fiatTopUp.update({ where: { id }, data: { sessionRef } });
}

/**
 * Applies one verified webhook event exactly once (by its id), in one transaction with its entries.
 */
export async function applyFiatEvent(db: Db, event: FiatEvent): Promise<EventOutcome> {
  return inTransaction(db, async (tx) => {
    const paymentRef = "paymentRef" in event ? event.paymentRef : null;
    const inserted = await tx.$queryRaw<{ id: string }[]>`
      INSERT INTO fiat_event (id, processor, type, payment_ref, event, status)
      VALUES (${event.id}, ${event.processor}, ${event.type}, ${paymentRef}, ${JSON.stringify(eventJson(event))}::jsonb, 'PARKED')
      ON CONFLICT (id) DO NOTHING RETURNING id`;
    if (inserted.length === 0) {
      const [stored] = await tx.$queryRaw<{ status: string }[]>`SELECT status FROM fiat_event WHERE id = ${event.id} FOR UPDATE`;
      if (stored!.status !== "PARKED") return "duplicate";
    }
    const outcome = await apply(tx, event);
    await tx.$executeRaw`
      UPDATE fiat_event SET status = ${outcome === "parked" ? "PARKED" : outcome === "ignored" ? "IGNORED" : "APPLIED"},
        applied_at = CASE WHEN ${outcome} = 'parked' THEN NULL ELSE now() END
      WHERE id = ${event.id}`;
    return outcome;
  });
}

async function apply(tx: Tx, event: FiatEvent): Promise<Exclude<EventOutcome, "duplicate">> {
  if (event.type === "ignored") return "ignored";
  if (event.type === "topup.paid") {
    const [topUp] = await tx.$queryRaw<{ account_id: string; status: string; currency: string }[]>`
      SELECT account_id, status, currency FROM fiat_topup WHERE id = ${event.topUpId} AND processor = ${event.processor} FOR UPDATE`;
    // A payment paychan did not start (another application on the same processor account).
    if (!topUp) return "ignored";
    if (topUp.status === "PAID") return "applied";
    const asset = creditAsset(event.currency);
    const amount = minorToBase(event.currency, event.amountMinor);
    await tx.$executeRaw`
      UPDATE fiat_topup SET status = 'PAID', payment_ref = ${event.paymentRef}, paid_at = now(), amount_minor = ${event.amountMinor.toString()}::numeric
      WHERE id = ${event.topUpId}`;
    await grant(tx, topUp.account_id, amount, {
      idempotencyKey: `fiat:topup:${event.processor}:${event.topUpId}`,
      ...cardTopUp({ processor: event.processor, creditAccount: topUp.account_id, asset, amount }),
      metadata: { eventId: event.id, topUpId: event.topUpId, paymentRef: event.paymentRef, amountMinor: event.amountMinor.toString(), currency: event.currency },
    });
    // A paid top-up ends a suspension for failed recharges, closes the recharge it was an attempt of,
    // and saves the card it was paid with when the buyer agreed to that.
    await tx.$executeRaw`
      UPDATE credit_account SET suspended_at = NULL, suspended_reason = NULL,
        card_customer_ref = COALESCE(${event.customerRef ?? null}, card_customer_ref)
      WHERE id = ${topUp.account_id}`;
    await tx.$executeRaw`
      UPDATE credit_recharge SET status = 'SUCCEEDED', next_attempt_at = NULL, updated_at = now()
      WHERE topup_id = ${event.topUpId} AND status IN ('PENDING', 'CHARGED')`;
    // Events about this payment that arrived before it.
    const parked = await tx.$queryRaw<{ event: Json }[]>`
      SELECT event FROM fiat_event WHERE payment_ref = ${event.paymentRef} AND processor = ${event.processor} AND status = 'PARKED' AND id <> ${event.id}
      ORDER BY received_at, id FOR UPDATE`;
    for (const { event: stored } of parked) {
      const earlier = eventFromJson(stored);
      const outcome = await apply(tx, earlier);
      if (outcome !== "parked") await tx.$executeRaw`UPDATE fiat_event SET status = 'APPLIED', applied_at = now() WHERE id = ${earlier.id}`;
    }
    return "applied";
  }
  const [topUp] = await tx.$queryRaw<{ id: string; account_id: string; refunded_minor: string }[]>`
    SELECT id, account_id, refunded_minor::text FROM fiat_topup WHERE payment_ref = ${event.paymentRef} AND processor = ${event.processor} FOR UPDATE`;
  if (!topUp) return "parked";
  const asset = creditAsset(event.currency);
  const base = { processor: event.processor, creditAccount: topUp.account_id, asset };
  const metadata = { eventId: event.id, topUpId: topUp.id, paymentRef: event.paymentRef, currency: event.currency };
  if (event.type === "payment.refunded") {
    const delta = event.refundedMinor - BigInt(topUp.refunded_minor);
    if (delta <= 0n) return "applied";
    const amount = minorToBase(event.currency, delta);
    await tx.$executeRaw`UPDATE fiat_topup SET refunded_minor = ${event.refundedMinor.toString()}::numeric WHERE id = ${topUp.id}`;
    await grant(tx, topUp.account_id, -amount, {
      idempotencyKey: `fiat:refund:${event.processor}:${event.paymentRef}:${event.refundedMinor}`,
      ...cardReversal({ ...base, amount, kind: "FIAT_REFUND" }),
      metadata: { ...metadata, refundedMinor: event.refundedMinor.toString(), amountMinor: delta.toString() },
    });
    return "applied";
  }
  const amount = minorToBase(event.currency, event.amountMinor);
  const won = event.type === "dispute.won";
  await grant(tx, topUp.account_id, won ? amount : -amount, {
    idempotencyKey: `fiat:${won ? "dispute-won" : "dispute"}:${event.processor}:${event.disputeRef}`,
    ...(won ? disputeWon({ ...base, amount }) : cardReversal({ ...base, amount, kind: "FIAT_DISPUTE" })),
    metadata: { ...metadata, disputeRef: event.disputeRef, amountMinor: event.amountMinor.toString() },
  });
  return "applied";
}

/** Posts the entry and moves the account's granted total by `delta`, once per idempotency key. */
async function grant(tx: Tx, account: string, delta: bigint, entry: Parameters<typeof postEntry>[1]): Promise<void> {
  const { replayed } = await postEntry(tx, entry);
  if (replayed) return;
  await tx.$executeRaw`UPDATE credit_account SET granted = granted + ${delta.toString()}::numeric WHERE id = ${account}`;
}

function eventJson(event: FiatEvent): Json {
  return JSON.parse(JSON.stringify(event, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)));
}

function eventFromJson(json: Json): FiatEvent {
  return JSON.parse(JSON.stringify(json), (_k, v) => (typeof v === "string" && /^-?\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v)) as FiatEvent;
}
