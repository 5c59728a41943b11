// Double-entry posting: immutable, balanced journal entries identified by the caller's idempotency key
// (TigerBeetle's transfers with user-supplied ids), and the balances they add up to.
// Every function takes a Prisma transaction client, so a caller can commit its own rows and their
// journal entry atomically; given the root client, the function opens a transaction itself.
import { Prisma, type PrismaClient } from "../generated/prisma/client.js";
import type { AccountKind, EntryKind, Side } from "../generated/prisma/enums.js";
import { accountKindOf, chartOfAccounts } from "./accounts.js";
import { MAX_AMOUNT, toBigInt } from "./amount.js";
import { isAsset } from "./asset.js";
import { LedgerError, postgresError } from "./errors.js";

export type Tx = Prisma.TransactionClient;
export type Db = PrismaClient | Tx;

export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/**
 * One line of an entry: an amount on the debit or the credit side of an account. The account is
 * created on first use, its kind taken from the id scheme (src/ledger/accounts.ts) unless given.
 */
export type PostingInput = { account: string; asset: string; accountKind?: AccountKind } & (
  | { debit: bigint; credit?: never }
  | { credit: bigint; debit?: never }
);

export type EntryInput = {
  /** The caller's unique id for the event this entry records; posting it again is a no-op. */
  idempotencyKey: string;
  kind: EntryKind;
  postings: PostingInput[];
  metadata?: JsonObject;
  /** The id of the entry this one reverses. */
  reverses?: string;
};

export type PostingLine = { account: string; asset: string; side: Side; amount: bigint };

export type Entry = {
  id: string;
  idempotencyKey: string;
  kind: EntryKind;
  reversesEntryId: string | null;
  metadata: JsonObject;
  createdAt: Date;
  postings: PostingLine[];
};

/** `replayed` is true when the key was already posted with this content and nothing was written. */
export type PostResult = { entry: Entry; replayed: boolean };

export async function postEntry(db: Db, input: EntryInput): Promise<PostResult> {
  const lines = validate(input);
  const metadata = input.metadata ?? {};
  return inTransaction(db, async (tx) => {
    const inserted = await tx.$queryRaw<{ id: string; created_at: Date }[]>`
      INSERT INTO journal_entry (idempotency_key, kind, reverses_entry_id, metadata, posting_count)
      VALUES (${input.idempotencyKey}, ${input.kind}::entry_kind, ${input.reverses ?? null}::uuid, ${JSON.stringify(metadata)}::jsonb, ${lines.length})
      ON CONFLICT (idempotency_key) DO NOTHING
      RETURNING id, created_at`.catch((error) => rethrow(error, input));
    const row = inserted[0];
    if (!row) return replay(tx, input, lines, metadata);
    await ensureAccounts(tx, input.postings);
    await tx.$executeRaw`
      INSERT INTO posting (entry_id, account_id, asset, side, amount)
      SELECT ${row.id}::uuid, t.account, t.asset, t.side::side, t.amount::numeric
      FROM unnest(${lines.map((l) => l.account)}::text[], ${lines.map((l) => l.asset)}::text[],
                  ${lines.map((l) => l.side)}::text[], ${lines.map((l) => l.amount.toString())}::text[])
           AS t(account, asset, side, amount)`.catch((error) => rethrow(error, input));
    const entry: Entry = {
      id: row.id,
      idempotencyKey: input.idempotencyKey,
      kind: input.kind,
      reversesEntryId: input.reverses ?? null,
      metadata,
      createdAt: row.created_at,
      postings: lines,
    };
    return { entry, replayed: false };
  });
}

export type ReverseOptions = {
  /** REVERSAL unless the reversal means something more specific, like a voided voucher. */
  kind?: EntryKind;
  metadata?: JsonObject;
};

/** Posts the mirror image of an entry (debits and credits swapped). An entry is reversed at most once. */
export async function reverseEntry(
  db: Db,
  entryId: string,
  idempotencyKey: string,
  options: ReverseOptions = {},
): Promise<PostResult> {
  return inTransaction(db, async (tx) => {
    const original = await findEntry(tx, { id: entryId });
    if (!original) throw new LedgerError("ENTRY_NOT_FOUND", `There is no journal entry ${entryId} to reverse.`);
    const existing = await tx.journalEntry.findUnique({ where: { reversesEntryId: entryId }, select: { idempotencyKey: true } });
    if (existing && existing.idempotencyKey !== idempotencyKey) {
      throw new LedgerError(
        "ENTRY_ALREADY_REVERSED",
        `Journal entry ${entryId} was already reversed by ${existing.idempotencyKey}; an entry is reversed once.`,
      );
    }
    return postEntry(tx, {
      idempotencyKey,
      kind: options.kind ?? "REVERSAL",
      reverses: entryId,
      metadata: options.metadata,
      postings: original.postings.map((p) =>
        p.side === "DEBIT"
          ? { account: p.account, asset: p.asset, credit: p.amount }
          : { account: p.account, asset: p.asset, debit: p.amount },
      ),
    });
  });
}

export async function findEntry(db: Db, where: { id: string } | { idempotencyKey: string }): Promise<Entry | undefined> {
  const row = await db.journalEntry.findUnique({ where, include: { postings: { orderBy: { id: "asc" } } } });
  if (!row) return undefined;
  return {
    id: row.id,
    idempotencyKey: row.idempotencyKey,
    kind: row.kind,
    reversesEntryId: row.reversesEntryId,
    metadata: row.metadata as JsonObject,
    createdAt: row.createdAt,
    postings: row.postings.map((p) => ({ account: p.accountId, asset: p.asset, side: p.side, amount: toBigInt(p.amount) })),
  };
}

export type AccountBalance = {
  account: string;
  asset: string;
  kind: AccountKind;
  normalSide: Side;
  debits: bigint;
  credits: bigint;
  /** On the account's normal side: debits − credits for a debit account, credits − debits otherwise. */
  balance: bigint;
};

export type BalanceFilter = { accounts?: string[]; asset?: string; kind?: AccountKind; idPrefix?: string };

/** Every matching account's balance, by account id, from the running totals. */
export async function balances(db: Db, filter: BalanceFilter = {}): Promise<Map<string, AccountBalance>> {
  const rows = await db.ledgerAccount.findMany({
    where: {
      id: filter.accounts ? { in: filter.accounts } : filter.idPrefix ? { startsWith: filter.idPrefix } : undefined,
      asset: filter.asset,
      kind: filter.kind,
    },
    orderBy: { id: "asc" },
  });
  return new Map(
    rows.map((r) => {
      const debits = toBigInt(r.debits);
      const credits = toBigInt(r.credits);
      const balance = r.normalSide === "DEBIT" ? debits - credits : credits - debits;
      return [r.id, { account: r.id, asset: r.asset, kind: r.kind, normalSide: r.normalSide, debits, credits, balance }];
    }),
  );
}

/** One account's balance on its normal side; 0 for an account never posted to. */
export async function balanceOf(db: Db, account: string): Promise<bigint> {
  return (await balances(db, { accounts: [account] })).get(account)?.balance ?? 0n;
}

/** Total debits and credits of all postings, per asset; in a sound ledger they are equal. */
export async function trialBalance(db: Db): Promise<Map<string, { debits: bigint; credits: bigint }>> {
  const rows = await db.$queryRaw<{ asset: string; debits: string; credits: string }[]>`
    SELECT asset,
           COALESCE(SUM(amount) FILTER (WHERE side = 'DEBIT'), 0)::text AS debits,
           COALESCE(SUM(amount) FILTER (WHERE side = 'CREDIT'), 0)::text AS credits
    FROM posting GROUP BY asset ORDER BY asset`;
  return new Map(rows.map((r) => [r.asset, { debits: BigInt(r.debits), credits: BigInt(r.credits) }]));
}

/** Accounts whose running totals differ from the sum of their postings (none, unless someone bypassed the triggers). */
export async function accountsOutOfBalance(db: Db): Promise<string[]> {
  const rows = await db.$queryRaw<{ id: string }[]>`
    SELECT a.id FROM ledger_account a
    LEFT JOIN (SELECT account_id,
                      COALESCE(SUM(amount) FILTER (WHERE side = 'DEBIT'), 0) AS debits,
                      COALESCE(SUM(amount) FILTER (WHERE side = 'CREDIT'), 0) AS credits
               FROM posting GROUP BY account_id) p ON p.account_id = a.id
    WHERE a.debits <> COALESCE(p.debits, 0) OR a.credits <> COALESCE(p.credits, 0)
    ORDER BY a.id`;
  return rows.map((r) => r.id);
}

/** Runs `fn` in the caller's transaction, or in a new one when given the root client. */
export async function inTransaction<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  // A transaction client lacks $disconnect; its $transaction would nest a savepoint, which PGlite's
  // adapter does not implement and which we do not need.
  if (!("$disconnect" in db)) return fn(db);
  // Postgres may abort a transaction to break a deadlock or a write conflict; the transaction did
  // nothing, so running it again is the remedy. Only whole transactions are retried, never a nested one.
  for (let attempt = 1; ; attempt++) {
    try {
      return await (db as PrismaClient).$transaction(fn, { maxWait: 10_000, timeout: 15_000 });
    } catch (error) {
      if (attempt >= MAX_TRANSACTION_ATTEMPTS || !isRetryable(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
    }
  }
}

const MAX_TRANSACTION_ATTEMPTS = 5;

/** Deadlocks (40P01), serialization failures (40001), Prisma's names for them, and a transaction
 * that could not get a connection in time (P2028 before it began). */
function isRetryable(error: unknown): boolean {
  const e = error as { code?: string; message?: string; meta?: { driverAdapterError?: { cause?: { kind?: string; originalCode?: string } } } };
  if (e?.code === "P2034") return true;
  if (e?.code === "P2028" && /unable to start a transaction/i.test(String(e.message))) return true;
  const cause = e?.meta?.driverAdapterError?.cause;
  if (cause?.kind === "TransactionWriteConflict") return true;
  return cause?.originalCode === "40P01" || cause?.originalCode === "40001" || /\b(40P01|40001)\b/.test(String((error as Error)?.message));
}

function validate(input: EntryInput): PostingLine[] {
  const invalid = (why: string) => new LedgerError("ENTRY_INVALID", `Entry ${input.idempotencyKey}: ${why}`);
  if (!input.idempotencyKey) throw new LedgerError("ENTRY_INVALID", "An entry needs an idempotency key.");
  if (input.postings.length < 2) throw invalid("an entry needs at least two postings.");
  const net = new Map<string, bigint>();
  const lines = input.postings.map((p): PostingLine => {
    const side: Side = p.debit !== undefined ? "DEBIT" : "CREDIT";
    const amount = p.debit ?? p.credit;
    if (typeof amount !== "bigint" || (p.debit !== undefined && p.credit !== undefined)) {
      throw invalid(`posting to ${p.account} needs exactly one of debit or credit, as a bigint.`);
    }
    if (amount <= 0n || amount > MAX_AMOUNT) throw invalid(`posting to ${p.account} has amount ${amount}; it must be in 1..10^78-1.`);
    if (!p.account) throw invalid("a posting has no account.");
    if (!isAsset(p.asset)) throw invalid(`${JSON.stringify(p.asset)} is not an asset (eip155:<chain>/native, eip155:<chain>/erc20:<checksummed address>, fiat:<ISO code>).`);
    net.set(p.asset, (net.get(p.asset) ?? 0n) + (side === "DEBIT" ? amount : -amount));
    return { account: p.account, asset: p.asset, side, amount };
  });
  for (const [asset, difference] of net) {
    if (difference !== 0n) {
      throw new LedgerError(
        "ENTRY_UNBALANCED",
        `Entry ${input.idempotencyKey} does not balance in ${asset}: debits exceed credits by ${difference}.`,
      );
    }
  }
  return lines;
}

/** Creates the accounts not yet known and checks that the known ones hold the posted asset and kind. */
async function ensureAccounts(tx: Tx, postings: PostingInput[]): Promise<void> {
  const wanted = new Map<string, { asset: string; kind: AccountKind | undefined }>();
  for (const p of postings) wanted.set(p.account, { asset: p.asset, kind: p.accountKind ?? accountKindOf(p.account) });
  const ids = [...wanted.keys()];
  const specs = ids.map((id) => wanted.get(id)!);
  const rules = specs.map((s) => (s.kind ? chartOfAccounts[s.kind] : undefined));
  const rows = await tx.$queryRaw<{ id: string; asset: string | null; kind: AccountKind | null; created: boolean }[]>`
    WITH wanted AS (
      SELECT * FROM unnest(${ids}::text[], ${specs.map((s) => s.asset)}::text[], ${specs.map((s) => s.kind ?? null)}::text[],
                           ${rules.map((r) => r?.normalSide ?? null)}::text[], ${rules.map((r) => r?.nonNegative ?? null)}::boolean[])
             AS w(id, asset, kind, normal_side, non_negative)
    ), created AS (
      INSERT INTO ledger_account (id, asset, kind, normal_side, non_negative)
      SELECT id, asset, kind::account_kind, normal_side::side, non_negative FROM wanted WHERE kind IS NOT NULL
      ON CONFLICT (id) DO NOTHING
      RETURNING id
    )
    SELECT w.id, a.asset, a.kind::text AS kind, c.id IS NOT NULL AS created
    FROM wanted w LEFT JOIN ledger_account a ON a.id = w.id LEFT JOIN created c ON c.id = w.id`;
  for (const row of rows) {
    if (row.created) continue;
    const spec = wanted.get(row.id)!;
    if (row.asset === null) {
      // Not visible to this statement: unknown, or created by a transaction that committed meanwhile
      // (then the posting's foreign key on (account, asset) still checks the asset).
      if (spec.kind) continue;
      throw new LedgerError(
        "ENTRY_INVALID",
        `Account ${row.id} does not exist and its id names no kind in the chart of accounts; pass accountKind to create it.`,
      );
    }
    if (row.asset !== spec.asset || (spec.kind && row.kind !== spec.kind)) {
      throw new LedgerError(
        "ACCOUNT_MISMATCH",
        `Account ${row.id} holds ${row.asset} as ${row.kind}; a posting cannot use it for ${spec.asset}${spec.kind ? ` as ${spec.kind}` : ""}.`,
      );
    }
  }
}

async function replay(tx: Tx, input: EntryInput, lines: PostingLine[], metadata: JsonObject): Promise<PostResult> {
  const existing = await findEntry(tx, { idempotencyKey: input.idempotencyKey });
  if (!existing) throw new Error(`journal entry ${input.idempotencyKey} conflicted but cannot be read`);
  const same =
    existing.kind === input.kind &&
    existing.reversesEntryId === (input.reverses ?? null) &&
    canonicalJson(existing.metadata) === canonicalJson(metadata) &&
    postingsKey(existing.postings) === postingsKey(lines);
  if (!same) {
    throw new LedgerError(
      "IDEMPOTENCY_CONFLICT",
      `Idempotency key ${input.idempotencyKey} was already used for a different entry (${existing.id}); use a new key for a new event.`,
    );
  }
  return { entry: existing, replayed: true };
}

function postingsKey(lines: PostingLine[]): string {
  return lines
    .map((l) => `${l.account}\u0000${l.asset}\u0000${l.side}\u0000${l.amount}`)
    .sort()
    .join("\n");
}

function canonicalJson(value: Json): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k]!)}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Turns the database's refusals into LedgerErrors with stable codes. */
export function rethrow(error: unknown, input?: { idempotencyKey: string }): never {
  const pg = postgresError(error);
  const entry = input ? `Entry ${input.idempotencyKey}: ` : "";
  if (pg?.code === "23514" && pg.message.includes("ledger_account_non_negative")) {
    const account = /Failing row contains \(([^,]+),/.exec(pg.detail ?? "")?.[1] ?? "an account";
    throw new LedgerError("INSUFFICIENT_BALANCE", `${entry}${account} would go below zero, which its balance constraint forbids.`, {
      cause: error,
    });
  }
  if (pg?.code === "23514" && pg.message.includes("does not balance")) {
    throw new LedgerError("ENTRY_UNBALANCED", `${entry}${pg.message}.`, { cause: error });
  }
  if (pg?.code === "23505" && pg.message.includes("journal_entry_reverses_entry_id_key")) {
    throw new LedgerError("ENTRY_ALREADY_REVERSED", `${entry}the entry it reverses was already reversed.`, { cause: error });
  }
  if (pg?.code === "23503" && pg.message.includes("journal_entry_reverses_entry_id_fkey")) {
    throw new LedgerError("ENTRY_NOT_FOUND", `${entry}the entry it reverses does not exist.`, { cause: error });
  }
  if (pg?.code === "23503" && pg.message.includes("posting_account_id_asset_fkey")) {
    throw new LedgerError("ACCOUNT_MISMATCH", `${entry}a posting's asset is not its account's asset.`, { cause: error });
  }
  throw error;
}
