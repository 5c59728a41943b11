// The ledger's rejections: a stable machine `code` and a sentence a person can act on.

export type LedgerErrorCode =
  /** An entry's debits and credits differ in some asset. */
  | "ENTRY_UNBALANCED"
  /** An entry without postings, a non-positive amount, or a malformed account or asset. */
  | "ENTRY_INVALID"
  /** The idempotency key was already used for an entry with different content. */
  | "IDEMPOTENCY_CONFLICT"
  /** The entry to reverse does not exist. */
  | "ENTRY_NOT_FOUND"
  /** The entry was already reversed (under another idempotency key). */
  | "ENTRY_ALREADY_REVERSED"
  /** An account id is already in use with another asset or kind. */
  | "ACCOUNT_MISMATCH"
  /** A posting would take a non-negative account below zero. */
  | "INSUFFICIENT_BALANCE"
  /** The payment to void does not exist. */
  | "PAYMENT_NOT_FOUND"
  /** The payment was already voided. */
  | "PAYMENT_ALREADY_VOIDED"
  /** A migration failed, or an applied one differs from its file. */
  | "MIGRATION_FAILED";

export class LedgerError extends Error {
  override readonly name = "LedgerError";
  constructor(
    readonly code: LedgerErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The Postgres error behind a Prisma, driver-adapter or driver error, if there is one. */
export function postgresError(error: unknown): { code: string; message: string; detail?: string } | undefined {
  for (let e: any = error, depth = 0; e && typeof e === "object" && depth < 6; depth++) {
    // Driver adapters report the server's SQLSTATE as `originalCode`; pg and PGlite errors carry `severity`.
    if (typeof e.originalCode === "string") return { code: e.originalCode, message: e.originalMessage ?? e.message, detail: e.detail };
    if (typeof e.severity === "string" && typeof e.code === "string") return { code: e.code, message: e.message, detail: e.detail };
    e = e.meta?.driverAdapterError ?? e.cause;
  }
  return undefined;
}
