// Meta context queries (proto.md "Metadata querying"). iomapd offers base:allocation; a query in
// a namespace we do not know is ignored, never an error.
import { BASE_ALLOCATION } from '../protocol/constants.ts';

export const SUPPORTED_CONTEXTS: readonly string[] = [BASE_ALLOCATION];

/** Contexts a LIST query names: no queries lists everything; "base:" is a wildcard in LIST. */
export function listContexts(queries: readonly string[]): string[] {
  if (queries.length === 0) return [...SUPPORTED_CONTEXTS];
  const found = new Set<string>();
  for (const q of queries) {
    for (const name of SUPPORTED_CONTEXTS) {
      const namespace = name.slice(0, name.indexOf(':') + 1);
      if (q === name || q === namespace) found.add(name);
    }
  }
  return [...found];
}

/** Contexts a SET query selects: exact names only ("base:" selects nothing in SET). */
export function selectContexts(queries: readonly string[]): string[] {
  const found = new Set<string>();
  for (const q of queries) if (SUPPORTED_CONTEXTS.includes(q)) found.add(q);
  return [...found];
}
