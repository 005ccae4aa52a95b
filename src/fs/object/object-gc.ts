// Garbage collection of an object-store image (docs/OBJECT-STORE.md, "Garbage collection"), run by
// the writer:
// 1. liveness: the blocks volumes map (liveness.ts), and how many of each segment's slots they use;
// 2. compaction: the live blocks of segments below the threshold are appended again to the open
//    segment (the index moves; extent maps, snapshots and clones are untouched), so are those of
//    small segments once there are many of them, and index entries
//    of dead blocks are dropped, each only if the index still points where GC read it (a newer
//    write wins); a commit makes the moves durable, a checkpoint moves the manifest past the
//    journals that hold the old entries;
// 3. deletion of what nothing reachable names: segments no index layer points into and this writer
//    is not uploading, journals before the manifest's start, checkpoints before the manifest's,
//    segments of older epochs (orphans of a crashed or fenced writer) and probe keys of openers
//    that died mid-probe, once seen for `graceMs`.
//    The last journal of each older epoch stays: it is the seal that keeps its writer fenced.
import { type ObjectStore } from '../../storage/object-store.ts';
import { PROBE_PREFIX } from './conditional-probe.ts';
import { MANIFEST_KEY, parseKey, segmentKey } from './keys.ts';
import { liveBlocks } from './liveness.ts';
import type { ObjectImageStore } from './object-image-store.ts';

export interface GcOptions {
  /** Segments whose live fraction is below this are compacted (default 0.8). */
  threshold?: number;
  /** How long an older epoch's unreachable object must have been seen before it is deleted. */
  graceMs?: number;
  now?: () => number;
}

export interface GcReport {
  segmentsCompacted: number;
  blocksMoved: number;
  entriesDropped: number;
  deleted: string[];
  /** Older-epoch orphans seen but still inside the grace period. */
  waiting: number;
}

/** A segment under 1/SMALL_FRACTION of the full size is small; MERGE_AT small ones are merged. */
const SMALL_FRACTION = 4;
const MERGE_AT = 8;

/** First sight of each orphan, per store (grace periods survive between GC runs of one process). */
const firstSeen = new WeakMap<ObjectStore, Map<string, number>>();

/** The pass running on each image: a second caller shares it instead of racing it. */
const running = new WeakMap<ObjectImageStore, Promise<GcReport>>();

export function collectGarbage(image: ObjectImageStore, opts: GcOptions = {}): Promise<GcReport> {
  let pass = running.get(image);
  if (!pass) {
    pass = gcPass(image, opts).finally(() => running.delete(image));
    running.set(image, pass);
  }
  return pass;
}

async function gcPass(image: ObjectImageStore, opts: GcOptions): Promise<GcReport> {
  const threshold = opts.threshold ?? 0.8;
  const now = opts.now ?? Date.now;
  const graceMs = opts.graceMs ?? 10 * 60_000;
  const { store, index, segments, state, durability } = image;
  state.writable();
  image.writer.refuse();
  const B = state.blockSize;
  const report: GcReport = { segmentsCompacted: 0, blocksMoved: 0, entriesDropped: 0, deleted: [], waiting: 0 };

  // 1. Liveness over the committed index (local segments are new: never compaction victims).
  const sizes = new Map<string, number>();
  for await (const o of store.list('seg/')) sizes.set(o.key, o.size);
  const live = liveBlocks(state.meta);
  const liveSlots = new Map<string, number>();
  for (const [block, loc] of index.committed) {
    if (!live.has(block) || index.lookup(block) !== loc) continue;
    const key = segmentKey(loc.epoch, loc.num);
    liveSlots.set(key, (liveSlots.get(key) ?? 0) + 1);
  }
  const victims = new Set<string>();
  const small: string[] = [];
  const local = segments.unuploadedKeys();
  for (const [key, size] of sizes) {
    const slots = size / B;
    if (slots === 0 || local.has(key)) continue;
    if ((liveSlots.get(key) ?? 0) / slots < threshold) victims.add(key);
    else if (slots * SMALL_FRACTION < segments.segmentBlocks) small.push(key);
  }
  // Many small segments (a FLUSH seals whatever the open segment holds) are merged into few: each
  // object costs a GET on a cold read and a line in every listing.
  if (small.length >= MERGE_AT) for (const key of small) victims.add(key);

  // 2. Compaction: re-append live blocks of victims, drop entries of dead blocks.
  for (const [block, loc] of [...index.committed]) {
    if (index.lookup(block) !== loc) continue;
    if (!live.has(block)) {
      index.stage(block, null);
      report.entriesDropped++;
      continue;
    }
    if (!victims.has(segmentKey(loc.epoch, loc.num))) continue;
    const data = Buffer.alloc(B);
    if (!(await segments.readAt(loc, 0, data))) continue; // moved or gone meanwhile: nothing to keep here
    // Still the same copy (a write meanwhile staged a newer one, which wins) and still in use.
    // A block becomes MAPPED only with a fresh write (a new index entry) or by sharing a live
    // one, so the liveness taken above stays right for every block whose entry did not change.
    if (index.lookup(block) !== loc || state.meta.refCount(block) === 0) continue;
    index.stage(block, segments.append(data));
    report.blocksMoved++;
  }
  report.segmentsCompacted = victims.size;
  await durability.commit();
  if (report.blocksMoved + report.entriesDropped > 0 || durability.journalsSinceCheckpoint > 0) await durability.checkpoint();

  // 3. Deletion. What is referenced is taken after the listing: a segment uploaded while we list
  // is named by some index layer by then (its blocks were staged before it was sealed).
  const listed: Array<{ key: string }> = [];
  for await (const o of store.list('')) listed.push(o);
  const manifest = image.manifest.manifest;
  const referenced = new Set<string>();
  for (const loc of index.allLocations()) referenced.add(segmentKey(loc.epoch, loc.num));
  for (const key of segments.unuploadedKeys()) referenced.add(key);
  let seen = firstSeen.get(store);
  if (!seen) firstSeen.set(store, (seen = new Map()));
  // The last journal of each older epoch is its seal (or the chain end a seal will take): kept, so
  // the fenced writer's next journal PUT keeps losing even after everything before it is gone.
  const chainEnd = new Map<number, number>();
  for (const o of listed) {
    const k = parseKey(o.key);
    if (k?.kind === 'journal') chainEnd.set(k.epoch, Math.max(chainEnd.get(k.epoch) ?? 0, k.num));
  }
  const graceOver = (key: string): boolean => {
    const first = seen.get(key) ?? now();
    seen.set(key, first);
    if (now() - first >= graceMs) return true;
    report.waiting++;
    return false;
  };
  const doomed: string[] = [];
  for (const o of listed) {
    if (o.key === MANIFEST_KEY || o.key === manifest.checkpoint.key) continue;
    const k = parseKey(o.key);
    if (!k) {
      // A probe key left by an opener that died mid-probe; another opener may be probing right
      // now, so only after the grace period. Anything else is not ours: left alone.
      if (o.key.startsWith(PROBE_PREFIX) && graceOver(o.key)) doomed.push(o.key);
      continue;
    }
    let dead: boolean;
    if (k.kind === 'seg') dead = !referenced.has(o.key);
    else if (k.kind === 'journal') {
      dead = (k.epoch < manifest.journal.epoch && k.num < chainEnd.get(k.epoch)!) || (k.epoch === manifest.journal.epoch && k.num < manifest.journal.seq);
    }
    else dead = k.epoch < manifest.epoch || k.num < manifest.checkpoint.generation;
    if (!dead) continue;
    // An older writer may still be finishing this PUT (it can never become reachable): wait.
    if (k.epoch < manifest.epoch && k.kind === 'seg' && !graceOver(o.key)) continue;
    doomed.push(o.key);
  }
  for (const key of doomed) {
    image.writer.refuse();
    await store.delete(key);
    await segments.cache.delete(key);
    seen.delete(key);
    report.deleted.push(key);
  }
  return report;
}
