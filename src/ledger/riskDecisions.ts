// The risk policy's decisions, kept in risk_decision for the operator (GET /risk/decisions, the
// console). They are queued and written in batches, one statement each, off the paid path: a request
// never waits for its decision's row. A decision only explains what the policy did; losing a queued
// one (a crash) loses no money, so the queue is bounded and the oldest give way under overload.
import type { RiskRecord } from "../policy/risk.js";
import type { Sql } from "./sql.js";

export type RiskDecisionLogOptions = {
  /** Write a batch at least this often (default 250 ms). */
  flushMs?: number;
  /** Decisions per statement (default 500). */
  batchSize?: number;
  /** Decisions held at most; beyond it the oldest are dropped and counted (default 10,000). */
  maxQueued?: number;
  /** Told of a batch that could not be written (it is dropped: the next batch tries afresh). */
  onError?: (error: unknown, dropped: number) => void;
};

const INSERT = `
INSERT INTO risk_decision (decided_at, route, scheme, action, code, score, account, payer, client, asset, amount, stepped_up, reasons)
SELECT d, r, s, a, c, sc, acc, p, cl, ast, amt, su, rs::jsonb
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::text[], $10::text[], $11::numeric[], $12::boolean[], $13::text[])
  AS t(d, r, s, a, c, sc, acc, p, cl, ast, amt, su, rs)`;

export class RiskDecisionLog {
  private queue: RiskRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private readonly flushMs: number;
  private readonly batchSize: number;
  private readonly maxQueued: number;
  private readonly onError: RiskDecisionLogOptions["onError"];
  /** Decisions dropped because the queue was full or their batch failed. */
  dropped = 0;

  constructor(
    private readonly sql: Sql,
    options: RiskDecisionLogOptions = {},
  ) {
    this.flushMs = options.flushMs ?? 250;
    this.batchSize = options.batchSize ?? 500;
    this.maxQueued = options.maxQueued ?? 10_000;
    this.onError = options.onError;
  }

  record(decision: RiskRecord): void {
    this.queue.push(decision);
    if (this.queue.length > this.maxQueued) {
      this.queue.shift();
      this.dropped++;
    }
    this.timer ??= setTimeout(() => void this.flush(), this.flushMs);
  }

  /** Writes everything queued so far; resolves once it is written (or dropped on failure). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.writing = this.writing.then(async () => {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.batchSize);
        try {
          await this.sql.query(INSERT, columnsOf(batch), "risk_decision_insert");
        } catch (error) {
          this.dropped += batch.length;
          this.onError?.(error, batch.length);
        }
      }
    });
    return this.writing;
  }

  async close(): Promise<void> {
    await this.flush();
  }
}

function columnsOf(batch: RiskRecord[]): unknown[] {
  return [
    batch.map((d) => d.at.toISOString()),
    batch.map((d) => d.route),
    batch.map((d) => d.scheme),
    batch.map((d) => d.action),
    batch.map((d) => d.code ?? null),
    batch.map((d) => d.score),
    batch.map((d) => d.account),
    batch.map((d) => d.payer),
    batch.map((d) => d.client),
    batch.map((d) => d.asset),
    batch.map((d) => d.amount.toString()),
    batch.map((d) => d.steppedUp),
    batch.map((d) => JSON.stringify(d.reasons)),
  ];
}

export type StoredRiskDecision = RiskRecord & { id: string };

/** The latest decisions, newest first; `account` narrows them to one channel or credit account. */
export async function recentRiskDecisions(sql: Sql, options: { limit?: number; account?: string } = {}): Promise<StoredRiskDecision[]> {
  const rows = await sql.query<{
    id: string;
    decided_at: Date | string;
    route: string;
    scheme: string;
    action: RiskRecord["action"];
    code: string | null;
    score: number;
    account: string;
    payer: string;
    client: string;
    asset: string;
    amount: string;
    stepped_up: boolean;
    reasons: RiskRecord["reasons"] | string;
  }>(
    `SELECT id::text, decided_at, route, scheme, action, code, score, account, payer, client, asset, amount::text AS amount, stepped_up, reasons
       FROM risk_decision WHERE ($2::text IS NULL OR account = $2) ORDER BY decided_at DESC, id DESC LIMIT $1`,
    [Math.min(Math.max(options.limit ?? 100, 1), 1000), options.account ?? null],
  );
  return rows.map((r) => ({
    id: r.id,
    at: new Date(r.decided_at),
    route: r.route,
    scheme: r.scheme,
    action: r.action,
    ...(r.code !== null && { code: r.code }),
    score: r.score,
    account: r.account,
    payer: r.payer,
    client: r.client,
    asset: r.asset,
    amount: BigInt(r.amount),
    steppedUp: r.stepped_up,
    reasons: typeof r.reasons === "string" ? (JSON.parse(r.reasons) as RiskRecord["reasons"]) : r.reasons,
  }));
}
