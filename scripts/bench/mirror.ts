// Escrow events mirrored into the ledger per second, through the chain mirror's real code
// (mirrorBlocks: one transaction per range with the cursor), on a fresh database of the machine's
// Postgres and then on an in-memory PGlite. The events are synthetic — opens, top-ups and claims of
// our payee's channels, in ranges as the watcher reads them — so what is measured is the mirror's
// writes, not the node's eth_getLogs.
//   npm run bench:mirror            (env: EVENTS, default 100000; PER_RANGE, events per range, default 2000)
import { randomBytes } from "node:crypto";
import { getAddress, toHex, zeroAddress, type Address, type Hex } from "viem";
import { mirrorBlocks, type ChainLog, type Cursor, type MirrorScope } from "../../src/ledger/chainMirror.js";
import { openDatabase, type Database } from "../../src/ledger/db.js";
import { trialBalance } from "../../src/ledger/postings.js";
import { channelId } from "../../src/protocol/Channel.js";
import { freshPostgres } from "./freshPostgres.js";

const EVENTS = Number(process.env.EVENTS ?? 100_000);
const PER_RANGE = Number(process.env.PER_RANGE ?? 2_000);
const scope: MirrorScope = {
  chainId: 31337,
  escrow: getAddress("0x5fbdb2315678afecb367f032d93f642f64180aa3"),
  payee: getAddress("0x70997970c51812dc3a010c7d01b50e0d17dc79c8"),
};

/** A quarter of the events open channels, a quarter top them up, half claim from them. */
function events(): ChainLog[] {
  const channels = Math.ceil(EVENTS / 4);
  const logs: ChainLog[] = [];
  const configs: { id: Hex; payer: Address; signer: Address; salt: Hex }[] = [];
  for (let i = 0; i < channels; i++) {
    const config = { payer: getAddress(toHex(randomBytes(20))), payee: scope.payee, token: zeroAddress, signer: getAddress(toHex(randomBytes(20))), withdrawDelay: 86_400, salt: toHex(randomBytes(32)) };
    configs.push({ id: channelId(config, scope), ...config });
  }
  let block = 1n;
  let index = 0;
  const at = () => ({ blockNumber: block, blockHash: toHex(block, { size: 32 }), txHash: toHex(randomBytes(32)), logIndex: index++ });
  for (const c of configs) logs.push({ name: "ChannelOpened", channelId: c.id, payer: c.payer, payee: scope.payee, token: zeroAddress, signer: c.signer, withdrawDelay: 86_400, salt: c.salt, deposit: 1_000_000n, ...at() });
  for (const c of configs) logs.push({ name: "Deposited", channelId: c.id, amount: 500_000n, newDeposit: 1_500_000n, ...at() });
  for (const c of configs) logs.push({ name: "Claimed", channelId: c.id, payee: scope.payee, amount: 100_000n, totalClaimed: 100_000n, ...at() });
  for (const c of configs) logs.push({ name: "Claimed", channelId: c.id, payee: scope.payee, amount: 100_000n, totalClaimed: 200_000n, ...at() });
  // Spread over blocks, PER_RANGE events to a range.
  return logs.slice(0, EVENTS).map((log, i) => ({ ...log, blockNumber: BigInt(Math.floor(i / PER_RANGE) + 1), blockHash: toHex(BigInt(Math.floor(i / PER_RANGE) + 1), { size: 32 }) }));
}

async function bench(db: Database, logs: ChainLog[]) {
  let cursor: Cursor = { blockNumber: 0n, blockHash: null };
  const started = performance.now();
  let mirrored = 0;
  for (let from = 0; from < logs.length; from += PER_RANGE) {
    const range = logs.slice(from, from + PER_RANGE);
    const to = { blockNumber: range.at(-1)!.blockNumber, blockHash: range.at(-1)!.blockHash };
    mirrored += (await mirrorBlocks(db.prisma, scope, cursor, to, range)).mirrored;
    cursor = to;
  }
  const seconds = (performance.now() - started) / 1000;
  for (const [asset, t] of await trialBalance(db.prisma)) if (t.debits !== t.credits) throw new Error(`${asset} does not balance`);
  console.log(`${db.kind}: ${mirrored} events mirrored in ${seconds.toFixed(1)} s = ${Math.round(mirrored / seconds)} events/s (${PER_RANGE} a range, ledger balanced)`);
}

const logs = events();
console.log(`${logs.length} synthetic escrow events (opens, top-ups, claims), ${PER_RANGE} per range`);
const postgres = await freshPostgres();
try {
  const db = await openDatabase({ url: postgres.url });
  try {
    await bench(db, logs);
  } finally {
    await db.close();
  }
} finally {
  await postgres.drop();
}
const pglite = await openDatabase();
try {
  await bench(pglite, logs);
} finally {
  await pglite.close();
}
