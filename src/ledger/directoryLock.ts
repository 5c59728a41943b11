// An exclusive lock on a PGlite data directory. PGlite is Postgres in one process: a second process
// opening the same directory does not wait or fail, it silently corrupts the first one's writes. So
// whoever opens the directory first writes `<dir>.lock` (created atomically, O_EXCL) naming itself —
// pid, host, command, start time — and every later opener gets an error naming the directory and
// that holder. The lock file sits next to the directory, not in it: PGlite refuses to initialize a
// non-empty directory.
//
// A holder killed with -9 leaves its file behind; a lock whose pid is not running on this host (or
// runs another program since: the kernel's start time of the pid differs) is stale and taken over.
import { closeSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";

export type LockHolder = { pid: number; host: string; command: string; startedAt: string; processStart?: string };

export class DirectoryLockedError extends Error {
  constructor(
    readonly directory: string,
    readonly holder: LockHolder | undefined,
    readonly lockFile: string,
  ) {
    const who = holder
      ? `process ${holder.pid} on ${holder.host} (${holder.command}), since ${holder.startedAt}`
      : `another process (its lock file ${lockFile} could not be read)`;
    super(
      `The database directory ${directory} is in use by ${who}. PGlite on disk serves one process at a time: ` +
        `stop that process, or use Postgres (DATABASE_URL=postgres://…) to run several paychan processes on one database. ` +
        `If no such process exists, delete ${lockFile}.`,
    );
  }
}

export type DirectoryLock = { file: string; release(): void };

/** Takes the lock of `directory` (an absolute path) or throws DirectoryLockedError. */
export function lockDirectory(directory: string): DirectoryLock {
  const file = `${directory}.lock`;
  const me: LockHolder = {
    pid: process.pid,
    host: hostname(),
    command: process.argv.slice(1).join(" ").slice(0, 200),
    startedAt: new Date().toISOString(),
    processStart: processStartOf(process.pid),
  };
  const text = JSON.stringify(me);
  // A few rounds: each either takes the lock, finds it held, or clears one stale lock and tries again.
  for (let round = 0; round < 5; round++) {
    try {
      const fd = openSync(file, "wx", 0o644);
      try {
        writeSync(fd, text);
      } finally {
        closeSync(fd);
      }
      const release = () => {
        process.removeListener("exit", release);
        if (read(file) === text) unlinkQuietly(file);
      };
      process.on("exit", release);
      return { file, release };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const seen = read(file);
    if (seen === undefined) continue; // released in the meantime
    const holder = parse(seen);
    if (!holder || !isStale(holder)) throw new DirectoryLockedError(directory, holder, file);
    clearStale(file, seen);
  }
  throw new DirectoryLockedError(directory, parse(read(file) ?? ""), file);
}

/**
 * Removes a stale lock file only if it is still the one judged stale: it is first renamed away
 * (atomic, so one of several cleaners wins), and a fresh lock taken by someone else in between is
 * put back.
 */
function clearStale(file: string, seen: string): void {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    renameSync(file, aside);
  } catch {
    return;
  }
  if (read(aside) !== seen) {
    try {
      linkSync(aside, file);
    } catch {
      // Yet another process locked meanwhile; the one we moved lost its file, and it is still held by
      // its owner's open database. Rare enough (three processes starting at once on a stale lock).
    }
  }
  unlinkQuietly(aside);
}

function isStale(holder: LockHolder): boolean {
  if (holder.host !== hostname()) return false; // another machine's process: nothing here can tell
  if (holder.pid === process.pid) return false; // this very process opened it already
  if (!isRunning(holder.pid)) return true;
  const start = processStartOf(holder.pid);
  return holder.processStart !== undefined && start !== undefined && start !== holder.processStart;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The kernel's start time of a process (Linux: field 22 of /proc/<pid>/stat), to tell a reused pid. */
function processStartOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

function parse(text: string): LockHolder | undefined {
  try {
    const holder = JSON.parse(text) as LockHolder;
    return typeof holder.pid === "number" && typeof holder.host === "string" ? holder : undefined;
  } catch {
    return undefined;
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
