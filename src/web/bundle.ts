// The browser apps (web/) are TypeScript; the process that serves them bundles each entry with esbuild
// in memory the first time it is asked for, so a fresh clone serves them with no build step and no
// output directory, and a running server always serves the source it started from.
import { build } from "esbuild";

export type Bundle = { js: string; css: string };

const cache = new Map<string, Promise<Bundle>>();

/** The bundle of `entry` (a path under web/), built once per process. */
export function bundle(entry: string): Promise<Bundle> {
  let built = cache.get(entry);
  if (!built) {
    built = buildEntry(entry);
    cache.set(entry, built);
    // A failed build is not cached: fixing the source and reloading the page retries it.
    built.catch(() => cache.delete(entry));
  }
  return built;
}

async function buildEntry(entry: string): Promise<Bundle> {
  const result = await build({
    entryPoints: [new URL(`../../web/${entry}`, import.meta.url).pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    outdir: "/",
    minify: true,
    sourcemap: false,
    legalComments: "none",
    logLevel: "silent",
    // Where package.json maps `paychan/*` to built files, this condition picks the TypeScript sources.
    conditions: ["paychan-source"],
  });
  const text = (ext: string) => result.outputFiles.find((f) => f.path.endsWith(ext))?.text ?? "";
  return { js: text(".js"), css: text(".css") };
}
