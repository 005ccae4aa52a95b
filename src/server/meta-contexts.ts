// Meta context queries (proto.md "Metadata querying"). Every export offers base:allocation; an
// export whose device reports mapping types also offers iomapd:mapping (docs/CONTEXTS.md), so the
// answer depends on the export. A query in a namespace we do not know is ignored, never an error.
import { BASE_ALLOCATION, IOMAPD_MAPPING } from '../protocol/constants.ts';
import type { BlockDevice } from '../engine/block-device.ts';

/** The contexts an export's device can answer, in the order LIST reports them. */
export function contextsFor(device: BlockDevice): string[] {
  return typeof device.mappingStatus === 'function' ? [BASE_ALLOCATION, IOMAPD_MAPPING] : [BASE_ALLOCATION];
}

/** Contexts a LIST query names: no queries lists everything; "ns:" is a wildcard in LIST. */
export function listContexts(queries: readonly string[], supported: readonly string[]): string[] {
  if (queries.length === 0) return [...supported];
  const found = new Set<string>();
  for (const q of queries) {
    for (const name of supported) {
      const namespace = name.slice(0, name.indexOf(':') + 1);
      if (q === name || q === namespace) found.add(name);
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
