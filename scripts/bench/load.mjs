// A minimal HTTP load generator for scripts/bench/paywall.ts, run as its own process so it does not
// share the servers' event loops. Each connection replays its own list of request headers in order (a
// paid channel's vouchers must arrive in sequence) over keep-alive, for a fixed time, against one of
// the target URLs (connections are spread over them, as a load balancer would). Closed loop by
// default (each connection sends its next request when the last one answers: saturation); with a
// rate, open loop (requests are sent on a schedule, at most one in flight per connection), to measure
// latency below saturation.
// Usage: node load.mjs <url[,url…]> <jobs.json> <seconds> [total requests per second]
import { readFileSync } from "node:fs";
import http from "node:http";

const [urls, jobsFile, seconds, rate] = process.argv.slice(2);
const targets = urls.split(",").map((u) => new URL(u));
const jobs = JSON.parse(readFileSync(jobsFile, "utf8")); // string[][]: per connection, the headers to send (or [] for unpaid)
const agent = new http.Agent({ keepAlive: true, maxSockets: jobs.length });
const interval = rate ? (jobs.length / Number(rate)) * 1000 : 0;
const deadline = performance.now() + Number(seconds) * 1000;
const statuses = {};
const latencies = [];
let exhausted = 0;

function once(target, headers) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, agent, headers }, (res) => {
      res.resume();
      res.on("end", () => {
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        latencies.push(performance.now() - started);
        resolve();
      });
    });
    req.on("error", reject);
    req.end();
  });
}

const started = performance.now();
const cpuAtStart = process.cpuUsage();
await Promise.all(
  jobs.map(async (headers, c) => {
    const target = targets[c % targets.length];
    // Open loop: connections start spread over one interval, then send on their own schedule.
    let due = performance.now() + (interval * c) / jobs.length;
    for (let i = 0; performance.now() < deadline; i++) {
      if (headers.length > 0 && i >= headers.length) {
        exhausted++;
        break;
      }
      if (interval > 0) {
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        due += interval;
      }
      await once(target, headers.length > 0 ? { "payment-signature": headers[i] } : {});
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuAtStart); // this process's CPU while sending, for CPU per request
const total = latencies.length;
latencies.sort((a, b) => a - b);
const pct = (p) => (total === 0 ? 0 : latencies[Math.min(total - 1, Math.floor(total * p))]);
process.stdout.write(
  JSON.stringify({ total, elapsed, rps: total / elapsed, meanLatencyMs: latencies.reduce((a, b) => a + b, 0) / Math.max(total, 1), p50: pct(0.5), p99: pct(0.99), exhausted, statuses, cpuMicros: cpu.user + cpu.system }),
);
agent.destroy();
