-- Seal journal entries: each entry declares how many postings it has, and the deferred check at
-- commit compares. UPDATE and DELETE were already refused; this also refuses postings appended to an
-- entry after the fact, even balanced ones.

-- AlterTable
ALTER TABLE "journal_entry" ADD COLUMN "posting_count" INTEGER;

ALTER TABLE "journal_entry" DISABLE TRIGGER "journal_entry_immutable";
UPDATE "journal_entry" e SET "posting_count" = (SELECT count(*) FROM "posting" p WHERE p."entry_id" = e."id");
ALTER TABLE "journal_entry" ENABLE TRIGGER "journal_entry_immutable";

ALTER TABLE "journal_entry" ALTER COLUMN "posting_count" SET NOT NULL;
ALTER TABLE "journal_entry" ADD CONSTRAINT "journal_entry_posting_count_check" CHECK ("posting_count" >= 2);

CREATE OR REPLACE FUNCTION "ledger_check_entry_balanced"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    declared INTEGER;
    actual INTEGER;
    unbalanced TEXT;
BEGIN
    SELECT "posting_count" INTO declared FROM "journal_entry" WHERE "id" = NEW."entry_id";
    SELECT count(*) INTO actual FROM "posting" WHERE "entry_id" = NEW."entry_id";
    IF actual <> declared THEN
        RAISE EXCEPTION 'journal entry % has % postings, not the % it declares', NEW."entry_id", actual, declared
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_sealed';
    END IF;
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
