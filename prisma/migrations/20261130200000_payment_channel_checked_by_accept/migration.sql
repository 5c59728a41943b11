-- A payment's channel is checked by the statement that inserts it, not by a foreign key.
--
-- Payments are inserted by one statement only, the accept statement (src/ledger/acceptVouchers.ts),
-- which inserts a payment only joined with the channel row it has just updated under that row's lock:
-- a payment for a missing channel cannot be written. The foreign key checked it again for every row,
-- one lookup of the channel per payment inside the hot statement, and cost a third to a half of a
-- 100-voucher statement's time (scripts/bench/ledger.ts). What the key also gave — a channel with
-- payments cannot be deleted — stays: channels are permanent records and no channel can be deleted.

ALTER TABLE "payment" DROP CONSTRAINT "payment_channel_id_fkey";

CREATE FUNCTION channel_is_permanent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'channels are permanent records: % on channel is not allowed', TG_OP
    USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER channel_is_permanent BEFORE DELETE OR TRUNCATE ON "channel"
  FOR EACH STATEMENT EXECUTE FUNCTION channel_is_permanent();
