// The browser apps (web/) are TypeScript. The installed package serves the bundles `npm run build`
// made (dist/web/bundles); inside the repository the process that serves them bundles each entry with
// esbuild in memory the first time it is asked for, so a fresh clone serves them with no build step and
// a running server always serves the source it started from. esbuild is loaded only then: it is a
// development tool, not a dependency of the package.
import { readFile } from "node:fs/promises";

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
  const prebuilt = await readPrebuilt(entry);
  return prebuilt ?? buildBundle(entry);
}

/** Where `npm run build` puts an entry's bundle, next to this module in dist/. */
export function prebuiltPath(entry: string): URL {
  return new URL(`./bundles/${entry.replace(/\.ts$/, "")}`, import.meta.url);
}

async function readPrebuilt(entry: string): Promise<Bundle | undefined> {
  const base = prebuiltPath(entry).pathname;
  try {
    const [js, css] = await Promise.all([readFile(`${base}.js`, "utf8"), readFile(`${base}.css`, "utf8").catch(() => "")]);
    return { js, css };
  } catch {
    return undefined;
  }
}

/** Bundles an entry of web/ with esbuild (a development dependency). */
export async function buildBundle(entry: string): Promise<Bundle> {
  const { build } = await import("esbuild");
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
