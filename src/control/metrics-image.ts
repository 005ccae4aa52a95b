// The image and backend side of /metrics, read at scrape time: the engine's per-volume counters
// (the ones `iomapd stats` prints), the store's space and journal, commit latency, and the
// inline-I/O gates of the served file.
import type { Registry } from 'prom-client';
import type { VolumeCounters } from '../engine/counters.ts';
import type { ExportRegistry } from '../server/export-registry.ts';
import { LATENCY_BUCKETS } from '../server/request-metrics.ts';
import type { InlineIoGates } from '../util/fd-io.ts';
import type { InlineIoGate } from '../util/inline-io.ts';
import { scrapedCounter, scrapedGauge, scrapedHistogram, type Sample } from './metrics-family.ts';
import type { ServedImage } from './served-image.ts';

/** Engine counters exported as `iomapd_<name>_total{export}`. */
const ENGINE_COUNTERS: ReadonlyArray<[keyof VolumeCounters, string, string]> = [
  ['journalCommits', 'journal_commits', 'Journal commits the export asked for (FLUSH and FUA writes that were not pure overwrites)'],
  ['fuaShortcuts', 'fua_shortcuts', 'FUA writes that were pure overwrites and only synced data'],
  ['cowCopies', 'cow_copies', 'Copy-on-write mappings written (one per shared piece)'],
  ['copyUpBytes', 'cow_copy_up_bytes', 'Old bytes copied up into copy-on-write blocks'],
  ['allocationFailures', 'allocation_failures', 'Requests that failed for lack of space'],
  ['zeroFilledBytes', 'zero_filled_read_bytes', 'Read bytes served as zeros from holes and unwritten space'],
  ['bytesZeroed', 'zeroed_bytes', 'Bytes zeroed by WRITE_ZEROES and TRIM'],
  ['padBytes', 'zero_pad_bytes', 'Zero pads written around sub-block writes into unwritten space'],
  ['imageBytesRead', 'image_read_bytes', "Bytes read from the image's data area"],
  ['imageBytesWritten', 'image_written_bytes', "Bytes written to the image's data area"],
];

export function registerImageMetrics(registry: Registry, image: ServedImage, exports: ExportRegistry): void {
  // Volumes exported at any time keep their engine counters, so a removed export's stay visible.
  const seen = new Set<string>();
  const volumes = (): string[] => {
    for (const e of exports.list()) seen.add(e.name);
    return [...seen];
  };
  for (const [key, name, help] of ENGINE_COUNTERS) {
    scrapedCounter(registry, `iomapd_${name}_total`, help, () => volumes().map((v) => ({ labels: { export: v }, value: image.engine.counters(v)[key] })));
  }
  const store = (read: (s: ReturnType<ServedImage['stats']>) => number) => (): Sample[] => [{ labels: {}, value: read(image.stats()) }];
  scrapedGauge(registry, 'iomapd_space_capacity_bytes', "The image's data area", store((s) => s.dataBlocks * s.blockSize));
  scrapedGauge(registry, 'iomapd_space_used_bytes', 'Data area blocks in use (volumes, snapshots, clones, checkpoints)', store((s) => (s.dataBlocks - s.freeBlocks) * s.blockSize));
  scrapedGauge(registry, 'iomapd_space_free_bytes', 'Free data area blocks (blocks freed and not yet committed excluded)', store((s) => s.freeBlocks * s.blockSize));
  scrapedGauge(registry, 'iomapd_space_shared_bytes', 'Data area bytes referenced by more than one volume, snapshot or clone', () => [{ labels: {}, value: image.sharedBytes() }]);
  scrapedGauge(registry, 'iomapd_journal_size_bytes', 'The journal ring', store((s) => s.journalBytes));
  scrapedGauge(registry, 'iomapd_journal_used_bytes', 'Journal ring bytes holding records a checkpoint has not yet covered', store((s) => s.journalUsed));
  scrapedGauge(registry, 'iomapd_uncommitted_ops', 'Metadata changes applied and not yet committed', store((s) => s.uncommittedOps));
  scrapedGauge(registry, 'iomapd_volumes', 'Volumes, snapshots and clones in the image', store((s) => s.volumes));
  // Each checkpoint advances the superblock generation by one, and nothing else does while serving.
  const startGeneration = image.stats().generation;
  scrapedCounter(registry, 'iomapd_journal_checkpoints_total', 'Checkpoints written since the daemon started', store((s) => s.generation - startGeneration));
  const metered = image.metered;
  if (metered !== null) {
    scrapedHistogram(registry, 'iomapd_commit_duration_seconds', 'Journal commits as the engine waits for them (FLUSH, FUA), group commits shared', () => [
      { labels: {}, bounds: LATENCY_BUCKETS, buckets: metered.commits.buckets, sum: metered.commits.sum },
    ]);
    scrapedHistogram(registry, 'iomapd_data_sync_duration_seconds', 'Data-only syncs of FUA writes that were pure overwrites', () => [
      { labels: {}, bounds: LATENCY_BUCKETS, buckets: metered.dataSyncs.buckets, sum: metered.dataSyncs.sum },
    ]);
  }
}

/**
 * The inline-I/O gates of the served file (image or raw file): calls run on the event loop or
 * sent to the thread pool, slow calls, and back-offs by cause. None with O_DIRECT or memory.
 */
export function registerGateMetrics(registry: Registry, gates: InlineIoGates): void {
  const both = (read: (g: InlineIoGate) => Array<[Record<string, string>, number]>) => (): Sample[] =>
    (
      [
        ['read', gates.reads],
        ['write', gates.writes],
      ] as const
    ).flatMap(([direction, g]) => read(g).map(([labels, value]) => ({ labels: { direction, ...labels }, value })));
  scrapedCounter(
    registry,
    'iomapd_inline_io_calls_total',
    'File reads and writes of the served file, by where they ran (inline on the event loop, or pool)',
    both((g) => [
      [{ path: 'inline' }, g.inline],
      [{ path: 'pool' }, g.pooled],
    ]),
  );
  scrapedCounter(registry, 'iomapd_inline_io_slow_calls_total', 'Inline calls slower than a page-cache hit', both((g) => [[{}, g.slow]]));
  scrapedCounter(
    registry,
    'iomapd_inline_io_backoffs_total',
    'Times the gate sent calls to the thread pool for a while, by cause',
    both((g) => [
      [{ reason: 'cache_miss' }, g.misses],
      [{ reason: 'costly' }, g.costly],
    ]),
  );
}
