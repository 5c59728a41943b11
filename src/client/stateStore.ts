// Where a payer remembers, per channel, the total the server has accepted and the highest total it
// ever signed. Surviving restarts matters: a client that forgot would have to trust the server's word.
export type ChannelState = {
  /** What the server has accepted so far; the next voucher is this plus the price. */
  accepted: bigint;
  /** The highest cumulative amount this client ever signed: the most the server can claim. */
  signedMax: bigint;
  /** Metered usage the server says the channel owes: the next voucher includes it. */
  owed?: bigint;
  /** The most the channel may owe: what this client authorized on metered requests beyond their
   * prepaid price and has not paid yet. A server saying it is owed more is not followed. */
  owedLimit?: bigint;
  /** What automatic top-ups added in the current period (see lowBalance.ts), so a reload keeps the cap. */
  topUps?: TopUpPeriod;
};

/** The automatic top-ups of one spending period: when it started (unix seconds) and their total. */
export type TopUpPeriod = { since: number; amount: bigint };

type StoredState = { accepted: string; signedMax: string; owed?: string; owedLimit?: string; topUps?: { since: number; amount: string } };

/** A state as JSON stores keep it: amounts as decimal strings. */
export function encodeState(state: ChannelState): StoredState {
  return {
    accepted: state.accepted.toString(),
    signedMax: state.signedMax.toString(),
    ...(state.owed !== undefined && { owed: state.owed.toString() }),
    ...(state.owedLimit !== undefined && { owedLimit: state.owedLimit.toString() }),
    ...(state.topUps && { topUps: { since: state.topUps.since, amount: state.topUps.amount.toString() } }),
  };
}

export function decodeState(stored: StoredState): ChannelState {
  return {
    accepted: BigInt(stored.accepted),
    signedMax: BigInt(stored.signedMax),
    ...(stored.owed !== undefined && { owed: BigInt(stored.owed) }),
    ...(stored.owedLimit !== undefined && { owedLimit: BigInt(stored.owedLimit) }),
    ...(stored.topUps && { topUps: { since: stored.topUps.since, amount: BigInt(stored.topUps.amount) } }),
  };
}

export interface ChannelStateStore {
  load(channelId: string): Promise<ChannelState | undefined>;
  save(channelId: string, state: ChannelState): Promise<void>;
}

export class MemoryStateStore implements ChannelStateStore {
  private readonly states = new Map<string, ChannelState>();
  async load(channelId: string) {
    return this.states.get(channelId);
  }
  async save(channelId: string, state: ChannelState) {
    this.states.set(channelId, { ...state, ...(state.topUps && { topUps: { ...state.topUps } }) });
  }
}

/** For browsers: persists in `localStorage` (or any Storage) under a prefix. */
export class WebStorageStateStore implements ChannelStateStore {
  constructor(
    private readonly storage: Pick<Storage, "getItem" | "setItem">,
    private readonly prefix = "paychan:channel:",
  ) {}
  async load(channelId: string) {
    const raw = this.storage.getItem(this.prefix + channelId);
    if (!raw) return undefined;
    return decodeState(JSON.parse(raw) as StoredState);
  }
  async save(channelId: string, state: ChannelState) {
    this.storage.setItem(this.prefix + channelId, JSON.stringify(encodeState(state)));
  }
}
