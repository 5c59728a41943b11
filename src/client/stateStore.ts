// Where a payer remembers, per channel, the total the server has accepted and the highest total it
// ever signed. Surviving restarts matters: a client that forgot would have to trust the server's word.
export type ChannelState = {
  /** What the server has accepted so far; the next voucher is this plus the price. */
  accepted: bigint;
  /** The highest cumulative amount this client ever signed: the most the server can claim. */
  signedMax: bigint;
};

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
    this.states.set(channelId, { ...state });
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
    const { accepted, signedMax } = JSON.parse(raw) as { accepted: string; signedMax: string };
    return { accepted: BigInt(accepted), signedMax: BigInt(signedMax) };
  }
  async save(channelId: string, state: ChannelState) {
    this.storage.setItem(
      this.prefix + channelId,
      JSON.stringify({ accepted: state.accepted.toString(), signedMax: state.signedMax.toString() }),
    );
  }
}
