-- Fiat rails beside the channels: prepaid credit accounts topped up by card, the API keys that spend
-- them through the paywall, the payments they made, the card processor's events and top-ups, and
-- seller payouts. Amounts are in the ledger's base units of `fiat:<currency>`: millionths of the
-- currency's unit (micro-dollars), so a price of $0.001 is 1,000. Written by hand in the shape
-- `prisma migrate dev` emits for the models appended to prisma/schema.prisma, then what Prisma
-- cannot express (CHECKs, partial unique indexes).

-- New values may not be used in the transaction that adds them; nothing below uses them.
ALTER TYPE "account_kind" ADD VALUE 'FIAT_CLEARING';
ALTER TYPE "account_kind" ADD VALUE 'CUSTOMER_CREDIT';
ALTER TYPE "account_kind" ADD VALUE 'SELLER_PAYABLE';
ALTER TYPE "account_kind" ADD VALUE 'PAYOUTS_IN_TRANSIT';
ALTER TYPE "entry_kind" ADD VALUE 'FIAT_REFUND';
ALTER TYPE "entry_kind" ADD VALUE 'FIAT_DISPUTE';
ALTER TYPE "entry_kind" ADD VALUE 'FIAT_DISPUTE_WON';
ALTER TYPE "entry_kind" ADD VALUE 'CREDIT_SPENT';
ALTER TYPE "entry_kind" ADD VALUE 'CREDIT_VOIDED';
ALTER TYPE "entry_kind" ADD VALUE 'PAYOUT_PENDING';
ALTER TYPE "entry_kind" ADD VALUE 'PAYOUT_POSTED';
ALTER TYPE "entry_kind" ADD VALUE 'PAYOUT_VOIDED';

-- CreateTable
CREATE TABLE "credit_account" (
    "id" TEXT NOT NULL,
    "asset" TEXT NOT NULL,
    "label" TEXT,
    "granted" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "spent" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "booked_spent" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "booked_seq" BIGINT NOT NULL DEFAULT 0,
    "booking_no" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "credit_account_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "credit_key" (
    "id" TEXT NOT NULL,
    "account_id" TEXT NOT NULL,
    "secret_hash" TEXT NOT NULL,
    "sellers" TEXT[],
    "path_prefixes" TEXT[],
    "label" TEXT,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" TIMESTAMPTZ(6),

    CONSTRAINT "credit_key_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "credit_payment" (
    "id" UUID NOT NULL,
    "seq" BIGSERIAL NOT NULL,
    "account_id" TEXT NOT NULL,
    "key_id" TEXT NOT NULL,
    "seller" TEXT NOT NULL,
    "request_key" TEXT NOT NULL,
    "price" DECIMAL(78,0) NOT NULL,
    "status" "payment_status" NOT NULL DEFAULT 'ACCEPTED',
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "credit_payment_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "credit_payment_retry" (
    "payment_id" UUID NOT NULL,
    "retries" INTEGER NOT NULL,

    CONSTRAINT "credit_payment_retry_pkey" PRIMARY KEY ("payment_id")
);

-- CreateTable
CREATE TABLE "fiat_topup" (
    "id" TEXT NOT NULL,
    "account_id" TEXT NOT NULL,
    "processor" TEXT NOT NULL,
    "currency" TEXT NOT NULL,
    "amount_minor" DECIMAL(78,0) NOT NULL,
    "session_ref" TEXT,
    "payment_ref" TEXT,
    "status" TEXT NOT NULL DEFAULT 'OPEN',
    "refunded_minor" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "paid_at" TIMESTAMPTZ(6),

    CONSTRAINT "fiat_topup_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "fiat_event" (
    "id" TEXT NOT NULL,
    "processor" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "payment_ref" TEXT,
    "event" JSONB NOT NULL,
    "status" TEXT NOT NULL,
    "received_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "applied_at" TIMESTAMPTZ(6),

    CONSTRAINT "fiat_event_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "fiat_seller" (
    "seller" TEXT NOT NULL,
    "destination" TEXT NOT NULL,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "fiat_seller_pkey" PRIMARY KEY ("seller")
);

-- CreateTable
CREATE TABLE "fiat_payout" (
    "id" TEXT NOT NULL,
    "processor" TEXT NOT NULL,
    "seller" TEXT NOT NULL,
    "destination" TEXT NOT NULL,
    "asset" TEXT NOT NULL,
    "currency" TEXT NOT NULL,
    "amount" DECIMAL(78,0) NOT NULL,
    "amount_minor" DECIMAL(78,0) NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'PENDING',
    "transfer_ref" TEXT,
    "payout_ref" TEXT,
    "reversal_ref" TEXT,
    "error" TEXT,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "fiat_payout_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "credit_key_secret_hash_key" ON "credit_key"("secret_hash");
CREATE INDEX "credit_key_account_id_idx" ON "credit_key"("account_id");
CREATE UNIQUE INDEX "credit_payment_seq_key" ON "credit_payment"("seq");
CREATE INDEX "credit_payment_account_id_seq_idx" ON "credit_payment"("account_id", "seq");
CREATE UNIQUE INDEX "fiat_topup_session_ref_key" ON "fiat_topup"("session_ref");
CREATE UNIQUE INDEX "fiat_topup_payment_ref_key" ON "fiat_topup"("payment_ref");
CREATE INDEX "fiat_event_payment_ref_idx" ON "fiat_event"("payment_ref");
CREATE INDEX "fiat_payout_seller_idx" ON "fiat_payout"("seller");

-- AddForeignKey
ALTER TABLE "credit_key" ADD CONSTRAINT "credit_key_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "credit_account"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE "credit_payment" ADD CONSTRAINT "credit_payment_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "credit_account"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE "credit_payment" ADD CONSTRAINT "credit_payment_key_id_fkey" FOREIGN KEY ("key_id") REFERENCES "credit_key"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE "credit_payment_retry" ADD CONSTRAINT "credit_payment_retry_payment_id_fkey" FOREIGN KEY ("payment_id") REFERENCES "credit_payment"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE "fiat_topup" ADD CONSTRAINT "fiat_topup_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "credit_account"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- ─── Beyond the Prisma schema ──────────────────────────────────────────────────────────────────

-- Spending never takes credit below zero (the spend statement's compare-and-set); refunds and
-- disputes may, so `granted - spent` has no CHECK. What the journal holds never exceeds what was spent.
ALTER TABLE "credit_account" ADD CONSTRAINT "credit_account_amounts_check" CHECK (
    "spent" >= 0 AND "booked_spent" >= 0 AND "booked_spent" <= "spent" AND "booked_seq" >= 0);
ALTER TABLE "credit_payment" ADD CONSTRAINT "credit_payment_price_check" CHECK ("price" > 0);
ALTER TABLE "fiat_topup" ADD CONSTRAINT "fiat_topup_amounts_check" CHECK (
    "amount_minor" > 0 AND "refunded_minor" >= 0 AND "status" IN ('OPEN', 'PAID'));
ALTER TABLE "fiat_event" ADD CONSTRAINT "fiat_event_status_check" CHECK ("status" IN ('APPLIED', 'PARKED', 'IGNORED'));
ALTER TABLE "fiat_payout" ADD CONSTRAINT "fiat_payout_amounts_check" CHECK (
    "amount" > 0 AND "amount_minor" > 0 AND "status" IN ('PENDING', 'POSTED', 'VOIDED'));

-- An identical retry of a paid request finds its payment by the request key: among the charges that
-- stand, one per account and request.
CREATE UNIQUE INDEX "credit_payment_account_request_accepted_key" ON "credit_payment"("account_id", "request_key") WHERE "status" = 'ACCEPTED';

-- One payout in flight per seller: a run resumes it (same idempotency keys) before starting another.
CREATE UNIQUE INDEX "fiat_payout_seller_pending_key" ON "fiat_payout"("seller") WHERE "status" = 'PENDING';

-- Leave room so the per-request update of a credit account stays a heap-only (HOT) update.
ALTER TABLE "credit_account" SET (fillfactor = 70);
