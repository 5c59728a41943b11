// What the credit scheme needs from durable storage (src/ledger implements it: LedgerCreditStore).
// As for channels, `spend` decides each charge in the database, against the credit account's row, in
// one statement: the gateway's memory can only ever make a refusal faster.
import type { CreditCharge, CreditOutcome, RetriedCredit } from "../ledger/acceptCredit.js";
import type { CreditKeyRecord } from "../ledger/credit.js";

export type { CreditCharge, CreditOutcome, CreditRefusal, RetriedCredit } from "../ledger/acceptCredit.js";
export type { CreditKeyRecord, CreditKeyScope } from "../ledger/credit.js";

export interface CreditStore {
  /** The key a secret names (looked up by its sha256), or undefined. */
  findKey(secret: string): Promise<CreditKeyRecord | undefined>;
  /** Decides each charge (on distinct accounts) in one statement; see src/ledger/acceptCredit.ts. */
  spend(charges: CreditCharge[]): Promise<CreditOutcome[]>;
  /** The standing payment an identical retry refers to, within `withinSeconds`, counting the retry. */
  claimRetry(accountId: string, requestKey: string, withinSeconds: number, maxRetries: number): Promise<RetriedCredit | undefined>;
  /** Voids a payment (the handler failed) and gives its price back. Idempotent. */
  voidPayment(paymentId: string, reason: string): Promise<void>;
}
