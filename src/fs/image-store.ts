// The image store: one image file holding many volumes, each with an iomap-style extent map.
//
// Design note. Metadata lives in memory (state.ts) and changes only through journal ops, applied
// at once and appended to a pending list. commit() is the durability barrier: sync the data, write
// the pending ops as one journal transaction, sync. A checkpoint writes the whole metadata
// copy-on-write into free blocks and flips the superblocks, which bounds replay. The engine talks
// to the store through begin()/end() (mapping.ts), readData()/writeData() and commit().
//
// Ordering rules kept here:
// - an op that makes data readable (SET_KIND to mapped, a COW MAP, UNINLINE) is applied only after
//   the engine reports that data written (end), so the sync at the start of the next commit always
//   covers it; allocation-only ops (hole -> unwritten) may commit at any time;
// - blocks whose refcount reaches zero are reused only after the op that freed them is durable and
//   no pinned I/O covers them (allocator.ts).
import { randomBytes } from 'node:crypto';
import { IomapdError, fail } from '../util/errors.ts';
import type { Storage } from '../storage/storage.ts';
import { Allocator, type SpaceReservation } from './allocator.ts';
import { checkpointSize, decodeCheckpoint, encodeCheckpoint } from './checkpoint-codec.ts';
import { checksum } from '../util/checksum.ts';
import { type CheckReport, verifyMetadata } from './check.ts';
import { committedFree } from './committed-free.ts';
import { ExtentKind, type Run } from './extent.ts';
import {
  FORMAT_VERSION,
  INLINE_MAX,
  MAX_BLOCK_SIZE,
  MIN_BLOCK_SIZE,
  SUPERBLOCK_SLOT,
  VolumeFlags,
  dataBlocksFor,
  isPowerOfTwo,
  metadataReserve,
  roundUp,
} from './format.ts';
import { Journal, type ReplayResult } from './journal.ts';
import { type ExtentInfo, Intent, type Mapping, MappingFlags, MappingType } from './mapping.ts';
import { type Op, OpCode } from './ops.ts';
import { Metadata, type Volume, validVolumeName } from './state.ts';
import { UncommittedRanges } from './uncommitted-ranges.ts';
import { MAX_CHECKPOINT_RUNS, type Superblock, decodeSuperblock, encodeSuperblock } from './superblock.ts';

export interface CreateOptions {
  /** Capacity of the data area in bytes (rounded up to the block size). */
  dataBytes: number;
  blockSize?: number;
  journalBytes?: number;
}

export interface OpenOptions {
  readOnly?: boolean;
}

export interface BeginOptions {
  /** Draw allocations from this reservation (see reserve()). */
  reservation?: SpaceReservation;
  /** ZERO only: leave the range allocated (UNWRITTEN) instead of punching holes. */
  noHole?: boolean;
}

export interface VolumeInfo {
  id: number;
  name: string;
  size: number;
  readOnly: boolean;
  snapshot: boolean;
  inline: boolean;
  extents: number;
  allocatedBytes: number;
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

/** Per-mapping bookkeeping the engine never sees. */
interface Ticket {
  volId: number;
  startBlk: number;
  blocks: number;
  pins: number[];
  /** Blocks this begin allocated for a hole (linked as UNWRITTEN at begin). */
  filled: Run | null;
  /** Private COW target taken at begin, linked at end. */
  cow: Run | null;
  /** For zero/trim on inline volumes: the byte range. */
  pos: number;
  len: number;
  noHole: boolean;
  done: boolean;
}

const SB_COPIES = 2;

export class ImageStore {
  private readonly storage: Storage;
  private sb: Superblock;
  meta: Metadata;
  readonly alloc: Allocator;
  private journal: Journal;
  readonly readOnly: boolean;
  /** How the last open's journal replay ended (for check and info). */
  readonly replay: ReplayResult | null;
  readonly superblockProblems: string[];

  private pendingOps: Op[] = [];
  /** Ops applied so far (1-based index of the last one). */
  private opIndex = 0;
  private durableIndex = 0;
  private dataWrites = 0;
  private syncedWrites = 0;
  /** The data sync in progress and the writes it covers; the one queued behind it (syncData). */
  private syncRunning: { upto: number; done: Promise<void> } | null = null;
  private syncQueued: Promise<void> | null = null;
  private committing: Promise<void> | null = null;
  private failure: IomapdError | null = null;
  private closed = false;
  private readonly tickets = new WeakMap<Mapping, Ticket>();
  /** Map changes not yet durable: a write there is no pure overwrite (E11). */
  private readonly uncommittedMaps = new UncommittedRanges();
  /** Called when the store closes (releases the file lock). */
  onClose: (() => Promise<void>) | null = null;

  private constructor(
    storage: Storage,
    sb: Superblock,
    meta: Metadata,
    journal: Journal,
    readOnly: boolean,
    replay: ReplayResult | null,
    problems: string[],
  ) {
    this.storage = storage;
    this.sb = sb;
    this.meta = meta;
    this.alloc = new Allocator(meta);
    this.alloc.metaReserve = metadataReserve(meta.dataBlocks);
    this.alloc.checkpointBlocks = sb.checkpointRuns.reduce((n, r) => n + r.len, 0);
    this.journal = journal;
    this.readOnly = readOnly;
    this.replay = replay;
    this.superblockProblems = problems;
  }

  get blockSize(): number {
    return this.meta.blockSize;
  }

  // ---------------------------------------------------------------- create and open

  static async create(storage: Storage, opts: CreateOptions): Promise<ImageStore> {
    const B = opts.blockSize ?? 4096;
    if (!isPowerOfTwo(B) || B < MIN_BLOCK_SIZE || B > MAX_BLOCK_SIZE) {
      fail('BAD_ARGUMENT', `block size must be a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}`);
    }
    if (!Number.isSafeInteger(opts.dataBytes) || opts.dataBytes <= 0) fail('BAD_ARGUMENT', 'size must be a positive integer');
    const dataBlocks = dataBlocksFor(Math.ceil(opts.dataBytes / B));
    const journalBytes = roundUp(
      opts.journalBytes ?? Math.min(64 << 20, Math.max(256 << 10, Math.floor(dataBlocks * B / 256))),
      B,
    );
    const journalOffset = roundUp(SB_COPIES * SUPERBLOCK_SLOT, B);
    const dataOffset = roundUp(journalOffset + journalBytes, B);
    const sb: Superblock = {
      version: FORMAT_VERSION,
      blockSize: B,
      generation: 0,
      imageBytes: dataOffset + dataBlocks * B,
      journalOffset,
      journalBytes,
      dataOffset,
      dataBlocks,
      uuid: randomBytes(16),
      journalSalt: randomBytes(4).readUInt32LE(0) || 1,
      journalStart: 0,
      journalSeq: 1,
      journalPrevCrc: 0,
      checkpointBytes: 0,
      checkpointCrc: 0,
      checkpointRuns: [],
    };
    await storage.resize(sb.imageBytes);
    const meta = Metadata.empty(B, dataBlocks);
    const journal = new Journal(storage, regionOf(sb), { head: 0, seq: 1, prevCrc: 0 });
    const store = new ImageStore(storage, sb, meta, journal, false, null, []);
    await store.writeCheckpoint();
    return store;
  }

  static async open(storage: Storage, opts: OpenOptions = {}): Promise<ImageStore> {
    const { sb, problems } = await readSuperblocks(storage);
    const size = await storage.size();
    if (size < sb.imageBytes) fail('CORRUPT', `image is truncated: ${size} bytes, expected ${sb.imageBytes}`);
    const blob = Buffer.alloc(sb.checkpointRuns.reduce((n, r) => n + r.len, 0) * sb.blockSize);
    let at = 0;
    for (const r of sb.checkpointRuns) {
      await storage.read(blob.subarray(at, at + r.len * sb.blockSize), sb.dataOffset + r.start * sb.blockSize);
      at += r.len * sb.blockSize;
    }
    const ckpt = blob.subarray(0, sb.checkpointBytes);
    if (checksum(ckpt) !== sb.checkpointCrc) fail('CORRUPT', 'checkpoint checksum mismatch');
    const meta = decodeCheckpoint(ckpt, sb);
    const replay = await Journal.replay(
      storage,
      regionOf(sb),
      { head: sb.journalStart, seq: sb.journalSeq, prevCrc: sb.journalPrevCrc },
      (ops) => {
        for (const op of ops) {
          try {
            meta.apply(op, 'replay', (s, l) => meta.putFree(s, l));
          } catch (err) {
            return (err as Error).message;
          }
        }
        return null;
      },
    );
    // The live part of the ring starts at the checkpoint's position, not at the replay end.
    const journal = new Journal(storage, regionOf(sb), replay, sb.journalStart);
    const store = new ImageStore(storage, sb, meta, journal, opts.readOnly ?? false, replay, problems);
    if (!store.readOnly && problems.length > 0) await store.writeSuperblocks(sb);
    return store;
  }

  // ---------------------------------------------------------------- volumes

  private volumeByName(name: string): Volume {
    const v = this.meta.byName.get(name);
    if (!v) fail('NOT_FOUND', `no volume named ${JSON.stringify(name)}`);
    return v;
  }

  private info(v: Volume): VolumeInfo {
    let allocated = 0;
    for (const e of v.map.entries()) allocated += e.v.len;
    return {
      id: v.id,
      name: v.name,
      size: v.size,
      readOnly: (v.flags & VolumeFlags.READ_ONLY) !== 0,
      snapshot: (v.flags & VolumeFlags.SNAPSHOT) !== 0,
      inline: v.inline !== null,
      extents: v.map.size,
      allocatedBytes: v.inline ? v.inline.length : allocated * this.blockSize,
    };
  }

  listVolumes(): VolumeInfo[] {
    return [...this.meta.volumes.values()].sort((a, b) => a.id - b.id).map((v) => this.info(v));
  }

  volume(name: string): VolumeInfo {
    return this.info(this.volumeByName(name));
  }

  private writable(): void {
    if (this.closed) fail('IO', 'the image store is closed');
    if (this.readOnly) fail('READ_ONLY', 'the image is open read-only');
    if (this.failure) throw this.failure;
  }

  private checkName(name: string): void {
    if (!validVolumeName(name)) fail('BAD_ARGUMENT', `bad volume name ${JSON.stringify(name)}`);
    if (this.meta.byName.has(name)) fail('ALREADY_EXISTS', `volume ${JSON.stringify(name)} already exists`);
  }

  private checkVolumeSize(size: number): boolean {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
      fail('BAD_ARGUMENT', 'a volume size must be a positive multiple of 512 bytes');
    }
    if (size <= INLINE_MAX) return true;
    if (size % this.blockSize !== 0) {
      fail('BAD_ARGUMENT', `a volume larger than ${INLINE_MAX} bytes must be a multiple of the block size (${this.blockSize})`);
    }
    return false;
  }

  /** Creates a volume; with preallocate, its whole range is allocated UNWRITTEN. Durable on return. */
  async createVolume(name: string, size: number, opts: { readOnly?: boolean; preallocate?: boolean } = {}): Promise<VolumeInfo> {
    this.writable();
    this.checkName(name);
    const inline = this.checkVolumeSize(size);
    const id = this.meta.nextVolumeId;
    const flags = (opts.readOnly ? VolumeFlags.READ_ONLY : 0) | (inline ? VolumeFlags.INLINE : 0);
    if (opts.preallocate && !inline) {
      const blocks = size / this.blockSize;
      const res = this.alloc.reserve(blocks);
      this.log({ code: OpCode.VOL_CREATE, id, flags, size, name });
      let pos = 0;
      let hint: number | null = null;
      while (pos < blocks) {
        const run: Run = this.alloc.allocate(blocks - pos, hint, res)!;
        this.log({ code: OpCode.MAP, vol: id, start: pos, len: run.len, kind: ExtentKind.UNWRITTEN, phys: run.start });
        this.alloc.settle(run, run.len);
        pos += run.len;
        hint = run.start + run.len;
      }
      res.release();
    } else {
      this.log({ code: OpCode.VOL_CREATE, id, flags, size, name });
    }
    await this.commit();
    return this.volume(name);
  }

  async deleteVolume(name: string): Promise<void> {
    this.writable();
    const v = this.volumeByName(name);
    this.log({ code: OpCode.VOL_DELETE, id: v.id });
    await this.commit();
  }

  /** Grows or shrinks a volume. An inline volume grown past the inline limit moves to a block. */
  async resizeVolume(name: string, size: number): Promise<VolumeInfo> {
    this.writable();
    const v = this.volumeByName(name);
    const inline = this.checkVolumeSize(size);
    if (v.inline && !inline) {
      let phys: number | null = null;
      if (v.inline.length > 0) {
        const run = this.alloc.allocate(1, null);
        if (!run) fail('NO_SPACE', 'no space to move inline data to a block');
        const block = Buffer.alloc(this.blockSize);
        v.inline.copy(block);
        try {
          await this.writeData(run.start * this.blockSize, block);
        } catch (err) {
          this.alloc.settle(run, 0);
          throw err;
        }
        this.alloc.settle(run, 1);
        phys = run.start;
      }
      this.log({ code: OpCode.UNINLINE, vol: v.id, size, phys });
    } else if (!v.inline && inline) {
      fail('BAD_ARGUMENT', `a block-mapped volume cannot shrink to ${INLINE_MAX} bytes or less`);
    } else {
      this.log({ code: OpCode.VOL_RESIZE, id: v.id, size });
    }
    await this.commit();
    return this.volume(name);
  }

  /** A read-only snapshot sharing every block of `source`. */
  async snapshot(source: string, name: string): Promise<VolumeInfo> {
    return this.copyVolume(source, name, VolumeFlags.READ_ONLY | VolumeFlags.SNAPSHOT);
  }

  /** A writable clone sharing every block of `source` (usually a snapshot). */
  async clone(source: string, name: string): Promise<VolumeInfo> {
    return this.copyVolume(source, name, 0);
  }

  private async copyVolume(source: string, name: string, flags: number): Promise<VolumeInfo> {
    this.writable();
    const src = this.volumeByName(source);
    this.checkName(name);
    this.log({ code: OpCode.VOL_SNAPSHOT, src: src.id, id: this.meta.nextVolumeId, flags, name });
    await this.commit();
    return this.volume(name);
  }

  // ---------------------------------------------------------------- maps

  /** Pieces of a volume's map in [from, to) bytes, holes included, split where sharing changes. */
  *extents(name: string, from = 0, to = Infinity): IterableIterator<ExtentInfo> {
    const v = this.volumeByName(name);
    if (v.inline) {
      yield { offset: 0, length: v.size, type: MappingType.INLINE, physical: -1, shared: false };
      return;
    }
    const B = this.blockSize;
    const endBlk = Math.min(this.meta.volumeBlocks(v), Math.ceil(Math.min(to, v.size) / B));
    let blk = Math.floor(from / B);
    while (blk < endBlk) {
      const p = this.piece(v, blk, endBlk);
      yield { offset: blk * B, length: p.len * B, type: p.type, physical: p.phys < 0 ? -1 : p.phys * B, shared: p.shared };
      blk += p.len;
    }
  }

  /** The largest piece covering byte `pos` (for block status). */
  lookup(name: string, pos: number): ExtentInfo {
    const v = this.volumeByName(name);
    if (pos < 0 || pos >= v.size) fail('OUT_OF_RANGE', `offset ${pos} is outside volume ${name}`);
    for (const e of this.extents(name, pos)) return e;
    fail('OUT_OF_RANGE', `offset ${pos} is outside volume ${name}`);
  }

  /** The uniform piece of v starting at block blk and ending no later than endBlk. */
  private piece(v: Volume, blk: number, endBlk: number): { len: number; type: MappingType; phys: number; shared: boolean } {
    const hit = v.map.covering(blk);
    if (!hit) {
      const next = v.map.seek(blk);
      const end = Math.min(endBlk, next ? next.start : endBlk);
      return { len: end - blk, type: MappingType.HOLE, phys: -1, shared: false };
    }
    const off = blk - hit.start;
    const phys = hit.v.phys + off;
    let len = Math.min(hit.start + hit.v.len, endBlk) - blk;
    const s = this.meta.shared.covering(phys);
    let shared = false;
    if (s) {
      shared = true;
      len = Math.min(len, s.start + s.v.len - phys);
    } else {
      const next = this.meta.shared.seek(phys);
      if (next && next.start < phys + len) len = next.start - phys;
      const still = this.alloc.stillShared(phys, len);
      shared = still.shared;
      len = still.len;
    }
    const type = hit.v.kind === ExtentKind.MAPPED ? MappingType.MAPPED : MappingType.UNWRITTEN;
    return { len, type, phys, shared };
  }

  // ---------------------------------------------------------------- begin / end

  /** Worst-case space for a write: call before taking locks; release the rest after end(). */
  reserve(blocks: number): SpaceReservation {
    this.writable();
    return this.alloc.reserve(blocks);
  }

  /**
   * Maps the piece of `volume` that starts at the block containing `pos` and ends no later than
   * the block containing `pos + len - 1`. For WRITE, holes are allocated (as UNWRITTEN) and shared
   * blocks get a private COW target. ZERO and TRIM need block-aligned ranges (inline volumes: 512).
   * Every mapping must be passed to end() exactly once.
   */
  async begin(volume: string, pos: number, len: number, intent: Intent, opts: BeginOptions = {}): Promise<Mapping> {
    if (this.closed) fail('IO', 'the image store is closed');
    const v = this.volumeByName(volume);
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(len) || pos < 0 || len <= 0 || pos + len > v.size) {
      fail('OUT_OF_RANGE', `range ${pos}+${len} is outside volume ${volume} (${v.size} bytes)`);
    }
    const modifies = intent !== Intent.READ;
    if (modifies) {
      this.writable();
      if (v.flags & VolumeFlags.READ_ONLY) fail('READ_ONLY', `volume ${volume} is read-only`);
    }
    const B = this.blockSize;
    const t: Ticket = { volId: v.id, startBlk: 0, blocks: 0, pins: [], filled: null, cow: null, pos, len, noHole: !!opts.noHole, done: false };
    const make = (m: Omit<Mapping, 'volume' | 'intent'>): Mapping => {
      // Every field named, in one order, no spread: all mappings share one object shape (hot path).
      const mapping: Mapping = { volume, intent, offset: m.offset, length: m.length, type: m.type, physical: m.physical, flags: m.flags, cowPhysical: m.cowPhysical, inline: m.inline };
      this.tickets.set(mapping, t);
      return mapping;
    };

    if (v.inline) {
      if ((intent === Intent.ZERO || intent === Intent.TRIM) && (pos % 512 !== 0 || len % 512 !== 0)) {
        fail('BAD_ARGUMENT', 'zero and trim ranges must be 512-byte aligned');
      }
      const data = Buffer.alloc(v.size);
      v.inline.copy(data);
      return make({ offset: 0, length: v.size, type: MappingType.INLINE, physical: -1, flags: modifies ? MappingFlags.DIRTY : 0, cowPhysical: -1, inline: data });
    }
    if ((intent === Intent.ZERO || intent === Intent.TRIM) && (pos % B !== 0 || len % B !== 0)) {
      fail('BAD_ARGUMENT', `zero and trim ranges must be aligned to the block size (${B})`);
    }

    const blk = Math.floor(pos / B);
    const endBlk = Math.ceil((pos + len) / B);
    const p = this.piece(v, blk, endBlk);
    t.startBlk = blk;
    t.blocks = p.len;
    const base = { offset: blk * B, length: p.len * B, inline: null };
    const allocates = intent === Intent.WRITE || (intent === Intent.ZERO && t.noHole);

    if (p.type === MappingType.HOLE) {
      if (!allocates) return make({ ...base, type: MappingType.HOLE, physical: -1, flags: 0, cowPhysical: -1 });
      const run = this.takeBlocks(v, blk, p.len, opts.reservation);
      this.log({ code: OpCode.MAP, vol: v.id, start: blk, len: run.len, kind: ExtentKind.UNWRITTEN, phys: run.start });
      this.alloc.settle(run, run.len);
      t.filled = run;
      t.blocks = run.len;
      if (intent === Intent.WRITE) t.pins.push(this.alloc.pin(run.start, run.len));
      return make({ ...base, length: run.len * B, type: MappingType.UNWRITTEN, physical: run.start * B, flags: MappingFlags.DIRTY, cowPhysical: -1 });
    }

    if (p.type === MappingType.UNWRITTEN && p.shared && allocates) {
      // Another volume shares these unwritten blocks: give this one private ones, so a write in
      // place can never show through the other volume. Same contents (zeros), so no ordering rule.
      const run = this.takeBlocks(v, blk, p.len, opts.reservation);
      this.log({ code: OpCode.MAP, vol: v.id, start: blk, len: run.len, kind: ExtentKind.UNWRITTEN, phys: run.start });
      this.alloc.settle(run, run.len);
      t.blocks = run.len;
      if (intent === Intent.WRITE) t.pins.push(this.alloc.pin(run.start, run.len));
      return make({ ...base, length: run.len * B, type: MappingType.UNWRITTEN, physical: run.start * B, flags: MappingFlags.DIRTY, cowPhysical: -1 });
    }

    const sharedFlag = p.shared ? MappingFlags.SHARED : 0;
    if (intent === Intent.READ) {
      if (p.type === MappingType.MAPPED) t.pins.push(this.alloc.pin(p.phys, p.len));
      return make({ ...base, type: p.type, physical: p.phys * B, flags: sharedFlag, cowPhysical: -1 });
    }
    if (intent === Intent.TRIM || (intent === Intent.ZERO && !t.noHole)) {
      return make({ ...base, type: p.type, physical: p.phys * B, flags: sharedFlag | MappingFlags.DIRTY, cowPhysical: -1 });
    }
    if (p.shared) {
      // MAPPED and shared: copy-on-write into private blocks, remapped at end().
      const run = this.takeBlocks(v, blk, p.len, opts.reservation);
      t.cow = run;
      t.blocks = run.len;
      if (intent === Intent.WRITE) {
        t.pins.push(this.alloc.pin(p.phys, run.len), this.alloc.pin(run.start, run.len));
      }
      return make({ ...base, length: run.len * B, type: p.type, physical: p.phys * B, flags: MappingFlags.SHARED | MappingFlags.DIRTY, cowPhysical: run.start * B });
    }
    // Exclusive: write in place. UNWRITTEN needs conversion at end, MAPPED nothing (pure overwrite),
    // unless the map change that made it MAPPED is not durable yet: then a FUA must commit it (E11).
    if (intent === Intent.WRITE) t.pins.push(this.alloc.pin(p.phys, p.len));
    const metadataPending = p.type === MappingType.UNWRITTEN || intent === Intent.ZERO || this.uncommittedMaps.overlaps(v.id, blk, blk + p.len);
    const dirty = metadataPending ? MappingFlags.DIRTY : 0;
    return make({ ...base, type: p.type, physical: p.phys * B, flags: dirty, cowPhysical: -1 });
  }

  private takeBlocks(v: Volume, blk: number, want: number, res: SpaceReservation | undefined): Run {
    const prev = v.map.before(blk);
    const hint = prev && prev.start + prev.v.len === blk ? prev.v.phys + prev.v.len : null;
    const run = this.alloc.allocate(want, hint, res);
    if (!run) fail('NO_SPACE', 'the image has no free space');
    return run;
  }

  /** Copies bytes into an inline volume (between begin(WRITE) and end). */
  writeInline(mapping: Mapping, pos: number, data: Buffer): void {
    const t = this.tickets.get(mapping);
    if (!t || t.done || mapping.type !== MappingType.INLINE || mapping.intent !== Intent.WRITE) {
      fail('BAD_ARGUMENT', 'writeInline needs an open inline WRITE mapping');
    }
    this.writable();
    const v = this.meta.volumes.get(t.volId);
    if (!v || !v.inline) fail('NOT_FOUND', `volume ${mapping.volume} is gone or no longer inline`);
    if (pos < 0 || pos + data.length > v.size) fail('OUT_OF_RANGE', 'inline write past the end of the volume');
    if (data.length > 0) this.log({ code: OpCode.INLINE_WRITE, vol: v.id, offset: pos, data: Buffer.from(data) });
  }

  /**
   * Records the outcome of a mapping. `bytesDone` counts bytes from mapping.offset that were fully
   * written (data, pads and copy-up). On error nothing is converted or remapped: a fresh allocation
   * is rolled back to a hole and a COW target is released.
   */
  async end(mapping: Mapping, bytesDone: number, error?: unknown): Promise<void> {
    const t = this.tickets.get(mapping);
    if (!t || t.done) return;
    t.done = true;
    for (const id of t.pins) this.alloc.unpin(id, this.durableIndex);
    const v = this.meta.volumes.get(t.volId);
    const failed = error !== undefined && error !== null;
    if (!v || this.failure || this.closed) {
      if (t.cow) this.alloc.settle(t.cow, 0);
      return;
    }
    if (failed) {
      if (t.cow) this.alloc.settle(t.cow, 0);
      if (t.filled && !v.inline) this.rollBackFill(v, t);
      return;
    }
    const B = this.blockSize;
    if (mapping.type === MappingType.INLINE) {
      if (mapping.intent === Intent.ZERO || mapping.intent === Intent.TRIM) {
        const inl = v.inline;
        if (inl && t.pos < inl.length) {
          const n = Math.min(t.len, inl.length - t.pos);
          this.log({ code: OpCode.INLINE_WRITE, vol: v.id, offset: t.pos, data: Buffer.alloc(n) });
        }
      }
      return;
    }
    const doneBlocks = Math.max(0, Math.min(t.blocks, Math.floor(bytesDone / B)));
    switch (mapping.intent) {
      case Intent.READ:
        return;
      case Intent.WRITE:
        if (t.cow) {
          if (doneBlocks > 0) {
            this.log({ code: OpCode.MAP, vol: v.id, start: t.startBlk, len: doneBlocks, kind: ExtentKind.MAPPED, phys: t.cow.start });
          }
          this.alloc.settle(t.cow, doneBlocks);
        } else if (mapping.type === MappingType.UNWRITTEN && doneBlocks > 0) {
          this.convert(v, t.startBlk, doneBlocks, mapping.physical / B, ExtentKind.MAPPED);
        }
        return;
      case Intent.ZERO:
      case Intent.TRIM:
        if (doneBlocks === 0) return;
        if (!t.noHole || mapping.intent === Intent.TRIM) {
          if (mapping.type !== MappingType.HOLE) {
            this.log({ code: OpCode.MAP, vol: v.id, start: t.startBlk, len: doneBlocks, kind: 0, phys: 0 });
          }
        } else if (t.cow) {
          this.log({ code: OpCode.MAP, vol: v.id, start: t.startBlk, len: doneBlocks, kind: ExtentKind.UNWRITTEN, phys: t.cow.start });
          this.alloc.settle(t.cow, doneBlocks);
        } else if (mapping.type === MappingType.MAPPED) {
          this.convert(v, t.startBlk, doneBlocks, mapping.physical / B, ExtentKind.UNWRITTEN);
        }
        return;
    }
  }

  /** SET_KIND over the parts of [start, start+len) still mapped at the expected physical blocks. */
  private convert(v: Volume, start: number, len: number, phys: number, to: 1 | 2): void {
    for (const [s, n] of this.matching(v, start, len, phys)) {
      this.log({ code: OpCode.SET_KIND, vol: v.id, start: s, len: n, kind: to });
    }
  }

  private rollBackFill(v: Volume, t: Ticket): void {
    const run = t.filled!;
    for (const [s, n] of this.matching(v, t.startBlk, run.len, run.start, ExtentKind.UNWRITTEN)) {
      this.log({ code: OpCode.MAP, vol: v.id, start: s, len: n, kind: 0, phys: 0 });
    }
  }

  /** Sub-ranges of [start, start+len) whose extent maps logical start+i to phys+i (and has `kind`). */
  private matching(v: Volume, start: number, len: number, phys: number, kind?: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const end = start + len;
    for (const e of v.map.overlapping(start, end)) {
      const s = Math.max(start, e.start);
      const n = Math.min(end, e.start + e.v.len) - s;
      if (e.v.phys + (s - e.start) !== phys + (s - start)) continue;
      if (kind !== undefined && e.v.kind !== kind) continue;
      out.push([s, n]);
    }
    return out;
  }

  // ---------------------------------------------------------------- data

  private checkData(physical: number, length: number): void {
    if (!Number.isSafeInteger(physical) || physical < 0 || physical + length > this.meta.dataBlocks * this.blockSize) {
      fail('OUT_OF_RANGE', `data range ${physical}+${length} is outside the data area`);
    }
  }

  /** Reads data-area bytes at `physical` (a byte offset from a mapping) into buf. */
  async readData(physical: number, buf: Buffer): Promise<void> {
    this.checkData(physical, buf.length);
    await this.storage.read(buf, this.sb.dataOffset + physical);
  }

  /**
   * The read fast path: when [offset, offset+into.length) of `volume` lies in one MAPPED extent and
   * the storage can read it now (storage.readNow), reads it synchronously and returns true.
   * Otherwise false, having done nothing: the caller uses begin/readData/end. Lookup and read
   * happen in one synchronous step, so no TRIM or COW can free the blocks in between (no pin).
   */
  readNow(volume: string, offset: number, into: Buffer): boolean {
    const v = this.meta.byName.get(volume);
    if (this.closed || !v || v.inline || this.storage.readNow === undefined) return false;
    const len = into.length;
    if (!Number.isSafeInteger(offset) || offset < 0 || len <= 0 || offset + len > v.size) return false;
    const B = this.blockSize;
    const blk = Math.floor(offset / B);
    const hit = v.map.covering(blk);
    if (!hit || hit.v.kind !== ExtentKind.MAPPED || (hit.start + hit.v.len) * B < offset + len) return false;
    const physical = (hit.v.phys + blk - hit.start) * B + (offset - blk * B);
    this.checkData(physical, len);
    return this.storage.readNow(into, this.sb.dataOffset + physical);
  }

  /** Writes data-area bytes. Not durable until syncData() or commit(). */
  async writeData(physical: number, buf: Buffer): Promise<void> {
    this.checkData(physical, buf.length);
    if (this.failure) throw this.failure;
    await this.storage.write(buf, this.sb.dataOffset + physical);
    // Counted once it completed: a sync covers the writes counted when it started, and a write
    // still in flight then may land after the sync (a later FLUSH must sync again).
    this.dataWrites++;
  }

  /**
   * Makes completed data writes durable without a journal commit (the FUA shortcut, and FLUSH when
   * no metadata changed). Overlapping callers share fdatasyncs (group commit for data): a sync
   * covers the writes completed when it started, so a caller waits for the running one if that
   * covers its writes, and otherwise for the next one, which starts when the running one ends and
   * is shared by every caller that arrives meanwhile.
   */
  syncData(): Promise<void> {
    const need = this.dataWrites;
    if (this.syncQueued !== null) return this.syncQueued;
    const running = this.syncRunning;
    if (running === null) return this.startSync();
    if (running.upto >= need) return running.done;
    this.syncQueued = running.done
      .catch(() => {})
      .then(() => {
        this.syncQueued = null;
        return this.startSync();
      });
    return this.syncQueued;
  }

  private startSync(): Promise<void> {
    const entry = { upto: this.dataWrites, done: Promise.resolve() };
    this.syncRunning = entry; // before the sync starts, so its end always finds it
    entry.done = this.runSync(entry);
    return entry.done;
  }

  private async runSync(entry: { upto: number }): Promise<void> {
    try {
      await this.storage.sync();
    } catch (err) {
      throw this.poison(err);
    } finally {
      if (this.syncRunning === entry) this.syncRunning = null;
    }
    this.syncedWrites = Math.max(this.syncedWrites, entry.upto);
  }

  // ---------------------------------------------------------------- durability

  /**
   * A sync, journal or checkpoint write failed, so what is on disk is unknown: from now on the
   * store refuses writes with STORAGE_POISONED (EIO) instead of guessing (style habit 10). The
   * caller that hit the failure still reports the real error (EIO or ENOSPC).
   */
  private poison(err: unknown): IomapdError {
    const first = asStoreError(err);
    this.failure ??= new IomapdError('STORAGE_POISONED', `the image refuses writes after a failed sync or metadata write: ${first.message}`, { cause: first });
    return first;
  }

  /** Appends an op: applied to memory now, durable at the next commit. */
  private log(op: Op): void {
    const tag = this.opIndex + 1;
    this.meta.onUnshare = (s, l) => this.alloc.deferUnshare(s, l, tag);
    try {
      this.meta.apply(op, 'live', (s, l) => this.alloc.deferFree(s, l, tag));
    } finally {
      this.meta.onUnshare = null;
    }
    this.opIndex = tag;
    this.pendingOps.push(op);
    if (op.code === OpCode.MAP || op.code === OpCode.SET_KIND) this.uncommittedMaps.add(op.vol, op.start, op.len, tag);
  }

  get uncommitted(): number {
    return this.opIndex - this.durableIndex;
  }

  /**
   * Makes every op applied before the call durable: sync data, write the journal transaction,
   * sync. Concurrent callers share commits (group commit).
   */
  async commit(): Promise<void> {
    const target = this.opIndex;
    while (this.durableIndex < target) {
      if (this.failure) throw this.failure;
      if (this.committing) {
        await this.committing.catch(() => {});
        continue;
      }
      this.committing = this.runCommit().finally(() => {
        this.committing = null;
      });
      await this.committing;
    }
    if (this.failure) throw this.failure;
    // Pure overwrites change no metadata, but a commit (FLUSH) must still cover their data.
    if (this.dataWrites > this.syncedWrites) await this.syncData();
  }

  private async runCommit(): Promise<void> {
    this.writable();
    const ops = this.pendingOps;
    const upto = this.opIndex;
    this.pendingOps = [];
    try {
      const planned = this.journal.plan(ops);
      if (!planned) {
        // The ring is full: a checkpoint covers these ops (and the ring starts over).
        this.pendingOps = ops.concat(this.pendingOps);
        await this.writeCheckpoint();
        return;
      }
      await this.syncDataIfNeeded();
      try {
        await this.journal.write(planned);
        await this.storage.sync();
      } catch (err) {
        // These ops have left pendingOps and what reached the journal is unknown, so this poisons
        // the store even for ENOSPC (a sparse image file on a full filesystem): never retry or guess.
        throw this.poison(err);
      }
      this.durableIndex = upto;
      this.alloc.releaseDurable(upto);
      this.uncommittedMaps.releaseDurable(upto);
      if (this.journal.used > this.journal.size / 2) {
        await this.writeCheckpoint().catch((err) => {
          if (!(err instanceof IomapdError && err.code === 'NO_SPACE' && !this.failure)) throw err;
        });
      }
    } catch (err) {
      // A checkpoint that found no space wrote nothing: the store stays usable.
      if (err instanceof IomapdError && err.code === 'NO_SPACE' && !this.failure) throw err;
      throw this.poison(err);
    }
  }

  private async syncDataIfNeeded(): Promise<void> {
    if (this.dataWrites === this.syncedWrites) return;
    await this.syncData();
  }

  /** Writes a checkpoint now (bounding replay) and makes every applied op durable. */
  async checkpoint(): Promise<void> {
    this.writable();
    while (this.committing) await this.committing.catch(() => {});
    this.committing = this.writeCheckpoint().finally(() => {
      this.committing = null;
    });
    await this.committing;
  }

  /**
   * Checkpoint: serialize the metadata (synchronously, so it is one consistent state), sync the
   * data it points to, write it into free blocks, sync, then flip both superblocks one at a time.
   * The previous checkpoint's blocks are freed only after both copies point at the new one.
   */
  private async writeCheckpoint(): Promise<void> {
    const B = this.blockSize;
    const oldRuns = this.sb.checkpointRuns;
    const extra = [...oldRuns, ...this.alloc.pendingRuns(), ...this.alloc.takenRuns()];
    const bound = checkpointSize(this.meta, extra.length + 2 * MAX_CHECKPOINT_RUNS);
    // Fails with NO_SPACE before any I/O, so the store stays usable (the journal still works).
    const runs = this.takeCheckpointRuns(Math.ceil(bound / B));
    try {
      const generation = this.sb.generation + 1;
      const blob = encodeCheckpoint(this.meta, generation, committedFree(this.meta.free, extra));
      const upto = this.opIndex;
      const covered = this.pendingOps.length;
      const start = { ...this.journal.pos };
      const synced = this.dataWrites; // writes completed before this sync starts
      await this.storage.sync();
      this.syncedWrites = Math.max(this.syncedWrites, synced);
      let at = 0;
      for (const r of runs) {
        if (at >= blob.length) break;
        const chunk = Buffer.alloc(r.len * B);
        blob.copy(chunk, 0, at, Math.min(blob.length, at + chunk.length));
        await this.storage.write(chunk, this.sb.dataOffset + r.start * B);
        at += chunk.length;
      }
      await this.storage.sync();
      const sb: Superblock = {
        ...this.sb,
        generation,
        journalStart: start.head,
        journalSeq: start.seq,
        journalPrevCrc: start.prevCrc,
        checkpointBytes: blob.length,
        checkpointCrc: checksum(blob),
        checkpointRuns: runs,
      };
      await this.writeSuperblocks(sb);
      this.sb = sb;
      this.alloc.checkpointBlocks = runs.reduce((n, r) => n + r.len, 0);
      this.journal.truncate();
      for (const r of oldRuns) this.meta.putFree(r.start, r.len);
      this.pendingOps.splice(0, covered);
      this.durableIndex = Math.max(this.durableIndex, upto);
      this.alloc.releaseDurable(this.durableIndex);
      this.uncommittedMaps.releaseDurable(this.durableIndex);
    } catch (err) {
      throw this.poison(err);
    }
  }

  /** Takes `blocks` blocks for a checkpoint in as few runs as the free space allows. */
  private takeCheckpointRuns(blocks: number): Run[] {
    const runs: Run[] = [];
    let need = blocks;
    while (need > 0) {
      // Checkpoints may use reserved space: metadata must always be writable.
      const hit = this.meta.free.seek(0);
      let best = hit;
      if (hit && hit.v.len < need) {
        for (const e of this.meta.free.entries()) if (!best || e.v.len > best.v.len) best = e;
      }
      if (!best || runs.length >= MAX_CHECKPOINT_RUNS) {
        for (const r of runs) this.meta.putFree(r.start, r.len);
        fail('NO_SPACE', 'no space left for a metadata checkpoint');
      }
      const len = Math.min(need, best.v.len);
      this.meta.takeFree(best.start, len);
      runs.push({ start: best.start, len });
      need -= len;
    }
    return runs;
  }

  private async writeSuperblocks(sb: Superblock): Promise<void> {
    const buf = encodeSuperblock(sb);
    for (let i = 0; i < SB_COPIES; i++) {
      await this.storage.write(buf, i * SUPERBLOCK_SLOT);
      await this.storage.sync();
    }
  }

  stats(): StoreStats {
    return {
      formatVersion: this.sb.version,
      uuid: this.sb.uuid.toString('hex'),
      generation: this.sb.generation,
      blockSize: this.blockSize,
      dataBlocks: this.meta.dataBlocks,
      freeBlocks: this.meta.freeBlocks,
      pendingFreeBlocks: this.alloc.pendingBlocks,
      reservedBlocks: this.alloc.reservedBlocks,
      journalBytes: this.journal.size,
      journalUsed: this.journal.used,
      volumes: this.meta.volumes.size,
      uncommittedOps: this.uncommitted,
    };
  }

  /** Verifies the live metadata (tests and debug builds; O(extents log extents)). */
  verify(): CheckReport {
    return verifyMetadata(this.meta, this.sb.checkpointRuns, [...this.alloc.pendingRuns(), ...this.alloc.takenRuns()]);
  }

  /** The blocks holding the current checkpoint (for check). */
  get checkpointRuns(): readonly Run[] {
    return this.sb.checkpointRuns;
  }

  get superblock(): Readonly<Superblock> {
    return this.sb;
  }

  /** Replaces the metadata with a rebuilt copy and checkpoints it (check --repair). */
  async replaceMetadata(meta: Metadata): Promise<void> {
    this.writable();
    if (this.opIndex !== this.durableIndex || this.alloc.pinCount > 0) fail('BAD_ARGUMENT', 'repair needs an idle store');
    this.meta = meta;
    this.alloc.meta = meta;
    await this.checkpoint();
  }

  /** Commits, writes a final checkpoint (so the next open replays nothing) and closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.readOnly && !this.failure) {
        await this.commit();
        if (this.journal.used > 0) await this.checkpoint();
      }
    } finally {
      this.closed = true;
      await this.storage.close();
      await this.onClose?.();
    }
  }

  /** Drops the store without committing (tests: simulate a crash of the process). */
  async abandon(): Promise<void> {
    this.closed = true;
    await this.onClose?.();
  }
}

function regionOf(sb: Superblock): { offset: number; size: number; salt: number } {
  return { offset: sb.journalOffset, size: sb.journalBytes, salt: sb.journalSalt };
}

function asStoreError(err: unknown): IomapdError {
  return err instanceof IomapdError ? err : new IomapdError('IO', (err as Error)?.message ?? String(err), { cause: err });
}

/** Reads both superblock copies and picks the valid one with the highest generation. */
export async function readSuperblocks(storage: Storage): Promise<{ sb: Superblock; problems: string[] }> {
  const found: Superblock[] = [];
  const errors: IomapdError[] = [];
  const problems: string[] = [];
  for (let i = 0; i < SB_COPIES; i++) {
    const buf = Buffer.alloc(SUPERBLOCK_SLOT);
    await storage.read(buf, i * SUPERBLOCK_SLOT);
    try {
      found.push(decodeSuperblock(buf));
    } catch (err) {
      const e = asStoreError(err);
      errors.push(e);
      problems.push(`superblock copy ${i}: ${e.code}: ${e.message}`);
    }
  }
  if (found.length === 0) {
    const tooNew = errors.find((e) => e.code === 'FORMAT_TOO_NEW');
    if (tooNew) throw tooNew;
    if (errors.every((e) => e.code === 'BAD_MAGIC')) throw errors[0]!;
    throw new IomapdError('CORRUPT', `no valid superblock: ${problems.join('; ')}`);
  }
  found.sort((a, b) => b.generation - a.generation);
  const sb = found[0]!;
  if (found.length === 2 && found[1]!.generation !== sb.generation) {
    problems.push(`superblock copies disagree (generations ${sb.generation} and ${found[1]!.generation})`);
  }
  return { sb, problems };
}
