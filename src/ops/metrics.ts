// What paychan tells Prometheus (GET /metrics on the operator listener). Two kinds of figures:
// - counters and histograms bumped as things happen — payment decisions, accept statements, claim
//   transactions, errors — through the methods below, which the composition root wires into each
//   room's observer callbacks (no other room imports this module or prom-client);
// - figures that live in the database (exposure, gas spent, claims in flight, the watcher's lag),
//   read at scrape time by collectors whose queries stay cheap however many channels there are.
//
// Money stays exact: amounts are bigints and are written into the exposition as integers, where
// prom-client would pass them through a float. Prometheus itself reads every sample as a float64;
// the books to the last base unit are the ledger's.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export type Labels = Record<string, string>;
export type Sample = { labels?: Labels; value: bigint | number };
/** A metric family read at scrape time. */
export type Family = { name: string; help: string; type: "gauge" | "counter"; samples: Sample[] };
/** Reads families at scrape time. One that fails or outlasts COLLECT_TIMEOUT_MS is reported as down
 * (paychan_collector_up 0) and its families left out of that scrape: no stale figure passes for fresh. */
export type Collector = () => Promise<Family[]>;

export type PaymentOutcome = "paid" | "refused" | "voided";

export type MetricsOptions = {
  /** A collector failed or timed out (the composition root logs it and counts the error). */
  onCollectorError?: (collector: string, error: unknown) => void;
};

const COLLECT_TIMEOUT_MS = 5_000;

export class Metrics {
  readonly registry = new Registry();
  private readonly paid: Counter<"scheme" | "code">;
  private readonly refused: Counter<"scheme" | "code">;
  private readonly voided: Counter<"scheme">;
  private readonly acceptSeconds: Histogram<"scheme" | "outcome">;
  private readonly batchSize: Histogram;
  private readonly commitSeconds: Histogram;
  private readonly databaseErrors: Counter<"component">;
  private readonly rpcErrors: Counter<"method">;
  private readonly claimTransactions: Counter<"action">;
  private readonly settlementLag: Histogram;
  private readonly reconcileDifferences: Gauge<"severity">;
  private readonly reconciledAt: Gauge;
  /** Base units charged, per scheme and asset: exact, so kept here rather than in a prom-client counter. */
  private readonly charged = new Map<string, { labels: Labels; value: bigint }>();
  private readonly collectors = new Map<string, Collector>();
  private processMetrics = false;

  constructor(private readonly options: MetricsOptions = {}) {
    const registers = [this.registry];
    this.paid = new Counter({
      name: "paychan_paid_requests_total",
      help: "Paid requests served, by scheme; code ok for a new charge, retry for an identical retry served again without charge",
      labelNames: ["scheme", "code"],
      registers,
    });
    this.refused = new Counter({
      name: "paychan_refused_requests_total",
      help: "Requests to paywalled routes answered without serving, by scheme (none when the request named none of ours) and the refusal's code",
      labelNames: ["scheme", "code"],
      registers,
    });
    this.voided = new Counter({
      name: "paychan_voided_requests_total",
      help: "Paid requests whose handler answered 5xx, so their charge was voided",
      labelNames: ["scheme"],
      registers,
    });
    this.acceptSeconds = new Histogram({
      name: "paychan_accept_duration_seconds",
      help: "From reading a PAYMENT-SIGNATURE to the decision (verification and the durable accept), by scheme and outcome",
      labelNames: ["scheme", "outcome"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.batchSize = new Histogram({
      name: "paychan_group_commit_batch_size",
      help: "Vouchers decided by one accept statement (group commit)",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.commitSeconds = new Histogram({
      name: "paychan_group_commit_duration_seconds",
      help: "Duration of one accept statement",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.databaseErrors = new Counter({
      name: "paychan_database_errors_total",
      help: "Operations that failed on the database, by component (paywall, booking, settlement, watcher, metrics)",
      labelNames: ["component"],
      registers,
    });
    this.rpcErrors = new Counter({
      name: "paychan_rpc_errors_total",
      help: "JSON-RPC requests to RPC_URL that failed (after retries), by method",
      labelNames: ["method"],
      registers,
    });
    this.claimTransactions = new Counter({
      name: "paychan_claim_transactions_total",
      help: "What happened to claim transactions: sent, rebroadcast, bumped, mined, confirmed, failed, error",
      labelNames: ["action"],
      registers,
    });
    this.settlementLag = new Histogram({
      name: "paychan_settlement_lag_seconds",
      help: "Per claimed channel, from the acceptance of the oldest voucher a claim covers to the claim's confirmation",
      buckets: [60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800, 604800],
      registers,
    });
    this.reconcileDifferences = new Gauge({
      name: "paychan_reconcile_differences",
      help: "Differences the last reconciliation in this process found, by severity (missing, lag, warning)",
      labelNames: ["severity"],
      registers,
    });
    this.reconciledAt = new Gauge({
      name: "paychan_reconcile_last_run_timestamp_seconds",
      help: "When this process last reconciled (unix seconds)",
      registers,
    });
  }

  /** One decision of the paywall. Only bounded values may come in as labels: scheme names this
   * paywall knows, refusal codes, configured assets. */
  payment(outcome: PaymentOutcome, decision: { scheme?: string; code: string; amount?: bigint; asset?: string; seconds?: number }): void {
    const scheme = decision.scheme ?? "none";
    if (outcome === "paid") {
      this.paid.inc({ scheme, code: decision.code });
      if (decision.code === "ok" && decision.amount !== undefined && decision.asset !== undefined) {
        const key = `${scheme}\n${decision.asset}`;
        const sum = this.charged.get(key);
        if (sum) sum.value += decision.amount;
        else this.charged.set(key, { labels: { scheme, asset: decision.asset }, value: decision.amount });
      }
    } else if (outcome === "refused") {
      this.refused.inc({ scheme, code: decision.code });
    } else {
      this.voided.inc({ scheme });
    }
    if (decision.seconds !== undefined && outcome !== "voided") this.acceptSeconds.observe({ scheme, outcome }, decision.seconds);
  }

  /** One accept statement: how many vouchers it decided and how long it took. */
  commit(batch: { size: number; seconds: number }): void {
    this.batchSize.observe(batch.size);
    this.commitSeconds.observe(batch.seconds);
  }

  databaseError(component: string): void {
    this.databaseErrors.inc({ component });
  }

  rpcError(method: string): void {
    this.rpcErrors.inc({ method });
  }

  claimTransaction(action: string): void {
    this.claimTransactions.inc({ action });
  }

  /** Settlement lags of the channels one confirmed claim paid, in seconds. */
  settled(lags: number[]): void {
    for (const seconds of lags) this.settlementLag.observe(seconds);
  }

  reconciled(differences: { severity: string }[], at = Date.now()): void {
    for (const severity of ["missing", "lag", "warning"]) {
      this.reconcileDifferences.set({ severity }, differences.filter((d) => d.severity === severity).length);
    }
    this.reconciledAt.set(Math.floor(at / 1000));
  }

  /** Registers a scrape-time collector under a name (the `collector` label of paychan_collector_up). */
  collect(name: string, collector: Collector): void {
    this.collectors.set(name, collector);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition in the Prometheus text format. */
  async render(): Promise<string> {
    if (!this.processMetrics) {
      // The process's CPU, memory, event loop and GC, started by the first scrape: nothing runs
      // for them in a process nobody scrapes.
      collectDefaultMetrics({ register: this.registry });
      this.processMetrics = true;
    }
    // Collectors first: the errors they meet are counted in this scrape's counters.
    const collected = await this.runCollectors();
    const counted = await this.registry.metrics();
    const charged: Family = {
      name: "paychan_charged_total",
      help: "Base units charged by paid requests (new charges, before voids), by scheme and asset",
      type: "counter",
      samples: [...this.charged.values()],
    };
    return counted + [charged, ...collected].map(formatFamily).join("");
  }

  private async runCollectors(): Promise<Family[]> {
    const up: Family = { name: "paychan_collector_up", help: "1 when the scrape-time collector answered in time, 0 when it failed", type: "gauge", samples: [] };
    const results = await Promise.all(
      [...this.collectors].map(async ([name, collector]) => {
        try {
          const families = await withTimeout(collector(), COLLECT_TIMEOUT_MS, `the ${name} collector did not answer within ${COLLECT_TIMEOUT_MS} ms`);
          up.samples.push({ labels: { collector: name }, value: 1 });
          return families;
        } catch (error) {
          up.samples.push({ labels: { collector: name }, value: 0 });
          this.options.onCollectorError?.(name, error);
          return [];
        }
      }),
    );
    return [...results.flat(), up];
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** One family in the text format (version 0.0.4); integers exactly, whatever their size. */
export function formatFamily(family: Family): string {
  const lines = [`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`];
  for (const sample of family.samples) {
    const labels = Object.entries(sample.labels ?? {});
    const labelText = labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
    lines.push(`${family.name}${labelText} ${formatValue(sample.value)}`);
  }
  return `${lines.join("\n")}\n`;
}

function formatValue(value: bigint | number): string {
  if (typeof value === "bigint") return value.toString();
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function escapeLabel(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}
