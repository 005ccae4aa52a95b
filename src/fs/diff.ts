// What changed between two points of a volume's history: the byte ranges where FROM (a snapshot)
// and TO (a later snapshot of the same lineage, or the live volume) may differ. It uses only
// public APIs: the mapper's extent trees and iteration, and the volumes' facts and lineage.
//
// Why comparing mappings is sound. Both maps are read in one synchronous step, so they describe
// the two volumes at one instant. Where FROM and TO map a position to the same physical block with
// the same kind, both read the very same bytes: the block is referenced by both, so it is shared,
// a write to either goes copy-on-write to new blocks (never in place), and its reference count
// keeps it from being freed and reused while both hold it. Where both read zeros without data
// (hole or unwritten, in any combination) the bytes are equal too. Everything else is reported:
// a different physical block, data against zeros (a TRIM or WRITE_ZEROES that punched or
// unwrote data, or data written into a hole), or inline data. So a range that differs is never
// reported clean; what is reported beyond the true change is a block rewritten with the same
// bytes, and a partial-block write (the granularity is the allocation block).
//
// Cost: FROM and TO share the tree nodes nobody changed (snapshots and clones share their
// source's tree; a change copies only its path), so only the leaves one of them does not share are
// compared (tree-diff.ts, with the argument why the rest cannot differ): one pass over FROM's node
// identities (about n/60 nodes for n extents) plus the change.
import { fail } from '../util/errors.ts';
import type { Mapper } from './mapper.ts';
import { type ExtentInfo, Intent, MappingType } from './mapping.ts';
import { unsharedSpans } from './tree-diff.ts';
import type { VolumeFacts, Volumes } from './volumes.ts';

/** A byte range of TO that may differ from FROM. */
export interface DiffRange {
  offset: number;
  length: number;
  /** TO reads zeros here (a hole or unwritten): a copy may punch or zero instead of reading. */
  zero: boolean;
}

/** The public parts a diff reads. */
export interface DiffParts {
  readonly mapper: Mapper;
  readonly volumes: Volumes;
}

/**
 * Whether snapshot `from` is an earlier point of the history `chain` describes (`chain` is
 * volumes.lineage(TO): TO, its origin, ...). It is when it was taken of a volume in the chain
 * (its origin is chain[k]) before that volume's history branched towards TO (a snapshot of
 * chain[k] made after chain[k-1] was is a sibling, not history), or when it is in the chain itself.
 */
export function isHistoryPoint(chain: readonly VolumeFacts[], from: VolumeFacts): boolean {
  if (!from.snapshot || chain.length === 0 || chain[0]!.id === from.id) return false;
  if (chain.some((c) => c.id === from.id)) return true;
  if (from.origin === 0) return false;
  // The chain's ids, and the id of a deleted origin it ended at (snapshots of it stay comparable).
  const ids = chain.map((c) => c.id);
  const dangling = chain[chain.length - 1]!.origin;
  if (dangling !== 0) ids.push(dangling);
  const k = ids.indexOf(from.origin);
  // Ids grow with creation, so a smaller id was made earlier.
  return k === 0 || (k > 0 && from.id < ids[k - 1]!);
}

/** Every snapshot that is an earlier point of `to`'s history, oldest first (O(volumes)). */
export function historyPoints(volumes: Volumes, to: string): VolumeFacts[] {
  const chain = volumes.lineage(to);
  return volumes.allFacts().filter((f) => isHistoryPoint(chain, f));
}

/** The facts of FROM and TO, or BAD_ARGUMENT saying why the pair cannot be compared. */
export function historyPair(volumes: Volumes, from: string, to: string): { from: VolumeFacts; to: VolumeFacts } {
  const f = volumes.facts(from);
  const t = volumes.facts(to);
  const chain = volumes.lineage(to);
  if (isHistoryPoint(chain, f)) return { from: f, to: t };
  const lineage = chain.map((c) => c.name).join(' <- ');
  if (from === to) fail('BAD_ARGUMENT', `FROM and TO are the same volume (${from})`);
  if (!f.snapshot) fail('BAD_ARGUMENT', `${from} is not a snapshot: FROM must be a snapshot taken earlier in ${to}'s history (${lineage})`);
  if (f.origin === 0) fail('BAD_ARGUMENT', `${from} records no origin (it was taken before image format version 3), so it is in no known history`);
  fail('BAD_ARGUMENT', `${from} is not an earlier point of ${to}'s history (${to}'s lineage: ${lineage}); pass a snapshot taken of one of those volumes before ${to} branched from it`);
}

/** The ranges of [start, end) of TO that may differ from FROM, merged, in order. */
export async function diffVolumes(parts: DiffParts, from: string, to: string, start = 0, end = Infinity): Promise<DiffRange[]> {
  return [...(await diffStream(parts, from, to, start, end))];
}

/**
 * The same ranges, produced lazily, so a caller that needs only the first few (block status)
 * walks only that far. Iterate it in one synchronous loop: the maps are read as it goes.
 */
export async function diffStream(parts: DiffParts, from: string, to: string, start = 0, end = Infinity): Promise<Iterable<DiffRange>> {
  const pair = historyPair(parts.volumes, from, to);
  const stop = Math.min(end, pair.to.size);
  if (pair.from.inline || pair.to.inline) return inlineDiff(parts.mapper, pair.from, pair.to, start, stop);
  return merged(changedRanges(parts.mapper, pair.from, pair.to, start, stop));
}

/** What `iomapd diff` reports: TO's size, the granularity (the allocation block) and the ranges. */
export interface VolumeDiff {
  from: string;
  to: string;
  /** TO's size: the ranges cover [0, size). */
  size: number;
  granularity: number;
  changedBytes: number;
  ranges: DiffRange[];
}

export async function diffReport(parts: DiffParts, from: string, to: string): Promise<VolumeDiff> {
  const ranges = await diffVolumes(parts, from, to);
  return { from, to, size: parts.volumes.facts(to).size, granularity: parts.mapper.blockSize, changedBytes: rangeBytes(ranges), ranges };
}

/** Sums the lengths of ranges. */
export function rangeBytes(ranges: readonly DiffRange[]): number {
  return ranges.reduce((n, r) => n + r.length, 0);
}

/** What a position reads as, for comparison: -1 zeros, -2 inline, else data at this displacement. */
function token(e: ExtentInfo | null): number {
  if (e === null || e.type === MappingType.HOLE || e.type === MappingType.UNWRITTEN) return -1;
  if (e.type === MappingType.INLINE) return -2;
  return e.physical - e.offset;
}

/**
 * The pieces of [start, end) where block-mapped FROM and TO may differ. Only the spans that the
 * two extent trees do not share are compared (tree-diff.ts: shared nodes cannot differ), so the
 * cost is a walk of FROM's node identities plus the change, not a walk of both maps' extents.
 */
export function* changedRanges(mapper: Mapper, from: VolumeFacts, to: VolumeFacts, start: number, end: number): Generator<DiffRange> {
  const B = mapper.blockSize;
  for (const span of unsharedSpans(mapper.extentTree(from.name), mapper.extentTree(to.name), (e) => e.len)) {
    const s = Math.max(start, span.start * B);
    const e = Math.min(end, span.end * B);
    if (s < e) yield* comparedRanges(mapper, from, to, s, e);
  }
}

/** Both extent maps walked in step over [start, end); positions past FROM's end compare as a hole. */
function* comparedRanges(mapper: Mapper, from: VolumeFacts, to: VolumeFacts, start: number, end: number): Generator<DiffRange> {
  const a = mapper.extents(from.name, start, Math.min(end, from.size));
  const b = mapper.extents(to.name, start, end);
  let ea: ExtentInfo | null = next(a);
  let eb: ExtentInfo | null = next(b);
  let pos = start;
  while (eb !== null && pos < end) {
    while (ea !== null && ea.offset + ea.length <= pos) ea = next(a);
    const aHere = ea !== null && ea.offset <= pos ? ea : null;
    const bEnd = Math.min(end, eb.offset + eb.length);
    const stop = aHere !== null ? Math.min(bEnd, aHere.offset + aHere.length) : ea !== null ? Math.min(bEnd, ea.offset) : bEnd;
    const tb = token(eb);
    const ta = token(aHere);
    if (ta !== tb || ta === -2) yield { offset: pos, length: stop - pos, zero: tb === -1 };
    pos = stop;
    if (pos >= bEnd) eb = next(b);
  }
}

function next(it: Iterator<ExtentInfo>): ExtentInfo | null {
  const r = it.next();
  return r.done ? null : r.value;
}

/** Joins touching ranges with the same zero flag. */
export function merge(pieces: Iterable<DiffRange>): DiffRange[] {
  return [...merged(pieces)];
}

function* merged(pieces: Iterable<DiffRange>): Generator<DiffRange> {
  let last: DiffRange | null = null;
  for (const p of pieces) {
    if (last && last.offset + last.length === p.offset && last.zero === p.zero) last.length += p.length;
    else {
      if (last) yield last;
      last = { ...p };
    }
  }
  if (last) yield last;
}

/**
 * Either volume inline (at most 2 KiB): compare the bytes, sector by sector, when both are; when
 * only one is, its whole span differs and the rest of TO compares as against a hole.
 */
async function inlineDiff(mapper: Mapper, from: VolumeFacts, to: VolumeFacts, start: number, end: number): Promise<DiffRange[]> {
  const pieces: DiffRange[] = [];
  if (from.inline && to.inline) {
    const [x, y] = [await inlineBytes(mapper, from), await inlineBytes(mapper, to)];
    for (let s = start - (start % 512); s < end; s += 512) {
      const a = x.subarray(s, s + 512);
      const b = y.subarray(s, s + 512);
      if (!a.equals(b) && !(a.length === 0 && b.every((v) => v === 0))) pieces.push({ offset: s, length: Math.min(512, end - s), zero: false });
    }
    return merge(pieces);
  }
  const head = Math.min(end, from.inline ? from.size : to.size, to.size);
  if (start < head) pieces.push({ offset: start, length: head - start, zero: false });
  if (!to.inline) {
    for (const e of mapper.extents(to.name, Math.max(start, head), end)) {
      if (e.type !== MappingType.HOLE) pieces.push({ offset: Math.max(e.offset, head, start), length: e.offset + e.length - Math.max(e.offset, head, start), zero: e.type === MappingType.UNWRITTEN });
    }
  }
  return merge(pieces.filter((p) => p.length > 0));
}

/** An inline volume's bytes, zero-filled to its size (through the mapper's READ mapping). */
async function inlineBytes(mapper: Mapper, v: VolumeFacts): Promise<Buffer> {
  const m = await mapper.begin(v.name, 0, v.size, Intent.READ);
  try {
    return Buffer.from(m.inline ?? Buffer.alloc(v.size));
  } finally {
    await mapper.end(m, 0);
  }
}
