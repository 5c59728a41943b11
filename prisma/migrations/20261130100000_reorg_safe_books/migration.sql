-- Unconfirmed is not confirmed (src/ledger/channelBooks.ts): a deposit seen at the chain's head but
-- not yet CONFIRMATIONS deep is booked as pending (ESCROW_PENDING), posted when the watcher confirms
-- it and voided when a reorg drops it; a reorg that takes away money already spent moves the
-- shortfall to the channel's CHANNEL_SHORTFALL account and blocks the channel, instead of refusing to
-- book (which stopped the watcher for every channel).

ALTER TYPE "account_kind" ADD VALUE 'ESCROW_PENDING';
ALTER TYPE "account_kind" ADD VALUE 'CHANNEL_SHORTFALL';
ALTER TYPE "entry_kind" ADD VALUE 'DEPOSIT_PENDING';
ALTER TYPE "entry_kind" ADD VALUE 'DEPOSIT_VOIDED';

-- The chain's head as last read (by the gateway on first sight or a top-up, by the watcher every
-- poll), beside the confirmed state the mirror keeps in deposit / withdraw_ready_at / closed.
ALTER TABLE "channel" ADD COLUMN "deposit_seen" DECIMAL(78,0) NOT NULL DEFAULT 0;
ALTER TABLE "channel" ADD COLUMN "withdraw_ready_at_seen" BIGINT;
ALTER TABLE "channel" ADD COLUMN "closed_seen" BOOLEAN NOT NULL DEFAULT false;
-- What ESCROW_PENDING holds for this channel: deposit_seen − deposit once booked.
ALTER TABLE "channel" ADD COLUMN "pending_booked" DECIMAL(78,0) NOT NULL DEFAULT 0;
-- Why nothing is served on the channel (a reorg shortfall, an event the mirror could not book), or null.
ALTER TABLE "channel" ADD COLUMN "blocked_reason" TEXT;
UPDATE "channel" SET "deposit_seen" = "deposit", "withdraw_ready_at_seen" = "withdraw_ready_at", "closed_seen" = "closed";
ALTER TABLE "channel" ADD CONSTRAINT "channel_seen_check" CHECK ("deposit_seen" >= 0 AND "pending_booked" >= 0);

-- The channels whose head state differs from their confirmed state: the watcher re-reads exactly these
-- each poll. The accept statement changes none of these columns, so its update stays heap-only.
CREATE INDEX "channel_seen_ahead_idx" ON "channel" ("id")
    WHERE "deposit_seen" <> "deposit" OR "pending_booked" <> 0 OR "closed_seen" <> "closed"
       OR "withdraw_ready_at_seen" IS DISTINCT FROM "withdraw_ready_at";

-- Gas follows the receipt: the block it was booked from, so a reorg that drops the block reverses it.
ALTER TABLE "chain_tx" ADD COLUMN "block_hash" TEXT;

-- One channel's events the mirror could not book (a poisoned channel): kept here, in order, retried
-- every poll, while the cursor moves on for every other channel.
CREATE TABLE "chain_event_failure" (
    "id" BIGSERIAL NOT NULL,
    "cursor_id" TEXT NOT NULL,
    "channel_id" TEXT NOT NULL,
    "block_number" BIGINT NOT NULL,
    "block_hash" TEXT NOT NULL,
    "tx_hash" TEXT NOT NULL,
    "log_index" INTEGER NOT NULL,
    "name" TEXT NOT NULL,
    "args" JSONB NOT NULL,
    "error" TEXT NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 1,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "resolved_at" TIMESTAMPTZ(6),

    CONSTRAINT "chain_event_failure_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "chain_event_failure_open_idx" ON "chain_event_failure" ("cursor_id", "channel_id", "id") WHERE "resolved_at" IS NULL;
CREATE UNIQUE INDEX "chain_event_failure_live_key" ON "chain_event_failure" ("cursor_id", "tx_hash", "log_index") WHERE "resolved_at" IS NULL;
