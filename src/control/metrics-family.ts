// A Prometheus metric family whose samples are read at scrape time from counters the daemon
// already keeps, instead of being pushed into prom-client on the hot path. prom-client's own
// Counter and Histogram only count what is pushed into them (a histogram cannot be set), so
// these families hand prom-client's Registry the finished samples through the shape its
// registerMetric() reads: name, help, type and get().
import type { Metric, Registry } from 'prom-client';

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  readonly labels: Labels;
  readonly value: number;
}

/** One histogram series: bucket counts (not cumulative, the last one +Inf), their bounds, the sum. */
export interface HistogramSeries {
  readonly labels: Labels;
  readonly bounds: readonly number[];
  readonly buckets: ArrayLike<number>;
  readonly sum: number;
}

interface SampleValue {
  readonly labels: Labels;
  readonly value: number;
  readonly metricName?: string;
}

type Kind = 'counter' | 'gauge' | 'histogram';

class ScrapedFamily {
  readonly name: string;
  readonly help: string;
  readonly type: Kind;
  readonly aggregator = 'sum';
  private readonly read: () => SampleValue[];

  constructor(name: string, help: string, type: Kind, read: () => SampleValue[]) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.read = read;
  }

  async get(): Promise<{ name: string; help: string; type: Kind; aggregator: string; values: SampleValue[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.read() };
  }

  /** Scraped values are the daemon's own; there is nothing here to reset. */
  reset(): void {}
}

function register(registry: Registry, family: ScrapedFamily): void {
  // registerMetric() keeps the object and calls get() at each scrape; it types the argument as
  // its own Metric class, whose push-side methods a scraped family has no use for.
  registry.registerMetric(family as unknown as Metric);
}

export function scrapedCounter(registry: Registry, name: string, help: string, read: () => Sample[]): void {
  if (!name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`);
  register(registry, new ScrapedFamily(name, help, 'counter', read));
}

export function scrapedGauge(registry: Registry, name: string, help: string, read: () => Sample[]): void {
  register(registry, new ScrapedFamily(name, help, 'gauge', read));
}

export function scrapedHistogram(registry: Registry, name: string, help: string, read: () => HistogramSeries[]): void {
  register(
    registry,
    new ScrapedFamily(name, help, 'histogram', () => {
      const out: SampleValue[] = [];
      for (const s of read()) {
        let cumulative = 0;
        for (let i = 0; i < s.buckets.length; i++) {
          cumulative += s.buckets[i]!;
          const le = i < s.bounds.length ? String(s.bounds[i]) : '+Inf';
          out.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le }, value: cumulative });
        }
        out.push({ metricName: `${name}_sum`, labels: s.labels, value: s.sum });
        out.push({ metricName: `${name}_count`, labels: s.labels, value: cumulative });
      }
      return out;
    }),
  );
}
