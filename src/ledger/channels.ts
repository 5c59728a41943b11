// The channels the books know: their terms (immutable, hashed into the id), what the chain last said
// about them, and how far acceptance has gone on each. The row is the one place where a channel's
// truth lives for every process: the watcher writes the chain's view into it, the accept statement
// (acceptVouchers.ts) reads that view and compare-and-sets the accepted total on it.
import type { Address, Hex } from "viem";
import { getAddress } from "viem";
import { channelId as channelIdOf, type ChannelConfig, type EscrowLocation } from "../protocol/Channel.js";
import { accountId, chartOfAccounts } from "./accounts.js";
import { tokenAsset } from "./asset.js";
import { ChannelBooks } from "./channelBooks.js";
import { inTransaction, type Db, type Tx } from "./postings.js";
import type { Sql } from "./sql.js";

/** What the chain says about a channel; the watcher refreshes it. */
export type ChannelChainState = {
  deposit: bigint;
  claimedOnChain: bigint;
  /** Unix seconds; null while no withdrawal is requested. */
  withdrawReadyAt: bigint | null;
  closed: boolean;
};

/** A channel as acceptance sees it. */
export type StoredChannel = ChannelChainState & {
  id: Hex;
  chainId: number;
  escrow: Address;
  config: ChannelConfig;
  /** Sum of the charges accepted and not voided: the total the next voucher builds on. */
  acceptedCumulative: bigint;
};

/**
 * Records a channel's terms, opens its ledger accounts, and — given its state at the chain's head —
 * records that state, booking the deposit seen there as pending until the chain mirror confirms it
 * (src/ledger/channelBooks.ts). Safe when several processes see a new channel at once: the row is
 * inserted with ON CONFLICT, then locked. Returns the channel id.
 */
export async function saveChannel(db: Db, channel: ChannelConfig & EscrowLocation & { head?: ChannelChainState }): Promise<Hex> {
  const id = channelIdOf(channel, channel).toLowerCase() as Hex;
  const asset = tokenAsset(channel.chainId, channel.token);
  await inTransaction(db, async (tx) => {
    await tx.$executeRaw`
      INSERT INTO channel (id, chain_id, escrow, payer, payee, token, signer, withdraw_delay, salt, asset)
      VALUES (${id}, ${BigInt(channel.chainId)}, ${getAddress(channel.escrow)}, ${getAddress(channel.payer)}, ${getAddress(channel.payee)},
              ${getAddress(channel.token)}, ${getAddress(channel.signer)}, ${channel.withdrawDelay}, ${channel.salt}, ${asset})
      ON CONFLICT (id) DO NOTHING`;
    await createChannelAccounts(tx, [{ id, asset }]);
    if (!channel.head) return;
    const books = await ChannelBooks.load(tx, [id]);
    books.seen(books.get(id)!, channel.head);
    await books.write(tx);
  });
  return id;
}

type ChannelRow = {
  id: string;
  chain_id: string;
  escrow: string;
  payer: string;
  payee: string;
  token: string;
  signer: string;
  withdraw_delay: number;
  salt: string;
  deposit: string;
  claimed_on_chain: string;
  withdraw_ready_at: string | null;
  closed: boolean;
  accepted_cumulative: string;
};

/** One channel as stored, or undefined. */
export async function loadChannel(sql: Sql, id: Hex): Promise<StoredChannel | undefined> {
  const [row] = await sql.query<ChannelRow>(
    `SELECT id, chain_id::text, escrow, payer, payee, token, signer, withdraw_delay, salt, deposit::text,
            claimed_on_chain::text, withdraw_ready_at::text, closed, accepted_cumulative::text
     FROM channel WHERE id = $1`,
    [id.toLowerCase()],
    "paychan_load_channel",
  );
  if (!row) return undefined;
  return {
    id: row.id as Hex,
    chainId: Number(row.chain_id),
    escrow: getAddress(row.escrow),
    config: {
      payer: getAddress(row.payer),
      payee: getAddress(row.payee),
      token: getAddress(row.token),
      signer: getAddress(row.signer),
      withdrawDelay: row.withdraw_delay,
      salt: row.salt as Hex,
    },
    deposit: BigInt(row.deposit),
    claimedOnChain: BigInt(row.claimed_on_chain),
    withdrawReadyAt: row.withdraw_ready_at === null ? null : BigInt(row.withdraw_ready_at),
    closed: row.closed,
    acceptedCumulative: BigInt(row.accepted_cumulative),
  };
}

/** Records the chain's clock as just read, for the withdrawal margin (see chain_head). */
export async function recordChainHead(sql: Sql, chainId: number, blockNumber: bigint, timestamp: bigint): Promise<void> {
  await sql.query(
    `INSERT INTO chain_head (chain_id, block_number, block_timestamp, observed_at) VALUES ($1, $2, $3, statement_timestamp())
     ON CONFLICT (chain_id) DO UPDATE SET block_number = EXCLUDED.block_number, block_timestamp = EXCLUDED.block_timestamp,
       observed_at = EXCLUDED.observed_at`,
    [BigInt(chainId).toString(), blockNumber.toString(), timestamp.toString()],
  );
}

/** Opens a channel's CHANNEL_AVAILABLE and CHANNEL_OWED accounts (idempotently). */
export async function createChannelAccounts(tx: Tx, channels: { id: string; asset: string }[]): Promise<void> {
  const accounts = channels.flatMap((c) =>
    (["CHANNEL_AVAILABLE", "CHANNEL_OWED"] as const).map((kind) => ({
      id: kind === "CHANNEL_AVAILABLE" ? accountId.channelAvailable(c.id as Hex) : accountId.channelOwed(c.id as Hex),
      asset: c.asset,
      kind,
      normal_side: chartOfAccounts[kind].normalSide,
      non_negative: chartOfAccounts[kind].nonNegative,
    })),
  );
  await tx.$executeRawUnsafe(
    `INSERT INTO ledger_account (id, asset, kind, normal_side, non_negative)
     SELECT a.id, a.asset, a.kind::account_kind, a.normal_side::side, a.non_negative
     FROM jsonb_to_recordset($1::jsonb) AS a(id text, asset text, kind text, normal_side text, non_negative boolean)
     ORDER BY a.id
     ON CONFLICT (id) DO NOTHING`,
    JSON.stringify(accounts),
  );
}

