// The gateway's PaymentStore on Prisma: channel records from the `channel` table, acceptance through
// the ledger's batched acceptPaymentsBatch (which locks the channels' rows, so several gateway
// processes on one database serialize per channel), voids through voidPayment.
import { randomUUID } from "node:crypto";
import { getAddress, type Address, type Hex } from "viem";
import type { AcceptRequest, AcceptResult, ChannelRecord, PaymentStore } from "../gateway/PaymentStore.js";
import type { PrismaClient } from "../generated/prisma/client.js";
import { toBigInt } from "./amount.js";
import { acceptPaymentsBatch, saveChannel, voidPayment } from "./voucherStore.js";

export class PrismaPaymentStore implements PaymentStore {
  constructor(private readonly prisma: PrismaClient) {}

  async loadChannel(id: Hex): Promise<ChannelRecord | undefined> {
    const row = await this.prisma.channel.findUnique({ where: { id: id.toLowerCase() } });
    if (!row) return undefined;
    return {
      id: row.id as Hex,
      chainId: Number(row.chainId),
      escrow: getAddress(row.escrow),
      config: {
        payer: getAddress(row.payer),
        payee: getAddress(row.payee),
        token: getAddress(row.token),
        signer: getAddress(row.signer),
        withdrawDelay: row.withdrawDelay,
        salt: row.salt as Hex,
      },
      deposit: toBigInt(row.deposit),
      claimedOnChain: toBigInt(row.claimedOnChain),
      withdrawReadyAt: row.withdrawReadyAt ?? undefined,
      closed: row.closed,
      acceptedCumulative: toBigInt(row.acceptedCumulative),
    };
  }

  async upsertChannel(channel: ChannelRecord): Promise<ChannelRecord> {
    await saveChannel(this.prisma, {
      ...channel.config,
      chainId: channel.chainId,
      escrow: channel.escrow as Address,
      deposit: channel.deposit,
      claimedOnChain: channel.claimedOnChain,
      withdrawReadyAt: channel.withdrawReadyAt ?? null,
      closed: channel.closed,
    });
    return (await this.loadChannel(channel.id))!;
  }

  async acceptBatch(requests: AcceptRequest[]): Promise<AcceptResult[]> {
    const results = await acceptPaymentsBatch(
      this.prisma,
      requests.map((r) => ({
        channelId: r.channel.id,
        requestId: randomUUID(),
        expectedCumulative: r.expectedCumulative,
        cumulativeAmount: r.voucher.cumulativeAmount,
        price: r.price,
        signature: r.voucher.signature,
        metadata: { resource: r.resource },
      })),
    );
    return Promise.all(
      results.map(async (result, i): Promise<AcceptResult> => {
        if (result.ok) return { ok: true, paymentId: result.paymentId };
        const current = (await this.loadChannel(requests[i]!.channel.id)) ?? requests[i]!.channel;
        return { ok: false, current };
      }),
    );
  }

  async voidPayment(paymentId: string, reason: string): Promise<void> {
    await voidPayment(this.prisma, paymentId, { metadata: { reason } });
  }
}
