// check for an object-store image (docs/OBJECT-STORE.md, "Garbage collection"): reads the manifest,
// its checkpoint and journal chain without writing anything, verifies the metadata (check.ts),
// proves that every block-index entry resolves to a slot inside an existing segment and that every
// live block has one, and lists the objects nothing reachable names (leaked: GC's to delete).
//
// The image may be served while it is checked, by a writer on this host or another. Its GC deletes
// what its newest state no longer names, so a check that read an older state can find a missing
// checkpoint or segment that is no damage at all. A check that finds a problem therefore looks
// whether the image moved on while it read (a new manifest, or a journal past the chain's end it
// replayed) and, if so, reads it again: only a problem found in a state that stood still is reported.
import type { ObjectStore } from '../../storage/object-store.ts';
import { verifyMetadata } from '../check.ts';
import { MANIFEST_KEY, journalKey, parseKey, segmentKey } from './keys.ts';
import type { Manifest } from './manifest-codec.ts';
import { readManifest } from './manifest-io.ts';
import { liveBlocks } from './liveness.ts';
import { recoverObjectImage } from './object-recovery.ts';

export interface ObjectCheckReport {
  /** Broken references and metadata invariants; empty means clean. */
  errors: string[];
  /** Objects nothing reachable names. */
  leaked: string[];
  objects: number;
  bytes: number;
  /** Bytes of the blocks volumes map (distinct physical blocks). */
  liveBytes: number;
  journalsReplayed: number;
  /** Reads of the image that found it moving under a writer, and were done again. */
  rereads: number;
}

const MAX_LISTED = 50;
/** Reads of a moving image before its problems are reported as they were found. */
const MAX_READS = 6;
const REREAD_PAUSE_MS = 200;

export async function checkObjectImage(store: ObjectStore): Promise<ObjectCheckReport> {
  for (let reads = 1; ; reads++) {
    const { manifest, etag } = await readManifest(store);
    /** Where the replayed chain ended; null when the state could not even be read. */
    let chainEnd: number | null = null;
    let report: ObjectCheckReport | undefined;
    let failure: unknown;
    try {
      ({ report, chainEnd } = await checkState(store, manifest, etag));
    } catch (err) {
      failure = err;
    }
    if (report !== undefined && report.errors.length === 0) return { ...report, rereads: reads - 1 };
    if (reads === MAX_READS || !(await movedOn(store, etag, manifest.journal.epoch, chainEnd))) {
      if (report === undefined) throw failure;
      return { ...report, rereads: reads - 1 };
    }
    await new Promise((r) => setTimeout(r, REREAD_PAUSE_MS * reads));
  }
}

/**
 * Whether a writer changed the image since the manifest `etag` was read and its chain replayed to
 * `chainEnd` (null: not replayed, so only a new manifest counts).
 */
async function movedOn(store: ObjectStore, etag: string, epoch: number, chainEnd: number | null): Promise<boolean> {
  const now = await readManifest(store);
  if (now.etag !== etag) return true;
  return chainEnd !== null && (await store.head(journalKey(epoch, chainEnd))) !== null;
}

/** The check of one state of the image: the manifest read, and its chain replayed to its end. */
async function checkState(store: ObjectStore, manifest: Manifest, etag: string): Promise<{ report: ObjectCheckReport; chainEnd: number }> {
  const r = await recoverObjectImage(store, manifest, etag, false);
  const B = manifest.blockSize;
  const sizes = new Map<string, number>();
  let bytes = 0;
  for await (const o of store.list('')) {
    sizes.set(o.key, o.size);
    bytes += o.size;
  }
  const meta = verifyMetadata(r.meta, []);
  const errors = [...meta.errors];
  const reachable = new Set<string>([MANIFEST_KEY, manifest.checkpoint.key]);
  for (let s = manifest.journal.seq; s <= r.chainEnd.seq; s++) reachable.add(journalKey(manifest.journal.epoch, s));
  const unresolved: string[] = [];
  for (const [block, loc] of r.index.committed) {
    const key = segmentKey(loc.epoch, loc.num);
    reachable.add(key);
    const size = sizes.get(key);
    if (size === undefined) unresolved.push(`block ${block} -> ${key} (missing)`);
    else if ((loc.slot + 1) * B > size) unresolved.push(`block ${block} -> ${key} slot ${loc.slot} (past its ${size} bytes)`);
  }
  const live = liveBlocks(r.meta);
  const unindexed: number[] = [];
  for (const b of live) if (!r.index.committed.has(b)) unindexed.push(b);
  if (unresolved.length > 0) errors.push(`${unresolved.length} index entries do not resolve: ${unresolved.slice(0, MAX_LISTED).join('; ')}`);
  if (unindexed.length > 0) errors.push(`${unindexed.length} mapped blocks have no data location: ${unindexed.slice(0, MAX_LISTED).join(', ')}`);
  // The chain's end (a seal, when there is one) counts as reachable: it fences the old writer. So
  // does the last journal of every older epoch: GC keeps each as its chain's seal.
  const lastJournal = new Map<number, string>();
  for (const key of sizes.keys()) {
    const k = parseKey(key);
    if (k?.kind === 'journal' && k.epoch < manifest.journal.epoch) lastJournal.set(k.epoch, key); // keys come sorted
  }
  for (const key of lastJournal.values()) reachable.add(key);
  const leaked = [...sizes.keys()].filter((key) => !reachable.has(key));
  return { report: { errors, leaked, objects: sizes.size, bytes, liveBytes: live.size * B, journalsReplayed: r.replayed, rereads: 0 }, chainEnd: r.chainEnd.seq };
}
