// Starting an HTTP listener the way an operator needs it: `listen` resolves once the port is bound
// and rejects with the reason (port in use, address not on this machine, no permission) naming the
// variable to change, instead of Express 5 handing the error to a callback that nobody reads.
//
// Node answers a request whose headers exceed its limit (16 KiB) with a bare 431 before the app
// sees it; paychan's documented answer to an oversized header is `400 header_too_large`, so the
// listener gives that answer itself, as JSON like every other refusal.
import { createServer, type RequestListener, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { StartupError } from "../config.js";

export type Listener = { server: Server; host: string; port: number; url: string; close(): Promise<void> };

export type ListenOptions = {
  host?: string;
  port: number;
  /** The variables that set host and port, named when binding fails. */
  hostVariable?: string;
  portVariable: string;
};

export async function listen(app: RequestListener, options: ListenOptions): Promise<Listener> {
  const server = createServer(app);
  server.on("clientError", answerClientError);
  await new Promise<void>((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException) => reject(bindError(error, options));
    server.once("error", failed);
    server.listen(options.port, options.host, () => {
      server.removeListener("error", failed);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(":") ? `[${address}]` : address;
  return {
    server,
    host: address,
    port,
    url: `http://${host === "[::]" || host === "0.0.0.0" ? "localhost" : host}:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeIdleConnections();
      }),
  };
}

function bindError(error: NodeJS.ErrnoException, { host, port, hostVariable, portVariable }: ListenOptions): Error {
  const where = `${host ?? "all interfaces"} port ${port}`;
  switch (error.code) {
    case "EADDRINUSE":
      return new StartupError(`Cannot listen on ${where}: the port is already in use. Stop what listens there or choose another ${portVariable}.`);
    case "EACCES":
      return new StartupError(`Cannot listen on ${where}: permission denied (ports below 1024 need privileges). Choose another ${portVariable}.`);
    case "EADDRNOTAVAIL":
    case "ENOTFOUND":
      return new StartupError(`Cannot listen on ${where}: ${host} is not an address of this machine. Fix ${hostVariable ?? "the host"}.`);
    default:
      return new StartupError(`Cannot listen on ${where} (${portVariable}): ${error.message}`);
  }
}

const oversized = JSON.stringify({ error: "header_too_large", message: "The request's headers are larger than this server accepts (16 KiB)." });

/** What Node would answer to a request it cannot parse, except that oversized headers get paychan's
 * `400 header_too_large`. */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (socket.writable && (socket as Duplex & { bytesWritten?: number }).bytesWritten === 0) {
    if (error.code === "HPE_HEADER_OVERFLOW") {
      socket.write(
        `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(oversized)}\r\nConnection: close\r\n\r\n${oversized}`,
      );
    } else if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
      socket.write("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n");
    } else if (error.code !== "ECONNRESET") {
      socket.write("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    }
  }
  socket.destroy(error);
}
