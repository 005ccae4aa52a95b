// check for an object-store image (docs/OBJECT-STORE.md, "Garbage collection"): reads the manifest,
// its checkpoint and journal chain without writing anything, verifies the metadata (check.ts),
// proves that every block-index entry resolves to a slot inside an existing segment and that every
// live block has one, and lists the objects nothing reachable names (leaked: GC's to delete).
import type { ObjectStore } from '../../storage/object-store.ts';
import { verifyMetadata } from '../check.ts';
import { MANIFEST_KEY, journalKey, parseKey, segmentKey } from './keys.ts';
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
}

const MAX_LISTED = 50;

export async function checkObjectImage(store: ObjectStore): Promise<ObjectCheckReport> {
  const { manifest, etag } = await readManifest(store);
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
  return { errors, leaked, objects: sizes.size, bytes, liveBytes: live.size * B, journalsReplayed: r.replayed };
}
