-- Usage-based charging (metered routes): a request prepays its route's price with its voucher, and
-- the rest of what it used, up to the route's maximum, is post-paid — included in the channel's next
-- voucher. Until then it is a debt recorded on the channel row, not money: the journal books it when
-- a voucher pays it (as part of that voucher's accepted total), so the books never hold a receivable
-- that no signature backs. See docs/PROTOCOL.md, "Metered routes".

-- What the channel owes for metered usage no voucher covers yet: the next voucher must include it.
ALTER TABLE "channel" ADD COLUMN "usage_owed" DECIMAL(78,0) NOT NULL DEFAULT 0;
ALTER TABLE "channel" ADD CONSTRAINT "channel_usage_owed_check" CHECK ("usage_owed" >= 0);
-- The debt the latest accepted voucher paid off: the accept statement sets it from the row it
-- updates, so the payment row it inserts can record it (an UPDATE cannot return old values).
ALTER TABLE "channel" ADD COLUMN "usage_settled" DECIMAL(78,0) NOT NULL DEFAULT 0;

-- The part of a payment's price that paid earlier usage (price = the route's price + owed_paid); a
-- void gives it back to the channel's debt.
ALTER TABLE "payment" ADD COLUMN "owed_paid" DECIMAL(78,0) NOT NULL DEFAULT 0;
-- For a metered request: the most it may cost, what it was charged once its handler finished, and
-- until when its usage may still be reported (a gateway that died mid-request must not leave the
-- channel unable to pay for metered routes).
ALTER TABLE "payment" ADD COLUMN "metered_max" DECIMAL(78,0);
ALTER TABLE "payment" ADD COLUMN "charged" DECIMAL(78,0);
ALTER TABLE "payment" ADD COLUMN "metered_until" TIMESTAMPTZ(6);
ALTER TABLE "payment" ADD CONSTRAINT "payment_metered_check"
  CHECK ("charged" IS NULL OR ("metered_max" IS NOT NULL AND "charged" <= "metered_max"));

-- The metered requests still running, per channel: at most one per channel may be.
CREATE INDEX "payment_metering_idx" ON "payment"("channel_id") WHERE "metered_max" IS NOT NULL AND "charged" IS NULL;

-- A payment still only moves from ACCEPTED to VOIDED, except that a metered one, while ACCEPTED, has
-- its charge recorded once (NULL to a value), nothing else changing.
CREATE OR REPLACE FUNCTION "payment_guard"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD."status" = 'ACCEPTED' AND NEW."status" = 'ACCEPTED'
        AND OLD."metered_max" IS NOT NULL AND OLD."charged" IS NULL AND NEW."charged" IS NOT NULL
        AND (to_jsonb(NEW) - 'charged') = (to_jsonb(OLD) - 'charged') THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE'
        OR (to_jsonb(NEW) - 'status' - 'void_entry_id') <> (to_jsonb(OLD) - 'status' - 'void_entry_id')
        OR NOT (OLD."status" = 'ACCEPTED' AND NEW."status" = 'VOIDED' AND NEW."void_entry_id" IS NOT NULL) THEN
        RAISE EXCEPTION 'payment %: only ACCEPTED -> VOIDED with a void entry (or a metered charge recorded once) is allowed, % refused', OLD."id", TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
