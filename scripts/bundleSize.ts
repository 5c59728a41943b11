// The buyer's browser bundle: everything `paychan/client` exports, with the viem code it uses, bundled
// by esbuild for the browser and minified. `npm run bundle:client` prints its size, raw and gzipped;
// test/package/install.test.ts bundles the installed package the same way. Either fails if the bundle
// pulls in server-only code.
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { build, type BuildOptions } from "esbuild";

/** Packages a browser bundle must never contain: the database, the HTTP server, native code, the CLI. */
const SERVER_ONLY = /(^|\/)node_modules\/(pg|pg-[^/]+|@prisma\/[^/]+|prisma|secp256k1|@electric-sql\/pglite|pglite-prisma-adapter|express|commander)\//;

export type ClientBundle = { bytes: number; gzipped: number; inputs: string[] };

/** Bundles `entry` (a file, or source text resolved from `dir`) for the browser; throws on server-only code. */
export async function bundleForBrowser(entry: { file: string } | { contents: string }, dir: string, options: BuildOptions = {}): Promise<ClientBundle> {
  const result = await build({
    ...("file" in entry ? { entryPoints: [entry.file] } : { stdin: { contents: entry.contents, resolveDir: dir, loader: "ts" } }),
    absWorkingDir: dir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    write: false,
    metafile: true,
    logLevel: "silent",
    ...options,
  });
  const inputs = Object.keys(result.metafile!.inputs);
  const serverOnly = inputs.filter((input) => SERVER_ONLY.test(input));
  if (serverOnly.length > 0) throw new Error(`the browser bundle pulls in server-only code:\n  ${serverOnly.join("\n  ")}`);
  const code = result.outputFiles![0]!.contents;
  return { bytes: code.length, gzipped: gzipSync(code).length, inputs };
}

export const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  // In the repository "paychan/client" is the TypeScript source (package.json's "paychan-source" condition).
  const bundle = await bundleForBrowser({ contents: `export * from "paychan/client";` }, process.cwd(), { conditions: ["paychan-source"] });
  console.log(`paychan/client for the browser (esbuild, minified): ${kib(bundle.bytes)}, gzipped ${kib(bundle.gzipped)}`);
}
