// Runs paychan's CLI the way an operator does: in its own process (`node --import tsx src/cli.ts`, one
// process, so its pid is the one that holds locks and dies to kill -9), configured only by the
// environment, watched through its stdout, stderr and exit code.
import { spawn, type ChildProcess } from "node:child_process";
import { parseEther, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { configSchema } from "../../src/config.js";
import type { EscrowFixture } from "../helpers/escrow.js";

export type CliRun = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };

/** The test process's environment without any paychan variable, so that only `env` configures the CLI. */
function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = { ...process.env };
  for (const key of Object.keys(configSchema.shape)) delete base[key];
  delete base.PAYCHAN_DEBUG;
  return { ...base, ...env };
}

export class Cli {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<CliRun>;
  private readonly listeners = new Set<() => void>();

  constructor(args: string[], env: Record<string, string>) {
    this.child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], { env: cleanEnv(env), stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      this.stdout += chunk;
      this.notify();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
      this.notify();
    });
    this.exited = new Promise((resolve) => {
      this.child.on("close", (code, signal) => {
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
        this.notify();
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get output(): string {
    return this.stdout + this.stderr;
  }

  /** Resolves with the first match of `pattern` in stdout + stderr; fails if the process ends first. */
  waitFor(pattern: RegExp, what = String(pattern)): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.output.match(pattern);
        if (match) {
          this.listeners.delete(check);
          resolve(match);
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          this.listeners.delete(check);
          reject(new Error(`paychan ended (${this.child.exitCode ?? this.child.signalCode}) before printing ${what}:\n${this.output}`));
        }
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Sends `signal` and waits for the exit. */
  async stop(signal: NodeJS.Signals = "SIGINT"): Promise<CliRun> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/** Runs one command to its end. */
export function runCli(args: string[], env: Record<string, string>): Promise<CliRun> {
  return new Cli(args, env).exited;
}

/** A fresh key with 10 ETH from the fixture's deployer; tests need the key itself to hand to the CLI. */
export async function fundedKey(chain: EscrowFixture): Promise<{ key: Hex; account: PrivateKeyAccount }> {
  const key = generatePrivateKey();
  const account = privateKeyToAccount(key);
  await chain.deployer.sendTransaction({ to: account.address, value: parseEther("10") });
  return { key, account };
}
