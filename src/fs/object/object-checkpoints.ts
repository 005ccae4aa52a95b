// Checkpoints of an object-store image: the metadata (checkpoint-codec.ts) and the whole block
// index in one immutable object `ckpt/E/G`, then the manifest moved to it by CAS (manifest-io.ts).
// prepare() is synchronous (one consistent state) and does no I/O; the caller (durability) has
// taken every pending op and staged index change first, so the checkpoint covers exactly them.
import { IomapdError } from '../../util/errors.ts';
import { ObjectConflict, type ObjectStore } from '../../storage/object-store.ts';
import { encodeCheckpoint } from '../checkpoint-codec.ts';
import { committedFree } from '../committed-free.ts';
import type { Run } from '../extent.ts';
import type { Checkpoints, JournalStart, PreparedCheckpoint } from '../store-contract.ts';
import type { StoreState } from '../store-state.ts';
import type { BlockIndex } from './block-index.ts';
import { checkpointKey } from './keys.ts';
import type { ManifestSuperblocks } from './manifest-io.ts';
import { encodeCheckpointObject } from './object-codec.ts';

export class ObjectCheckpoints implements Checkpoints {
  private readonly store: ObjectStore;
  private readonly state: StoreState;
  private readonly index: BlockIndex;
  private readonly manifest: ManifestSuperblocks;
  /** Checkpoints have no blocks in the data area. */
  readonly runs: readonly Run[] = [];

  constructor(store: ObjectStore, state: StoreState, index: BlockIndex, manifest: ManifestSuperblocks) {
    this.store = store;
    this.state = state;
    this.index = index;
    this.manifest = manifest;
  }

  prepare(): PreparedCheckpoint {
    const { meta, alloc } = this.state;
    const generation = this.manifest.manifest.checkpoint.generation + 1;
    const metaBlob = encodeCheckpoint(meta, generation, committedFree(meta.free, [...alloc.pendingRuns(), ...alloc.takenRuns()]));
    const blob = encodeCheckpointObject({ epoch: this.manifest.manifest.epoch, generation, meta: metaBlob, index: this.index.snapshot() });
    return { blob, runs: [], generation };
  }

  /** Object checkpoints take no blocks of the data area. */
  inFlightRuns(): Run[] {
    return [];
  }

  async write(prepared: PreparedCheckpoint, journalStart: JournalStart): Promise<void> {
    const key = checkpointKey(this.manifest.manifest.epoch, prepared.generation);
    await putOnce(this.store, key, prepared.blob);
    await this.manifest.write({ ...this.manifest.current, version: this.state.formatVersion, generation: prepared.generation, journalSeq: journalStart.seq });
  }
}

/** putIfAbsent that accepts finding the same bytes (an earlier attempt landed); CORRUPT if they differ. */
export async function putOnce(store: ObjectStore, key: string, body: Buffer): Promise<void> {
  try {
    await store.putIfAbsent(key, body);
  } catch (err) {
    if (!(err instanceof ObjectConflict)) throw err;
    const there = await store.get(key);
    if (!there || !there.body.equals(body)) throw new IomapdError('CORRUPT', `${key} in the bucket differs from the object this writer made`);
  }
}
