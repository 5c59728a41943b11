// Log lines must never hold up requests: a gateway's stdout is usually a pipe to a log shipper, and
// when that reader stalls, the pipe fills. A process that keeps logging into a pipe nobody reads must
// keep running its event loop, and every line must still arrive once the reader comes back.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { expect } from "chai";

const LINES = 20_000; // ~5 MB of log lines, far more than a pipe's 64 KiB buffer

const CHILD = `
import { createLogger } from "./src/ops/logger.ts";
const log = createLogger({ format: "json" });
for (let i = 0; i < ${LINES}; i++) log.info({ i, channel: "0x" + "ab".repeat(32), amount: "1000000000" }, "payment accepted");
setTimeout(() => {
  process.stderr.write("event loop turned\\n");
  process.stdin.once("data", () => process.exit(0));
}, 0);
`;

describe("log lines written to a pipe nobody reads", () => {
  it("do not stop the event loop, and all arrive once the reader comes back", async function () {
    this.timeout(60_000);
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", CHILD], { stdio: ["pipe", "pipe", "pipe"] });
    try {
      const stderr = createInterface({ input: child.stderr! });
      const turned = new Promise<string>((resolve) => stderr.on("line", resolve));
      const stalled = new Promise<string>((resolve) => setTimeout(() => resolve("stalled"), 20_000));
      // stdout is not read yet: the pipe fills after a few hundred lines.
      expect(await Promise.race([turned, stalled])).to.equal("event loop turned");

      let lines = 0;
      const stdout = createInterface({ input: child.stdout! });
      stdout.on("line", (line) => {
        if (JSON.parse(line).msg === "payment accepted") lines++;
      });
      child.stdin!.write("exit\n");
      await once(stdout, "close");
      expect(lines).to.equal(LINES);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
