// check: verifies every invariant of an image's metadata, and with repair rebuilds what can be
// derived (reference counts and free space from the extent maps) and writes a fresh checkpoint.
//
// Invariants: volume names, sizes and inline lengths are valid; extents are sorted, non-empty,
// non-overlapping, inside their volume and the data area, and each map's counters match it; every
// tree node's count equals its holders; every used block's reference count equals the number of
// distinct leaves (plus the checkpoint and node blocks) referring to it; free space and used space
// are disjoint and together cover the data area (no leaks); the free-block counter matches.
import { type Extent, type FreeRun, type Run, type SharedRun, extentOps, freeOps, sharedOps } from './extent.ts';
import { INLINE_MAX } from './format.ts';
import { InnerNode, LeafNode, type TreeNode } from './btree.ts';
import { RangeMap } from './range-map.ts';
import { Metadata, validVolumeName } from './state.ts';

export interface CheckReport {
  /** Broken invariants; empty means clean. */
  errors: string[];
  /** Things worth knowing that are not damage (a stale superblock copy, a torn journal tail). */
  notes: string[];
  volumes: number;
  extents: number;
  usedBlocks: number;
  freeBlocks: number;
}

const MAX_LISTED = 50;

/** Progress of a check's walk: extents checked so far, of all the image's extents. */
export type CheckProgress = (done: number, total: number) => void;

/** Every tree node reachable from a volume, once, with the number of parents and roots holding it. */
export function treeCensus(meta: Metadata): Map<TreeNode, number> {
  const holders = new Map<TreeNode, number>();
  const visit = (n: TreeNode) => {
    const seen = holders.get(n);
    holders.set(n, (seen ?? 0) + 1);
    if (seen === undefined && n instanceof InnerNode) for (const c of n.children) visit(c);
  };
  for (const v of meta.volumes.values()) visit(v.map.tree.root);
  return holders;
}

/**
 * Reference segments: [start, end) with the number of references, sorted, count >= 1. A block's
 * references are the distinct extent-map leaves pointing to it (a leaf shared by several volumes
 * counts once) plus the `extra` runs (checkpoint and node blocks).
 */
function referenceSegments(leaves: readonly TreeNode[], extra: readonly Run[]): { starts: number[]; ends: number[]; counts: number[] } {
  let n = extra.length;
  for (const node of leaves) if (node instanceof LeafNode) n += node.n;
  const s = new Float64Array(n);
  const e = new Float64Array(n);
  let i = 0;
  for (const node of leaves) {
    if (!(node instanceof LeafNode)) continue;
    const d = node.data;
    for (let j = 0; j < node.n; j++) {
      // Leaf rows: start, len, phys, kind (extentOps).
      s[i] = d[j * 4 + 2]!;
      e[i] = d[j * 4 + 2]! + d[j * 4 + 1]!;
      i++;
    }
  }
  for (const r of extra) {
    s[i] = r.start;
    e[i] = r.start + r.len;
    i++;
  }
  s.sort();
  e.sort();
  const starts: number[] = [];
  const ends: number[] = [];
  const counts: number[] = [];
  let a = 0;
  let b = 0;
  let depth = 0;
  let pos = 0;
  while (a < n || b < n) {
    const next = b >= n || (a < n && s[a]! < e[b]!) ? s[a]! : e[b]!;
    if (next > pos && depth > 0) {
      const last = counts.length - 1;
      if (last >= 0 && ends[last] === pos && counts[last] === depth) ends[last] = next;
      else {
        starts.push(pos);
        ends.push(next);
        counts.push(depth);
      }
    }
    pos = next;
    while (a < n && s[a] === pos) {
      depth++;
      a++;
    }
    while (b < n && e[b] === pos) {
      depth--;
      b++;
    }
  }
  return { starts, ends, counts };
}

/** The leaves of every volume's map, a shared leaf once per volume holding it. */
function leavesPerVolume(meta: Metadata): LeafNode[] {
  const out: LeafNode[] = [];
  const walk = (n: TreeNode) => {
    if (n instanceof LeafNode) out.push(n);
    else for (const c of n.children) walk(c);
  };
  for (const v of meta.volumes.values()) walk(v.map.tree.root);
  return out;
}

/**
 * The shared-refcount table as it would be with no tree node shared: blocks referenced by several
 * volumes, counted per volume (the version-1 checkpoint format cannot record shared nodes).
 */
export function materializedShared(meta: Metadata): Array<{ start: number; len: number; count: number }> {
  const seg = referenceSegments(leavesPerVolume(meta), []);
  const out: Array<{ start: number; len: number; count: number }> = [];
  for (let i = 0; i < seg.starts.length; i++) {
    if (seg.counts[i]! >= 2) out.push({ start: seg.starts[i]!, len: seg.ends[i]! - seg.starts[i]!, count: seg.counts[i]! });
  }
  return out;
}

/**
 * `transient` lists blocks of a live store that are neither used nor free: pending frees and
 * allocations not yet linked. A freshly opened store has none.
 */
export function verifyMetadata(meta: Metadata, checkpointRuns: readonly Run[], transient: readonly Run[] = [], onProgress?: CheckProgress): CheckReport {
  const errors: string[] = [];
  const err = (m: string) => {
    if (errors.length < MAX_LISTED) errors.push(m);
    else if (errors.length === MAX_LISTED) errors.push('... (more problems not listed)');
  };
  const B = meta.blockSize;
  let extents = 0;
  let totalExtents = 0;
  if (onProgress) for (const v of meta.volumes.values()) totalExtents += v.map.size;
  for (const v of meta.volumes.values()) {
    if (!validVolumeName(v.name)) err(`volume ${v.id}: bad name ${JSON.stringify(v.name)}`);
    if (v.inline) {
      if (v.size > INLINE_MAX || v.size % 512 !== 0) err(`volume ${v.name}: bad inline size ${v.size}`);
      if (v.inline.length > v.size) err(`volume ${v.name}: inline data longer than the volume`);
      if (v.map.size > 0) err(`volume ${v.name}: inline volume has extents`);
    } else if (v.size <= 0 || v.size % B !== 0) err(`volume ${v.name}: size ${v.size} is not a multiple of the block size`);
    const blocks = v.inline ? 0 : Math.floor(v.size / B);
    let prevEnd = -1;
    let count = 0;
    let covered = 0;
    for (const x of v.map.entries()) {
      extents++;
      if (onProgress && extents % 4096 === 0) onProgress(extents, totalExtents);
      count++;
      covered += x.v.len;
      const e: Extent = x.v;
      if (e.len <= 0 || !Number.isInteger(e.len)) err(`volume ${v.name}: empty extent at block ${x.start}`);
      if (x.start < prevEnd) err(`volume ${v.name}: extents overlap at block ${x.start}`);
      if (x.start + e.len > blocks) err(`volume ${v.name}: extent at block ${x.start} runs past the volume end`);
      if (e.phys < 0 || e.phys + e.len > meta.dataBlocks) err(`volume ${v.name}: extent at block ${x.start} points outside the data area`);
      if (e.kind !== 1 && e.kind !== 2) err(`volume ${v.name}: extent at block ${x.start} has bad kind ${e.kind}`);
      prevEnd = x.start + e.len;
    }
    if (count !== v.map.size) err(`volume ${v.name}: extent counter is ${v.map.size}, the map holds ${count}`);
    if (covered !== v.map.blocks) err(`volume ${v.name}: allocated-block counter is ${v.map.blocks}, extents cover ${covered}`);
  }
  onProgress?.(extents, totalExtents);
  for (const r of checkpointRuns) {
    if (r.start + r.len > meta.dataBlocks) err('checkpoint blocks lie outside the data area');
  }
  // Tree nodes: each node's count equals its holders; a node on disk owns one block (used once).
  const census = treeCensus(meta);
  const nodeRuns: Run[] = [];
  for (const [node, holders] of census) {
    if (node.refs !== holders) err(`tree node ${node.addr >= 0 ? `at block ${node.addr}` : '(unwritten)'} has refcount ${node.refs}, but ${holders} holders`);
    if (node.addr >= 0) {
      if (!Number.isInteger(node.addr) || node.addr >= meta.dataBlocks) err(`tree node address ${node.addr} lies outside the data area`);
      else nodeRuns.push({ start: node.addr, len: 1 });
    }
  }

  const seg = referenceSegments([...census.keys()], [...checkpointRuns, ...nodeRuns]);
  let used = 0;
  for (let i = 0; i < seg.starts.length; i++) {
    const a = seg.starts[i]!;
    const b = seg.ends[i]!;
    const c = seg.counts[i]!;
    used += b - a;
    for (const f of meta.free.overlapping(a, b)) err(`blocks ${Math.max(a, f.start)}.. are both free and in use`);
    const sh = meta.shared.overlapping(a, b);
    if (c === 1) {
      for (const s of sh) err(`refcount of block ${Math.max(a, s.start)} is ${s.v.count}, but it has 1 reference`);
    } else {
      let covered = 0;
      for (const s of sh) {
        covered += Math.min(b, s.start + s.v.len) - Math.max(a, s.start);
        if (s.v.count !== c) err(`refcount of block ${Math.max(a, s.start)} is ${s.v.count}, but it has ${c} references`);
      }
      if (covered !== b - a) err(`blocks ${a}..${b - 1} have ${c} references but no shared refcount`);
    }
  }
  let sharedBlocks = 0;
  for (const s of meta.shared.entries()) {
    sharedBlocks += s.v.len;
    if (s.v.count < 2) err(`shared run at block ${s.start} has count ${s.v.count}`);
  }
  let multi = 0;
  for (let i = 0; i < seg.starts.length; i++) if (seg.counts[i]! >= 2) multi += seg.ends[i]! - seg.starts[i]!;
  if (sharedBlocks !== multi) err(`shared refcount table covers ${sharedBlocks} blocks, but ${multi} blocks have several references`);
  let freeSum = 0;
  let prevEnd = -1;
  for (const f of meta.free.entries()) {
    freeSum += f.v.len;
    if (f.start < prevEnd) err(`free runs overlap at block ${f.start}`);
    if (f.start + f.v.len > meta.dataBlocks) err(`free run at block ${f.start} runs past the data area`);
    prevEnd = f.start + f.v.len;
  }
  if (freeSum !== meta.freeBlocks) err(`free-block counter is ${meta.freeBlocks}, free runs hold ${freeSum}`);
  let transientBlocks = 0;
  // Node blocks replaced since the last checkpoint: still in use on disk until the next one.
  const retired = meta.retiredNodes.map((b) => ({ start: b, len: 1 }));
  for (const t of [...transient, ...retired]) {
    transientBlocks += t.len;
    if (meta.free.overlapping(t.start, t.start + t.len).length > 0) err(`pending block ${t.start} is also free`);
  }
  const leaked = meta.dataBlocks - used - freeSum - transientBlocks;
  if (leaked > 0) err(`${leaked} blocks are neither free nor referenced (leaked)`);
  return { errors, notes: [], volumes: meta.volumes.size, extents, usedBlocks: used, freeBlocks: freeSum };
}

/**
 * Rebuilds derived metadata: drops extents that are out of bounds or overlap earlier ones, then
 * recomputes reference counts and free space from the extents that remain. The checkpoint runs
 * are treated as used, since the store writes a new checkpoint next and frees them then.
 */
export function rebuildMetadata(meta: Metadata, checkpointRuns: readonly Run[]): { meta: Metadata; dropped: number } {
  const out = new Metadata(meta.blockSize, meta.dataBlocks);
  out.nextVolumeId = meta.nextVolumeId;
  // The rebuilt trees are all new; the current checkpoint's node blocks stay in use until the next
  // checkpoint replaces it, then they are freed like any replaced node.
  const oldNodes = [...meta.retiredNodes];
  for (const node of treeCensus(meta).keys()) if (node.addr >= 0 && node.addr < meta.dataBlocks) oldNodes.push(node.addr);
  out.retiredNodes = [...new Set(oldNodes)];
  out.nodeBlocks = meta.nodeBlocks;
  let dropped = 0;
  for (const v of meta.volumes.values()) {
    const blocks = v.inline ? 0 : Math.floor(v.size / meta.blockSize);
    const keys: number[] = [];
    const vals: Extent[] = [];
    let prevEnd = 0;
    for (const x of v.map.entries()) {
      const e = x.v;
      const ok = e.len > 0 && x.start >= prevEnd && x.start + e.len <= blocks && e.phys >= 0 && e.phys + e.len <= meta.dataBlocks;
      if (!ok) {
        dropped++;
        continue;
      }
      keys.push(x.start);
      vals.push(e);
      prevEnd = x.start + e.len;
    }
    out.addVolume({ ...v, map: RangeMap.fromSorted(extentOps, keys, vals) });
  }
  const seg = referenceSegments([...treeCensus(out).keys()], [...checkpointRuns, ...out.retiredNodes.map((b) => ({ start: b, len: 1 }))]);
  const sk: number[] = [];
  const sv: SharedRun[] = [];
  const fk: number[] = [];
  const fv: FreeRun[] = [];
  let pos = 0;
  let free = 0;
  for (let i = 0; i < seg.starts.length; i++) {
    const a = seg.starts[i]!;
    if (a > pos) {
      fk.push(pos);
      fv.push({ len: a - pos });
      free += a - pos;
    }
    if (seg.counts[i]! >= 2) {
      sk.push(a);
      sv.push({ len: seg.ends[i]! - a, count: seg.counts[i]! });
    }
    pos = seg.ends[i]!;
  }
  if (pos < meta.dataBlocks) {
    fk.push(pos);
    fv.push({ len: meta.dataBlocks - pos });
    free += meta.dataBlocks - pos;
  }
  out.shared = RangeMap.fromSorted(sharedOps, sk, sv);
  out.free = RangeMap.fromSorted(freeOps, fk, fv);
  out.freeBlocks = free;
  return { meta: out, dropped };
}
