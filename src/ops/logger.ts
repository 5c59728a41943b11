// paychan's structured logs: pino, one JSON object a line for log collectors, or one readable line
// for a person at a terminal (LOG_FORMAT; by default pretty when the output is a terminal, JSON
// otherwise), at LOG_LEVEL. Other rooms never log directly: they report through callbacks, and the
// composition root and the CLI turn those into lines here.
//
// Secrets never reach the output, whoever logs what: fields named like secrets (authorization,
// payment-signature, private keys, tokens, passwords) are redacted by name, and every value the
// configuration marks secret — the keys, OPERATOR_TOKEN, the password and API keys inside
// DATABASE_URL and RPC_URL — is scrubbed from each line before it is written, whatever field or
// message carries it.
import { isatty } from "node:tty";
import pino, { type Logger } from "pino";
import { messageOf } from "../chain/TxManager.js";
import { configVariables, type Config, type ConfigKey } from "../config.js";

export type { Logger };
export type LogFormat = "json" | "pretty";
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LoggerOptions = {
  level?: LogLevel;
  /** Default: pretty when the destination is a terminal, else json. */
  format?: LogFormat;
  /** Values scrubbed from every line (see secretsOf). */
  secrets?: readonly string[];
  /** A file descriptor (default 1, stdout) or a stream that takes whole lines. */
  destination?: number | { write(line: string): unknown };
};

/** Field names whose values are never written: at the top level, or inside `headers`, `req.headers`
 * or `config`. Explicit paths, no wildcards: pino's wildcard redaction costs ~40 µs a line, ten
 * times the line itself, on the paid path. Whatever other field carries a secret, the scrubber below
 * still finds its value. */
const SECRET_FIELDS = [
  "authorization",
  "cookie",
  '"payment-signature"',
  "privateKey",
  "token",
  "password",
  "secret",
  "apiKey",
  "SETTLER_PRIVATE_KEY",
  "PAYEE_PRIVATE_KEY",
  "OPERATOR_TOKEN",
];
const REDACTED_PATHS = SECRET_FIELDS.flatMap((field) => {
  const quoted = field.startsWith('"');
  return [quoted ? `[${field}]` : field, ...["headers", "req.headers", "config"].map((parent) => `${parent}${quoted ? `[${field}]` : `.${field}`}`)];
});

/** A secret shorter than this is not scrubbed from free text: replacing a short word everywhere
 * would garble every line that happens to contain it. */
const MIN_SCRUBBED_LENGTH = 8;

export function createLogger(options: LoggerOptions = {}): Logger {
  const target = options.destination ?? 1;
  const out = typeof target === "number" ? fileDestination(target) : target;
  const format = options.format ?? (typeof target === "number" && isatty(target) ? "pretty" : "json");
  const scrub = scrubber(options.secrets ?? []);
  const colors = format === "pretty" && typeof target === "number" && isatty(target);
  const sink = { write: (line: string) => out.write(format === "pretty" ? pretty(scrub(line), colors) : scrub(line)) };
  return pino(
    {
      level: options.level ?? "info",
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    sink,
  );
}

/**
 * Lines to a file descriptor, written asynchronously. Written synchronously, a line blocks the event
 * loop whenever the buffer of a pipe (to a log shipper, journald, a container runtime) is full, until
 * its reader catches up: ~190 µs a line against ~10 µs asynchronously (a Node reader of the pipe, 2
 * busy cores), and for good with a stalled reader, which stopped the gateway serving. While one write is in flight the next
 * lines gather and go out together; a quiet server still writes each line at once. At most
 * MAX_BUFFERED bytes wait: beyond that, lines are dropped rather than memory or requests held.
 * What is buffered is written before the process exits, including by process.exit(); a kill -9 can
 * lose the last lines, never a payment (those are in the database before the response).
 */
function fileDestination(fd: number) {
  const out = pino.destination({ dest: fd, sync: false, maxLength: MAX_BUFFERED });
  if (unflushed.size === 0) process.once("exit", flushAll);
  unflushed.add(new WeakRef(out));
  return out;
}

const MAX_BUFFERED = 16 * 1024 * 1024;
const unflushed = new Set<WeakRef<ReturnType<typeof pino.destination>>>();

function flushAll(): void {
  for (const ref of unflushed) {
    try {
      ref.deref()?.flushSync();
    } catch {
      // Not open yet, or already closed: nothing of it is buffered.
    }
  }
}

/** The values to scrub from logs: every secret variable's value (a key with and without 0x) and the
 * credentials inside the *_URL variables (password, query values, key-like path segments). */
export function secretsOf(config: Partial<Config>): string[] {
  const values: string[] = [];
  for (const v of configVariables()) {
    const value = config[v.name as ConfigKey];
    if (typeof value !== "string" || value === "") continue;
    if (v.secret) {
      values.push(value);
      if (/^0x[0-9a-fA-F]{64}$/.test(value)) values.push(value.slice(2), value.slice(2).toLowerCase());
    } else if (v.name.endsWith("_URL")) {
      values.push(...urlSecrets(value));
    }
  }
  return values;
}

function urlSecrets(url: string): string[] {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    const password = /\/\/[^:/@]+:([^@]*)@/.exec(url)?.[1];
    return password ? [password] : [];
  }
  const found: string[] = [];
  if (parsed.password) found.push(parsed.password, safeDecode(parsed.password));
  for (const value of parsed.searchParams.values()) if (value) found.push(value, encodeURIComponent(value));
  if (/^(http|ws)s?:$/.test(parsed.protocol)) found.push(...parsed.pathname.split("/").filter((s) => /^[A-Za-z0-9_-]{20,}$/.test(s)));
  return found;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function scrubber(secrets: readonly string[]): (line: string) => string {
  const variants = new Set<string>();
  for (const secret of secrets) {
    if (secret.length < MIN_SCRUBBED_LENGTH) continue;
    variants.add(secret);
    // As it appears inside a JSON string.
    variants.add(JSON.stringify(secret).slice(1, -1));
  }
  const list = [...variants].sort((a, b) => b.length - a.length);
  if (list.length === 0) return (line) => line;
  return (line) => {
    for (const secret of list) if (line.includes(secret)) line = line.split(secret).join("***");
    return line;
  };
}

/** An error as log fields: its message in one line; the stack trace only at debug level, since the
 * failures paychan logs (a database or chain that does not answer) are expected conditions. */
export function errorFields(logger: Logger, error: unknown): { error: string; stack?: string } {
  const stack = logger.isLevelEnabled("debug") && error instanceof Error ? error.stack : undefined;
  return { error: messageOf(error), ...(stack && { stack }) };
}

const LEVEL_COLORS: Record<string, string> = { fatal: "35", error: "31", warn: "33", info: "32", debug: "36", trace: "90" };
const SHOWN_APART = new Set(["time", "level", "msg", "pid", "hostname"]);

/** A JSON line as a person reads it: time, level, message, then key=value. */
function pretty(line: string, colors: boolean): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const level = String(entry.level ?? "");
  const label = level.toUpperCase().padEnd(5);
  const shown = colors && LEVEL_COLORS[level] ? `\x1b[${LEVEL_COLORS[level]}m${label}\x1b[0m` : label;
  const fields = Object.entries(entry)
    .filter(([key]) => !SHOWN_APART.has(key))
    .map(([key, value]) => `${key}=${typeof value === "string" && /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)}`);
  return `${String(entry.time ?? "")} ${shown} ${String(entry.msg ?? "")}${fields.length > 0 ? ` ${fields.join(" ")}` : ""}\n`;
}
