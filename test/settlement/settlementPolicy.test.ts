import { expect } from "chai";
import { getAddress, toHex, zeroAddress, type Address, type Hex } from "viem";
import { planBatches, reasonToClaim, type Conditions, type SettlementPolicy } from "../../src/chain/settlementPolicy.js";
import type { ClaimCandidate } from "../../src/ledger/settlementStore.js";

const TOKEN = getAddress("0xe7f1725e7734ce288f8367e1bb143e90bb3f0512");
const policy: SettlementPolicy = { intervalSeconds: 3600, threshold: 1_000n, gasMultiplier: 10, watchtowerMarginSeconds: 600, batchSize: 3 };
const when: Conditions = { now: 1_000_000n, intervalDue: false, manual: false, gasPrice: 1n, gasPerClaim: 20n };

let next = 0;
function candidate(overrides: Partial<ClaimCandidate> = {}): ClaimCandidate {
  next++;
  return {
    channelId: toHex(next, { size: 32 }) as Hex,
    payer: zeroAddress as Address,
    signer: zeroAddress as Address,
    token: zeroAddress,
    withdrawDelay: 3600,
    salt: toHex(next, { size: 32 }),
    deposit: 10_000n,
    claimedOnChain: 0n,
    acceptedCumulative: 100n,
    cumulativeAmount: 100n,
    signature: "0x",
    unclaimed: 100n,
    withdrawReadyAt: null,
    withdrawalUnanswered: false,
    ...overrides,
  };
}

describe("settlement policy", () => {
  it("leaves a small channel alone while no rule holds", () => {
    expect(reasonToClaim(candidate({ unclaimed: 199n }), when, policy)).to.equal(undefined);
  });

  it("claims once the unclaimed value reaches the threshold, and never with a threshold of 0", () => {
    expect(reasonToClaim(candidate({ unclaimed: 1_000n }), when, policy)).to.equal("THRESHOLD");
    expect(reasonToClaim(candidate({ unclaimed: 1_000n, token: TOKEN }), when, { ...policy, threshold: 0n })).to.equal(undefined);
  });

  it("claims a native-coin channel worth the multiplier times its gas, but not an ERC-20 one (no price to compare)", () => {
    // 10 × 1 wei × 20 gas = 200
    expect(reasonToClaim(candidate({ unclaimed: 200n }), when, policy)).to.equal("GAS_BREAK_EVEN");
    expect(reasonToClaim(candidate({ unclaimed: 200n }), { ...when, gasPrice: 2n }, policy)).to.equal(undefined);
    expect(reasonToClaim(candidate({ unclaimed: 200n, token: TOKEN }), when, policy)).to.equal(undefined);
  });

  it("claims everything unclaimed when the interval is due or an operator asks, and nothing that is already claimed", () => {
    expect(reasonToClaim(candidate({ unclaimed: 1n }), { ...when, intervalDue: true }, policy)).to.equal("INTERVAL");
    expect(reasonToClaim(candidate({ unclaimed: 1n }), { ...when, manual: true }, policy)).to.equal("MANUAL");
    expect(reasonToClaim(candidate({ unclaimed: 0n }), { ...when, manual: true }, policy)).to.equal(undefined);
  });

  it("answers a withdrawal at once, sweeps again inside the watchtower margin, and leaves a channel past its deadline", () => {
    expect(reasonToClaim(candidate({ unclaimed: 1n, withdrawReadyAt: when.now + 3600n, withdrawalUnanswered: true }), when, policy)).to.equal("WATCHTOWER");
    expect(reasonToClaim(candidate({ unclaimed: 1n, withdrawReadyAt: when.now + 3600n }), when, policy)).to.equal(undefined);
    expect(reasonToClaim(candidate({ unclaimed: 1n, withdrawReadyAt: when.now + 600n }), when, policy)).to.equal("DEADLINE");
    expect(reasonToClaim(candidate({ unclaimed: 5_000n, withdrawReadyAt: when.now }), { ...when, manual: true }, policy)).to.equal(undefined);
  });

  it("batches per token, at most batchSize channels each, nearest deadline first, then the largest", () => {
    const late = candidate({ unclaimed: 1n, withdrawReadyAt: when.now + 500n });
    const soon = candidate({ unclaimed: 1n, withdrawReadyAt: when.now + 100n });
    const big = candidate({ unclaimed: 5_000n });
    const mid = candidate({ unclaimed: 2_000n });
    const small = candidate({ unclaimed: 1_500n });
    const erc20 = candidate({ unclaimed: 1_000n, token: TOKEN });

    const batches = planBatches([small, late, erc20, big, soon, mid], when, policy);

    expect(batches.map((b) => [b.token, b.trigger, b.items.map((i) => i.candidate.channelId)])).to.deep.equal([
      [zeroAddress, "DEADLINE", [soon.channelId, late.channelId, big.channelId]],
      [zeroAddress, "THRESHOLD", [mid.channelId, small.channelId]],
      [TOKEN, "THRESHOLD", [erc20.channelId]],
    ]);
  });
});
