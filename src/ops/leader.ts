// One `paychan work` acts for a settlement key at a time. Two of them on one Postgres would both
// sign claims with the same key — nonce fights and gas paid twice — so each takes a session-level
// advisory lock on a connection of its own: whoever holds it leads, the others stand by and try
// again every poll interval. The lock lives as long as the leader's connection: a leader that dies
// (even kill -9) closes it, Postgres releases the lock, and a standby takes over at its next try.
// A leader that loses its connection stops acting at once, before anyone else can take over.
//
// PGlite needs none of this: its directory lock already admits one process (src/ledger/directoryLock.ts).
import { hostname } from "node:os";
import pg from "pg";
import { redactUrl } from "../config.js";

export type LeaderLockOptions = {
  /** The Postgres database the workers share. */
  url: string;
  /** What is led, e.g. `paychan:work:<chainId>:<settler address>`. */
  key: string;
  /** How often a standby tries to take over, and a leader checks it still holds the lock. */
  intervalMs: number;
  connectTimeoutMs: number;
  log: (line: string) => void;
};

export class LeaderLock {
  private client: pg.Client | undefined;
  private broken: ((reason: string) => void) | undefined;

  constructor(private readonly options: LeaderLockOptions) {}

  /** One try: undefined when this process now leads, else who does. */
  async tryAcquire(): Promise<string | undefined> {
    const client = (this.client ??= await this.connect());
    const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock(hashtext($1)) AS locked", [this.options.key]);
    return rows[0]!.locked ? undefined : this.holder(client);
  }

  /** Waits until this process leads; false if `signal` aborted first. Says once who leads meanwhile. */
  async acquire(signal: AbortSignal): Promise<boolean> {
    let announced = false;
    let lastError: string | undefined;
    while (!signal.aborted) {
      try {
        const holder = await this.tryAcquire();
        if (holder === undefined) return true;
        if (!announced) {
          this.options.log(`standby: ${holder} leads for this settlement key; taking over when it stops`);
          announced = true;
        }
        lastError = undefined;
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        if (message !== lastError) this.options.log(`leader election: ${message}; trying again`);
        lastError = message;
        await this.drop();
      }
      await sleep(this.options.intervalMs, signal);
    }
    return false;
  }

  /** While leading: resolves with the reason when the lock is lost (its connection broke), or with
   * undefined when `signal` aborts. */
  async held(signal: AbortSignal): Promise<string | undefined> {
    const client = this.client;
    if (!client) return "not connected";
    const broken = new Promise<string>((resolve) => (this.broken = resolve));
    while (!signal.aborted) {
      const reason = await Promise.race([
        broken,
        client.query("SELECT 1").then(
          () => undefined,
          (error: Error) => `the connection holding the lock failed (${error.message})`,
        ),
      ]);
      if (reason) {
        await this.drop();
        return reason;
      }
      await Promise.race([broken, sleep(this.options.intervalMs, signal)]);
    }
    return undefined;
  }

  /** Gives up the lock (by closing its connection). */
  async close(): Promise<void> {
    await this.drop();
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.options.url,
      connectionTimeoutMillis: this.options.connectTimeoutMs,
      query_timeout: Math.max(this.options.intervalMs * 2, this.options.connectTimeoutMs),
      keepAlive: true,
      application_name: `paychan work pid ${process.pid} on ${hostname()}`.slice(0, 63),
    });
    const lost = (reason: string) => () => this.broken?.(reason);
    client.on("error", (error) => lost(`the connection holding the lock failed (${error.message})`)());
    client.on("end", lost("the connection holding the lock closed"));
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => {});
      throw new Error(`cannot connect to Postgres at ${redactUrl(this.options.url)} (DATABASE_URL): ${(error as Error).message}`);
    }
    return client;
  }

  /** Who holds the lock, as Postgres knows the session (our application_name). */
  private async holder(client: pg.Client): Promise<string> {
    const { rows } = await client.query<{ name: string; addr: string | null }>(
      `SELECT a.application_name AS name, host(a.client_addr) AS addr
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
         AND l.classid::bigint = ((hashtext($1)::bigint >> 32) & 4294967295)
         AND l.objid::bigint = (hashtext($1)::bigint & 4294967295)`,
      [this.options.key],
    );
    const row = rows[0];
    if (!row) return "another process";
    return `${row.name || "another process"}${row.addr ? ` (from ${row.addr})` : ""}`;
  }

  private async drop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.broken = undefined;
    if (client) await client.end().catch(() => {});
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
