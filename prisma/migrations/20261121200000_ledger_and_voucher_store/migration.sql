-- The double-entry ledger and the gateway's voucher store.
-- Written by hand in the shape `prisma migrate dev` emits for prisma/schema.prisma, followed by what
-- Prisma cannot express: CHECK constraints, a partial unique index, and the triggers that make the
-- ledger's rules hold for every writer, not only for src/ledger.

-- CreateEnum
CREATE TYPE "side" AS ENUM ('DEBIT', 'CREDIT');

-- CreateEnum
CREATE TYPE "account_kind" AS ENUM ('ESCROW_HOLDINGS', 'CHANNEL_AVAILABLE', 'CHANNEL_OWED', 'PAYEE_WALLET', 'PAYEE_REVENUE', 'GAS_EXPENSE', 'FIAT_CASH', 'FIAT_PAYABLE');

-- CreateEnum
CREATE TYPE "entry_kind" AS ENUM ('DEPOSIT', 'VOUCHER_ACCEPTED', 'VOUCHER_VOIDED', 'CLAIM', 'REFUND', 'GAS_FEE', 'FIAT_TOPUP', 'PAYOUT', 'REVERSAL', 'ADJUSTMENT');

-- CreateEnum
CREATE TYPE "payment_status" AS ENUM ('ACCEPTED', 'VOIDED');

-- CreateTable
CREATE TABLE "ledger_account" (
    "id" TEXT NOT NULL,
    "asset" TEXT NOT NULL,
    "kind" "account_kind" NOT NULL,
    "normal_side" "side" NOT NULL,
    "non_negative" BOOLEAN NOT NULL DEFAULT false,
    "debits" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "credits" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ledger_account_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "journal_entry" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "idempotency_key" TEXT NOT NULL,
    "kind" "entry_kind" NOT NULL,
    "reverses_entry_id" UUID,
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "journal_entry_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "posting" (
    "id" BIGSERIAL NOT NULL,
    "entry_id" UUID NOT NULL,
    "account_id" TEXT NOT NULL,
    "asset" TEXT NOT NULL,
    "side" "side" NOT NULL,
    "amount" DECIMAL(78,0) NOT NULL,

    CONSTRAINT "posting_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "channel" (
    "id" TEXT NOT NULL,
    "chain_id" BIGINT NOT NULL,
    "escrow" TEXT NOT NULL,
    "payer" TEXT NOT NULL,
    "payee" TEXT NOT NULL,
    "token" TEXT NOT NULL,
    "signer" TEXT NOT NULL,
    "withdraw_delay" INTEGER NOT NULL,
    "salt" TEXT NOT NULL,
    "asset" TEXT NOT NULL,
    "deposit" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "claimed_on_chain" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "withdraw_ready_at" BIGINT,
    "closed" BOOLEAN NOT NULL DEFAULT false,
    "accepted_cumulative" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "latest_voucher_amount" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "latest_voucher_signature" TEXT,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "channel_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "payment" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "channel_id" TEXT NOT NULL,
    "request_id" TEXT NOT NULL,
    "cumulative_amount" DECIMAL(78,0) NOT NULL,
    "price" DECIMAL(78,0) NOT NULL,
    "signature" TEXT NOT NULL,
    "status" "payment_status" NOT NULL DEFAULT 'ACCEPTED',
    "journal_entry_id" UUID NOT NULL,
    "void_entry_id" UUID,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "payment_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "ledger_account_kind_idx" ON "ledger_account"("kind");

-- CreateIndex
CREATE UNIQUE INDEX "ledger_account_id_asset_key" ON "ledger_account"("id", "asset");

-- CreateIndex
CREATE UNIQUE INDEX "journal_entry_idempotency_key_key" ON "journal_entry"("idempotency_key");

-- CreateIndex
CREATE UNIQUE INDEX "journal_entry_reverses_entry_id_key" ON "journal_entry"("reverses_entry_id");

-- CreateIndex
CREATE INDEX "journal_entry_created_at_idx" ON "journal_entry"("created_at");

-- CreateIndex
CREATE INDEX "posting_entry_id_idx" ON "posting"("entry_id");

-- CreateIndex
CREATE INDEX "posting_account_id_idx" ON "posting"("account_id");

-- CreateIndex
CREATE INDEX "channel_payee_idx" ON "channel"("payee");

-- CreateIndex
CREATE UNIQUE INDEX "payment_journal_entry_id_key" ON "payment"("journal_entry_id");

-- CreateIndex
CREATE UNIQUE INDEX "payment_void_entry_id_key" ON "payment"("void_entry_id");

-- CreateIndex
CREATE UNIQUE INDEX "payment_channel_id_request_id_key" ON "payment"("channel_id", "request_id");

-- AddForeignKey
ALTER TABLE "journal_entry" ADD CONSTRAINT "journal_entry_reverses_entry_id_fkey" FOREIGN KEY ("reverses_entry_id") REFERENCES "journal_entry"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "posting" ADD CONSTRAINT "posting_entry_id_fkey" FOREIGN KEY ("entry_id") REFERENCES "journal_entry"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "posting" ADD CONSTRAINT "posting_account_id_asset_fkey" FOREIGN KEY ("account_id", "asset") REFERENCES "ledger_account"("id", "asset") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "payment" ADD CONSTRAINT "payment_channel_id_fkey" FOREIGN KEY ("channel_id") REFERENCES "channel"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "payment" ADD CONSTRAINT "payment_journal_entry_id_fkey" FOREIGN KEY ("journal_entry_id") REFERENCES "journal_entry"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "payment" ADD CONSTRAINT "payment_void_entry_id_fkey" FOREIGN KEY ("void_entry_id") REFERENCES "journal_entry"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- ─── Beyond the Prisma schema ──────────────────────────────────────────────────────────────────

-- Amounts are uint256 base units: never negative, and a posting moves something.
ALTER TABLE "ledger_account" ADD CONSTRAINT "ledger_account_totals_check" CHECK ("debits" >= 0 AND "credits" >= 0);
ALTER TABLE "posting" ADD CONSTRAINT "posting_amount_check" CHECK ("amount" > 0);
ALTER TABLE "channel" ADD CONSTRAINT "channel_amounts_check" CHECK (
    "deposit" >= 0 AND "claimed_on_chain" >= 0 AND "accepted_cumulative" >= 0 AND "latest_voucher_amount" >= 0);
ALTER TABLE "payment" ADD CONSTRAINT "payment_price_check" CHECK ("price" > 0);

-- The account's balance constraint (TigerBeetle's debits/credits_must_not_exceed_*): a non-negative
-- account's balance on its normal side never drops below zero. Postings raise the totals through the
-- trigger below, so an overdrawing posting fails its INSERT.
ALTER TABLE "ledger_account" ADD CONSTRAINT "ledger_account_non_negative" CHECK (
    NOT "non_negative"
    OR ("normal_side" = 'DEBIT' AND "debits" >= "credits")
    OR ("normal_side" = 'CREDIT' AND "credits" >= "debits"));

-- Every accepted charge is covered by the voucher the gateway holds.
ALTER TABLE "channel" ADD CONSTRAINT "channel_voucher_covers_accepted" CHECK ("accepted_cumulative" <= "latest_voucher_amount");

-- A voucher pays for one charge: among the charges that stand, a cumulative amount appears once.
CREATE UNIQUE INDEX "payment_channel_id_cumulative_amount_accepted_key" ON "payment"("channel_id", "cumulative_amount") WHERE "status" = 'ACCEPTED';

CREATE FUNCTION "ledger_refuse_change"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation', HINT = 'Post a reversing entry instead.';
END $$;

-- Journal entries and postings are immutable.
CREATE TRIGGER "journal_entry_immutable" BEFORE UPDATE OR DELETE ON "journal_entry"
    FOR EACH ROW EXECUTE FUNCTION "ledger_refuse_change"();
CREATE TRIGGER "journal_entry_no_truncate" BEFORE TRUNCATE ON "journal_entry"
    FOR EACH STATEMENT EXECUTE FUNCTION "ledger_refuse_change"();
CREATE TRIGGER "posting_immutable" BEFORE UPDATE OR DELETE ON "posting"
    FOR EACH ROW EXECUTE FUNCTION "ledger_refuse_change"();
CREATE TRIGGER "posting_no_truncate" BEFORE TRUNCATE ON "posting"
    FOR EACH STATEMENT EXECUTE FUNCTION "ledger_refuse_change"();

-- An account's identity never changes, and an account that exists stays: only its totals move.
CREATE FUNCTION "ledger_account_guard"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW."id" <> OLD."id" OR NEW."asset" <> OLD."asset" OR NEW."kind" <> OLD."kind"
        OR NEW."normal_side" <> OLD."normal_side" OR NEW."non_negative" <> OLD."non_negative" THEN
        RAISE EXCEPTION 'ledger_account %: only its totals may change, % refused', OLD."id", TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER "ledger_account_guard" BEFORE UPDATE OR DELETE ON "ledger_account"
    FOR EACH ROW EXECUTE FUNCTION "ledger_account_guard"();

-- Running totals: each INSERT into posting adds its amounts to the accounts' totals in the same
-- statement, locking the accounts in id order so concurrent writers cannot deadlock on them.
CREATE FUNCTION "ledger_apply_postings"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM "ledger_account"
        WHERE "id" IN (SELECT DISTINCT "account_id" FROM "new_postings") ORDER BY "id" FOR UPDATE;
    UPDATE "ledger_account" a
        SET "debits" = a."debits" + t."debits", "credits" = a."credits" + t."credits"
        FROM (SELECT "account_id",
                     COALESCE(SUM("amount") FILTER (WHERE "side" = 'DEBIT'), 0) AS "debits",
                     COALESCE(SUM("amount") FILTER (WHERE "side" = 'CREDIT'), 0) AS "credits"
                FROM "new_postings" GROUP BY "account_id") t
        WHERE a."id" = t."account_id";
    RETURN NULL;
END $$;
CREATE TRIGGER "posting_apply" AFTER INSERT ON "posting" REFERENCING NEW TABLE AS "new_postings"
    FOR EACH STATEMENT EXECUTE FUNCTION "ledger_apply_postings"();

-- Double entry: at commit, each entry's debits equal its credits in every asset. Deferred, so an
-- entry's postings may arrive in several statements of one transaction.
CREATE FUNCTION "ledger_check_entry_balanced"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced TEXT;
BEGIN
    SELECT "asset" INTO unbalanced FROM "posting" WHERE "entry_id" = NEW."entry_id"
        GROUP BY "asset"
        HAVING SUM(CASE WHEN "side" = 'DEBIT' THEN "amount" ELSE -"amount" END) <> 0
        LIMIT 1;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'journal entry % does not balance in %', NEW."entry_id", unbalanced
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER "journal_entry_balanced" AFTER INSERT ON "posting"
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "ledger_check_entry_balanced"();

-- A payment only ever moves from ACCEPTED to VOIDED, naming the entry that voided it.
CREATE FUNCTION "payment_guard"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
        OR (to_jsonb(NEW) - 'status' - 'void_entry_id') <> (to_jsonb(OLD) - 'status' - 'void_entry_id')
        OR NOT (OLD."status" = 'ACCEPTED' AND NEW."status" = 'VOIDED' AND NEW."void_entry_id" IS NOT NULL) THEN
        RAISE EXCEPTION 'payment %: only ACCEPTED -> VOIDED with a void entry is allowed, % refused', OLD."id", TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER "payment_guard" BEFORE UPDATE OR DELETE ON "payment"
    FOR EACH ROW EXECUTE FUNCTION "payment_guard"();
