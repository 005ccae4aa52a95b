// A small reader of the Prometheus text format (version 0.0.4) for tests: every sample line as
// name, labels and value; comments skipped. Strict: a line it cannot read fails the test.

export interface PromSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Scrape {
  readonly all: readonly PromSample[];
  /** Samples of `name` whose labels include every one of `match`. */
  samples(name: string, match?: Readonly<Record<string, string>>): PromSample[];
  /** The one sample of `name` with exactly the labels `labels` (undefined if absent). */
  value(name: string, labels?: Readonly<Record<string, string>>): number | undefined;
  /** The sum over samples of `name` matching `match`. */
  sum(name: string, match?: Readonly<Record<string, string>>): number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/y;

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < text.length) {
    const m = LABEL.exec(text);
    if (m === null) throw new Error(`cannot read the labels of: ${line}`);
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  // prom-client writes NaN as "Nan"; Prometheus reads either.
  if (text.toLowerCase() === 'nan') return NaN;
  const v = Number(text);
  if (Number.isNaN(v)) throw new Error(`cannot read the value of: ${line}`);
  return v;
}

export function parseScrape(body: string): Scrape {
  const all: PromSample[] = [];
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    all.push({ name: m[1]!, labels: parseLabels(m[2] ?? '', line), value: parseValue(m[3]!, line) });
  }
  const matches = (s: PromSample, match: Readonly<Record<string, string>>) => Object.entries(match).every(([k, v]) => s.labels[k] === v);
  const samples = (name: string, match: Readonly<Record<string, string>> = {}) => all.filter((s) => s.name === name && matches(s, match));
  return {
    all,
    samples,
    value(name, labels = {}) {
      const found = samples(name, labels).filter((s) => Object.keys(s.labels).length === Object.keys(labels).length);
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} with labels ${JSON.stringify(labels)}`);
      return found[0]?.value;
    },
    sum: (name, match = {}) => samples(name, match).reduce((a, s) => a + s.value, 0),
  };
}
