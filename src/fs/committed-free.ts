// The free-space list a checkpoint records: free space plus the blocks that are free in the
// committed view but not in the allocator's (reserved-and-unlinked, pending free, the previous
// checkpoint's blocks). Sorted and merged.
import type { RangeMap } from './range-map.ts';
import type { FreeRun, Run } from './extent.ts';

export function committedFree(free: RangeMap<FreeRun>, extra: Run[]): Run[] {
  const more = extra.filter((r) => r.len > 0).sort((a, b) => a.start - b.start);
  const out: Run[] = [];
  const push = (r: Run) => {
    const last = out[out.length - 1];
    if (last && last.start + last.len === r.start) last.len += r.len;
    else if (last && last.start + last.len > r.start) throw new Error(`free runs overlap at ${r.start}`);
    else out.push({ start: r.start, len: r.len });
  };
  let i = 0;
  for (const e of free.entries()) {
    while (i < more.length && more[i]!.start < e.start) push(more[i++]!);
    push({ start: e.start, len: e.v.len });
  }
  while (i < more.length) push(more[i++]!);
  return out;
}
