import { expect } from "chai";
import { GroupCommit } from "../../src/gateway/GroupCommit.js";

/** Holds the thread for `ms`, as an in-process database (PGlite) does while it runs a statement. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe("GroupCommit", function () {
  it("decides requests that arrived while a statement held the thread together, in the next statement", async function () {
    const batches: string[][] = [];
    const arrivals: Promise<string>[] = [];
    const commits = new GroupCommit<string, string>(async (requests) => {
      batches.push(requests);
      if (batches.length === 1) {
        // Three requests reach the server while the first statement runs.
        for (const r of ["b", "c", "d"]) setTimeout(() => arrivals.push(commits.submit(r)), 0);
      }
      busy(20);
      return requests.map((r) => `${r} ok`);
    }, (r) => r);
    expect(await commits.submit("a")).to.equal("a ok");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await Promise.all(arrivals)).to.deep.equal(["b ok", "c ok", "d ok"]);
    expect(batches).to.deep.equal([["a"], ["b", "c", "d"]]);
  });

  it("puts one request per key in a statement and keeps each key's order", async function () {
    const batches: string[][] = [];
    const commits = new GroupCommit<string, string>(async (requests) => {
      batches.push(requests);
      return requests;
    }, (r) => r.split(":")[0]!);
    const results = await Promise.all(["x:1", "y:1", "x:2", "x:3", "y:2"].map((r) => commits.submit(r)));
    expect(results).to.deep.equal(["x:1", "y:1", "x:2", "x:3", "y:2"]);
    expect(batches).to.deep.equal([["x:1", "y:1"], ["x:2", "y:2"], ["x:3"]]);
  });

  it("fails every request of a statement that failed, and goes on with the next", async function () {
    let calls = 0;
    const commits = new GroupCommit<string, string>(async (requests) => {
      if (calls++ === 0) throw new Error("the database is gone");
      return requests;
    }, (r) => r);
    const failure = await commits.submit("a").then(
      () => undefined,
      (error: Error) => error.message,
    );
    expect(failure).to.equal("the database is gone");
    expect(await commits.submit("b")).to.equal("b");
  });
});
