-- Acceptance in one statement (src/ledger/acceptVouchers.ts): the channel row is the compare-and-set
-- target, a payment row the durable record, and the journal is booked per channel in aggregate
-- (src/ledger/booking.ts) instead of one entry with two postings per voucher.

-- What the journal holds of the channel's accepted vouchers: booking moves accepted_cumulative −
-- booked_cumulative from CHANNEL_AVAILABLE to CHANNEL_OWED (or back, after voids) and raises this to
-- match; booking_seq numbers those entries so each has its own idempotency key.
ALTER TABLE "channel" ADD COLUMN "booked_cumulative" DECIMAL(78,0) NOT NULL DEFAULT 0;
ALTER TABLE "channel" ADD COLUMN "booking_seq" INTEGER NOT NULL DEFAULT 0;
-- Until now every voucher was booked as it was accepted.
UPDATE "channel" SET "booked_cumulative" = "accepted_cumulative";
ALTER TABLE "channel" ADD CONSTRAINT "channel_booked_check" CHECK ("booked_cumulative" >= 0);

-- The settlement worker claims with the highest ACCEPTED payment's voucher; the copy kept on the
-- channel was never read and widened every update of the hottest row.
ALTER TABLE "channel" DROP COLUMN "latest_voucher_signature";

-- Leave room on each page so the per-voucher update of a channel stays a heap-only (HOT) update.
ALTER TABLE "channel" SET (fillfactor = 70);

-- A payment's entry is now its channel's aggregate booking, so it no longer names one.
ALTER TABLE "payment" DROP CONSTRAINT "payment_journal_entry_id_fkey";
DROP INDEX "payment_journal_entry_id_key";
ALTER TABLE "payment" DROP COLUMN "journal_entry_id";

-- A request is no longer identified by a random id nobody could repeat, but by what it is: a hash of
-- its method, URL and payment header. A byte-identical retry of a paid request finds its payment by it.
DROP INDEX "payment_channel_id_request_id_key";
ALTER TABLE "payment" RENAME COLUMN "request_id" TO "request_key";

-- How many times a payment was served again to an identical retry: bounded, so a captured header
-- cannot be replayed without end within the payment's validity.
CREATE TABLE "payment_retry" (
    "payment_id" UUID NOT NULL,
    "retries" INTEGER NOT NULL,

    CONSTRAINT "payment_retry_pkey" PRIMARY KEY ("payment_id")
);
ALTER TABLE "payment_retry" ADD CONSTRAINT "payment_retry_payment_id_fkey" FOREIGN KEY ("payment_id") REFERENCES "payment"("id") ON DELETE RESTRICT ON UPDATE RESTRICT;

-- The chain's clock as the watcher last read it: the withdrawal margin is measured in chain time,
-- extrapolated by the database's own clock since it was read, the same for every process.
CREATE TABLE "chain_head" (
    "chain_id" BIGINT NOT NULL,
    "block_number" BIGINT NOT NULL,
    "block_timestamp" BIGINT NOT NULL,
    "observed_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "chain_head_pkey" PRIMARY KEY ("chain_id")
);
