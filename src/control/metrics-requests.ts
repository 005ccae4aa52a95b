// The request side of /metrics, per export: answered requests by command and result, their
// latency, client bytes, requests in flight and connections. Read at scrape time from the
// server's per-export RequestMetrics (one record() per request on the hot path) and its
// connection set.
import type { Registry } from 'prom-client';
import type { ExportRegistry } from '../server/export-registry.ts';
import type { NbdServer } from '../server/nbd-server.ts';
import { LATENCY_BUCKETS, METRIC_COMMANDS, METRIC_RESULTS, type RequestMetricsTable } from '../server/request-metrics.ts';
import { scrapedCounter, scrapedGauge, scrapedHistogram, type HistogramSeries, type Sample } from './metrics-family.ts';

export interface RequestMetricSources {
  readonly server: NbdServer;
  readonly registry: ExportRegistry;
  readonly table: RequestMetricsTable;
}

/** Every export served now, and every one that was served and counted something. */
function exportNames(src: RequestMetricSources): string[] {
  const names = new Set(src.registry.list().map((e) => e.name));
  for (const [name] of src.table.entries()) names.add(name);
  return [...names];
}

export function registerRequestMetrics(registry: Registry, src: RequestMetricSources): void {
  scrapedCounter(registry, 'iomapd_requests_total', 'NBD requests answered, by export, command and result (ok or the NBD errno name)', () => {
    const out: Sample[] = [];
    for (const [name, m] of src.table.entries()) {
      METRIC_COMMANDS.forEach((command, c) => {
        METRIC_RESULTS.forEach((result, r) => {
          const value = m.count(c, r);
          if (value > 0) out.push({ labels: { export: name, command, result }, value });
        });
      });
    }
    return out;
  });
  scrapedHistogram(
    registry,
    'iomapd_request_duration_seconds',
    'Time from a request read whole to its reply queued, by export and command',
    () => {
      const out: HistogramSeries[] = [];
      for (const [name, m] of src.table.entries()) {
        METRIC_COMMANDS.forEach((command, c) => {
          const buckets = m.latencyBuckets(c);
          if (buckets.some((n) => n > 0)) out.push({ labels: { export: name, command }, bounds: LATENCY_BUCKETS, buckets, sum: m.latencySum[c]! });
        });
      }
      return out;
    },
  );
  const perExport = (read: (name: string) => number) => (): Sample[] => exportNames(src).map((name) => ({ labels: { export: name }, value: read(name) }));
  const counted = (name: string) => src.table.forExport(name);
  scrapedCounter(registry, 'iomapd_read_bytes_total', 'Payload bytes of successful NBD READs', perExport((n) => counted(n).bytesRead));
  scrapedCounter(registry, 'iomapd_written_bytes_total', 'Payload bytes of successful NBD WRITEs', perExport((n) => counted(n).bytesWritten));
  scrapedGauge(registry, 'iomapd_requests_in_flight', 'Requests started and not yet answered', perExport((n) => src.server.inFlightTo(n)));
  scrapedGauge(registry, 'iomapd_connections', 'NBD connections in transmission with the export', perExport((n) => src.server.connectionsNamed(n)));
  scrapedGauge(registry, 'iomapd_connections_open', 'Open NBD connections, negotiating ones included', () => [{ labels: {}, value: src.server.connectionCount }]);
  scrapedCounter(registry, 'iomapd_connections_refused_total', 'Connections closed at accept because --max-connections were open', () => [
    { labels: {}, value: src.server.refusedConnections },
  ]);
}
