// The operator console: signs in with the operator token (kept for this tab only, sent as a bearer
// token), then draws what the console's JSON endpoints return — the same functions the CLI prints
// (src/ops/dashboard.ts). It computes nothing about money itself beyond adding up the buckets it
// is given; amounts stay bigint until they are formatted, or drawn (a chart needs numbers).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "../shared/style.css";
import type { ChannelExposure, Exposure, GasVsRevenue, ReconciliationStatus, Revenue, SettlementQueue, SettlementRecord, WatcherStatus } from "../../src/ops/dashboard.js";
import type { ConsoleRiskDecision, ConsoleSession } from "../../src/ops/console/consoleRouter.js";
import { formatAmount, formatDuration, shortHex } from "../shared/format.js";
import { $, element, run, status } from "../shared/page.js";
import type { AssetUnit } from "../shared/store.js";

const TOKEN_KEY = "paychan-console-token";
const REFRESH_MS = 5_000;

class Unauthorized extends Error {}

let session: ConsoleSession | undefined;
let refreshTimer: ReturnType<typeof setInterval> | undefined;
const charts: { revenue?: uPlot; requests?: uPlot } = {};

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(path, { ...init, headers: { ...init.headers, authorization: `Bearer ${token ?? ""}` } });
  if (response.status === 401) throw new Unauthorized("The operator token was refused.");
  const body = (await response.json().catch(() => ({}))) as T & { error?: string; message?: string };
  if (!response.ok) throw new Error(body.message ?? `${path} answered HTTP ${response.status}.`);
  return body;
}

function unitOf(asset: string): AssetUnit {
  if (asset.endsWith("/native")) return { symbol: "ETH", decimals: 18 };
  return session?.units[asset] ?? { symbol: `units of ${shortHex(asset.split("erc20:")[1] ?? asset, 4)}`, decimals: 0 };
}

/** "1.5 ETH" per asset, joined; "0" when there is nothing. */
function amounts(values: { asset: string; value: string }[]): string {
  const shown = values.filter((v) => v.value !== "0").map((v) => formatAmount(v.value, unitOf(v.asset)));
  return shown.length > 0 ? shown.join(" + ") : "0";
}

function setCard(id: string, text: string, baseUnits?: string): void {
  $(id).textContent = text;
  if (baseUnits !== undefined) $(id).dataset.baseUnits = baseUnits;
}

function showLogin(message?: string): void {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(refreshTimer);
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $<HTMLInputElement>("token").focus();
  status(message ? "error" : "ready", message ?? "Sign in with the operator token.");
}

async function signIn(token: string): Promise<string> {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    session = await api<ConsoleSession>("api/session");
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw error;
  }
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("scope").textContent = `eip155:${session.scope.chainId} · escrow ${session.scope.escrow} · payee ${session.scope.payee}`;
  $<HTMLButtonElement>("settle").hidden = !session.canSettle;
  await refresh();
  if (session.reconciliation === null) await reconcile();
  schedule();
  return "Signed in.";
}

function schedule(): void {
  clearInterval(refreshTimer);
  if ($<HTMLInputElement>("auto").checked) {
    refreshTimer = setInterval(() => void refresh().catch((error) => (error instanceof Unauthorized ? showLogin(error.message) : status("error", String(error)))), REFRESH_MS);
  }
}

async function refresh(): Promise<void> {
  const [exposure, revenue, settlements, gas, watcher, queue, reconciliation, risk] = await Promise.all([
    api<Exposure>("api/exposure"),
    api<Revenue>("api/revenue"),
    api<SettlementRecord[]>("api/settlements"),
    api<GasVsRevenue>("api/gas"),
    api<WatcherStatus>("api/watcher"),
    api<SettlementQueue>("api/queue"),
    api<ReconciliationStatus | null>("api/reconciliation"),
    api<ConsoleRiskDecision[]>("api/risk"),
  ]);
  showExposure(exposure);
  showRevenue(revenue, gas);
  showSettlements(settlements);
  showHealth(watcher, queue, reconciliation);
  showRisk(risk);
  $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

function showExposure(exposure: Exposure): void {
  setCard("at-risk", amounts(exposure.totals.map((t) => ({ asset: t.asset, value: t.atRisk }))), sum(exposure.totals.map((t) => t.atRisk)));
  setCard("at-risk-withdrawing", amounts(exposure.totals.map((t) => ({ asset: t.asset, value: t.withdrawing }))), sum(exposure.totals.map((t) => t.withdrawing)));
  const rows = exposure.channels.map((c: ChannelExposure) => {
    const unit = unitOf(c.asset);
    const deadline =
      c.withdrawReadyAt === null
        ? "none requested"
        : `${new Date(c.withdrawReadyAt * 1000).toLocaleString()} (${c.secondsLeft! > 0 ? `in ${formatDuration(c.secondsLeft!)}` : "passed"})`;
    const row = element(
      "tr",
      {},
      element("td", { className: "mono", title: `${c.channelId}\npayer ${c.payer}` }, shortHex(c.channelId)),
      element("td", { className: `risk-${c.risk}` }, riskLabel[c.risk]),
      element("td", { className: "num" }, formatAmount(c.unclaimed, unit)),
      element("td", { className: "num" }, formatAmount(c.depositLeft, unit)),
      element("td", { className: "num" }, String(c.requests)),
      element("td", {}, deadline),
    );
    Object.assign(row.dataset, { channelId: c.channelId, unclaimed: c.unclaimed, risk: c.risk, requests: String(c.requests) });
    return row;
  });
  $("exposure").replaceChildren(...(rows.length > 0 ? rows : [element("tr", {}, element("td", { colSpan: 6 }, "No open channels."))]));
}

const riskLabel: Record<ChannelExposure["risk"], string> = {
  lost: "deadline passed",
  withdrawing: "payer withdrawing",
  unclaimed: "unclaimed",
  none: "settled",
};

function showRevenue(revenue: Revenue, gas: GasVsRevenue): void {
  setCard("rpm", String(revenue.requestsLastMinute));
  setCard("revenue", amounts(gas.revenue.map((r) => ({ asset: r.asset, value: r.accepted }))), sum(gas.revenue.map((r) => r.accepted)));
  setCard("claimed", amounts(gas.revenue.map((r) => ({ asset: r.asset, value: r.claimed }))), sum(gas.revenue.map((r) => r.claimed)));
  const native = `eip155:${session!.scope.chainId}/native`;
  setCard("gas", `${formatAmount(gas.gasFees, unitOf(native))} (${gas.gasUsed} gas, ${gas.transactions} tx)`, gas.gasFees);
  const claimedNative = BigInt(gas.revenue.find((r) => r.asset === native)?.claimed ?? "0");
  // Gas is paid in the native coin: the ratio means something only for native revenue.
  setCard("gas-ratio", claimedNative > 0n ? `${percent(BigInt(gas.gasFees), claimedNative)} of claimed ETH` : "—");
  drawCharts(revenue);
}

function percent(part: bigint, whole: bigint): string {
  const basisPoints = (part * 10_000n) / whole;
  return `${basisPoints / 100n}.${String(basisPoints % 100n).padStart(2, "0")} %`;
}

function drawCharts(revenue: Revenue): void {
  // One asset is drawn: the gateway's (the one with the most accepted), in its own unit.
  const assets = [...new Set([...revenue.points.map((p) => p.asset), ...revenue.before.map((b) => b.asset)])];
  const asset = assets[0] ?? `eip155:${session!.scope.chainId}/native`;
  const unit = unitOf(asset);
  const times: number[] = [];
  for (let t = revenue.from; t <= revenue.to; t += revenue.bucketSeconds) times.push(t);
  const at = new Map(revenue.points.filter((p) => p.asset === asset).map((p) => [p.t, p]));
  const start = revenue.before.find((b) => b.asset === asset);
  let accepted = BigInt(start?.accepted ?? "0");
  let claimed = BigInt(start?.claimed ?? "0");
  const acceptedSeries: number[] = [];
  const claimedSeries: number[] = [];
  const requestSeries: number[] = [];
  for (const t of times) {
    const p = at.get(t);
    accepted += BigInt(p?.accepted ?? "0");
    claimed += BigInt(p?.claimed ?? "0");
    acceptedSeries.push(toChartNumber(accepted, unit));
    claimedSeries.push(toChartNumber(claimed, unit));
    requestSeries.push(p?.requests ?? 0);
  }
  $("revenue-chart").dataset.accepted = accepted.toString();
  $("revenue-chart").dataset.claimed = claimed.toString();
  $("requests-chart").dataset.total = String(requestSeries.reduce((a, b) => a + b, 0));
  const width = Math.max(320, $("revenue-chart").parentElement!.clientWidth - 20);
  const revenueData: uPlot.AlignedData = [times, acceptedSeries, claimedSeries];
  const requestData: uPlot.AlignedData = [times, requestSeries];
  if (charts.revenue) charts.revenue.setData(revenueData);
  else {
    charts.revenue = new uPlot(
      {
        width,
        height: 220,
        series: [{}, { label: `Accepted (${unit.symbol})`, stroke: "#0b57d0", width: 2 }, { label: `Claimed (${unit.symbol})`, stroke: "#136c2e", width: 2, dash: [6, 4] }],
        axes: [{}, { size: 80, values: (_u, splits) => splits.map(axisNumber) }],
      },
      revenueData,
      $("revenue-chart"),
    );
  }
  if (charts.requests) charts.requests.setData(requestData);
  else {
    charts.requests = new uPlot(
      {
        width,
        height: 220,
        series: [{}, { label: "Paid requests", stroke: "#6b4e00", fill: "rgba(217, 184, 74, 0.5)", paths: uPlot.paths.bars!({ size: [0.8, 40] }) }],
        axes: [{}, { size: 50 }],
      },
      requestData,
      $("requests-chart"),
    );
  }
}

/** Axis labels with enough digits for tiny amounts ("0.00001", not "0"). */
function axisNumber(value: number): string {
  return value.toLocaleString("en-US", { maximumSignificantDigits: 3 });
}

/** For drawing only: the amount in whole units as a float (a chart's axis is a float). */
function toChartNumber(value: bigint, unit: AssetUnit): number {
  return Number(value) / 10 ** unit.decimals;
}

function showSettlements(settlements: SettlementRecord[]): void {
  const rows = settlements.map((s) => {
    const unit = unitOf(s.token.toLowerCase() === "0x0000000000000000000000000000000000000000" ? `eip155:${session!.scope.chainId}/native` : `eip155:${session!.scope.chainId}/erc20:${s.token}`);
    const hash = s.txHash
      ? session!.explorerTxUrl
        ? element("a", { href: `${session!.explorerTxUrl}${s.txHash}`, target: "_blank", rel: "noopener noreferrer", className: "mono", title: s.txHash }, shortHex(s.txHash))
        : element("span", { className: "mono", title: s.txHash }, shortHex(s.txHash))
      : "—";
    const row = element(
      "tr",
      {},
      element("td", {}, new Date(s.createdAt * 1000).toLocaleString()),
      element("td", {}, s.trigger.toLowerCase().replaceAll("_", " ")),
      element("td", { className: s.status === "FAILED" ? "risk-lost" : s.status === "CONFIRMED" ? "ok" : "" }, s.status.toLowerCase() + (s.error ? `: ${s.error}` : "")),
      element("td", { className: "num" }, `${s.claimedItems}/${s.items}`),
      element("td", { className: "num" }, s.claimed === null ? `(${formatAmount(s.total, unit)} planned)` : formatAmount(s.claimed, unit)),
      element("td", { className: "num" }, s.gasUsed ?? "—"),
      element("td", { className: "num" }, s.fee === null ? "—" : formatAmount(s.fee, unitOf(`eip155:${session!.scope.chainId}/native`))),
      element("td", {}, hash),
    );
    Object.assign(row.dataset, { status: s.status, claimed: s.claimed ?? "", items: String(s.items), txHash: s.txHash ?? "" });
    return row;
  });
  $("settlements").replaceChildren(...(rows.length > 0 ? rows : [element("tr", {}, element("td", { colSpan: 8 }, "No settlement yet."))]));
}

/** The risk policy's latest decisions, each with the reasons it gave. */
function showRisk(decisions: ConsoleRiskDecision[]): void {
  const rows = decisions.map((d) => {
    const decision = d.action === "allow" ? (d.steppedUp ? "allowed (stepped up)" : "allowed") : `${d.action.replace("_", " ")}: ${d.code ?? ""}`;
    const row = element(
      "tr",
      {},
      element("td", {}, new Date(d.at * 1000).toLocaleString()),
      element("td", { className: d.action === "allow" ? "ok" : d.action === "deny" ? "risk-lost" : "" }, decision),
      element("td", { className: "mono" }, d.route),
      element("td", { className: "mono", title: d.account }, d.account.startsWith("0x") ? shortHex(d.account) : d.account),
      element("td", { className: "mono" }, d.client),
      element("td", { className: "num" }, String(d.score)),
      element("td", {}, d.reasons.map((r) => r.message).join(" ")),
    );
    Object.assign(row.dataset, { action: d.action, code: d.code ?? "", account: d.account });
    return row;
  });
  $("risk").replaceChildren(...(rows.length > 0 ? rows : [element("tr", {}, element("td", { colSpan: 7 }, "No risk decision yet (or no risk policy configured)."))]));
}

function showHealth(watcher: WatcherStatus, queue: SettlementQueue, reconciliation: ReconciliationStatus | null): void {
  setCard(
    "watcher",
    watcher.mirroredBlock === null
      ? "not started"
      : `block ${watcher.mirroredBlock}, ${watcher.lagBlocks ?? "?"} behind (${watcher.confirmations} kept back)${watcher.secondsSinceObserved !== null && watcher.secondsSinceObserved > 60 ? `, head read ${formatDuration(watcher.secondsSinceObserved)} ago` : ""}`,
  );
  setCard(
    "queue",
    `${queue.queued} queued, ${queue.pending} pending${queue.oldestSeconds !== null ? `, oldest ${formatDuration(queue.oldestSeconds)}` : ""}${queue.failedLastDay > 0 ? `; ${queue.failedLastDay} failed today` : ""}`,
  );
  showReconciliation(reconciliation);
}

function showReconciliation(r: ReconciliationStatus | null): void {
  const card = $("reconciliation");
  if (!r) {
    card.textContent = "not run yet";
    return;
  }
  card.textContent = r.ok ? `balanced${r.counts.lag + r.counts.warning > 0 ? ` (${r.counts.lag} lag, ${r.counts.warning} warnings)` : ""}` : `${r.counts.missing} difference(s) with money missing`;
  card.className = r.ok ? "ok" : "risk-lost";
  card.dataset.ok = String(r.ok);
  $("reconcile-at").textContent = `Last run ${new Date(r.generatedAt).toLocaleString()}`;
  $("differences").replaceChildren(
    ...(r.differences.length === 0
      ? [element("li", {}, "No differences: chain, ledger and voucher store agree.")]
      : r.differences.map((d) => element("li", {}, element("strong", {}, `${d.severity} ${d.code}`), d.channelId ? ` ${shortHex(d.channelId)}` : "", `: ${d.cause}`))),
  );
}

async function reconcile(): Promise<string> {
  const r = await api<ReconciliationStatus>("api/reconciliation", { method: "POST" });
  showReconciliation(r);
  return r.ok ? "Reconciliation: the books balance." : `Reconciliation found ${r.counts.missing} difference(s) with money missing.`;
}

function sum(values: string[]): string {
  return values.reduce((a, v) => a + BigInt(v), 0n).toString();
}

async function guarded(doing: string, work: () => Promise<string>): Promise<void> {
  await run(doing, async () => {
    try {
      return await work();
    } catch (error) {
      if (error instanceof Unauthorized) {
        showLogin(error.message);
        throw error;
      }
      throw error;
    }
  });
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $<HTMLInputElement>("token").value;
  void guarded("signing in", () => signIn(token)).then(() => ($<HTMLInputElement>("token").value = ""));
});
$("logout").onclick = () => showLogin();
$("refresh").onclick = () => guarded("refreshing", async () => (await refresh(), "Refreshed."));
$("auto").onchange = schedule;
$("reconcile").onclick = () => guarded("reconciling", reconcile);
$("settle").onclick = () =>
  guarded("settling", async () => {
    const result = await api<{ batches: number; channels: number; confirmed: number; total: string }>("api/settle", { method: "POST" });
    // The books changed: show them, and check them again.
    await refresh();
    await reconcile();
    return result.batches === 0
      ? "Nothing to settle: every accepted voucher is claimed or on its way."
      : `Settled: ${result.channels} channel(s) in ${result.batches} batch(es), ${result.confirmed} transaction(s) confirmed.`;
  });
addEventListener("resize", () => {
  const width = Math.max(320, $("revenue-chart").parentElement!.clientWidth - 20);
  charts.revenue?.setSize({ width, height: 220 });
  charts.requests?.setSize({ width, height: 220 });
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) void guarded("signing in", () => signIn(saved));
else showLogin();
