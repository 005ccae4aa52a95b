// Which other volumes (snapshots, clones) share a volume's blocks, and where: the volume's SHARED
// extents, matched by physical range against every other volume's map, turned back into the
// volume's logical offsets. Built from the same map listing `iomapd map` prints.
import type { ExtentInfo } from '../../fs/mapping.ts';

export interface OtherVolume {
  readonly name: string;
  /** snapshot, clone (a writable volume that shares), or volume. */
  readonly kind: string;
  readonly extents: readonly ExtentInfo[];
}

export interface Sharer {
  readonly name: string;
  readonly kind: string;
  /** Logical ranges of the pictured volume whose blocks this one also references: [offset, length]. */
  readonly ranges: Array<[number, number]>;
  readonly bytes: number;
}

interface PhysRun {
  readonly start: number;
  readonly end: number;
}

/** Physical runs of a map, sorted (mapped and unwritten extents: the ones with blocks). */
function physicalRuns(extents: readonly ExtentInfo[]): PhysRun[] {
  return extents
    .filter((e) => e.physical >= 0 && (e.type === 'mapped' || e.type === 'unwritten'))
    .map((e) => ({ start: e.physical, end: e.physical + e.length }))
    .sort((a, b) => a.start - b.start);
}

/** The first run whose end lies after `at` (binary search). */
function firstEndingAfter(runs: readonly PhysRun[], at: number): number {
  let lo = 0;
  let hi = runs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (runs[mid]!.end <= at) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The sharers of `extents` among `others`, biggest first; volumes that share nothing are left out. */
export function sharersOf(extents: readonly ExtentInfo[], others: readonly OtherVolume[]): Sharer[] {
  const shared = extents.filter((e) => e.shared && e.physical >= 0);
  if (shared.length === 0) return [];
  const out: Sharer[] = [];
  for (const other of others) {
    const runs = physicalRuns(other.extents);
    const ranges: Array<[number, number]> = [];
    let bytes = 0;
    for (const e of shared) {
      const pEnd = e.physical + e.length;
      for (let i = firstEndingAfter(runs, e.physical); i < runs.length && runs[i]!.start < pEnd; i++) {
        const a = Math.max(runs[i]!.start, e.physical);
        const b = Math.min(runs[i]!.end, pEnd);
        ranges.push([e.offset + (a - e.physical), b - a]);
        bytes += b - a;
      }
    }
    if (bytes > 0) out.push({ name: other.name, kind: other.kind, ranges, bytes });
  }
  return out.sort((a, b) => b.bytes - a.bytes || a.name.localeCompare(b.name));
}
