// How many requests a payer paid for with channels since a moment (a month's start): what volume
// tiers (src/policy/pricing.ts) read as the single source of truth. Voided payments count too, so the
// count only grows within a month and a count a gateway remembers can never exceed this one.
import { getAddress } from "viem";
import type { VolumeCounter } from "../policy/pricing.js";
import type { Sql } from "./sql.js";

// Two counts, each by a partial index on payment (accepted, voided), over the payer's channels.
const COUNT = `
WITH c AS (SELECT id FROM channel WHERE payer = $1)
SELECT ((SELECT count(*) FROM payment p WHERE p.channel_id IN (SELECT id FROM c) AND p.status = 'ACCEPTED' AND p.created_at >= $2::timestamptz)
      + (SELECT count(*) FROM payment p WHERE p.channel_id IN (SELECT id FROM c) AND p.status = 'VOIDED' AND p.created_at >= $2::timestamptz))::text AS paid`;

export class PayerVolume implements VolumeCounter {
  constructor(private readonly sql: Sql) {}

  async paidSince(payer: string, since: Date): Promise<number> {
    const [row] = await this.sql.query<{ paid: string }>(COUNT, [getAddress(payer), since.toISOString()], "paychan_payer_volume");
    return Number(row!.paid);
  }
}
