// The seller's risk policy: velocity limits (per channel, per payer, per client address; requests per
// minute and value per hour; per route), and an explainable anomaly score that allows, asks for a
// step-up (the payer's wallet approves a spending limit), or denies. Pure decisions from what the
// gateway hands over — who pays, how much, from where, and the time — with no HTTP and no database,
// so every rule is tested alone with a fake clock.
//
// Everything here is in this process's memory, and the policy can only refuse: the database still
// decides every acceptance. With several gateway replicas each counts the traffic it serves, so a
// limit holds per replica (a payer spread over n replicas gets up to n times the limit).
import { SlidingWindow, type Usage } from "./SlidingWindow.js";

export type Dimension = "channel" | "payer" | "client";
export const DIMENSIONS: readonly Dimension[] = ["channel", "payer", "client"];

export type Limits = {
  requestsPerMinute?: number;
  /** Base units per asset (as the ledger names assets); a request in an asset not named is not capped by value. */
  valuePerHour?: Partial<Record<string, bigint>>;
};

export type VelocityLimits = Partial<Record<Dimension, Limits>>;

export type AnomalyRules = {
  /** A request whose score reaches this asks for a step-up (default 50). */
  stepUpScore?: number;
  /** A request whose score reaches this is denied, step-up or not (default 100). */
  denyScore?: number;
  /** Points when a channel's requests in the last minute exceed `factor` times its own average per
   * minute over the hour before (once it has `minRequests` in the minute and 5 minutes of history). */
  burst?: { factor: number; minRequests: number; points: number };
  /** Points when a channel first seen less than `withinSeconds` ago would bring its spending to
   * `percent` of its deposit or more. */
  freshDrain?: { withinSeconds: number; percent: number; points: number };
  /** Points when one payer has used more than `channels` channels within the hour. */
  payerFanout?: { channels: number; points: number };
};

export type RiskRules = {
  /** Limits for every paywalled route. */
  limits?: VelocityLimits;
  /** Limits for one route ("GET /api/quote", as the paywall's route table names it), replacing
   * `limits` dimension by dimension; a route with its own limit for a dimension is counted alone. */
  routes?: Record<string, VelocityLimits>;
  anomaly?: AnomalyRules;
};

/** What the gateway knows about a request once its payment's signature checked out. */
export type RiskRequest = {
  route: string;
  scheme: string;
  asset: string;
  /** The price, in base units of `asset`. */
  amount: bigint;
  /** The client's address (the TCP peer, or what a trusted proxy says). */
  client: string;
  /** The channel id, or the credit account. */
  account: string;
  /** The channel's payer, or the credit account. */
  payer: string;
  /** The channel's total after this request, and its deposit, when known. */
  cumulative?: bigint;
  deposit?: bigint;
  /** Whether this scheme can answer a step-up (a channel's payer wallet can; a credit key cannot). */
  canStepUp: boolean;
  /** A step-up the payer's wallet signed, already verified by the scheme. */
  stepUp?: { spendingLimit: bigint; validUntil: number };
};

export type Reason = { rule: string; message: string; points?: number };

export type RiskAction = "allow" | "limit" | "step_up" | "deny";

export type RiskDecision = {
  action: RiskAction;
  /** The refusal's stable code; undefined for an allow. */
  code?: "rate_limited" | "step_up_required" | "risk_denied";
  score: number;
  reasons: Reason[];
  /** For `limit`: whole seconds until the request would fit. */
  retryAfterSeconds?: number;
};

/** One decision as it is logged and stored (src/ledger/riskDecisions.ts). */
export type RiskRecord = Omit<RiskRequest, "stepUp" | "canStepUp" | "cumulative" | "deposit"> & {
  at: Date;
  action: RiskAction;
  code?: string;
  score: number;
  reasons: Reason[];
  /** Whether the request carried a verified step-up approval. */
  steppedUp: boolean;
};

/** A dimension's limits on a route, with the windows that count them: requests, and value per asset
 * the limit names (amounts in different assets are never added up). */
type RouteLimit = { dimension: Dimension; limits: Limits; scope: string; requests?: SlidingWindow; value: Map<string, SlidingWindow> };

const nothing = () => {};
const MINUTE = 60_000;
const HOUR = 3_600_000;

export class RiskPolicy {
  /** Per channel: requests within the minute and the hour (its own history, for the burst rule). */
  private readonly recent = new SlidingWindow(MINUTE);
  private readonly history = new SlidingWindow(HOUR);
  /** The windows of each scope ("*" or a route) and dimension, shared by the routes that use them. */
  private readonly windows = new Map<string, Pick<RouteLimit, "requests" | "value">>();
  private readonly firstSeen = new Map<string, number>();
  private readonly payerChannels = new Map<string, Map<string, number>>();
  private readonly routeLimits = new Map<string, RouteLimit[]>();

  constructor(
    readonly rules: RiskRules,
    private readonly clock: () => number = Date.now,
  ) {
    for (const [route, limits] of Object.entries({ "(all routes)": rules.limits ?? {}, ...rules.routes })) checkLimits(route, limits);
  }

  /** Whether any rule is configured: without one the paywall skips the policy altogether. */
  get active(): boolean {
    return Boolean(this.rules.anomaly) || [this.rules.limits, ...Object.values(this.rules.routes ?? {})].some((l) => l && Object.keys(l).length > 0);
  }

  /**
   * Decides on a request and, when it is allowed, counts it at once (so concurrent requests cannot
   * all slip under a limit). `release` takes the count back if the payment is refused afterwards.
   */
  admit(request: RiskRequest): RiskDecision & { release(): void } {
    const now = this.clock();
    this.observe(request, now);
    const limits = this.limitsFor(request.route);
    const limited = this.velocity(request, limits, now);
    if (limited) return { ...limited, release: nothing };
    const decision = this.anomaly(request, now);
    if (decision.action !== "allow") return { ...decision, release: nothing };
    return { ...decision, release: this.count(request, limits, now) };
  }

  /** The limits that apply on `route`, worked out once per route (the paid path asks every request). */
  private limitsFor(route: string): RouteLimit[] {
    let found = this.routeLimits.get(route);
    if (!found) {
      const own = this.rules.routes?.[route] ?? {};
      found = DIMENSIONS.flatMap((dimension) => {
        const limits = own[dimension] ?? this.rules.limits?.[dimension];
        if (!limits) return [];
        const scope = own[dimension] ? route : "*";
        const shared = `${scope}\n${dimension}`;
        let windows = this.windows.get(shared);
        if (!windows) {
          windows = {
            requests: limits.requestsPerMinute === undefined ? undefined : new SlidingWindow(MINUTE),
            value: new Map(Object.keys(limits.valuePerHour ?? {}).map((asset) => [asset, new SlidingWindow(HOUR)])),
          };
          this.windows.set(shared, windows);
        }
        return [{ dimension, limits, scope, ...windows }];
      });
      // Routes are the paywall's own keys, a fixed set; a bare path (payments()) could vary.
      if (this.routeLimits.size < 10_000) this.routeLimits.set(route, found);
    }
    return found;
  }

  private velocity(request: RiskRequest, limits: RouteLimit[], now: number): RiskDecision | undefined {
    const reasons: Reason[] = [];
    let waitMs = 0;
    for (const { dimension, limits: l, scope, requests, value } of limits) {
      const id = idOf(request, dimension);
      const on = scope === "*" ? "" : ` on ${scope}`;
      // Within the limit (the paid path's answer) costs one read of the window's totals.
      const perMinute = l.requestsPerMinute!;
      if (requests && requests.usage(id, now).count + 1 > perMinute) {
        waitMs = Math.max(waitMs, requests.waitUntil(id, now, (u) => u.count + 1 <= perMinute) ?? MINUTE);
        reasons.push({ rule: `${dimension}.requestsPerMinute`, message: `The ${dimension} made ${requests.usage(id, now).count} requests in the last minute; the limit${on} is ${perMinute}.` });
      }
      const spent = value.get(request.asset);
      const perHour = l.valuePerHour?.[request.asset];
      if (spent && perHour !== undefined && spent.usage(id, now).value + request.amount > perHour) {
        waitMs = Math.max(waitMs, spent.waitUntil(id, now, (u: Usage) => u.value + request.amount <= perHour) ?? HOUR);
        reasons.push({ rule: `${dimension}.valuePerHour`, message: `The ${dimension} spent ${spent.usage(id, now).value} in the last hour; with ${request.amount} more it would pass the limit${on} of ${perHour}.` });
      }
    }
    if (reasons.length === 0) return undefined;
    return { action: "limit", code: "rate_limited", score: 0, reasons, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  private anomaly(request: RiskRequest, now: number): RiskDecision {
    const rules = this.rules.anomaly;
    if (!rules) return { action: "allow", score: 0, reasons: [] };
    const reasons: Reason[] = [];
    if (rules.burst) {
      const { factor, minRequests, points } = rules.burst;
      const lastMinute = this.recent.usage(request.account, now).count + 1;
      const hour = this.history.usage(request.account, now).count + 1;
      const age = now - (this.firstSeen.get(request.account) ?? now);
      const before = (hour - lastMinute) / 59;
      if (age >= 5 * MINUTE && lastMinute >= minRequests && lastMinute > factor * before) {
        reasons.push({ rule: "burst", points, message: `The channel made ${lastMinute} requests in the last minute, over ${factor}× its own average of ${before.toFixed(1)} a minute in the hour before.` });
      }
    }
    if (rules.freshDrain && request.cumulative !== undefined && request.deposit !== undefined && request.deposit > 0n) {
      const { withinSeconds, percent, points } = rules.freshDrain;
      const age = now - (this.firstSeen.get(request.account) ?? now);
      if (age < withinSeconds * 1000 && request.cumulative * 100n >= BigInt(percent) * request.deposit) {
        reasons.push({ rule: "freshDrain", points, message: `The channel, first seen ${Math.floor(age / 1000)} s ago, would have spent ${request.cumulative} of its deposit ${request.deposit} (at least ${percent}%).` });
      }
    }
    if (rules.payerFanout) {
      const { channels, points } = rules.payerFanout;
      const seen = this.payerChannels.get(request.payer)?.size ?? 0;
      if (seen > channels) reasons.push({ rule: "payerFanout", points, message: `The payer used ${seen} channels within the hour, more than ${channels}.` });
    }
    const score = reasons.reduce((sum, r) => sum + (r.points ?? 0), 0);
    const denyAt = rules.denyScore ?? 100;
    const stepUpAt = rules.stepUpScore ?? 50;
    if (score >= denyAt) return { action: "deny", code: "risk_denied", score, reasons };
    if (score < stepUpAt) return { action: "allow", score, reasons };
    const grant = request.stepUp;
    if (!request.canStepUp) {
      reasons.push({ rule: "stepUp", message: "This way of paying has no wallet to approve a step-up, so the request is refused." });
      return { action: "deny", code: "risk_denied", score, reasons };
    }
    if (grant && grant.validUntil * 1000 > now && request.cumulative !== undefined && request.cumulative <= grant.spendingLimit) {
      reasons.push({ rule: "stepUp", message: `The payer's wallet approved spending up to ${grant.spendingLimit} on this channel until ${new Date(grant.validUntil * 1000).toISOString()}.` });
      return { action: "allow", score, reasons };
    }
    if (grant) {
      reasons.push({ rule: "stepUp", message: grant.validUntil * 1000 <= now ? "The payer's step-up approval has expired." : `The payer's step-up approval covers up to ${grant.spendingLimit}, not ${request.cumulative}.` });
    }
    return { action: "step_up", code: "step_up_required", score, reasons };
  }

  /** Remembers what the anomaly rules look back on: when a channel was first seen, a payer's channels. */
  private observe(request: RiskRequest, now: number): void {
    if (!this.rules.anomaly) return;
    if (!this.firstSeen.has(request.account)) {
      if (this.firstSeen.size >= 100_000) this.forgetBefore(now - HOUR);
      this.firstSeen.set(request.account, now);
    }
    let channels = this.payerChannels.get(request.payer);
    if (!channels) this.payerChannels.set(request.payer, (channels = new Map()));
    channels.set(request.account, now);
    // Stale channels matter only once they could tip the count over the rule's threshold.
    if (channels.size > (this.rules.anomaly.payerFanout?.channels ?? Infinity)) {
      for (const [channel, at] of channels) if (at <= now - HOUR) channels.delete(channel);
    }
  }

  private forgetBefore(cutoff: number): void {
    for (const [account, at] of this.firstSeen) if (at < cutoff) this.firstSeen.delete(account);
    for (const [payer, channels] of this.payerChannels) {
      for (const [channel, at] of channels) if (at < cutoff) channels.delete(channel);
      if (channels.size === 0) this.payerChannels.delete(payer);
    }
  }

  /** Counts an admitted request; returns how to take it back. */
  private count(request: RiskRequest, limits: RouteLimit[], now: number): () => void {
    this.tally("add", request, limits, now);
    return () => this.tally("remove", request, limits, now);
  }

  /** Adds a request to every window that counts it, or takes it out again: the same windows both ways. */
  private tally(op: "add" | "remove", request: RiskRequest, limits: RouteLimit[], now: number): void {
    for (const { dimension, requests, value } of limits) {
      const id = idOf(request, dimension);
      requests?.[op](id, now);
      value.get(request.asset)?.[op](id, now, request.amount);
    }
    if (this.rules.anomaly?.burst !== undefined) {
      this.recent[op](request.account, now);
      this.history[op](request.account, now);
    }
  }
}

function idOf(request: RiskRequest, dimension: Dimension): string {
  return dimension === "channel" ? request.account : dimension === "payer" ? request.payer : request.client;
}

function checkLimits(route: string, limits: VelocityLimits): void {
  for (const [dimension, l] of Object.entries(limits)) {
    if (!DIMENSIONS.includes(dimension as Dimension)) throw new RangeError(`Risk limits for ${route}: unknown dimension "${dimension}" (use channel, payer or client).`);
    if (l?.requestsPerMinute !== undefined && !(Number.isInteger(l.requestsPerMinute) && l.requestsPerMinute > 0)) {
      throw new RangeError(`Risk limits for ${route}: ${dimension}.requestsPerMinute must be a positive whole number, not ${l.requestsPerMinute}.`);
    }
    for (const [asset, cap] of Object.entries(l?.valuePerHour ?? {})) {
      if (typeof cap !== "bigint" || cap <= 0n) throw new RangeError(`Risk limits for ${route}: ${dimension}.valuePerHour of ${asset} must be a positive bigint of base units.`);
    }
  }
}
