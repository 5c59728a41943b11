// Configuration, parsed once with zod from the environment (or any record of strings). Each variable's
// meaning lives in the schema (`.describe`), so `paychan config` and `paychan --help` list them from
// here and cannot drift. Secrets (marked `secret` in the schema) are read here and nowhere else, and
// are only ever shown as set or not set.
import { getAddress, isAddress, isHex, zeroAddress, type Address, type Hex } from "viem";
import { z } from "zod";

const address = z
  .string()
  .refine((s) => isAddress(s, { strict: false }), "must be a 0x-prefixed 20-byte address")
  .transform((s) => getAddress(s) as Address);
const privateKey = z
  .string()
  .refine((s) => isHex(s, { strict: true }) && s.length === 66, "must be a 0x-prefixed 32-byte hex private key")
  .transform((s) => s as Hex);
const amount = z
  .string()
  .regex(/^[0-9]+$/, "must be a whole number of base units")
  .transform((s) => BigInt(s));
const usd = z.string().regex(/^\d+(\.\d+)?$/, "must be a decimal number of US dollars, such as 0.001");
const seconds = z.coerce.number().int().min(0);
const milliseconds = z.coerce.number().int().min(1);
const port = z.coerce.number().int().min(0).max(65535);
const perMinute = z.coerce.number().int().min(1, "must be a whole number of requests, at least 1");
const riskLimits = z
  .object({ requestsPerMinute: z.number().int().min(1).optional(), valuePerHour: z.string().regex(/^[1-9][0-9]*$/, "must be a positive whole number of base units, as a string").optional() })
  .strict();
/** RISK_ROUTES: per route ("GET /api/quote"), limits per dimension that replace the defaults. */
const riskRoutes = z
  .string()
  .transform((text, ctx) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      ctx.addIssue({ code: "custom", message: 'must be JSON such as {"GET /api/quote": {"channel": {"requestsPerMinute": 60}}}' });
      return z.NEVER;
    }
  })
  .pipe(z.record(z.string().regex(/^([A-Za-z]+\s+)?\/\S*$/, 'must name a route as the paywall does, e.g. "GET /api/quote"'), z.object({ channel: riskLimits, payer: riskLimits, client: riskLimits }).partial().strict()));
const secret = <T extends z.ZodType>(schema: T, description: string) => schema.meta({ description, secret: true });

export const configSchema = z.object({
  DATABASE_URL: z
    .string()
    .default("pglite:memory")
    .describe("postgres://… for Postgres; pglite:<dir> for the embedded database on disk (one process at a time); pglite:memory vanishes on exit"),
  DATABASE_CONNECT_TIMEOUT_MS: milliseconds.default(10_000).describe("give up connecting to Postgres after this long"),
  RPC_URL: z.string().url().default("http://127.0.0.1:8545").describe("JSON-RPC endpoint of the chain"),
  RPC_TIMEOUT_MS: milliseconds.default(10_000).describe("give up on a JSON-RPC request after this long"),
  ESCROW_ADDRESS: address.optional().describe("the PaychanEscrow contract (`paychan deploy` prints it); required"),
  PAYEE_ADDRESS: address.optional().describe("the seller's address that vouchers pay; required"),
  ASSET: address.default(zeroAddress).describe("the ERC-20 charged, or the zero address for the chain's native coin"),
  PORT: port.default(4021).describe("the public gateway's port (`paychan serve`); 0 picks a free one"),
  PRICE: amount.default(1_000_000_000_000n).describe("price of the sample route GET /api/quote of `paychan serve`, in base units"),
  PRICE_USD: usd
    .optional()
    .describe(
      "price of the sample route of `paychan serve` in US dollars (e.g. 0.001), offered in every asset with a rate (ASSET_USD, CREDIT_USD_RATE, EXACT_TOKEN_USD); unset: PRICE base units, and $0.001 from credit when fiat is on",
    ),
  PRICE_CEILING_MULTIPLE: z.coerce
    .number()
    .int()
    .min(2)
    .optional()
    .describe(
      "turns demand pricing on for the sample route of `paychan serve`: its price rises from PRICE (or PRICE_USD) with demand, up to this many times it; unset: a fixed price",
    ),
  PRICE_CEILING_AT_RPS: z.coerce
    .number()
    .positive()
    .default(50)
    .describe("with PRICE_CEILING_MULTIPLE: requests per second (over 10 s, per gateway process) at which the sample route's price reaches its ceiling"),
  PRICE_CEILING_AT_CONCURRENCY: z.coerce
    .number()
    .int()
    .min(1)
    .optional()
    .describe("with PRICE_CEILING_MULTIPLE: requests in flight (per gateway process) at which the sample route's price reaches its ceiling; unset: not counted"),
  PRICE_RECOMPUTE_SECONDS: z.coerce.number().int().min(1).default(10).describe("with PRICE_CEILING_MULTIPLE: a demand price stands this long before demand is read again"),
  PRICE_GRACE_SECONDS: seconds.default(30).describe("with PRICE_CEILING_MULTIPLE: how much longer a price stated in a 402 is honoured after it stops being current"),
  VOLUME_TIERS: z
    .string()
    .regex(/^\d+:\d+(\.\d{1,4})?(,\d+:\d+(\.\d{1,4})?)*$/, "must be from:percentOff pairs such as 10000:20,100000:35")
    .transform((s) => s.split(",").map((pair) => ({ from: Number(pair.split(":")[0]), percentOff: Number(pair.split(":")[1]) })))
    .refine((tiers) => tiers.every((t) => t.from >= 1 && t.percentOff > 0 && t.percentOff < 100), "each tier needs from ≥ 1 and a percentOff above 0 and below 100")
    .optional()
    .describe("volume tiers of the sample route of `paychan serve`: from:percentOff pairs (e.g. 10000:20,100000:35), a channel payer's paid requests this month (UTC) from which that percentage is off; unset: none"),
  ASSET_USD: usd.optional().describe("what one whole unit of ASSET is worth in US dollars, so that routes priced in dollars are offered with paychan"),
  EXACT_TOKEN: address
    .optional()
    .describe("an EIP-3009 token (e.g. USDC) on this chain: offers x402 `exact` payments in it beside paychan, settled by `paychan work` (which then runs beside `serve`: Postgres)"),
  EXACT_TOKEN_USD: usd.default("1").describe("what one whole EXACT_TOKEN is worth in US dollars, for routes priced in dollars"),
  EXACT_MAX_UNSETTLED_USD: usd
    .default("10")
    .describe("the most, in US dollars, of exact payments served and not yet settled; beyond it `exact` is refused (503) until transfers land: what serving before settling can lose"),
  MIN_WITHDRAW_DELAY: seconds.default(86_400).describe("refuse channels whose payer can withdraw sooner than this (seconds)"),
  CLOSING_MARGIN_SECONDS: seconds.default(3_600).describe("stop accepting vouchers on a withdrawing channel this long before its deadline"),
  OPERATOR_HOST: z.string().min(1).default("127.0.0.1").describe("bind address of the operator endpoints (GET /reconcile); beyond loopback OPERATOR_TOKEN is required"),
  OPERATOR_PORT: port.default(4022).describe("port of the operator endpoints; 0 picks a free one"),
  OPERATOR_TOKEN: secret(
    z.string().min(16, "must be at least 16 characters").optional(),
    "bearer token the operator endpoints require (Authorization: Bearer …); at least 16 characters",
  ),
  SETTLER_PRIVATE_KEY: secret(
    privateKey.optional(),
    "the key that sends claims (the payee's, or an operator the payee approved with `paychan set-operator`) and pays for `paychan deploy`",
  ),
  PAYEE_PRIVATE_KEY: secret(privateKey.optional(), "the payee's own key, only for `paychan set-operator` (approving a settlement key)"),
  SETTLE_INTERVAL_SECONDS: seconds.default(3_600).describe("claim everything unclaimed this often; 0 turns the schedule off"),
  SETTLE_THRESHOLD: amount.default(0n).describe("claim a channel once its unclaimed value reaches this (base units); 0 turns it off"),
  SETTLE_GAS_MULTIPLIER: z.coerce
    .number()
    .int()
    .min(1)
    .default(10)
    .describe("claim a native-coin channel once its unclaimed value exceeds this many times the gas to claim it"),
  WATCHTOWER_MARGIN_SECONDS: seconds.default(1_800).describe("claim a withdrawing channel at the latest this long before its deadline"),
  CONFIRMATIONS: z.coerce
    .number()
    .int()
    .min(0)
    .optional()
    .describe("blocks on top before an event or a claim counts; unset: 0 on a dev chain (chain id 31337 or 1337, which mines only on demand), else 2"),
  PENDING_DEPOSIT_CAP: amount
    .optional()
    .describe(
      "how much of a deposit seen on chain but not yet CONFIRMATIONS deep vouchers may spend, per channel, in base units; " +
        "unset: all of it when CONFIRMATIONS is 0, else 100 × PRICE (what a reorg can cost per channel)",
    ),
  POLL_INTERVAL_MS: z.coerce.number().int().min(50).default(2_000).describe("how often `work` reads the chain and runs a settlement round"),
  HEARTBEAT_SECONDS: seconds.default(60).describe("how often `work` prints a status line (head, mirrored block, pending claims); 0 turns it off"),
  SETTLE_BATCH_SIZE: z.coerce.number().int().min(1).max(500).default(100).describe("channels per claimBatch transaction"),
  FEE_BUMP_AFTER_SECONDS: seconds.default(60).describe("re-sign a claim not mined after this long, same nonce, fees +12.5%"),
  WATCH_FROM_BLOCK: z
    .string()
    .regex(/^[0-9]+$/, "must be a block number")
    .transform((s) => BigInt(s))
    .default(0n)
    .describe("the block the chain watcher starts from: the escrow's deployment block (`paychan deploy` prints it)"),
  LOG_BLOCK_RANGE: z.coerce.number().int().min(1).default(2_000).describe("blocks per eth_getLogs request; many providers cap the range"),
  STRIPE_SECRET_KEY: secret(
    z.string().min(1).optional(),
    "Stripe secret API key (sk_…); setting it turns the fiat rails on: card top-ups into prepaid credit, the `credit` scheme, seller payouts",
  ),
  STRIPE_WEBHOOK_SECRET: secret(
    z.string().min(1).optional(),
    "the signing secret (whsec_…) of the Stripe webhook endpoint POST /webhooks/stripe; required with STRIPE_SECRET_KEY",
  ),
  STRIPE_API_BASE: z.string().url().optional().describe("another Stripe API host, e.g. a local fake for tests (http://127.0.0.1:12111); unset: Stripe's own"),
  STRIPE_WEBHOOK_TOLERANCE_SECONDS: seconds.default(300).describe("refuse Stripe webhooks signed longer ago than this (replay protection)"),
  STRIPE_TIMEOUT_MS: milliseconds.default(20_000).describe("give up on a Stripe API call after this long (retried twice with the same idempotency key)"),
  STRIPE_SELLER_ACCOUNT: z
    .string()
    .regex(/^acct_[A-Za-z0-9]+$/, "must be a Stripe account id (acct_…)")
    .optional()
    .describe("the Stripe Connect account (acct_…) this gateway's seller is paid out to"),
  CREDIT_CURRENCY: z
    .string()
    .regex(/^[A-Za-z]{3}$/, "must be an ISO 4217 code such as USD")
    .transform((s) => s.toUpperCase())
    .default("USD")
    .describe("currency of prepaid credit; the ledger counts it in millionths (fiat:USD base unit = $0.000001)"),
  CREDIT_USD_RATE: z
    .string()
    .regex(/^\d+(\.\d+)?$/, "must be a decimal number")
    .default("1")
    .describe("US dollars one unit of CREDIT_CURRENCY is worth, for USD route prices"),
  PAYOUT_THRESHOLD: z
    .string()
    .regex(/^\d+(\.\d+)?$/, "must be a decimal amount such as 25.00")
    .default("25")
    .describe("pay a seller out once its credit earnings reach this, in CREDIT_CURRENCY (whole cents are paid; the rest stays accrued)"),
  CREDIT_LOW_BALANCE: z
    .string()
    .regex(/^\d+(\.\d+)?$/, "must be a decimal amount such as 2.00")
    .optional()
    .describe("a credit balance below this, in CREDIT_CURRENCY, is low: the seller is notified (CREDIT_NOTICE_WEBHOOK_URL) and a saved card recharged (CREDIT_AUTO_RECHARGE); unset: off"),
  CREDIT_NOTICE_WEBHOOK_URL: z
    .string()
    .url()
    .optional()
    .describe("where `paychan work` POSTs notices to the seller's system (credit.low_balance, credit.recharge_failed), signed with CREDIT_NOTICE_WEBHOOK_SECRET; unset: no notices"),
  CREDIT_NOTICE_WEBHOOK_SECRET: secret(
    z.string().min(16).optional(),
    "the HMAC-SHA256 key that signs each notice (header Paychan-Signature), at least 16 characters; required with CREDIT_NOTICE_WEBHOOK_URL",
  ),
  CREDIT_AUTO_RECHARGE: z
    .string()
    .regex(/^\d+(\.\d+)?$/, "must be a decimal amount such as 10.00")
    .optional()
    .describe("charge this, in CREDIT_CURRENCY, to the card a buyer saved at checkout when the balance falls below CREDIT_LOW_BALANCE (`paychan work`); setting it saves cards at checkout; unset: off"),
  CREDIT_RECHARGE_RETRIES: z
    .string()
    .regex(/^\d+[smhd](,\d+[smhd])*$/, "must be waits such as 1h,6h,24h (s, m, h or d)")
    .default("1h,6h,24h")
    .describe("the waits after each declined recharge before the next attempt; after the last, the account is suspended and the seller notified"),
  TOPUP_SUCCESS_URL: z.string().url().default("http://localhost:4021/").describe("where Stripe Checkout sends a buyer after a paid top-up"),
  TOPUP_CANCEL_URL: z.string().url().default("http://localhost:4021/").describe("where Stripe Checkout sends a buyer who cancels a top-up"),
  WORK_OPERATOR_PORT: port
    .optional()
    .describe("port of `paychan work`'s operator endpoints (GET /metrics, /healthz, /reconcile) on OPERATOR_HOST; unset: none; 0 picks a free one"),
  RISK_CHANNEL_REQUESTS_PER_MINUTE: perMinute.optional().describe("risk: paid requests a channel (or credit account) may make per minute, per gateway process; over it 429 rate_limited; unset: no limit"),
  RISK_PAYER_REQUESTS_PER_MINUTE: perMinute.optional().describe("risk: paid requests one payer may make per minute over all its channels, per gateway process; unset: no limit"),
  RISK_CLIENT_REQUESTS_PER_MINUTE: perMinute.optional().describe("risk: paid requests one client address may make per minute, per gateway process; unset: no limit"),
  RISK_CHANNEL_VALUE_PER_HOUR: amount.optional().describe("risk: base units of ASSET a channel may spend per hour, per gateway process; unset: no limit"),
  RISK_PAYER_VALUE_PER_HOUR: amount.optional().describe("risk: base units of ASSET one payer may spend per hour over all its channels; unset: no limit"),
  RISK_CLIENT_VALUE_PER_HOUR: amount.optional().describe("risk: base units of ASSET one client address may spend per hour; unset: no limit"),
  RISK_ROUTES: riskRoutes
    .optional()
    .describe('risk: per-route limits replacing the defaults above, as JSON: {"GET /api/quote": {"channel": {"requestsPerMinute": 60, "valuePerHour": "1000000"}}} (value in base units of ASSET)'),
  RISK_ANOMALY: z
    .enum(["off", "on"])
    .default("off")
    .describe("risk: score each paid request for anomalies (a burst far above the channel's own rate, a new channel draining its deposit, one payer with many channels) and ask for a step-up or deny"),
  RISK_STEP_UP_SCORE: z.coerce.number().int().min(1).default(50).describe("risk: an anomaly score from which the payer's wallet must approve (step_up_required)"),
  RISK_DENY_SCORE: z.coerce.number().int().min(1).default(100).describe("risk: an anomaly score from which a request is refused (risk_denied), approval or not"),
  RISK_EXPOSURE_WINDOW_SECONDS: seconds
    .optional()
    .describe("risk: while a payer's withdrawal finalizes within this many seconds, cap what its channel may owe unclaimed (RISK_EXPOSURE_PERCENT, RISK_EXPOSURE_CAP) and claim early; unset: no cap"),
  RISK_EXPOSURE_PERCENT: z.coerce.number().int().min(1).max(100).default(50).describe("risk: the exposure cap as a percentage of the channel's deposit"),
  RISK_EXPOSURE_CAP: amount.optional().describe("risk: the exposure cap in base units of ASSET, when lower than RISK_EXPOSURE_PERCENT of the deposit"),
  LOG_LEVEL: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
    .default("info")
    .describe("the least severe log lines written: fatal, error, warn, info (one line per payment decision), debug (adds stack traces and unpaid 402s), trace, or silent"),
  LOG_FORMAT: z
    .enum(["json", "pretty"])
    .optional()
    .describe("json (one object a line) or pretty (one readable line); unset: pretty when the output is a terminal, else json"),
});

export type Config = z.output<typeof configSchema>;
export type ConfigKey = keyof Config;

/** The configuration is invalid or incomplete: the operator fixes a variable (the CLI exits 2). */
export class ConfigError extends Error {}

/** paychan cannot start with this configuration and these surroundings (a database or chain that does
 * not answer, an escrow that is not one, a port in use): the message names what to check. */
export class StartupError extends Error {}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = configSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`).join("\n");
    throw new ConfigError(`Invalid configuration:\n${problems}`);
  }
  return parsed.data;
}

export type Variable = { name: ConfigKey; description: string; secret: boolean; default: string | undefined };

/** Every variable the schema knows, with its meaning and its default, in the schema's order. */
export function configVariables(): Variable[] {
  const defaults: Partial<Config> = configSchema.parse({});
  return Object.entries(configSchema.shape).map(([name, field]) => {
    const meta = (z.globalRegistry.get(field) ?? {}) as { description?: string; secret?: boolean };
    const value = defaults[name as ConfigKey];
    return { name: name as ConfigKey, description: meta.description ?? "", secret: meta.secret === true, default: value === undefined ? undefined : String(value) };
  });
}

const secrets = new Set(configVariables().filter((v) => v.secret).map((v) => v.name));

/** One variable's value as an operator may see it: secrets as set / not set, URLs without credentials. */
export function showValue(name: ConfigKey, value: unknown): string {
  if (secrets.has(name)) return value ? "(set)" : "(not set)";
  if (value === undefined) return "";
  return name.endsWith("_URL") ? redactUrl(String(value)) : String(value);
}

/** The configuration as an operator may see it: secrets replaced by whether they are set. */
export function describeConfig(config: Config): Record<string, string> {
  return Object.fromEntries(Object.keys(configSchema.shape).map((key) => [key, showValue(key as ConfigKey, config[key as ConfigKey])]));
}

/**
 * A URL fit for a log line or an error message: no password, no query values, and no path segment of
 * a web URL that looks like an API key (providers put keys there: https://…/v2/<key>).
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url.replace(/\/\/([^:/@]+):[^@]*@/, "//$1:***@");
  }
  // A web URL's path may hold a key; a database URL's path is the database's name.
  const web = /^(http|ws)s?:$/.test(parsed.protocol);
  const path = web
    ? parsed.pathname
        .split("/")
        .map((segment) => (/^[A-Za-z0-9_-]{20,}$/.test(segment) ? "***" : segment))
        .join("/")
    : parsed.pathname;
  if (!parsed.password && path === parsed.pathname && parsed.search === "") return url;
  if (parsed.password) parsed.password = "***";
  parsed.pathname = path;
  for (const key of [...parsed.searchParams.keys()]) parsed.searchParams.set(key, "***");
  return parsed.toString().replace(/%2A%2A%2A/g, "***");
}

/** Chain ids of local development nodes (Hardhat, Anvil: 31337; Ganache, geth --dev: 1337): they mine
 * a block only when a transaction arrives, so waiting for confirmations there waits forever. */
export function isDevChain(chainId: number): boolean {
  return chainId === 31337 || chainId === 1337;
}

/** CONFIRMATIONS as configured, or the default for this chain: 0 on a dev chain, 2 elsewhere. */
export function confirmationsFor(config: Config, chainId: number): number {
  return config.CONFIRMATIONS ?? (isDevChain(chainId) ? 0 : 2);
}

/** PENDING_DEPOSIT_CAP as configured, or its default: no cap when nothing waits for confirmations
 * (the head is trusted), else a hundred sample prices. Undefined means no cap. */
export function pendingDepositCapFor(config: Config, confirmations: number): bigint | undefined {
  return config.PENDING_DEPOSIT_CAP ?? (confirmations === 0 ? undefined : 100n * config.PRICE);
}
