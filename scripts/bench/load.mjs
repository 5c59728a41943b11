// A minimal HTTP load generator for scripts/bench/paywall.ts, run as its own process so it does not
// share the server's event loop. Each connection replays its own list of request headers in order
// (a paid channel's vouchers must arrive in sequence), over keep-alive, for a fixed time.
// Usage: node load.mjs <url> <jobs.json> <seconds>
import { readFileSync } from "node:fs";
import http from "node:http";

const [url, jobsFile, seconds] = process.argv.slice(2);
const jobs = JSON.parse(readFileSync(jobsFile, "utf8")); // string[][]: per connection, the headers to send (or [] for unpaid)
const target = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: jobs.length });
const deadline = performance.now() + Number(seconds) * 1000;
const statuses = {};
let latencyTotal = 0;

function once(headers) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, agent, headers }, (res) => {
      res.resume();
      res.on("end", () => {
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        latencyTotal += performance.now() - started;
        resolve();
      });
    });
    req.on("error", reject);
    req.end();
  });
}

const started = performance.now();
await Promise.all(
  jobs.map(async (headers) => {
    for (let i = 0; performance.now() < deadline; i++) {
      if (headers.length > 0 && i >= headers.length) break;
      await once(headers.length > 0 ? { "payment-signature": headers[i] } : {});
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
const total = Object.values(statuses).reduce((a, b) => a + b, 0);
process.stdout.write(JSON.stringify({ total, elapsed, rps: total / elapsed, meanLatencyMs: latencyTotal / total, statuses }));
agent.destroy();
