// Database transactions for the settlement's bulk work (mirroring a range of blocks, deciding a round
// of claims): Prisma's interactive transactions give up after 5 seconds, which a catch-up over
// thousands of events can exceed on a busy database.
import type { PrismaClient } from "../generated/prisma/client.js";
import type { Tx } from "./postings.js";

const options = { maxWait: 30_000, timeout: 300_000 };

export function longTransaction<T>(prisma: PrismaClient, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return prisma.$transaction(fn, options);
}
