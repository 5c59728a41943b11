// x402 `exact` payments in the database: one row per EIP-3009 authorization, from the moment the
// gateway accepts it (before the handler runs) to the moment its transfer is final or has failed.
//
//   ACCEPTED ──handler < 500──► READY ──work──► SUBMITTED (outbox) ──receipt──► SETTLED
//      │  └─handler 5xx──► VOIDED (never submitted)        │ └──────────────────► FAILED
//      └──(the gateway died: work takes it after a while)──┘   (reverted, would revert, expired)
//
// What two processes must agree on is decided in one transaction per acceptance, under a lock per
// token: the authorization is new (its nonce is unique per payer on the token, so it is recorded once
// whatever becomes of it), it stays valid long enough to be settled, the payer's balance covers it on
// top of everything of the payer's still in flight, and the payee's value in flight stays under its
// limit. That limit and the balance bound are the exposure of serving before settling
// (docs/PROTOCOL.md §8). The journal sees a payment from its submission on (src/ledger/flows.ts).
import { getAddress, type Address, type Hex } from "viem";
import { accountId } from "./accounts.js";
import { tokenAsset, type Asset } from "./asset.js";
import * as flows from "./flows.js";
import { balances, findEntry, inTransaction, postEntry, reverseEntry, type Db, type Tx } from "./postings.js";
import type { Difference } from "./reconcile.js";
import type { Sql } from "./sql.js";

/** One authorization paying one request, as the gateway verified it. Addresses checksummed. */
export type ExactCharge = {
  chainId: number;
  token: Address;
  payee: Address;
  payer: Address;
  nonce: Hex;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  signature: Hex;
  /** What identifies the paid request (method, URL and payment header hashed): a byte-identical
   * retry finds this payment by it. */
  requestKey: string;
};

export type ExactLimits = {
  /** The payer's token balance, as just read from the chain. */
  balance: bigint;
  /** The most this payee may have accepted and not yet settled, all payers together. */
  maxUnsettled: bigint;
  /** The authorization must stay valid this long (chain time) for its transfer to land in time. */
  minValiditySeconds: number;
  /** An identical retry within this many seconds of the payment is served again... */
  retryWithinSeconds: number;
  /** ...at most this many times. */
  maxRetries: number;
};

export type ExactAcceptOutcome =
  | { ok: true; paymentId: string; retried: boolean }
  /** The authorization is recorded already, and this is not an identical retry of its request. */
  | { ok: false; refusal: "AUTHORIZATION_USED" }
  /** The payer's balance does not cover this on top of what it has in flight. */
  | { ok: false; refusal: "INSUFFICIENT_BALANCE"; payerInFlight: bigint }
  /** The payee has as much in flight as it accepts to wait for. */
  | { ok: false; refusal: "UNSETTLED_LIMIT"; payeeInFlight: bigint }
  | { ok: false; refusal: "EXPIRES_TOO_SOON"; chainNow: bigint }
  | { ok: false; refusal: "NOT_YET_VALID"; chainNow: bigint };

const IN_FLIGHT = `('ACCEPTED', 'READY', 'SUBMITTED')`;

// Chain time as in acceptVouchers.ts: the block timestamp the watcher last recorded plus the database
// time since, or the database's own clock before any watcher ran.
const chainNow = (chainIdParam: string) => `COALESCE(
    (SELECT h.block_timestamp + floor(extract(epoch FROM statement_timestamp() - h.observed_at))::bigint
     FROM chain_head h WHERE h.chain_id = ${chainIdParam}),
    floor(extract(epoch FROM statement_timestamp()))::bigint)`;

// Runs under the token's lock, so its snapshot sees every acceptance committed before it.
const ACCEPT = `
WITH clock AS (
  SELECT ${chainNow("$1::bigint")} AS now
), existing AS (
  SELECT id, status, request_key, retries, created_at FROM exact_payment
  WHERE chain_id = $1::bigint AND token = $2::text AND payer = $4::text AND nonce = $5::text
), retried AS (
  UPDATE exact_payment p SET retries = p.retries + 1, updated_at = now()
  FROM existing e
  WHERE p.id = e.id AND e.request_key = $10::text AND e.status NOT IN ('VOIDED', 'FAILED')
    AND e.created_at > statement_timestamp() - make_interval(secs => $14::int) AND e.retries < $15::int
  RETURNING p.id
), in_flight AS (
  SELECT COALESCE(sum(value) FILTER (WHERE payer = $4::text), 0) AS payer,
         COALESCE(sum(value) FILTER (WHERE payee = $3::text), 0) AS payee
  FROM exact_payment WHERE chain_id = $1::bigint AND token = $2::text AND status IN ${IN_FLIGHT}
), inserted AS (
  INSERT INTO exact_payment (chain_id, token, payee, payer, nonce, value, valid_after, valid_before, signature, request_key)
  SELECT $1::bigint, $2::text, $3::text, $4::text, $5::text, $6::numeric, $7::numeric, $8::numeric, $9::text, $10::text
  FROM in_flight, clock
  WHERE NOT EXISTS (SELECT 1 FROM existing)
    AND $7::numeric < clock.now AND $8::numeric >= clock.now + $13::int
    AND in_flight.payer + $6::numeric <= $11::numeric AND in_flight.payee + $6::numeric <= $12::numeric
  RETURNING id
)
SELECT (SELECT id::text FROM inserted) AS inserted, (SELECT id::text FROM retried) AS retried,
       EXISTS (SELECT 1 FROM existing) AS existing, in_flight.payer::text AS payer_in_flight,
       in_flight.payee::text AS payee_in_flight, clock.now::text AS chain_now
FROM in_flight, clock`;

type AcceptRow = {
  inserted: string | null;
  retried: string | null;
  existing: boolean;
  payer_in_flight: string;
  payee_in_flight: string;
  chain_now: string;
};

/** Decides and records an exact payment (see the top of this file). Durable when it resolves. */
export async function acceptExactPayment(db: Db, charge: ExactCharge, limits: ExactLimits): Promise<ExactAcceptOutcome> {
  const token = charge.token.toLowerCase();
  const row = await inTransaction(db, async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`paychan:exact:${charge.chainId}:${token}`}))`;
    const [result] = await tx.$queryRawUnsafe<AcceptRow[]>(
      ACCEPT,
      charge.chainId.toString(),
      token,
      charge.payee.toLowerCase(),
      charge.payer.toLowerCase(),
      charge.nonce.toLowerCase(),
      charge.value.toString(),
      charge.validAfter.toString(),
      charge.validBefore.toString(),
      charge.signature,
      charge.requestKey,
      limits.balance.toString(),
      limits.maxUnsettled.toString(),
      limits.minValiditySeconds,
      limits.retryWithinSeconds,
      limits.maxRetries,
    );
    return result!;
  });
  if (row.inserted) return { ok: true, paymentId: row.inserted, retried: false };
  if (row.retried) return { ok: true, paymentId: row.retried, retried: true };
  if (row.existing) return { ok: false, refusal: "AUTHORIZATION_USED" };
  const chainNow = BigInt(row.chain_now);
  if (charge.validAfter >= chainNow) return { ok: false, refusal: "NOT_YET_VALID", chainNow };
  if (charge.validBefore < chainNow + BigInt(limits.minValiditySeconds)) return { ok: false, refusal: "EXPIRES_TOO_SOON", chainNow };
  const payerInFlight = BigInt(row.payer_in_flight);
  if (payerInFlight + charge.value > limits.balance) return { ok: false, refusal: "INSUFFICIENT_BALANCE", payerInFlight };
  return { ok: false, refusal: "UNSETTLED_LIMIT", payeeInFlight: BigInt(row.payee_in_flight) };
}

/**
 * The payment an identical retry refers to, counting the retry; undefined if there is none within
 * `withinSeconds`, it was voided or failed, or it was served again `maxRetries` times already. For a
 * retry arriving after the transfer landed, when the chain already calls the authorization used.
 */
export async function claimExactRetry(
  sql: Sql,
  key: Pick<ExactCharge, "chainId" | "token" | "payer" | "nonce" | "requestKey">,
  withinSeconds: number,
  maxRetries: number,
): Promise<string | undefined> {
  const [row] = await sql.query<{ id: string }>(
    `UPDATE exact_payment SET retries = retries + 1, updated_at = now()
     WHERE chain_id = $1::bigint AND token = $2::text AND payer = $3::text AND nonce = $4::text AND request_key = $5::text
       AND status NOT IN ('VOIDED', 'FAILED') AND created_at > statement_timestamp() - make_interval(secs => $6::int) AND retries < $7::int
     RETURNING id::text`,
    [key.chainId.toString(), key.token.toLowerCase(), key.payer.toLowerCase(), key.nonce.toLowerCase(), key.requestKey, withinSeconds, maxRetries],
    "paychan_exact_retry",
  );
  return row?.id;
}

/**
 * Once the handler answered: served (below 500) makes the payment READY for submission; a 5xx voids
 * it, and it is never submitted. Only an ACCEPTED payment moves: one `work` already took (it waited
 * too long) stays charged.
 */
export async function completeExactPayment(sql: Sql, paymentId: string, served: boolean): Promise<void> {
  await sql.query(
    `UPDATE exact_payment SET status = $2::exact_payment_status, updated_at = now() WHERE id = $1::uuid AND status = 'ACCEPTED'`,
    [paymentId, served ? "READY" : "VOIDED"],
    "paychan_exact_complete",
  );
}

/** Whose exact payments a settlement process submits: one payee's, in one token on one chain. */
export type ExactScope = { chainId: number; token: Address; payee: Address };

export type DueExactPayment = {
  id: string;
  payer: Address;
  payee: Address;
  nonce: Hex;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  signature: Hex;
};

type PaymentRow = {
  id: string;
  token: string;
  payee: string;
  payer: string;
  nonce: string;
  value: string;
  valid_after: string;
  valid_before: string;
  signature: string;
  status: string;
  chain_id: string;
};

const COLUMNS = `id::text, chain_id::text, token, payee, payer, nonce, value::text, valid_after::text, valid_before::text, signature, status::text`;

/**
 * In the caller's transaction: the payments to submit now — served ones (READY), and ACCEPTED ones
 * older than `orphanAfterSeconds`, whose gateway died before it could say how its handler answered
 * (they stand, as a paychan charge does). Each is handed to `submit`, which writes the outbox row
 * and returns its id; the payment becomes SUBMITTED and its EXACT_SUBMITTED entry is posted. A
 * payment whose authorization has expired meanwhile is FAILED instead. Rows another process holds
 * are skipped.
 */
export async function submitDueExactPayments(
  tx: Tx,
  scope: ExactScope,
  orphanAfterSeconds: number,
  submit: (payment: DueExactPayment) => Promise<string>,
): Promise<{ submitted: number; expired: number }> {
  const rows = await tx.$queryRawUnsafe<(PaymentRow & { expired: boolean })[]>(
    `SELECT ${COLUMNS}, valid_before <= ${chainNow("$1::bigint")} AS expired FROM exact_payment
     WHERE chain_id = $1::bigint AND token = $2::text AND payee = $3::text
       AND (status = 'READY' OR (status = 'ACCEPTED' AND created_at < statement_timestamp() - make_interval(secs => $4::int)))
     ORDER BY created_at
     FOR UPDATE SKIP LOCKED`,
    scope.chainId.toString(),
    scope.token.toLowerCase(),
    scope.payee.toLowerCase(),
    orphanAfterSeconds,
  );
  const asset = tokenAsset(scope.chainId, scope.token);
  let expired = 0;
  for (const row of rows) {
    if (row.expired) {
      expired++;
      await tx.$executeRaw`
        UPDATE exact_payment SET status = 'FAILED', failure = ${"the authorization expired before it was submitted (was `paychan work` running?)"}, updated_at = now()
        WHERE id = ${row.id}::uuid`;
      continue;
    }
    const payment = dueOf(row);
    const chainTxId = await submit(payment);
    await tx.$executeRaw`UPDATE exact_payment SET status = 'SUBMITTED', chain_tx_id = ${chainTxId}::uuid, updated_at = now() WHERE id = ${row.id}::uuid`;
    await postEntry(tx, {
      idempotencyKey: submittedKey(row.id),
      ...flows.exactSubmitted({ payee: payment.payee, asset, amount: payment.value }),
      metadata: { paymentId: row.id, chainTxId, payer: payment.payer, nonce: payment.nonce },
    });
  }
  return { submitted: rows.length - expired, expired };
}

/** The submitted payment a transaction of the outbox carries, locked; undefined if none is waiting. */
export async function submittedExactPayment(tx: Tx, chainTxId: string): Promise<(DueExactPayment & { asset: Asset }) | undefined> {
  const [row] = await tx.$queryRawUnsafe<PaymentRow[]>(
    `SELECT ${COLUMNS} FROM exact_payment WHERE chain_tx_id = $1::uuid AND status = 'SUBMITTED' FOR UPDATE`,
    chainTxId,
  );
  return row && { ...dueOf(row), asset: tokenAsset(BigInt(row.chain_id), getAddress(row.token)) };
}

/** The transfer is final: SETTLED, and booked once under the key of its Transfer event. */
export async function recordExactSettled(
  tx: Tx,
  payment: DueExactPayment & { asset: Asset },
  transfer: { txHash: Hex; logIndex: number },
): Promise<void> {
  await postEntry(tx, {
    idempotencyKey: `exact-transfer:${transfer.txHash.toLowerCase()}:${transfer.logIndex}`,
    ...flows.exactSettled({ payee: payment.payee, asset: payment.asset, amount: payment.value }),
    metadata: { paymentId: payment.id, payer: payment.payer, nonce: payment.nonce },
  });
  await tx.$executeRaw`UPDATE exact_payment SET status = 'SETTLED', tx_hash = ${transfer.txHash.toLowerCase()}, updated_at = now() WHERE id = ${payment.id}::uuid`;
}

/** The transfer did not happen (reverted, would revert, its nonce went elsewhere): FAILED, and the
 * submission's entry reversed. The request was served: this is the loss reconciliation reports. */
export async function recordExactFailed(tx: Tx, payment: DueExactPayment, reason: string, txHash?: Hex): Promise<void> {
  const submitted = await findEntry(tx, { idempotencyKey: submittedKey(payment.id) });
  if (submitted) {
    await reverseEntry(tx, submitted.id, `exact:${payment.id}:failed`, { kind: "EXACT_FAILED", metadata: { paymentId: payment.id, reason } });
  }
  await tx.$executeRaw`
    UPDATE exact_payment SET status = 'FAILED', failure = ${reason}, tx_hash = ${txHash?.toLowerCase() ?? null}, updated_at = now()
    WHERE id = ${payment.id}::uuid`;
}

function submittedKey(paymentId: string): string {
  return `exact:${paymentId}:submitted`;
}

function dueOf(row: PaymentRow): DueExactPayment {
  return {
    id: row.id,
    payer: getAddress(row.payer),
    payee: getAddress(row.payee),
    nonce: row.nonce as Hex,
    value: BigInt(row.value),
    validAfter: BigInt(row.valid_after),
    validBefore: BigInt(row.valid_before),
    signature: row.signature as Hex,
  };
}

export type ExactTotals = {
  asset: string;
  /** Accepted or served, not yet handed to the outbox. */
  awaitingSubmission: string;
  submitted: string;
  settled: string;
  /** Served, and the transfer failed: the payer kept the tokens. */
  unpaid: string;
  voided: number;
};

/**
 * Reconciliation of one payee's exact payments: the totals by state; each payment served and never
 * paid in the last day (`missing`); payments waiting too long for `paychan work`; and the journal's
 * receivable against the payments submitted.
 */
export async function reconcileExact(db: Db, payee: Address, chainId: number): Promise<{ totals: ExactTotals[]; differences: Difference[] }> {
  const differences: Difference[] = [];
  const sums = await db.$queryRawUnsafe<
    { token: string; awaiting: string; submitted: string; settled: string; unpaid: string; voided: number; late_awaiting: number; late_submitted: number }[]
  >(
    `SELECT token,
            COALESCE(sum(value) FILTER (WHERE status IN ('ACCEPTED', 'READY')), 0)::text AS awaiting,
            COALESCE(sum(value) FILTER (WHERE status = 'SUBMITTED'), 0)::text AS submitted,
            COALESCE(sum(value) FILTER (WHERE status = 'SETTLED'), 0)::text AS settled,
            COALESCE(sum(value) FILTER (WHERE status = 'FAILED'), 0)::text AS unpaid,
            (count(*) FILTER (WHERE status = 'VOIDED'))::int AS voided,
            (count(*) FILTER (WHERE status IN ('ACCEPTED', 'READY') AND created_at < now() - interval '2 minutes'))::int AS late_awaiting,
            (count(*) FILTER (WHERE status = 'SUBMITTED' AND updated_at < now() - interval '10 minutes'))::int AS late_submitted
     FROM exact_payment WHERE chain_id = $1::bigint AND payee = $2::text GROUP BY token ORDER BY token`,
    chainId.toString(),
    payee.toLowerCase(),
  );
  const totals: ExactTotals[] = [];
  for (const s of sums) {
    const asset = tokenAsset(chainId, getAddress(s.token));
    totals.push({ asset, awaitingSubmission: s.awaiting, submitted: s.submitted, settled: s.settled, unpaid: s.unpaid, voided: s.voided });
    const receivable = accountId.exactReceivable(payee, asset);
    const booked = (await balances(db, { accounts: [receivable] })).get(receivable)?.balance ?? 0n;
    if (booked !== BigInt(s.submitted)) {
      differences.push({ severity: "missing", code: "EXACT_RECEIVABLE", asset, expected: s.submitted, actual: booked.toString(),
        cause: `EXACT_RECEIVABLE is ${booked} but the exact payments submitted and not yet final add up to ${s.submitted}: an entry or a payment changed outside the store.` });
    }
    if (s.late_awaiting > 0) {
      differences.push({ severity: "warning", code: "EXACT_NOT_SUBMITTED", asset,
        cause: `${s.late_awaiting} exact payment(s) served more than 2 minutes ago are not submitted yet: is \`paychan work\` running? Their authorizations expire unpaid.` });
    }
    if (s.late_submitted > 0) {
      differences.push({ severity: "warning", code: "EXACT_NOT_FINAL", asset,
        cause: `${s.late_submitted} exact transfer(s) submitted more than 10 minutes ago are not final: is the settlement key funded, and is \`paychan work\` running?` });
    }
  }
  const unpaid = await db.$queryRawUnsafe<{ id: string; token: string; payer: string; value: string; failure: string | null; tx_hash: string | null }[]>(
    `SELECT id::text, token, payer, value::text, failure, tx_hash FROM exact_payment
     WHERE chain_id = $1::bigint AND payee = $2::text AND status = 'FAILED' AND updated_at > now() - interval '1 day' ORDER BY updated_at`,
    chainId.toString(),
    payee.toLowerCase(),
  );
  for (const u of unpaid) {
    differences.push({ severity: "missing", code: "EXACT_UNPAID", asset: tokenAsset(chainId, getAddress(u.token)), expected: u.value, actual: "0",
      cause: `Exact payment ${u.id} from ${u.payer} was served and never paid: ${u.failure ?? "its transfer failed"}${u.tx_hash ? ` (${u.tx_hash})` : ""}. ` +
        `This is the bounded loss of serving before the transfer lands (docs/PROTOCOL.md §8); the payer kept the tokens.` });
  }
  return { totals, differences };
}
