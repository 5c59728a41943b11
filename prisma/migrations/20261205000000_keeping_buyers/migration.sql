-- Keeping buyers on prepaid credit (dunning): the card saved at a top-up for off-session recharges,
-- a suspension the recharge schedule sets when the card keeps failing, the notices for the seller's
-- system (an outbox written in the same transaction as what they announce, delivered by webhook),
-- and the recharges with their retry schedule. Written by hand in the shape `prisma migrate dev`
-- emits for the models in prisma/schema.prisma, then what Prisma cannot express (partial indexes).

-- AlterTable
ALTER TABLE "credit_account" ADD COLUMN "card_customer_ref" TEXT,
ADD COLUMN "suspended_at" TIMESTAMPTZ(6),
ADD COLUMN "suspended_reason" TEXT;

-- AlterTable
ALTER TABLE "fiat_topup" ADD COLUMN "recharge_id" TEXT;

-- CreateTable
CREATE TABLE "credit_notice" (
    "id" UUID NOT NULL,
    "account_id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "data" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "delivered_at" TIMESTAMPTZ(6),
    "last_error" TEXT,

    CONSTRAINT "credit_notice_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "credit_recharge" (
    "id" TEXT NOT NULL,
    "account_id" TEXT NOT NULL,
    "processor" TEXT NOT NULL,
    "currency" TEXT NOT NULL,
    "amount_minor" DECIMAL(78,0) NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'PENDING',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(6),
    "topup_id" TEXT,
    "last_error" TEXT,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "credit_recharge_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "credit_notice_account_id_idx" ON "credit_notice"("account_id");
CREATE INDEX "credit_recharge_account_id_idx" ON "credit_recharge"("account_id");

-- AddForeignKey
ALTER TABLE "credit_notice" ADD CONSTRAINT "credit_notice_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "credit_account"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE "credit_recharge" ADD CONSTRAINT "credit_recharge_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "credit_account"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- What the worker delivers next.
CREATE INDEX "credit_notice_due_idx" ON "credit_notice"("next_attempt_at") WHERE "delivered_at" IS NULL;
-- One open recharge per account: a second would charge the card twice for one low balance.
CREATE UNIQUE INDEX "credit_recharge_open_key" ON "credit_recharge"("account_id") WHERE "status" IN ('PENDING', 'CHARGED');
ALTER TABLE "credit_recharge" ADD CONSTRAINT "credit_recharge_status_check" CHECK ("status" IN ('PENDING', 'CHARGED', 'SUCCEEDED', 'FAILED'));
-- A recharge attempt the card declined keeps its top-up row, marked so.
ALTER TABLE "fiat_topup" DROP CONSTRAINT "fiat_topup_amounts_check";
ALTER TABLE "fiat_topup" ADD CONSTRAINT "fiat_topup_amounts_check" CHECK (
    "amount_minor" > 0 AND "refunded_minor" >= 0 AND "status" IN ('OPEN', 'PAID', 'DECLINED'));
