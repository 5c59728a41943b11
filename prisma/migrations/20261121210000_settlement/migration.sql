-- Settlement: the chain watcher's cursor and mirrored events, the claim outbox (batches and their
-- items) and the transactions the tx manager signs and tracks. Written by hand in the shape
-- `prisma migrate dev` emits for the models appended to prisma/schema.prisma, followed by what Prisma
-- cannot express or what the schema leaves to SQL (foreign keys into the ledger's tables).

-- CreateEnum
CREATE TYPE "chain_tx_status" AS ENUM ('QUEUED', 'PENDING', 'CONFIRMED', 'FAILED');

-- CreateEnum
CREATE TYPE "settlement_trigger" AS ENUM ('INTERVAL', 'THRESHOLD', 'GAS_BREAK_EVEN', 'WATCHTOWER', 'DEADLINE', 'MANUAL');

-- CreateEnum
CREATE TYPE "claim_outcome" AS ENUM ('CLAIMED', 'SKIPPED');

-- CreateTable
CREATE TABLE "chain_cursor" (
    "id" TEXT NOT NULL,
    "block_number" BIGINT NOT NULL,
    "block_hash" TEXT,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "chain_cursor_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "chain_event" (
    "id" BIGSERIAL NOT NULL,
    "cursor_id" TEXT NOT NULL,
    "block_number" BIGINT NOT NULL,
    "block_hash" TEXT NOT NULL,
    "tx_hash" TEXT NOT NULL,
    "log_index" INTEGER NOT NULL,
    "name" TEXT NOT NULL,
    "channel_id" TEXT NOT NULL,
    "args" JSONB NOT NULL,
    "entry_id" UUID,
    "reverted_at" TIMESTAMPTZ(6),
    "reversal_entry_id" UUID,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "chain_event_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "chain_tx" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "chain_id" BIGINT NOT NULL,
    "sender" TEXT NOT NULL,
    "to_address" TEXT NOT NULL,
    "data" TEXT NOT NULL,
    "value" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "purpose" TEXT NOT NULL,
    "status" "chain_tx_status" NOT NULL DEFAULT 'QUEUED',
    "nonce" BIGINT,
    "tx_hash" TEXT,
    "block_number" BIGINT,
    "gas_used" BIGINT,
    "effective_gas_price" DECIMAL(78,0),
    "fee" DECIMAL(78,0),
    "fee_entry_id" UUID,
    "error" TEXT,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "chain_tx_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "chain_tx_attempt" (
    "tx_hash" TEXT NOT NULL,
    "chain_tx_id" UUID NOT NULL,
    "nonce" BIGINT NOT NULL,
    "gas_limit" BIGINT NOT NULL,
    "max_fee_per_gas" DECIMAL(78,0) NOT NULL,
    "max_priority_fee_per_gas" DECIMAL(78,0) NOT NULL,
    "raw" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "chain_tx_attempt_pkey" PRIMARY KEY ("tx_hash")
);

-- CreateTable
CREATE TABLE "settlement_batch" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "chain_tx_id" UUID NOT NULL,
    "escrow" TEXT NOT NULL,
    "payee" TEXT NOT NULL,
    "token" TEXT NOT NULL,
    "trigger" "settlement_trigger" NOT NULL,
    "chain_time" BIGINT NOT NULL,
    "total" DECIMAL(78,0) NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "settlement_batch_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "settlement_item" (
    "batch_id" UUID NOT NULL,
    "channel_id" TEXT NOT NULL,
    "cumulative_amount" DECIMAL(78,0) NOT NULL,
    "signature" TEXT NOT NULL,
    "claimed_before" DECIMAL(78,0) NOT NULL,
    "reason" "settlement_trigger" NOT NULL,
    "outcome" "claim_outcome",
    "skip_reason" TEXT,

    CONSTRAINT "settlement_item_pkey" PRIMARY KEY ("batch_id","channel_id")
);

-- CreateIndex
CREATE UNIQUE INDEX "chain_event_entry_id_key" ON "chain_event"("entry_id");

-- CreateIndex
CREATE UNIQUE INDEX "chain_event_reversal_entry_id_key" ON "chain_event"("reversal_entry_id");

-- CreateIndex
CREATE INDEX "chain_event_cursor_id_block_number_idx" ON "chain_event"("cursor_id", "block_number");

-- CreateIndex
CREATE INDEX "chain_event_channel_id_idx" ON "chain_event"("channel_id");

-- CreateIndex
CREATE UNIQUE INDEX "chain_event_cursor_id_block_hash_log_index_key" ON "chain_event"("cursor_id", "block_hash", "log_index");

-- CreateIndex
CREATE UNIQUE INDEX "chain_tx_fee_entry_id_key" ON "chain_tx"("fee_entry_id");

-- CreateIndex
CREATE INDEX "chain_tx_status_idx" ON "chain_tx"("status");

-- CreateIndex
CREATE INDEX "chain_tx_attempt_chain_tx_id_idx" ON "chain_tx_attempt"("chain_tx_id");

-- CreateIndex
CREATE UNIQUE INDEX "settlement_batch_chain_tx_id_key" ON "settlement_batch"("chain_tx_id");

-- CreateIndex
CREATE INDEX "settlement_item_channel_id_idx" ON "settlement_item"("channel_id");

-- AddForeignKey
ALTER TABLE "chain_event" ADD CONSTRAINT "chain_event_cursor_id_fkey" FOREIGN KEY ("cursor_id") REFERENCES "chain_cursor"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "chain_tx_attempt" ADD CONSTRAINT "chain_tx_attempt_chain_tx_id_fkey" FOREIGN KEY ("chain_tx_id") REFERENCES "chain_tx"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "settlement_batch" ADD CONSTRAINT "settlement_batch_chain_tx_id_fkey" FOREIGN KEY ("chain_tx_id") REFERENCES "chain_tx"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- AddForeignKey
ALTER TABLE "settlement_item" ADD CONSTRAINT "settlement_item_batch_id_fkey" FOREIGN KEY ("batch_id") REFERENCES "settlement_batch"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- ─── Beyond the Prisma schema ──────────────────────────────────────────────────────────────────

-- Into the ledger's and the voucher store's tables (their models are left untouched).
ALTER TABLE "chain_event" ADD CONSTRAINT "chain_event_entry_id_fkey" FOREIGN KEY ("entry_id") REFERENCES "journal_entry"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE "chain_event" ADD CONSTRAINT "chain_event_reversal_entry_id_fkey" FOREIGN KEY ("reversal_entry_id") REFERENCES "journal_entry"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE "chain_event" ADD CONSTRAINT "chain_event_channel_id_fkey" FOREIGN KEY ("channel_id") REFERENCES "channel"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE "chain_tx" ADD CONSTRAINT "chain_tx_fee_entry_id_fkey" FOREIGN KEY ("fee_entry_id") REFERENCES "journal_entry"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER TABLE "settlement_item" ADD CONSTRAINT "settlement_item_channel_id_fkey" FOREIGN KEY ("channel_id") REFERENCES "channel"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- A log is mirrored at most once while its block stands: "nothing processed twice".
CREATE UNIQUE INDEX "chain_event_live_log_key" ON "chain_event"("cursor_id", "tx_hash", "log_index") WHERE "reverted_at" IS NULL;

-- One owner per nonce: among transactions still in flight, a sender's nonce belongs to one.
CREATE UNIQUE INDEX "chain_tx_pending_nonce_key" ON "chain_tx"("chain_id", "sender", "nonce") WHERE "status" = 'PENDING';

-- A reverted event names the entry that reversed what it booked (if it booked anything).
ALTER TABLE "chain_event" ADD CONSTRAINT "chain_event_reversal_check" CHECK ("reversal_entry_id" IS NULL OR "reverted_at" IS NOT NULL);

ALTER TABLE "chain_tx" ADD CONSTRAINT "chain_tx_amounts_check" CHECK (
    "value" >= 0 AND ("fee" IS NULL OR "fee" >= 0) AND ("nonce" IS NULL OR "nonce" >= 0));
ALTER TABLE "chain_tx" ADD CONSTRAINT "chain_tx_signed_check" CHECK ("status" = 'QUEUED' OR "status" = 'FAILED' OR "nonce" IS NOT NULL);
ALTER TABLE "settlement_item" ADD CONSTRAINT "settlement_item_amount_check" CHECK ("cumulative_amount" > "claimed_before" AND "claimed_before" >= 0);
