// The image store: one image file holding many volumes. This is the composition root that opens
// (recovery.ts) and wires the pieces of docs/STORE.md, and closes them; the work is in them:
//   mapper.ts      extent lookups, begin/end, allocation, copy-on-write, pins   (any backend)
//   volumes.ts     create, delete, resize, snapshot, clone, facts and info      (any backend)
//   op-log.ts      ops applied in memory, waiting to be durable                 (any backend)
//   data-area.ts   bounds-checked data reads and writes                         (file backend)
//   durability.ts  journal group commit, data sync, poison                      (file backend)
//   checkpoints.ts, superblock-io.ts                                            (file backend)
// The engine and the control channel get the parts (StoreParts), never this object. The methods
// below that forward to a part are for the CLI, check and tests.
import { fail } from '../util/errors.ts';
import { GroupSync } from '../storage/group-sync.ts';
import { PoisonLatch } from '../storage/poison-latch.ts';
import type { Storage } from '../storage/storage.ts';
import { type CheckProgress, type CheckReport, verifyMetadata } from './check.ts';
import { FileCheckpoints } from './checkpoints.ts';
import { FileDataArea } from './data-area.ts';
import { FileDurability } from './durability.ts';
import type { Run } from './extent.ts';
import type { ReplayResult } from './journal.ts';
import { Mapper } from './mapper.ts';
import { OpLog } from './op-log.ts';
import { type CreateOptions, type Recovered, layoutNewImage, recoverImage } from './recovery.ts';
import type { Metadata } from './state.ts';
import type { StoreParts } from './store-parts.ts';
import { StoreState } from './store-state.ts';
import { FileSuperblocks } from './superblock-io.ts';
import type { Superblock } from './superblock.ts';
import { Volumes } from './volumes.ts';
import { StoreForwarders } from './store-forwarders.ts';

export type { CreateOptions } from './recovery.ts';
export type { BeginOptions } from './mapper.ts';

export interface OpenOptions {
  readOnly?: boolean;
}

export interface StoreStats {
  formatVersion: number;
  uuid: string;
  generation: number;
  blockSize: number;
  dataBlocks: number;
  freeBlocks: number;
  pendingFreeBlocks: number;
  reservedBlocks: number;
  journalBytes: number;
  journalUsed: number;
  volumes: number;
  uncommittedOps: number;
}

export class ImageStore extends StoreForwarders implements StoreParts {
  /** The storage as given, under the latch (tests read backend counters through it). */
  readonly storage: Storage;
  private readonly state: StoreState;
  private readonly ops: OpLog;
  private readonly superblocks: FileSuperblocks;
  private readonly checkpoints: FileCheckpoints;
  readonly mapper: Mapper;
  readonly volumes: Volumes;
  readonly data: FileDataArea;
  readonly durability: FileDurability;
  /** How the last open's journal replay ended (for check and info). */
  readonly replay: ReplayResult | null;
  readonly superblockProblems: string[];
  /** Called when the store closes (releases the file lock). */
  onClose: (() => Promise<void>) | null = null;

  private constructor(storage: Storage, latch: PoisonLatch, r: Recovered, readOnly: boolean) {
    super();
    this.storage = storage;
    const metadataBlocks = r.sb.checkpointRuns.reduce((n, x) => n + x.len, 0) + r.meta.nodeBlocks;
    const state = new StoreState(r.meta, latch, readOnly, metadataBlocks, r.sb.version);
    const dataSync = new GroupSync(() => latch.sync());
    this.state = state;
    this.ops = new OpLog(state);
    this.superblocks = new FileSuperblocks(latch, r.sb);
    this.checkpoints = new FileCheckpoints(latch, this.superblocks, state);
    this.data = new FileDataArea(latch, state, r.sb.dataOffset, dataSync);
    this.durability = new FileDurability(latch, state, this.ops, r.journal, this.checkpoints, dataSync);
    this.mapper = new Mapper(state, this.ops);
    this.volumes = new Volumes(state, this.ops, this.durability, this.data);
    this.replay = r.replay;
    this.superblockProblems = r.superblockProblems;
  }

  static async create(storage: Storage, opts: CreateOptions): Promise<ImageStore> {
    const latch = PoisonLatch.over(storage);
    const store = new ImageStore(storage, latch, await layoutNewImage(latch, opts), false);
    await store.durability.checkpoint();
    return store;
  }

  static async open(storage: Storage, opts: OpenOptions = {}): Promise<ImageStore> {
    const latch = PoisonLatch.over(storage);
    const store = new ImageStore(storage, latch, await recoverImage(latch), opts.readOnly ?? false);
    if (!store.readOnly && store.superblockProblems.length > 0) await store.superblocks.write(store.superblocks.current);
    return store;
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

  get alloc(): StoreState['alloc'] {
    return this.state.alloc;
  }

  get superblock(): Readonly<Superblock> {
    return this.superblocks.current;
  }

  /** The blocks holding the current checkpoint (for check). */
  get checkpointRuns(): readonly Run[] {
    return this.checkpoints.runs;
  }

  // Volume and mapping calls: StoreForwarders (store-forwarders.ts).

  /** The read fast path: one MAPPED extent the storage can read now, read synchronously. */
  readNow(volume: string, offset: number, into: Buffer): boolean {
    if (!this.data.canReadNow) return false;
    const physical = this.mapper.mappedAt(volume, offset, into.length);
    return physical >= 0 && this.data.readNow(physical, into);
  }

  syncData(): Promise<void> {
    return this.durability.syncData();
  }

  commit(): Promise<void> {
    return this.durability.commit();
  }

  checkpoint(): Promise<void> {
    return this.durability.checkpoint();
  }

  get uncommitted(): number {
    return this.ops.uncommitted;
  }

  // ---------------------------------------------------------------- whole image

  stats(): StoreStats {
    const sb = this.superblocks.current;
    const { meta, alloc } = this.state;
    return {
      formatVersion: sb.version,
      uuid: sb.uuid.toString('hex'),
      generation: sb.generation,
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

  /** Verifies the live metadata (tests and debug builds; O(extents log extents)). */
  verify(onProgress?: CheckProgress): CheckReport {
    return verifyMetadata(this.state.meta, this.checkpoints.runs, this.transientRuns(), onProgress);
  }

  /**
   * Blocks neither free nor referenced at this instant, yet not leaked: allocations not yet
   * linked, frees waiting for a commit, and what a checkpoint being written holds. (Tree nodes
   * replaced since the last checkpoint are in meta.retiredNodes.)
   */
  transientRuns(): Run[] {
    const { alloc } = this.state;
    return [...alloc.pendingRuns(), ...alloc.takenRuns(), ...this.checkpoints.inFlightRuns()];
  }

  /** Replaces the metadata with a rebuilt copy and checkpoints it (check --repair). */
  async replaceMetadata(meta: Metadata): Promise<void> {
    this.state.writable();
    if (this.ops.uncommitted !== 0 || this.state.alloc.pinCount > 0) fail('BAD_ARGUMENT', 'repair needs an idle store');
    this.state.replaceMeta(meta);
    await this.durability.checkpoint();
  }

  /** Commits, writes a final checkpoint (so the next open replays nothing) and closes. */
  async close(): Promise<void> {
    if (this.state.closed) return;
    try {
      if (!this.state.readOnly && !this.state.latch.poisoned) {
        await this.durability.commit();
        if (this.durability.journalUsed > 0) await this.durability.checkpoint();
      }
    } finally {
      this.state.closed = true;
      await this.state.latch.close();
      await this.onClose?.();
    }
  }

  /** Drops the store without committing (tests: simulate a crash of the process). */
  async abandon(): Promise<void> {
    this.state.closed = true;
    await this.onClose?.();
  }
}
