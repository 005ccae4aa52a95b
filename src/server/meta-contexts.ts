// Meta context queries (proto.md "Metadata querying"). Every export offers base:allocation; an
// export whose device reports mapping types also offers iomapd:mapping (docs/CONTEXTS.md), so the
// answer depends on the export. A query in a namespace we do not know is ignored, never an error.
import { BASE_ALLOCATION, IOMAPD_MAPPING } from '../protocol/constants.ts';
import type { BlockDevice } from '../engine/block-device.ts';
import { backupContexts } from './backup-contexts.ts';

/**
 * The contexts an export's device can answer, in the order LIST reports them; the qemu: ones of
 * an image volume (backup-contexts.ts), bitmaps narrowed to `onlyBitmap` when given.
 */
export function contextsFor(device: BlockDevice, onlyBitmap?: string): string[] {
  const own = typeof device.mappingStatus === 'function' ? [BASE_ALLOCATION, IOMAPD_MAPPING] : [BASE_ALLOCATION];
  return [...own, ...backupContexts(device, onlyBitmap)];
}

/**
 * Contexts a LIST query names: no queries lists everything; a query ending in ":" is a wildcard in
 * LIST ("ns:" for a namespace, and qemu's "qemu:dirty-bitmap:" for every bitmap).
 */
export function listContexts(queries: readonly string[], supported: readonly string[]): string[] {
  if (queries.length === 0) return [...supported];
  const found = new Set<string>();
  for (const q of queries) {
    for (const name of supported) {
      if (q === name || (q.endsWith(':') && name.startsWith(q))) found.add(name);
    }
  }
  return [...found];
}

/** Contexts a SET query selects: exact names only ("ns:" selects nothing in SET). */
export function selectContexts(queries: readonly string[], supported: readonly string[]): string[] {
  const found = new Set<string>();
  for (const q of queries) if (supported.includes(q)) found.add(q);
  return [...found];
}
