// The buyer's session, kept in the browser's IndexedDB: the session key that signs vouchers, the
// channel it signs for, what the seller has accepted on it, and the receipts it got back. The wallet
// page and the paid pages of the same origin share it; a BroadcastChannel tells open tabs that it
// changed, so the wallet page's spending moves while an article is being paid in another tab.
//
// The session key can spend the channel's deposit and nothing else: it is as sensitive as that
// deposit, and stays on this device unless the buyer exports it.
import type { Hex } from "viem";
import type { ChannelState, ChannelStateStore, OpenedChannel } from "paychan/client";

/** How amounts of the channel's asset are written for people. */
export type AssetUnit = { symbol: string; decimals: number };

export type Session = {
  /** The session key (a private key generated in this page). */
  key: Hex;
  channel: OpenedChannel;
  unit: AssetUnit;
  openedAt: number;
  /** The EIP-6963 rdns of the wallet that opened it, to reconnect to the same one. */
  wallet?: string;
};

export type ReceiptRecord = {
  channelId: Hex;
  paymentId: string;
  url: string;
  charged: string;
  cumulativeAmount: string;
  remaining: string;
  at: number;
};

/** What an export carries: enough to continue on another device without trusting the seller's word. */
export type SessionExport = {
  format: "paychan-session";
  version: 1;
  session: Session;
  state: { accepted: string; signedMax: string } | null;
};

const DB_NAME = "paychan-wallet";
const CURRENT = "current";

export class WalletStore {
  private readonly changes = new BroadcastChannel("paychan-wallet");

  private constructor(private readonly db: IDBDatabase) {}

  static async open(): Promise<WalletStore> {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore("session");
      db.createObjectStore("state");
      db.createObjectStore("receipts", { autoIncrement: true }).createIndex("channel", "channelId");
    };
    return new WalletStore(await done(request));
  }

  /** Calls `listener` when another tab (or this one) changed the session or paid. */
  onChange(listener: () => void): void {
    this.changes.addEventListener("message", listener);
    addEventListener("paychan-wallet-changed", listener);
  }

  async session(): Promise<Session | undefined> {
    return done(this.tx("session").get(CURRENT));
  }

  async saveSession(session: Session): Promise<void> {
    await done(this.tx("session", "readwrite").put(session, CURRENT));
    this.changed();
  }

  /** The per-channel state createPaidFetch keeps (amounts as decimal strings). */
  stateStore(): ChannelStateStore {
    return {
      load: async (channelId) => {
        const raw = (await done(this.tx("state").get(channelId))) as { accepted: string; signedMax: string } | undefined;
        return raw && { accepted: BigInt(raw.accepted), signedMax: BigInt(raw.signedMax) };
      },
      save: async (channelId, state: ChannelState) => {
        await done(this.tx("state", "readwrite").put({ accepted: state.accepted.toString(), signedMax: state.signedMax.toString() }, channelId));
      },
    };
  }

  async addReceipt(receipt: ReceiptRecord): Promise<void> {
    await done(this.tx("receipts", "readwrite").add(receipt));
    this.changed();
  }

  /** The channel's receipts, newest first. */
  async receipts(channelId: Hex): Promise<ReceiptRecord[]> {
    const all = (await done(this.tx("receipts").index("channel").getAll(channelId))) as ReceiptRecord[];
    return all.reverse();
  }

  async export(): Promise<SessionExport> {
    const session = await this.session();
    if (!session) throw new Error("There is no session to export: open a channel first.");
    const state = await this.stateStore().load(session.channel.id);
    return {
      format: "paychan-session",
      version: 1,
      session,
      state: state ? { accepted: state.accepted.toString(), signedMax: state.signedMax.toString() } : null,
    };
  }

  /** Replaces the current session with an exported one. Keeps the higher signed total if this device
   * already knew the channel: the most the seller can claim never goes down. */
  async import(data: SessionExport): Promise<Session> {
    const known = await this.stateStore().load(data.session.channel.id);
    if (data.state) {
      const imported = { accepted: BigInt(data.state.accepted), signedMax: BigInt(data.state.signedMax) };
      const keep = known && known.signedMax > imported.signedMax ? known : imported;
      await this.stateStore().save(data.session.channel.id, keep);
    }
    await this.saveSession(data.session);
    return data.session;
  }

  private tx(store: string, mode: IDBTransactionMode = "readonly"): IDBObjectStore {
    return this.db.transaction(store, mode).objectStore(store);
  }

  private changed(): void {
    this.changes.postMessage("changed");
    dispatchEvent(new Event("paychan-wallet-changed"));
  }
}

function done<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}
