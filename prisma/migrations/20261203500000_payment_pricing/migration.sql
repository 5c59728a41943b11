-- Route pricing policies (src/policy/pricing.ts): why a payment cost what it did, written by the accept
-- (or credit spend) statement with the payment, and what volume
-- tiers read to count a payer's requests this month. Written by hand in the shape `prisma migrate dev`
-- emits, followed by what Prisma cannot express.

-- AlterTable
ALTER TABLE "payment" ADD COLUMN "pricing" TEXT;

-- AlterTable
ALTER TABLE "credit_payment" ADD COLUMN "pricing" TEXT;

-- CreateIndex
CREATE INDEX "channel_payer_idx" ON "channel"("payer");

-- A payer's count covers voided payments too, so that it only grows within a month (a count this
-- process remembers is then never above the database's). Accepted rows are found by the partial unique
-- index on (channel_id, cumulative_amount); this one finds the voided, and costs nothing on insert.
CREATE INDEX "payment_channel_id_voided_idx" ON "payment"("channel_id") WHERE "status" = 'VOIDED';
