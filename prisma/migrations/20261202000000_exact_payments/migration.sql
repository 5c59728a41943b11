-- x402's `exact` scheme beside paychan: one-off EIP-3009 transfers (transferWithAuthorization) that
-- the gateway accepts, records here before serving, and the settlement key submits through the
-- outbox (chain_tx) right after. Written by hand in the shape `prisma migrate dev` emits for the
-- ExactPayment model, followed by what Prisma cannot express.

-- The journal's side of an exact payment (src/ledger/flows.ts): submitted transfers are a receivable
-- matched by a clearing account until the transfer is final, then revenue in the payee's wallet.
-- (New enum values may be added inside a transaction, just not used in it.)
ALTER TYPE "account_kind" ADD VALUE 'EXACT_RECEIVABLE';
ALTER TYPE "account_kind" ADD VALUE 'EXACT_CLEARING';
ALTER TYPE "entry_kind" ADD VALUE 'EXACT_SUBMITTED';
ALTER TYPE "entry_kind" ADD VALUE 'EXACT_SETTLED';
ALTER TYPE "entry_kind" ADD VALUE 'EXACT_FAILED';

-- CreateEnum
CREATE TYPE "exact_payment_status" AS ENUM ('ACCEPTED', 'READY', 'VOIDED', 'SUBMITTED', 'SETTLED', 'FAILED');

-- CreateTable
CREATE TABLE "exact_payment" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "chain_id" BIGINT NOT NULL,
    "token" TEXT NOT NULL,
    "payee" TEXT NOT NULL,
    "payer" TEXT NOT NULL,
    "nonce" TEXT NOT NULL,
    "value" DECIMAL(78,0) NOT NULL,
    "valid_after" DECIMAL(78,0) NOT NULL,
    "valid_before" DECIMAL(78,0) NOT NULL,
    "signature" TEXT NOT NULL,
    "request_key" TEXT NOT NULL,
    "status" "exact_payment_status" NOT NULL DEFAULT 'ACCEPTED',
    "retries" INTEGER NOT NULL DEFAULT 0,
    "chain_tx_id" UUID,
    "tx_hash" TEXT,
    "failure" TEXT,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "exact_payment_pkey" PRIMARY KEY ("id")
);

-- An authorization's nonce is single-use on the token: one row per (token, payer, nonce), whatever
-- became of it, so the same authorization is never accepted twice.
CREATE UNIQUE INDEX "exact_payment_chain_id_token_payer_nonce_key" ON "exact_payment"("chain_id", "token", "payer", "nonce");

-- CreateIndex
CREATE UNIQUE INDEX "exact_payment_chain_tx_id_key" ON "exact_payment"("chain_tx_id");

-- What is in flight (accepted and not yet final) is summed per payer and per payee at every acceptance.
CREATE INDEX "exact_payment_unsettled_idx" ON "exact_payment"("chain_id", "token", "payer")
    WHERE "status" IN ('ACCEPTED', 'READY', 'SUBMITTED');

-- CreateIndex
CREATE INDEX "exact_payment_status_idx" ON "exact_payment"("status", "created_at");

-- AddForeignKey
ALTER TABLE "exact_payment" ADD CONSTRAINT "exact_payment_chain_tx_id_fkey" FOREIGN KEY ("chain_tx_id") REFERENCES "chain_tx"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- ─── Beyond the Prisma schema ──────────────────────────────────────────────────────────────────

ALTER TABLE "exact_payment" ADD CONSTRAINT "exact_payment_value_check" CHECK ("value" > 0);
ALTER TABLE "exact_payment" ADD CONSTRAINT "exact_payment_submitted_check" CHECK (
    "status" NOT IN ('SUBMITTED', 'SETTLED') OR "chain_tx_id" IS NOT NULL);

-- The authorization itself never changes; its status only moves forward:
--   ACCEPTED -> READY (served) | VOIDED (the handler answered 5xx) | SUBMITTED | FAILED
--   READY -> SUBMITTED | FAILED (it expired before it could be submitted)
--   SUBMITTED -> SETTLED | FAILED
CREATE FUNCTION "exact_payment_guard"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
        OR (to_jsonb(NEW) - 'status' - 'retries' - 'chain_tx_id' - 'tx_hash' - 'failure' - 'updated_at')
           <> (to_jsonb(OLD) - 'status' - 'retries' - 'chain_tx_id' - 'tx_hash' - 'failure' - 'updated_at')
        OR NOT (NEW."status" = OLD."status"
            OR (OLD."status" = 'ACCEPTED' AND NEW."status" IN ('READY', 'VOIDED', 'SUBMITTED', 'FAILED'))
            OR (OLD."status" = 'READY' AND NEW."status" IN ('SUBMITTED', 'FAILED'))
            OR (OLD."status" = 'SUBMITTED' AND NEW."status" IN ('SETTLED', 'FAILED')))
        OR (OLD."chain_tx_id" IS NOT NULL AND NEW."chain_tx_id" IS DISTINCT FROM OLD."chain_tx_id") THEN
        RAISE EXCEPTION 'exact_payment %: % from % to % refused', OLD."id", TG_OP, OLD."status", NEW."status"
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER "exact_payment_guard" BEFORE UPDATE OR DELETE ON "exact_payment"
    FOR EACH ROW EXECUTE FUNCTION "exact_payment_guard"();
