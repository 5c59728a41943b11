// Configuration, parsed once with zod from the environment (or any record of strings). Secrets such as
// SETTLER_PRIVATE_KEY are read here and nowhere else, and `describeConfig` never prints them.
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
const seconds = z.coerce.number().int().min(0);

export const configSchema = z.object({
  /** postgres://… for Postgres; pglite:<dir> for embedded on disk; empty for embedded in memory. */
  DATABASE_URL: z.string().default("pglite:memory"),
  /** JSON-RPC endpoint of the chain (e.g. `npx hardhat node` at http://127.0.0.1:8545). */
  RPC_URL: z.string().url().default("http://127.0.0.1:8545"),
  ESCROW_ADDRESS: address.optional(),
  /** The seller's address: vouchers pay it. */
  PAYEE_ADDRESS: address.optional(),
  /** zero address for native ETH, else the ERC-20 charged. */
  ASSET: address.default(zeroAddress),
  PORT: z.coerce.number().int().min(0).max(65535).default(4021),
  /** Price of the sample route of `paychan serve`, in base units. */
  PRICE: amount.default(1_000_000_000_000n),
  MIN_WITHDRAW_DELAY: seconds.default(86_400),
  CLOSING_MARGIN_SECONDS: seconds.default(3_600),
  /** The key the settlement worker sends claims with (the payee, or an operator it authorized). */
  SETTLER_PRIVATE_KEY: privateKey.optional(),
  SETTLE_INTERVAL_SECONDS: seconds.default(3_600),
  SETTLE_THRESHOLD: amount.default(0n),
  /** Claim once a channel's unclaimed value exceeds this many times the gas it costs to claim it. */
  SETTLE_GAS_MULTIPLIER: z.coerce.number().int().min(1).default(10),
  /** Claim a withdrawing channel at the latest this long before its deadline. */
  WATCHTOWER_MARGIN_SECONDS: seconds.default(1_800),
  CONFIRMATIONS: z.coerce.number().int().min(0).default(2),
  POLL_INTERVAL_MS: z.coerce.number().int().min(50).default(2_000),
  /** Channels per claimBatch transaction. */
  SETTLE_BATCH_SIZE: z.coerce.number().int().min(1).max(500).default(100),
  /** Re-sign a claim not mined after this long, same nonce, fees +12.5%. */
  FEE_BUMP_AFTER_SECONDS: seconds.default(60),
  /** The block the chain watcher starts from: the escrow's deployment block (`paychan deploy` prints it). */
  WATCH_FROM_BLOCK: z
    .string()
    .regex(/^[0-9]+$/, "must be a block number")
    .transform((s) => BigInt(s))
    .default(0n),
  /** Blocks per eth_getLogs request; many providers cap the range. */
  LOG_BLOCK_RANGE: z.coerce.number().int().min(1).default(2_000),
});

export type Config = z.output<typeof configSchema>;

export class ConfigError extends Error {}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = configSchema.safeParse(present);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`).join("\n");
    throw new ConfigError(`Invalid configuration:\n${problems}`);
  }
  return parsed.data;
}

/** The configuration as an operator may see it: secrets replaced by whether they are set. */
export function describeConfig(config: Config): Record<string, string> {
  return Object.fromEntries(
    Object.entries(config).map(([key, value]) => [
      key,
      key.endsWith("PRIVATE_KEY") ? (value ? "(set)" : "(not set)") : key === "DATABASE_URL" ? redactUrl(String(value)) : String(value ?? ""),
    ]),
  );
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]+@/, "//$1:***@");
}
