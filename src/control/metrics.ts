// /metrics for `iomapd serve --metrics`: one prom-client Registry holding the process metrics
// prom-client collects itself and iomapd's own families, which are all read at scrape time
// (metrics-requests.ts, metrics-image.ts), served by metrics-http.ts.
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { ExportRegistry } from '../server/export-registry.ts';
import type { NbdServer } from '../server/nbd-server.ts';
import type { InlineIoGates } from '../util/fd-io.ts';
import type { Logger } from '../util/log.ts';
import { MetricsServer, type MetricsAddress } from './metrics-http.ts';
import { registerGateMetrics, registerImageMetrics } from './metrics-image.ts';
import { registerRequestMetrics } from './metrics-requests.ts';
import type { ServedImage } from './served-image.ts';

export interface MetricsSources {
  readonly server: NbdServer;
  readonly exports: ExportRegistry;
  /** The served image, when serving one (engine counters, space, journal). */
  readonly image: ServedImage | null;
  /** The served file's inline-I/O gates (none with O_DIRECT or memory). */
  readonly gates: InlineIoGates | null;
}

/** Every family, in a fresh registry; the server keeps request metrics from here on. */
export function metricsRegistry(src: MetricsSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerRequestMetrics(registry, { server: src.server, registry: src.exports, table: src.server.keepRequestMetrics() });
  if (src.image !== null) registerImageMetrics(registry, src.image, src.exports);
  if (src.gates !== null) registerGateMetrics(registry, src.gates);
  return registry;
}

/** Builds the registry and listens (before the NBD listeners, so a bad address changes nothing). */
export function startMetrics(at: MetricsAddress, src: MetricsSources, log: Logger): Promise<MetricsServer> {
  return MetricsServer.listen(at, metricsRegistry(src), log);
}
