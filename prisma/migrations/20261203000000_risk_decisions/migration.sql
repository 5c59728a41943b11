-- The risk policy's decisions (src/policy/risk.ts) with their reasons, for the operator: every
-- refusal (rate limit, step-up asked, denial) and every allow that had something to explain.
-- Written in batches off the paid path (src/ledger/riskDecisions.ts). Written by hand in the shape
-- `prisma migrate dev` emits for the RiskDecision model, followed by what Prisma cannot express.

-- CreateTable
CREATE TABLE "risk_decision" (
    "id" BIGSERIAL NOT NULL,
    "decided_at" TIMESTAMPTZ(6) NOT NULL,
    "route" TEXT NOT NULL,
    "scheme" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "code" TEXT,
    "score" INTEGER NOT NULL,
    "account" TEXT NOT NULL,
    "payer" TEXT NOT NULL,
    "client" TEXT NOT NULL,
    "asset" TEXT NOT NULL,
    "amount" DECIMAL(78,0) NOT NULL,
    "stepped_up" BOOLEAN NOT NULL,
    "reasons" JSONB NOT NULL,

    CONSTRAINT "risk_decision_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "risk_decision_decided_at_idx" ON "risk_decision"("decided_at");

-- CreateIndex
CREATE INDEX "risk_decision_account_decided_at_idx" ON "risk_decision"("account", "decided_at");

ALTER TABLE "risk_decision" ADD CONSTRAINT "risk_decision_action_check" CHECK ("action" IN ('allow', 'limit', 'step_up', 'deny'));
