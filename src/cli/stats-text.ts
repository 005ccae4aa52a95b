// `iomapd stats` as text: one block per export, one counter per line.
import type { DaemonStats } from '../control/admin.ts';
import type { VolumeCounters } from '../engine/counters.ts';

const LABELS: ReadonlyArray<readonly [keyof VolumeCounters, string]> = [
  ['clientBytesRead', 'bytes read by clients'],
  ['clientBytesWritten', 'bytes written by clients'],
  ['zeroFilledBytes', 'bytes zero-filled (no backing read)'],
  ['bytesZeroed', 'bytes zeroed (WRITE_ZEROES, TRIM)'],
  ['padBytes', 'zero pad bytes written'],
  ['copyUpBytes', 'copy-up bytes'],
  ['imageBytesRead', 'image bytes read'],
  ['imageBytesWritten', 'image bytes written'],
  ['fuaShortcuts', 'FUA shortcuts (data sync only)'],
  ['journalCommits', 'journal commits'],
  ['flushes', 'flushes'],
  ['cowCopies', 'copy-on-write copies'],
  ['allocationFailures', 'allocation failures'],
  ['errors', 'failed requests'],
];

export function statsText(stats: DaemonStats): string {
  const width = Math.max(...LABELS.map(([, label]) => label.length));
  const lines = [`daemon pid ${stats.pid}; image: ${stats.store.freeBlocks} of ${stats.store.dataBlocks} blocks free, ${stats.store.uncommittedOps} uncommitted ops`];
  for (const e of stats.exports) {
    lines.push(`export ${e.name}: ${e.size} bytes${e.readOnly ? ', read-only' : ''}, ${e.connections} connection(s)`);
    for (const [key, label] of LABELS) lines.push(`  ${label.padEnd(width)}  ${e.counters[key]}`);
  }
  return `${lines.join('\n')}\n`;
}
