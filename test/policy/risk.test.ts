import { expect } from "chai";
import { RiskPolicy, type RiskRequest, type RiskRules } from "../../src/policy/risk.js";
import { SlidingWindow } from "../../src/policy/SlidingWindow.js";

const ETH = "eip155:31337/native";
const T0 = 1_800_000_000_000;

function clock(start = T0) {
  const c = { now: start, read: () => c.now, advance: (ms: number) => (c.now += ms) };
  return c;
}

function request(overrides: Partial<RiskRequest> = {}): RiskRequest {
  return { route: "GET /quote", scheme: "paychan", asset: ETH, amount: 10n, client: "10.0.0.1", account: "0xchannel", payer: "0xpayer", canStepUp: true, ...overrides };
}

function policy(rules: RiskRules, c = clock()) {
  return { risk: new RiskPolicy(rules, c.read), c };
}

describe("risk policy: velocity limits", () => {
  it("limits a channel's requests per minute and releases them as the minute slides", () => {
    const { risk, c } = policy({ limits: { channel: { requestsPerMinute: 3 } } });
    for (let i = 0; i < 3; i++) expect(risk.admit(request()).action).to.equal("allow");
    c.advance(20_000);
    const limited = risk.admit(request());
    expect(limited).to.include({ action: "limit", code: "rate_limited" });
    expect(limited.reasons.map((r) => r.rule)).to.deep.equal(["channel.requestsPerMinute"]);
    // The three left the window 60 s after they were made: 40 s from now.
    expect(limited.retryAfterSeconds).to.equal(40);
    expect(risk.admit(request({ account: "0xother" })).action).to.equal("allow");
    c.advance(40_000);
    expect(risk.admit(request()).action).to.equal("allow");
  });

  it("limits a payer's value per hour across its channels, in the asset the limit names", () => {
    const { risk, c } = policy({ limits: { payer: { valuePerHour: { [ETH]: 25n } } } });
    expect(risk.admit(request({ account: "0xa" })).action).to.equal("allow");
    expect(risk.admit(request({ account: "0xb" })).action).to.equal("allow");
    const limited = risk.admit(request({ account: "0xc" }));
    expect(limited.action).to.equal("limit");
    expect(limited.reasons[0]!.message).to.match(/spent 20 in the last hour/);
    expect(limited.retryAfterSeconds).to.equal(3600);
    expect(risk.admit(request({ account: "0xc", asset: "fiat:USD" })).action, "another asset").to.equal("allow");
    c.advance(3_600_000);
    expect(risk.admit(request({ account: "0xc" })).action).to.equal("allow");
  });

  it("limits a client address whatever channel it pays with", () => {
    const { risk } = policy({ limits: { client: { requestsPerMinute: 2 } } });
    expect(risk.admit(request({ account: "0xa" })).action).to.equal("allow");
    expect(risk.admit(request({ account: "0xb" })).action).to.equal("allow");
    expect(risk.admit(request({ account: "0xc" })).action).to.equal("limit");
    expect(risk.admit(request({ account: "0xc", client: "10.0.0.2" })).action).to.equal("allow");
  });

  it("counts a route with its own limit alone, and other routes under the default", () => {
    const { risk } = policy({ limits: { channel: { requestsPerMinute: 5 } }, routes: { "GET /expensive": { channel: { requestsPerMinute: 1 } } } });
    expect(risk.admit(request({ route: "GET /expensive" })).action).to.equal("allow");
    expect(risk.admit(request({ route: "GET /expensive" })).action).to.equal("limit");
    for (let i = 0; i < 5; i++) expect(risk.admit(request()).action, `cheap ${i}`).to.equal("allow");
    expect(risk.admit(request()).action).to.equal("limit");
  });

  it("takes a request's count back when its payment is refused afterwards", () => {
    const { risk } = policy({ limits: { channel: { requestsPerMinute: 1 } } });
    risk.admit(request()).release();
    expect(risk.admit(request()).action).to.equal("allow");
    expect(risk.admit(request()).action).to.equal("limit");
  });

  it("is inactive without rules, and refuses malformed limits naming the route", () => {
    expect(new RiskPolicy({}).active).to.equal(false);
    expect(new RiskPolicy({ routes: { "GET /a": {} } }).active).to.equal(false);
    expect(new RiskPolicy({ limits: { client: { requestsPerMinute: 1 } } }).active).to.equal(true);
    expect(() => new RiskPolicy({ routes: { "GET /a": { channel: { requestsPerMinute: 0 } } } })).to.throw(/GET \/a: channel.requestsPerMinute/);
    expect(() => new RiskPolicy({ limits: { wallet: {} } as never })).to.throw(/unknown dimension "wallet"/);
  });
});

describe("risk policy: anomaly score and step-up", () => {
  const drain = { stepUpScore: 50, denyScore: 100, freshDrain: { withinSeconds: 60, percent: 50, points: 60 } };

  it("asks a new channel spending half its deposit within a minute to step up, and explains why", () => {
    const { risk } = policy({ anomaly: drain });
    expect(risk.admit(request({ cumulative: 40n, deposit: 100n })).action).to.equal("allow");
    const decision = risk.admit(request({ cumulative: 50n, deposit: 100n }));
    expect(decision).to.include({ action: "step_up", code: "step_up_required", score: 60 });
    expect(decision.reasons[0]!.rule).to.equal("freshDrain");
    expect(decision.reasons[0]!.message).to.match(/would have spent 50 of its deposit 100/);
  });

  it("serves it with the payer's approval up to its limit and until it expires, not beyond", () => {
    const { risk, c } = policy({ anomaly: drain });
    risk.admit(request({ cumulative: 10n, deposit: 100n }));
    const stepUp = { spendingLimit: 80n, validUntil: Math.floor(T0 / 1000) + 30 };
    const approved = risk.admit(request({ cumulative: 60n, deposit: 100n, stepUp }));
    expect(approved.action).to.equal("allow");
    expect(approved.reasons.map((r) => r.rule)).to.deep.equal(["freshDrain", "stepUp"]);
    expect(risk.admit(request({ cumulative: 90n, deposit: 100n, stepUp })).action, "over the approved limit").to.equal("step_up");
    c.advance(31_000);
    expect(risk.admit(request({ cumulative: 70n, deposit: 100n, stepUp })).action, "expired").to.equal("step_up");
  });

  it("denies a credit account (no wallet to step up) and anything at the deny score, approval or not", () => {
    const { risk } = policy({ anomaly: { ...drain, payerFanout: { channels: 1, points: 40 } } });
    risk.admit(request({ account: "0xa", cumulative: 1n, deposit: 100n }));
    const denied = risk.admit(request({ account: "0xb", cumulative: 60n, deposit: 100n, stepUp: { spendingLimit: 100n, validUntil: 2 ** 40 } }));
    expect(denied).to.include({ action: "deny", code: "risk_denied", score: 100 });
    expect(denied.reasons.map((r) => r.rule)).to.have.members(["freshDrain", "payerFanout"]);
    const credit = new RiskPolicy({ anomaly: drain }, clock().read);
    expect(credit.admit(request({ canStepUp: false, cumulative: 60n, deposit: 100n })).action).to.equal("deny");
  });

  it("flags a burst far above the channel's own history, not a steady rate", () => {
    const { risk, c } = policy({ anomaly: { stepUpScore: 50, burst: { factor: 5, minRequests: 10, points: 50 } } });
    for (let minute = 0; minute < 30; minute++) {
      for (let i = 0; i < 2; i++) expect(risk.admit(request()).action, `steady minute ${minute}`).to.equal("allow");
      c.advance(60_000);
    }
    for (let i = 0; i < 9; i++) expect(risk.admit(request()).action, `burst ${i}`).to.equal("allow");
    const burst = risk.admit(request());
    expect(burst.action).to.equal("step_up");
    expect(burst.reasons[0]!.message).to.match(/10 requests in the last minute/);
  });
});

describe("sliding window", () => {
  it("tells how long until a usage fits, slot by slot", () => {
    const w = new SlidingWindow(60_000);
    w.add("k", 0, 5n);
    w.add("k", 30_000, 7n);
    expect(w.usage("k", 59_999)).to.deep.equal({ count: 2, value: 12n });
    expect(w.waitUntil("k", 40_000, (u) => u.value <= 7n)).to.equal(20_000);
    expect(w.waitUntil("k", 40_000, (u) => u.count === 0)).to.equal(50_000);
    expect(w.waitUntil("k", 40_000, (u) => u.value < 0n)).to.equal(undefined);
    expect(w.usage("k", 90_000)).to.deep.equal({ count: 0, value: 0n });
  });
});

describe("sliding window totals", () => {
  it("agree with a slot-by-slot count however time moves, added and removed", () => {
    const w = new SlidingWindow(60_000);
    const events: { at: number; value: bigint }[] = [];
    let now = 0;
    let seed = 7;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    for (let step = 0; step < 3_000; step++) {
      now += Math.floor(random() * (step % 500 < 10 ? 90_000 : 2_500));
      const value = BigInt(Math.floor(random() * 100));
      w.add("k", now, value);
      events.push({ at: now, value });
      if (random() < 0.2) {
        const last = events.pop()!;
        w.remove("k", last.at, last.value);
      }
      // What a slot-by-slot count says: every event in a one-second slot within the last 60 slots.
      const live = events.filter((e) => Math.floor(e.at / 1000) > Math.floor(now / 1000) - 60);
      expect(w.usage("k", now), `step ${step}`).to.deep.equal({ count: live.length, value: live.reduce((sum, e) => sum + e.value, 0n) });
    }
  });
});
