// Opening an object-store image up to its in-memory state (docs/OBJECT-STORE.md, "Open"): the
// manifest, its checkpoint, then the journal chain from the manifest's start until the first
// absent key or a seal. A read-write open first raises the epoch by CAS and afterwards seals the
// chain it replayed, so the writer it replaces can never commit again.
import { IomapdError, fail } from '../../util/errors.ts';
import { ObjectConflict, type ObjectStore } from '../../storage/object-store.ts';
import { decodeCheckpoint } from '../checkpoint-codec.ts';
import type { Metadata } from '../state.ts';
import { BlockIndex } from './block-index.ts';
import { MANIFEST_KEY, MAX_EPOCH, journalKey } from './keys.ts';
import type { Manifest } from './manifest-codec.ts';
import { encodeManifest } from './manifest-codec.ts';
import { readManifest } from './manifest-io.ts';
import { decodeCheckpointObject, decodeJournal, encodeJournal, type JournalObject } from './object-codec.ts';

export interface RecoveredObjectImage {
  manifest: Manifest;
  etag: string;
  meta: Metadata;
  index: BlockIndex;
  /** Journal objects replayed, and where the chain ended. */
  replayed: number;
  chainEnd: { epoch: number; seq: number };
}

/** Raises the manifest's epoch by CAS (retrying lost races): this opener is now the writer. */
export async function takeWriterRole(store: ObjectStore): Promise<{ manifest: Manifest; etag: string }> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const { manifest, etag } = await readManifest(store);
    if (manifest.epoch >= MAX_EPOCH) fail('CORRUPT', 'the manifest epoch is exhausted');
    const next = { ...manifest, epoch: manifest.epoch + 1 };
    try {
      return { manifest: next, etag: await store.putIfMatch(MANIFEST_KEY, encodeManifest(next), etag) };
    } catch (err) {
      if (!(err instanceof ObjectConflict)) throw err;
    }
  }
  throw new IomapdError('STORE_UNAVAILABLE', `${store.description}: the manifest kept changing while taking the writer role`);
}

/** Loads the manifest's checkpoint and replays its journal chain; `seal` (read-write) ends the chain. */
export async function recoverObjectImage(store: ObjectStore, manifest: Manifest, etag: string, seal: boolean): Promise<RecoveredObjectImage> {
  const got = await store.get(manifest.checkpoint.key);
  if (!got) fail('CORRUPT', `the manifest names ${manifest.checkpoint.key}, which is missing`);
  const ckpt = decodeCheckpointObject(got.body, manifest.checkpoint.key);
  if (ckpt.generation !== manifest.checkpoint.generation) fail('CORRUPT', `${manifest.checkpoint.key} has generation ${ckpt.generation}`);
  const meta = decodeCheckpoint(ckpt.meta, { blockSize: manifest.blockSize, dataBlocks: manifest.dataBlocks, generation: ckpt.generation });
  const index = new BlockIndex();
  index.apply(ckpt.index);
  const { epoch } = manifest.journal;
  let seq = manifest.journal.seq;
  let replayed = 0;
  for (;;) {
    const key = journalKey(epoch, seq);
    let j: JournalObject | null = null;
    const found = await store.get(key);
    if (found) j = decodeJournal(found.body, key);
    else if (seal) {
      const body = encodeJournal({ epoch, seq, sealedBy: manifest.epoch, ops: [], changes: [] });
      try {
        await store.putIfAbsent(key, body);
        break;
      } catch (err) {
        if (!(err instanceof ObjectConflict)) throw err;
      }
      const raced = await store.get(key); // the old writer committed `seq` just before the seal
      if (!raced) fail('CORRUPT', `${key} vanished while sealing the journal chain`);
      if (raced.body.equals(body)) break; // our own seal, whose answer was lost
      j = decodeJournal(raced.body, key);
    } else break;
    if (j.epoch !== epoch || j.seq !== seq) fail('CORRUPT', `${key} holds journal ${j.epoch}/${j.seq}`);
    if (j.sealedBy !== null) break;
    for (const op of j.ops) {
      try {
        meta.apply(op, 'replay', (s, l) => meta.putFree(s, l));
      } catch (err) {
        throw new IomapdError('CORRUPT', `${key}: an op does not apply: ${(err as Error).message}`, { cause: err });
      }
    }
    index.apply(j.changes);
    replayed++;
    seq++;
  }
  return { manifest, etag, meta, index, replayed, chainEnd: { epoch, seq } };
}
