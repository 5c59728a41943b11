-- Running totals locked accounts FOR UPDATE, which conflicts with the FOR KEY SHARE lock that each
-- posting's foreign key takes on its account. Two transactions posting to one shared account (the
-- escrow's holdings) each held the key-share lock and waited for the other's update lock: a deadlock
-- on every concurrent deposit. Updating totals changes no key, so FOR NO KEY UPDATE is enough, and it
-- does not conflict with FOR KEY SHARE.
CREATE OR REPLACE FUNCTION "ledger_apply_postings"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM "ledger_account"
        WHERE "id" IN (SELECT DISTINCT "account_id" FROM "new_postings") ORDER BY "id" FOR NO KEY UPDATE;
    UPDATE "ledger_account" a
        SET "debits" = a."debits" + t."debits", "credits" = a."credits" + t."credits"
        FROM (SELECT "account_id",
                     COALESCE(SUM("amount") FILTER (WHERE "side" = 'DEBIT'), 0) AS "debits",
                     COALESCE(SUM("amount") FILTER (WHERE "side" = 'CREDIT'), 0) AS "credits"
                FROM "new_postings" GROUP BY "account_id") t
        WHERE a."id" = t."account_id";
    RETURN NULL;
END $$;
