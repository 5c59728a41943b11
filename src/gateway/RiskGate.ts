// Where the paywall consults the seller's risk policy (src/policy/risk.ts): after a payment's
// signature has checked out and before the payment is recorded, so a forged payment can neither use
// up someone else's limits nor be counted. A refusal becomes a PaymentError with a stable code —
// `rate_limited` (429, with Retry-After), `step_up_required` (402) or `risk_denied` (403) — and every
// decision with a reason is handed to `onDecision` (logged, recorded in risk_decision, shown on the
// operator console). A plain allow with nothing to explain is only counted: the payment row is its record.
import { PaymentError } from "../protocol/Errors.js";
import type { RiskDecision, RiskPolicy, RiskRecord, RiskRequest } from "../policy/risk.js";

export type RiskGateOptions = {
  /** Told every decision that has a reason (refusals, step-ups, allowed anomalies). */
  onDecision?: (record: RiskRecord) => void;
};

export class RiskGate {
  private readonly onDecision: RiskGateOptions["onDecision"];

  constructor(
    readonly policy: RiskPolicy,
    options: RiskGateOptions = {},
  ) {
    this.onDecision = options.onDecision;
  }

  /** Admits the request (returning how to take its count back) or throws the refusal. */
  admit(request: RiskRequest): () => void {
    const decision = this.policy.admit(request);
    if (decision.reasons.length > 0 || decision.action !== "allow") this.onDecision?.(recordOf(request, decision));
    if (decision.action === "allow") return decision.release;
    throw refusalOf(request, decision);
  }
}

function recordOf(request: RiskRequest, decision: RiskDecision): RiskRecord {
  const { route, scheme, asset, amount, client, account, payer } = request;
  return { at: new Date(), route, scheme, asset, amount, client, account, payer, action: decision.action, code: decision.code, score: decision.score, reasons: decision.reasons, steppedUp: request.stepUp !== undefined };
}

function refusalOf(request: RiskRequest, decision: RiskDecision): PaymentError {
  const why = decision.reasons.map((r) => r.message).join(" ");
  const rules = decision.reasons.map((r) => r.rule).join(",");
  switch (decision.code) {
    case "rate_limited":
      return new PaymentError("rate_limited", `Too many requests: ${why} Retry in ${decision.retryAfterSeconds} s; you were not charged.`, {
        retryAfter: decision.retryAfterSeconds!,
        rules,
      });
    case "step_up_required":
      return new PaymentError("step_up_required", `This spending needs the payer's approval: ${why} Have the payer's wallet sign a StepUp for this channel and send it in PAYMENT-STEP-UP.`, {
        channelId: request.account,
        cumulativeAmount: String(request.cumulative ?? 0n),
        ...(request.deposit !== undefined && { deposit: String(request.deposit) }),
        reasons: rules,
      });
    default:
      return new PaymentError("risk_denied", `Refused by the seller's risk policy: ${why}`, { reasons: rules, score: decision.score });
  }
}
