// A strict reader of the Prometheus text exposition format (version 0.0.4), for tests that scrape
// /metrics: it refuses what Prometheus would refuse (a sample outside its declared family, a family
// split in two, a repeated series, a malformed name, label or value, a histogram whose buckets are
// not cumulative or do not end at +Inf = _count), and keeps values as the text said them, so that
// exact integers compare as bigints.

export type Sample = { name: string; labels: Record<string, string>; value: string };
export type Family = { name: string; type: string; help: string; samples: Sample[] };

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
// What Prometheus accepts: Go's ParseFloat, which reads NaN and Inf in any case (prom-client writes "Nan").
const VALUE = /^([+-]?(nan|inf|infinity)|[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?)$/i;

export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  const series = new Set<string>();
  let current: Family | undefined;
  const open = (name: string): Family => {
    if (current?.name === name) return current;
    if (families.has(name)) throw new Error(`family ${name} appears in two places`);
    if (current) closed.add(current.name);
    current = { name, type: "untyped", help: "", samples: [] };
    families.set(name, current);
    return current;
  };
  for (const [index, line] of text.split("\n").entries()) {
    const where = `line ${index + 1}: ${line}`;
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!match) continue;
      const [, keyword, name, rest] = match as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name, ${where}`);
      const family = open(name);
      if (family.samples.length > 0) throw new Error(`${keyword} after samples, ${where}`);
      if (keyword === "TYPE") {
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest)) throw new Error(`bad type, ${where}`);
        family.type = rest;
      } else family.help = rest;
      continue;
    }
    const sample = parseSample(line, where);
    const family = current && belongs(sample.name, current) ? current : undefined;
    if (!family) throw new Error(`sample outside its family (${current?.name ?? "none"}), ${where}`);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (series.has(key)) throw new Error(`repeated series, ${where}`);
    series.add(key);
    family.samples.push(sample);
  }
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

function belongs(name: string, family: Family): boolean {
  if (family.type === "histogram") return [`${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`].includes(name);
  if (family.type === "summary") return [family.name, `${family.name}_sum`, `${family.name}_count`].includes(name);
  return name === family.name;
}

function parseSample(line: string, where: string): Sample {
  const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
  if (!match) throw new Error(`malformed sample, ${where}`);
  const [, name, , labelText, value] = match as unknown as [string, string, string | undefined, string | undefined, string];
  if (!VALUE.test(value)) throw new Error(`malformed value, ${where}`);
  const labels: Record<string, string> = {};
  let rest = labelText ?? "";
  while (rest.length > 0) {
    const label = /^([^=]+)="((?:[^"\\]|\\.)*)"(,|$)/.exec(rest);
    if (!label || !LABEL_NAME.test(label[1]!)) throw new Error(`malformed labels, ${where}`);
    if (label[1]! in labels) throw new Error(`repeated label, ${where}`);
    labels[label[1]!] = label[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    rest = rest.slice(label[0].length);
  }
  return { name, labels, value };
}

function checkHistogram(family: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; count?: number }>();
  for (const s of family.samples) {
    const { le, ...others } = s.labels;
    const key = JSON.stringify(Object.entries(others).sort());
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (s.name.endsWith("_bucket")) {
      if (le === undefined) throw new Error(`${family.name}: a bucket without le`);
      group.buckets.push([le === "+Inf" ? Infinity : Number(le), Number(s.value)]);
    } else if (s.name.endsWith("_count")) group.count = Number(s.value);
  }
  for (const [key, { buckets, count }] of groups) {
    const last = buckets.at(-1);
    if (!last || last[0] !== Infinity || last[1] !== count) throw new Error(`${family.name}${key}: buckets must end at +Inf = _count`);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]![0] > buckets[i - 1]![0]) || buckets[i]![1] < buckets[i - 1]![1]) throw new Error(`${family.name}${key}: buckets not cumulative`);
    }
  }
}

/** The value of the one sample of `name` whose labels include `labels`; undefined if there is none. */
export function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): string | undefined {
  const familyName = [...families.keys()].find((f) => name === f || belongs(name, families.get(f)!));
  const found = (familyName ? families.get(familyName)!.samples : []).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

/** A counter's or gauge's value as a bigint (0 when the series does not exist yet). */
export function integerOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): bigint {
  const value = valueOf(families, name, labels);
  if (value === undefined) return 0n;
  if (!/^-?\d+$/.test(value)) throw new Error(`${name} ${JSON.stringify(labels)} is ${value}, not an integer`);
  return BigInt(value);
}
