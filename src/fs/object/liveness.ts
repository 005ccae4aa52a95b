// Which physical blocks hold data someone can read: those a volume (snapshots and clones
// included) maps as MAPPED. Only their bytes must survive compaction; every other index entry is
// garbage (a freed, trimmed or unwritten block).
import { ExtentKind } from '../extent.ts';
import type { Metadata } from '../state.ts';

export function liveBlocks(meta: Metadata): Set<number> {
  const live = new Set<number>();
  for (const v of meta.volumes.values()) {
    for (const e of v.map.entries()) {
      if (e.v.kind !== ExtentKind.MAPPED) continue;
      for (let b = e.v.phys; b < e.v.phys + e.v.len; b++) live.add(b);
    }
  }
  return live;
}
