// The in-process EDR chain served over HTTP JSON-RPC on 127.0.0.1, as `hardhat node` would serve it,
// optionally through chaos: requests dropped before reaching the node, answers dropped after the node
// acted (the nastiest case for a sender), HTTP and JSON-RPC errors, and delays — chosen by a seeded
// generator so a failing run can be replayed.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

type Provider = { request(args: { method: string; params?: unknown }): Promise<unknown> };

export type Chaos = {
  seed: number;
  /** Probability that a request is cut off before the node sees it. */
  dropBefore: number;
  /** Probability that the node acts but its answer is cut off. */
  dropAfter: number;
  /** Probability of an HTTP 503 instead of an answer (the node never sees the request). */
  httpError: number;
  /** Probability of a JSON-RPC internal error (-32603) instead of an answer. */
  rpcError: number;
  /** Every request waits up to this long. */
  maxDelayMs: number;
};

export type RpcServer = {
  url: string;
  stats: {
    requests: number;
    droppedBefore: number;
    droppedAfter: number;
    httpErrors: number;
    rpcErrors: number;
    /** The methods whose answers were dropped after the node acted on them. */
    lostAnswers: string[];
  };
  close(): Promise<void>;
};

type JsonRpcRequest = { jsonrpc: "2.0"; id: number | string | null; method: string; params?: unknown };

export async function serveProvider(provider: Provider, chaos?: Chaos): Promise<RpcServer> {
  const random = mulberry32(chaos?.seed ?? 1);
  const roll = (p: number | undefined) => p !== undefined && random() < p;
  const stats = { requests: 0, droppedBefore: 0, droppedAfter: 0, httpErrors: 0, rpcErrors: 0, lostAnswers: [] as string[] };

  const answer = async (request: JsonRpcRequest) => {
    try {
      const result = await provider.request({ method: request.method, params: request.params });
      return { jsonrpc: "2.0", id: request.id, result: result ?? null };
    } catch (error) {
      const e = error as { code?: number; message?: string; data?: unknown };
      return { jsonrpc: "2.0", id: request.id, error: { code: typeof e.code === "number" ? e.code : -32603, message: e.message ?? String(error), data: e.data } };
    }
  };

  const server: Server = createServer(async (req, res) => {
    stats.requests++;
    const body = JSON.parse(await read(req)) as JsonRpcRequest | JsonRpcRequest[];
    if (chaos) await new Promise((resolve) => setTimeout(resolve, random() * chaos.maxDelayMs));
    if (roll(chaos?.dropBefore)) {
      stats.droppedBefore++;
      req.socket.destroy();
      return;
    }
    if (roll(chaos?.httpError)) {
      stats.httpErrors++;
      res.writeHead(503).end("overloaded");
      return;
    }
    if (roll(chaos?.rpcError)) {
      stats.rpcErrors++;
      const error = (r: JsonRpcRequest) => ({ jsonrpc: "2.0", id: r.id, error: { code: -32603, message: "internal error (chaos)" } });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(Array.isArray(body) ? body.map(error) : error(body)));
      return;
    }
    const result = Array.isArray(body) ? await Promise.all(body.map(answer)) : await answer(body);
    if (roll(chaos?.dropAfter)) {
      stats.droppedAfter++;
      stats.lostAnswers.push(...(Array.isArray(body) ? body : [body]).map((r) => r.method));
      req.socket.destroy();
      return;
    }
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(result, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v)));
  });
  server.keepAliveTimeout = 1_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}

function read(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** A small seeded PRNG (mulberry32): the same seed gives the same chaos. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
