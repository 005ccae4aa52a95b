// A volume's history as block status (docs/BACKUP.md): the qemu:dirty-bitmap:FROM contexts (bit 0
// set where the volume may differ from snapshot FROM, from src/fs/diff.ts) and qemu:allocation-
// depth (0 hole; 1 the block is this volume's own; k + 1 the same block, at the same place, is
// also held by the k nearest volumes of its origin chain, so its data came through them).
//
// Why "same block at the same place" means "came through the origin": blocks are shared only by
// snapshot and clone, which copy the source's map position for position, and a shared block is
// never written in place. So when a volume and its origin map a position to one block, the data
// was there when the volume was made and neither has changed it since. Without a per-extent
// generation the metadata cannot say more: a block only this volume holds was written here, or
// (for a snapshot) its origin has moved on since, which makes this volume the layer providing it.
import { diffStream, historyPoints } from '../fs/diff.ts';
import type { Mapper } from '../fs/mapper.ts';
import { type ExtentInfo, MappingType } from '../fs/mapping.ts';
import type { Volumes } from '../fs/volumes.ts';
import type { StatusRun, VolumeHistory } from './block-device.ts';

/**
 * Caps one answer (the client asks again for the rest). Lower than block-status.ts's: each run
 * here costs walks of two or more maps, and qemu asks with REQ_ONE, one run per request.
 */
const MAX_RUNS = 4096;

export class HistoryStatus implements VolumeHistory {
  private readonly mapper: Mapper;
  private readonly volumes: Volumes;
  private readonly name: string;

  constructor(mapper: Mapper, volumes: Volumes, name: string) {
    this.mapper = mapper;
    this.volumes = volumes;
    this.name = name;
  }

  /** The snapshots this volume can report changes since, oldest first (O(volumes)). */
  points(): string[] {
    return historyPoints(this.volumes, this.name).map((f) => f.name);
  }

  async dirty(from: string, offset: number, length: number): Promise<StatusRun[]> {
    const end = offset + length;
    const ranges = await diffStream({ mapper: this.mapper, volumes: this.volumes }, from, this.name, offset, end);
    const out: StatusRun[] = [];
    let pos = offset;
    // One synchronous loop over the lazy walk: a consistent view, and it stops at the cap.
    for (const r of ranges) {
      const s = Math.max(r.offset, offset);
      const e = Math.min(r.offset + r.length, end);
      if (e <= s) continue;
      if (s > pos) push(out, s - pos, 0);
      push(out, e - s, 1);
      pos = e;
      if (out.length >= MAX_RUNS) return out.slice(0, MAX_RUNS); // a prefix is a valid answer
    }
    if (pos < end) push(out, end - pos, 0);
    return out;
  }

  async depth(offset: number, length: number): Promise<StatusRun[]> {
    const chain = this.volumes.lineage(this.name);
    const own = keyRuns(this.mapper, this.name, offset, offset + length, MAX_RUNS);
    // Answer only as far as the capped walk reached; the origins are walked over that much.
    const end = Math.min(offset + length, own.length > 0 ? own[own.length - 1]!.offset + own[own.length - 1]!.length : offset);
    let runs: Array<{ offset: number; length: number; key: number | null; depth: number }> = own.map((r) => ({ ...r, depth: r.key === null ? 0 : 1 }));
    for (let k = 1; k < chain.length; k++) {
      if (!runs.some((r) => r.depth === k)) break;
      const origin = keyRuns(this.mapper, chain[k]!.name, offset, Math.min(end, chain[k]!.size), Infinity);
      runs = deepen(runs, origin, k);
    }
    const out: StatusRun[] = [];
    for (const r of runs) {
      const s = Math.max(r.offset, offset);
      const e = Math.min(r.offset + r.length, end);
      if (e > s) push(out, e - s, r.depth);
      if (out.length >= MAX_RUNS) break;
    }
    return out;
  }
}

function push(out: StatusRun[], length: number, flags: number): void {
  const last = out[out.length - 1];
  if (last && last.flags === flags) out[out.length - 1] = { length: last.length + length, flags };
  else out.push({ length, flags });
}

/** Which block a piece maps each position to: null for a hole, else kind and displacement. */
function blockKey(e: ExtentInfo): number | null {
  if (e.type === MappingType.HOLE) return null;
  if (e.type === MappingType.INLINE) return -1; // inline data is never shared
  return (e.physical - e.offset) * 4 + (e.type === MappingType.MAPPED ? 2 : 3);
}

function keyRuns(mapper: Mapper, name: string, start: number, end: number, max: number): Array<{ offset: number; length: number; key: number | null }> {
  const out: Array<{ offset: number; length: number; key: number | null }> = [];
  if (end <= start) return out;
  for (const e of mapper.extents(name, start, end)) {
    out.push({ offset: e.offset, length: e.length, key: blockKey(e) });
    if (out.length >= max) break;
  }
  return out;
}

/** Runs at depth k whose block the origin (the k-th in the chain) holds at the same place go to k + 1. */
function deepen(
  runs: Array<{ offset: number; length: number; key: number | null; depth: number }>,
  origin: Array<{ offset: number; length: number; key: number | null }>,
  k: number,
): Array<{ offset: number; length: number; key: number | null; depth: number }> {
  const out: typeof runs = [];
  let j = 0;
  for (const r of runs) {
    if (r.depth !== k || r.key === -1) {
      out.push(r);
      continue;
    }
    let pos = r.offset;
    const end = r.offset + r.length;
    while (pos < end) {
      while (j < origin.length && origin[j]!.offset + origin[j]!.length <= pos) j++;
      const o = origin[j];
      if (!o || o.offset > pos) {
        const stop = o ? Math.min(end, o.offset) : end;
        out.push({ offset: pos, length: stop - pos, key: r.key, depth: k });
        pos = stop;
        continue;
      }
      const stop = Math.min(end, o.offset + o.length);
      out.push({ offset: pos, length: stop - pos, key: r.key, depth: o.key === r.key ? k + 1 : k });
      pos = stop;
    }
  }
  return out;
}
