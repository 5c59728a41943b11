-- The metrics read the exposure (Σ CHANNEL_OWED: accepted and not yet claimed) at every scrape
-- (src/ledger/exposure.ts). Only the channels with unclaimed vouchers hold a CHANNEL_OWED balance,
-- so this index lists exactly those: a scrape walks them, never every channel's accounts. It is kept
-- up by booking and by the chain mirror, never by the accept statement, so the paid path is unchanged.
CREATE INDEX "ledger_account_owed_balance_idx" ON "ledger_account" ("asset") INCLUDE ("credits", "debits")
  WHERE "kind" = 'CHANNEL_OWED' AND "credits" <> "debits";
