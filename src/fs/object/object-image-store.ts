// An image store kept in an object store (docs/OBJECT-STORE.md): the composition root that opens
// (object-recovery.ts) and wires the backend pieces of this directory to the backend-independent
// mapper, volumes and op log, exactly as image-store.ts does for a file. The engine gets the parts
// (StoreParts); the methods below are for the CLI, check, GC and tests.
import { join } from 'node:path';
import { IomapdError, fail } from '../../util/errors.ts';
import { type Logger, silentLogger } from '../../util/log.ts';
import type { ObjectStore } from '../../storage/object-store.ts';
import { PoisonLatch } from '../../storage/poison-latch.ts';
import type { Storage } from '../../storage/storage.ts';
import { type CheckReport, verifyMetadata } from '../check.ts';
import { encodeCheckpoint } from '../checkpoint-codec.ts';
import type { StoreStats } from '../image-store.ts';
import { BASE_FORMAT_VERSION, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, dataBlocksFor, isPowerOfTwo } from '../format.ts';
import { Mapper } from '../mapper.ts';
import { OpLog } from '../op-log.ts';
import { Metadata } from '../state.ts';
import type { StoreParts } from '../store-parts.ts';
import { StoreState } from '../store-state.ts';
import { Volumes } from '../volumes.ts';
import { BlockIndex } from './block-index.ts';
import { probeConditionalWrites } from './conditional-probe.ts';
import { ManifestSuperblocks, createManifest, firstManifest, readManifest } from './manifest-io.ts';
import { ObjectCheckpoints, putOnce } from './object-checkpoints.ts';
import { encodeCheckpointObject } from './object-codec.ts';
import { ObjectDataArea } from './object-data-area.ts';
import { ObjectDurability } from './object-durability.ts';
import { type RecoveredObjectImage, recoverObjectImage, takeWriterRole } from './object-recovery.ts';
import { SegmentCache } from './segment-cache.ts';
import { SegmentLog } from './segment-log.ts';
import { WriterLatch } from './writer-latch.ts';
import { StoreForwarders } from '../store-forwarders.ts';

export interface ObjectOpenOptions {
  readOnly?: boolean;
  /** Local cache directory (`--cache-dir`); in memory when absent. */
  cacheDir?: string | null;
  /** Bound of the local cache in bytes (`--cache-size`); at least two segments. */
  cacheSize?: number;
  /** Blocks per segment object (default 1024: 4 MiB at 4 KiB blocks). */
  segmentBlocks?: number;
  /** Journal objects between checkpoints (bounds replay). */
  checkpointEvery?: number;
  log?: Logger;
}

export interface ObjectCreateOptions extends ObjectOpenOptions {
  /** Capacity of the data area in bytes (rounded up to the block size). */
  dataBytes: number;
  blockSize?: number;
}

/** The latch StoreState wants: an object image has no byte storage, so nothing is ever called on it. */
const NO_STORAGE: Storage = {
  read: () => Promise.reject(new IomapdError('IO', 'an object image has no byte storage')),
  write: () => Promise.reject(new IomapdError('IO', 'an object image has no byte storage')),
  sync: () => Promise.resolve(),
  size: () => Promise.resolve(0),
  resize: () => Promise.reject(new IomapdError('IO', 'an object image has no byte storage')),
  close: () => Promise.resolve(),
};

export class ObjectImageStore extends StoreForwarders implements StoreParts {
  readonly store: ObjectStore;
  readonly state: StoreState;
  readonly ops: OpLog;
  readonly mapper: Mapper;
  readonly volumes: Volumes;
  readonly data: ObjectDataArea;
  readonly durability: ObjectDurability;
  readonly manifest: ManifestSuperblocks;
  readonly checkpoints: ObjectCheckpoints;
  readonly index: BlockIndex;
  readonly segments: SegmentLog;
  readonly writer: WriterLatch;
  readonly log: Logger;
  /** Journal objects the open replayed. */
  readonly replayed: number;

  private constructor(store: ObjectStore, r: RecoveredObjectImage, cache: SegmentCache, readOnly: boolean, opts: ObjectOpenOptions) {
    super();
    this.store = store;
    this.log = opts.log ?? silentLogger;
    this.writer = new WriterLatch(this.log, store.description);
    const state = new StoreState(r.meta, PoisonLatch.over(NO_STORAGE), readOnly, 0, r.manifest.formatVersion);
    this.state = state;
    this.ops = new OpLog(state);
    this.index = r.index;
    this.manifest = new ManifestSuperblocks(store, this.writer, r.manifest, r.etag);
    this.segments = new SegmentLog(store, cache, r.manifest.epoch, r.manifest.blockSize, opts.segmentBlocks ?? 1024);
    this.checkpoints = new ObjectCheckpoints(store, state, this.index, this.manifest);
    this.data = new ObjectDataArea(state, this.index, this.segments, this.writer);
    this.durability = new ObjectDurability({
      store,
      state,
      ops: this.ops,
      index: this.index,
      segments: this.segments,
      data: this.data,
      checkpoints: this.checkpoints,
      writer: this.writer,
      log: this.log,
      epoch: r.manifest.epoch,
      nextSeq: 0,
      checkpointEvery: opts.checkpointEvery ?? 64,
    });
    this.mapper = new Mapper(state, this.ops);
    this.volumes = new Volumes(state, this.ops, this.durability, this.data);
    this.replayed = r.replayed;
  }

  /** Creates an image under the store's prefix (ALREADY_EXISTS if one is there) and opens it. */
  static async create(store: ObjectStore, opts: ObjectCreateOptions): Promise<ObjectImageStore> {
    const B = opts.blockSize ?? 4096;
    if (!isPowerOfTwo(B) || B < MIN_BLOCK_SIZE || B > MAX_BLOCK_SIZE) {
      fail('BAD_ARGUMENT', `block size must be a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}`);
    }
    if (!Number.isSafeInteger(opts.dataBytes) || opts.dataBytes <= 0) fail('BAD_ARGUMENT', 'size must be a positive integer');
    const dataBlocks = dataBlocksFor(Math.ceil(opts.dataBytes / B));
    const m = firstManifest(B, dataBlocks, BASE_FORMAT_VERSION);
    if ((await store.head('manifest')) !== null) fail('ALREADY_EXISTS', `${store.description} already holds an iomapd object image`);
    const meta = Metadata.empty(B, dataBlocks);
    const blob = encodeCheckpoint(meta, 1, [{ start: 0, len: dataBlocks }]);
    try {
      await putOnce(store, m.checkpoint.key, encodeCheckpointObject({ epoch: 1, generation: 1, meta: blob, index: [] }));
    } catch (err) {
      if (!(err instanceof IomapdError && err.code === 'CORRUPT')) throw err;
      fail('ALREADY_EXISTS', `${store.description} holds a half-created image (${m.checkpoint.key} without a manifest): delete the prefix and create again`);
    }
    await createManifest(store, m);
    return ObjectImageStore.open(store, opts);
  }

  /** Opens the image: read-write takes the writer role (fencing any earlier writer). */
  static async open(store: ObjectStore, opts: ObjectOpenOptions = {}): Promise<ObjectImageStore> {
    const readOnly = opts.readOnly ?? false;
    if (!readOnly) await probeConditionalWrites(store);
    const { manifest, etag } = readOnly ? await readManifest(store) : await takeWriterRole(store);
    const segmentBytes = (opts.segmentBlocks ?? 1024) * manifest.blockSize;
    const cacheSize = opts.cacheSize ?? 64 * segmentBytes;
    if (cacheSize < 2 * segmentBytes) fail('BAD_ARGUMENT', `the cache must hold at least two segments (${2 * segmentBytes} bytes)`);
    const r = await recoverObjectImage(store, manifest, etag, !readOnly);
    // One subdirectory per image: a cache directory may serve several images.
    const cache = await SegmentCache.open(opts.cacheDir ? join(opts.cacheDir, manifest.uuid) : null, cacheSize);
    const image = new ObjectImageStore(store, r, cache, readOnly, opts);
    // The takeover checkpoint: replay of this epoch starts from it, at journal (epoch, 0).
    if (!readOnly) await image.durability.checkpoint();
    return image;
  }

  get blockSize(): number {
    return this.state.blockSize;
  }

  get readOnly(): boolean {
    return this.state.readOnly;
  }

  get meta(): Metadata {
    return this.state.meta;
  }

  get epoch(): number {
    return this.manifest.manifest.epoch;
  }

  // Volume and mapping calls: StoreForwarders (store-forwarders.ts).

  commit(): Promise<void> {
    return this.durability.commit();
  }

  checkpoint(): Promise<void> {
    return this.durability.checkpoint();
  }

  stats(): StoreStats {
    const m = this.manifest.manifest;
    const { meta, alloc } = this.state;
    return {
      formatVersion: this.state.formatVersion,
      uuid: m.uuid,
      generation: m.checkpoint.generation,
      blockSize: this.blockSize,
      dataBlocks: meta.dataBlocks,
      freeBlocks: meta.freeBlocks,
      pendingFreeBlocks: alloc.pendingBlocks,
      reservedBlocks: alloc.reservedBlocks,
      journalBytes: this.durability.journalBytes,
      journalUsed: this.durability.journalUsed,
      volumes: meta.volumes.size,
      uncommittedOps: this.ops.uncommitted,
    };
  }

  /** Verifies the live metadata (tests and debug builds), as ImageStore.verify does. */
  verify(): CheckReport {
    const { alloc } = this.state;
    return verifyMetadata(this.state.meta, [], [...alloc.pendingRuns(), ...alloc.takenRuns()]);
  }

  /** Commits, writes a final checkpoint (so the next open replays nothing) and closes. */
  async close(): Promise<void> {
    if (this.state.closed) return;
    try {
      if (!this.state.readOnly && !this.writer.fenced) {
        await this.durability.commit();
        if (this.durability.journalsSinceCheckpoint > 0) await this.durability.checkpoint();
      }
    } finally {
      this.state.closed = true;
    }
  }

  /** Drops the store without committing (tests: a crash of the process). */
  abandon(): void {
    this.state.closed = true;
  }
}
