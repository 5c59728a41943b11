-- The metrics read the exposure (Σ CHANNEL_OWED: accepted and not yet claimed) at every scrape
-- (src/ledger/exposure.ts). Only the channels with unclaimed vouchers hold a CHANNEL_OWED balance, so
-- an index of exactly those accounts lets a scrape walk them, never every channel's accounts.
--
-- `owing` says which accounts those are. As a column of its own (rather than an index predicate on
-- credits and debits) ANALYZE keeps statistics on it, so the planner knows how few accounts owe and
-- plans index probes rather than scans; and updating an account's totals changes no indexed value
-- unless it starts or stops owing, so booking's updates stay heap-only (HOT). The accept statement
-- never touches this table: the paid path is unchanged.
ALTER TABLE "ledger_account" ADD COLUMN "owing" BOOLEAN NOT NULL
    GENERATED ALWAYS AS ("kind" = 'CHANNEL_OWED' AND "credits" <> "debits") STORED;
CREATE INDEX "ledger_account_owing_idx" ON "ledger_account" ("asset") WHERE "owing";
