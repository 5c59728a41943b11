// Booking spent credit into the journal, per credit account in aggregate (as booking.ts does for
// channels). The spend statement raises the account's `spent` and writes payment rows; booking later
// moves what the journal does not hold yet from the buyer's CUSTOMER_CREDIT to each seller's
// SELLER_PAYABLE, one entry per account per booking, and remembers the last payment it booked
// (booked_seq).
//
// Why the payments after booked_seq are exactly the unbooked ones: an account's payments are
// inserted under its row lock (the spend statement's compare-and-set), so their sequence numbers
// rise in commit order per account; booking holds the same lock, sees every payment committed before
// it, and books up to the highest it sees. A void books its account first, under the lock, so only
// booked payments are ever voided, and a voided payment is never among the unbooked.
import type { PrismaClient } from "../generated/prisma/client.js";
import { creditVoided } from "./flows.js";
import { inTransaction, postEntry, type Tx } from "./postings.js";
import { sqlOf, type Sql } from "./sql.js";
import { LedgerError } from "./errors.js";
import type { Asset } from "./asset.js";

const BOOK = `
WITH due AS (
  SELECT a.id, a.asset, a.booked_seq, a.booking_no + 1 AS no
  FROM credit_account a
  WHERE a.spent <> a.booked_spent AND ($1::text[] IS NULL OR a.id = ANY($1::text[]))
  ORDER BY a.id
  LIMIT $2
  FOR NO KEY UPDATE OF a
), pays AS (
  SELECT p.account_id, p.seller, sum(p.price) AS amount, max(p.seq) AS top
  FROM credit_payment p JOIN due d ON p.account_id = d.id AND p.seq > d.booked_seq
  WHERE p.status = 'ACCEPTED'
  GROUP BY p.account_id, p.seller
), e AS (
  SELECT d.id, d.asset, d.no, sum(s.amount) AS amount, max(s.top) AS top, count(*)::int AS sellers, gen_random_uuid() AS entry_id
  FROM due d JOIN pays s ON s.account_id = d.id
  GROUP BY d.id, d.asset, d.no
), sellers AS (
  INSERT INTO ledger_account (id, asset, kind, normal_side, non_negative)
  SELECT DISTINCT 'seller:' || s.seller || ':' || e.asset, e.asset, 'SELLER_PAYABLE'::account_kind, 'CREDIT'::side, false
  FROM e JOIN pays s ON s.account_id = e.id
  ON CONFLICT (id) DO NOTHING
), moved AS (
  UPDATE credit_account a SET booked_spent = a.booked_spent + e.amount, booked_seq = e.top, booking_no = e.no
  FROM e WHERE a.id = e.id
), entries AS (
  INSERT INTO journal_entry (id, idempotency_key, kind, metadata, posting_count)
  SELECT entry_id, 'credit-spent:' || id || ':' || no, 'CREDIT_SPENT'::entry_kind, jsonb_build_object('throughSeq', top::text), sellers + 1
  FROM e
), postings AS (
  INSERT INTO posting (entry_id, account_id, asset, side, amount)
  SELECT entry_id, 'credit:' || id, asset, 'DEBIT'::side, amount FROM e
  UNION ALL
  SELECT e.entry_id, 'seller:' || s.seller || ':' || e.asset, e.asset, 'CREDIT'::side, s.amount FROM e JOIN pays s ON s.account_id = e.id
)
SELECT count(*)::int AS accounts FROM e`;

const SWEEP_CHUNK = 5_000;

/** Books the spent credit of the given accounts, or of all: safe from any number of processes. */
export async function bookCredit(sql: Sql, accountIds?: readonly string[]): Promise<number> {
  if (accountIds && accountIds.length === 0) return 0;
  const ids = accountIds ? [...new Set(accountIds)].sort() : null;
  let total = 0;
  for (;;) {
    const [row] = await sql.query<{ accounts: number }>(BOOK, [ids, SWEEP_CHUNK], "paychan_book_credit");
    total += row!.accounts;
    if (row!.accounts < SWEEP_CHUNK) return total;
  }
}

/**
 * Voids a credit payment (its request failed): books its account so the journal holds the charge,
 * reverses exactly its price (CREDIT_VOIDED, key `credit-void:<paymentId>`), marks it VOIDED and
 * gives the price back to the account. Idempotent.
 */
export async function voidCreditPayment(prisma: PrismaClient | Tx, paymentId: string, reason: string): Promise<void> {
  await inTransaction(prisma, async (tx) => {
    const [payment] = await tx.$queryRaw<{ account_id: string; seller: string; price: string; status: string; asset: string }[]>`
      SELECT p.account_id, p.seller, p.price::text, p.status::text, a.asset
      FROM credit_payment p JOIN credit_account a ON a.id = p.account_id WHERE p.id = ${paymentId}::uuid`;
    if (!payment) throw new LedgerError("PAYMENT_NOT_FOUND", `There is no credit payment ${paymentId} to void.`);
    await tx.$queryRaw`SELECT 1 FROM credit_account WHERE id = ${payment.account_id} FOR NO KEY UPDATE`;
    const [current] = await tx.$queryRaw<{ status: string }[]>`SELECT status::text FROM credit_payment WHERE id = ${paymentId}::uuid`;
    if (current!.status === "VOIDED") return;
    await bookCredit(sqlOf(tx), [payment.account_id]);
    const price = BigInt(payment.price);
    await postEntry(tx, {
      idempotencyKey: `credit-void:${paymentId}`,
      ...creditVoided({ creditAccount: payment.account_id, seller: payment.seller, asset: payment.asset as Asset, amount: price }),
      metadata: { paymentId, reason },
    });
    await tx.$executeRaw`UPDATE credit_payment SET status = 'VOIDED' WHERE id = ${paymentId}::uuid`;
    await tx.$executeRaw`
      UPDATE credit_account SET spent = spent - ${price.toString()}::numeric, booked_spent = booked_spent - ${price.toString()}::numeric
      WHERE id = ${payment.account_id}`;
  });
}
