// The mapper: a volume's logical blocks as iomap-style mappings (hole, unwritten, mapped, inline,
// shared), the begin/end contract with the engine, allocation and copy-on-write. Backend-
// independent: it changes metadata only through the op log and never touches the data itself.
//
// begin() returns the largest mapping covering a position; for WRITE it allocates holes (linked
// UNWRITTEN at once: same contents, no ordering rule) and takes private COW targets for shared
// blocks. end() records the outcome: an op that makes data readable (SET_KIND to mapped, a COW
// MAP) is logged only after the engine reports the data written, so the data sync at the start of
// the next commit always covers it. Each mapping carries a ticket (pins, allocations) the engine
// never sees; pins keep blocks a request reads or writes from being reused (allocator.ts).
import { fail } from '../util/errors.ts';
import type { SpaceReservation } from './allocator.ts';
import type { BTree } from './btree.ts';
import { type Extent, ExtentKind, type Run } from './extent.ts';
import { VolumeFlags } from './format.ts';
import { type ExtentInfo, Intent, type Mapping, MappingFlags, MappingType } from './mapping.ts';
import type { OpLog } from './op-log.ts';
import { OpCode } from './ops.ts';
import type { Volume } from './state.ts';
import type { StoreState } from './store-state.ts';

export interface BeginOptions {
  /** Draw allocations from this reservation (see reserve()). */
  reservation?: SpaceReservation;
  /** ZERO only: leave the range allocated (UNWRITTEN) instead of punching holes. */
  noHole?: boolean;
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

export class Mapper {
  private readonly state: StoreState;
  private readonly ops: OpLog;
  private readonly tickets = new WeakMap<Mapping, Ticket>();

  constructor(state: StoreState, ops: OpLog) {
    this.state = state;
    this.ops = ops;
  }

  get blockSize(): number {
    return this.state.blockSize;
  }

  /** Whether `name` is an inline volume (O(1); NOT_FOUND if it does not exist). */
  isInline(name: string): boolean {
    return this.state.volumeByName(name).inline !== null;
  }

  /**
   * For the read fast path: the data-area byte offset of [offset, offset+len) of `volume` when it
   * lies in one MAPPED extent, else -1. The caller reads in the same synchronous step, so nothing
   * can free the blocks in between (no pin needed).
   */
  mappedAt(volume: string, offset: number, len: number): number {
    const v = this.state.meta.byName.get(volume);
    if (this.state.closed || !v || v.inline) return -1;
    if (!Number.isSafeInteger(offset) || offset < 0 || len <= 0 || offset + len > v.size) return -1;
    const B = this.state.blockSize;
    const blk = Math.floor(offset / B);
    const hit = v.map.covering(blk);
    if (!hit || hit.v.kind !== ExtentKind.MAPPED || (hit.start + hit.v.len) * B < offset + len) return -1;
    return (hit.v.phys + blk - hit.start) * B + (offset - blk * B);
  }

  /** The extent tree of a block-mapped volume (tree-diff.ts compares two by node identity). */
  extentTree(name: string): BTree<Extent> {
    return this.state.volumeByName(name).map.tree;
  }

  /** Pieces of a volume's map in [from, to) bytes, holes included, split where sharing changes. */
  *extents(name: string, from = 0, to = Infinity): IterableIterator<ExtentInfo> {
    const v = this.state.volumeByName(name);
    if (v.inline) {
      yield { offset: 0, length: v.size, type: MappingType.INLINE, physical: -1, shared: false };
      return;
    }
    const B = this.state.blockSize;
    const endBlk = Math.min(this.state.meta.volumeBlocks(v), Math.ceil(Math.min(to, v.size) / B));
    let blk = Math.floor(from / B);
    while (blk < endBlk) {
      const p = this.piece(v, blk, endBlk);
      yield { offset: blk * B, length: p.len * B, type: p.type, physical: p.phys < 0 ? -1 : p.phys * B, shared: p.shared };
      blk += p.len;
    }
  }

  /** The largest piece covering byte `pos` (for block status). */
  lookup(name: string, pos: number): ExtentInfo {
    const v = this.state.volumeByName(name);
    if (pos < 0 || pos >= v.size) fail('OUT_OF_RANGE', `offset ${pos} is outside volume ${name}`);
    for (const e of this.extents(name, pos)) return e;
    fail('OUT_OF_RANGE', `offset ${pos} is outside volume ${name}`);
  }

  /** The uniform piece of v starting at block blk and ending no later than endBlk. */
  private piece(v: Volume, blk: number, endBlk: number): { len: number; type: MappingType; phys: number; shared: boolean } {
    const hit = v.map.coveringShared(blk, this.ops.durableIndex);
    if (!hit) {
      const next = v.map.seek(blk);
      const end = Math.min(endBlk, next ? next.start : endBlk);
      return { len: end - blk, type: MappingType.HOLE, phys: -1, shared: false };
    }
    const off = blk - hit.start;
    const phys = hit.v.phys + off;
    let len = Math.min(hit.start + hit.v.len, endBlk) - blk;
    const s = this.state.meta.shared.covering(phys);
    let shared = false;
    if (hit.shared) {
      // A tree node on the path is shared with another volume (a snapshot not yet diverged here).
      shared = true;
    } else if (s) {
      shared = true;
      len = Math.min(len, s.start + s.v.len - phys);
    } else {
      const next = this.state.meta.shared.seek(phys);
      if (next && next.start < phys + len) len = next.start - phys;
      const still = this.state.alloc.stillShared(phys, len);
      shared = still.shared;
      len = still.len;
    }
    const type = hit.v.kind === ExtentKind.MAPPED ? MappingType.MAPPED : MappingType.UNWRITTEN;
    return { len, type, phys, shared };
  }

  
  /** Worst-case space for a write: call before taking locks; release the rest after end(). */
  reserve(blocks: number): SpaceReservation {
    this.state.writable();
    return this.state.alloc.reserve(blocks);
  }

  /**
   * Maps the piece of `volume` that starts at the block containing `pos` and ends no later than
   * the block containing `pos + len - 1`. For WRITE, holes are allocated (as UNWRITTEN) and shared
   * blocks get a private COW target. ZERO and TRIM need block-aligned ranges (inline volumes: 512).
   * Every mapping must be passed to end() exactly once.
   */
  async begin(volume: string, pos: number, len: number, intent: Intent, opts: BeginOptions = {}): Promise<Mapping> {
    this.state.open();
    const v = this.state.volumeByName(volume);
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(len) || pos < 0 || len <= 0 || pos + len > v.size) {
      fail('OUT_OF_RANGE', `range ${pos}+${len} is outside volume ${volume} (${v.size} bytes)`);
    }
    const modifies = intent !== Intent.READ;
    if (modifies) {
      this.state.writable();
      if (v.flags & VolumeFlags.READ_ONLY) fail('READ_ONLY', `volume ${volume} is read-only`);
    }
    const B = this.state.blockSize;
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
      this.ops.log({ code: OpCode.MAP, vol: v.id, start: blk, len: run.len, kind: ExtentKind.UNWRITTEN, phys: run.start });
      this.state.alloc.settle(run, run.len);
      t.filled = run;
      t.blocks = run.len;
      if (intent === Intent.WRITE) t.pins.push(this.state.alloc.pin(run.start, run.len));
      return make({ ...base, length: run.len * B, type: MappingType.UNWRITTEN, physical: run.start * B, flags: MappingFlags.DIRTY, cowPhysical: -1 });
    }

    if (p.type === MappingType.UNWRITTEN && p.shared && allocates) {
      // Another volume shares these unwritten blocks: give this one private ones, so a write in
      // place can never show through the other volume. Same contents (zeros), so no ordering rule.
      const run = this.takeBlocks(v, blk, p.len, opts.reservation);
      this.ops.log({ code: OpCode.MAP, vol: v.id, start: blk, len: run.len, kind: ExtentKind.UNWRITTEN, phys: run.start });
      this.state.alloc.settle(run, run.len);
      t.blocks = run.len;
      if (intent === Intent.WRITE) t.pins.push(this.state.alloc.pin(run.start, run.len));
      return make({ ...base, length: run.len * B, type: MappingType.UNWRITTEN, physical: run.start * B, flags: MappingFlags.DIRTY, cowPhysical: -1 });
    }

    const sharedFlag = p.shared ? MappingFlags.SHARED : 0;
    if (intent === Intent.READ) {
      if (p.type === MappingType.MAPPED) t.pins.push(this.state.alloc.pin(p.phys, p.len));
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
        t.pins.push(this.state.alloc.pin(p.phys, run.len), this.state.alloc.pin(run.start, run.len));
      }
      return make({ ...base, length: run.len * B, type: p.type, physical: p.phys * B, flags: MappingFlags.SHARED | MappingFlags.DIRTY, cowPhysical: run.start * B });
    }
    // Exclusive: write in place. UNWRITTEN needs conversion at end, MAPPED nothing (pure overwrite),
    // unless the map change that made it MAPPED is not durable yet: then a FUA must commit it (E11).
    if (intent === Intent.WRITE) t.pins.push(this.state.alloc.pin(p.phys, p.len));
    const metadataPending = p.type === MappingType.UNWRITTEN || intent === Intent.ZERO || this.ops.uncommittedMaps.overlaps(v.id, blk, blk + p.len);
    const dirty = metadataPending ? MappingFlags.DIRTY : 0;
    return make({ ...base, type: p.type, physical: p.phys * B, flags: dirty, cowPhysical: -1 });
  }

  private takeBlocks(v: Volume, blk: number, want: number, res: SpaceReservation | undefined): Run {
    const prev = v.map.before(blk);
    const hint = prev && prev.start + prev.v.len === blk ? prev.v.phys + prev.v.len : null;
    const run = this.state.alloc.allocate(want, hint, res);
    if (!run) fail('NO_SPACE', 'the image has no free space');
    return run;
  }

  /** Copies bytes into an inline volume (between begin(WRITE) and end). */
  writeInline(mapping: Mapping, pos: number, data: Buffer): void {
    const t = this.tickets.get(mapping);
    if (!t || t.done || mapping.type !== MappingType.INLINE || mapping.intent !== Intent.WRITE) {
      fail('BAD_ARGUMENT', 'writeInline needs an open inline WRITE mapping');
    }
    this.state.writable();
    const v = this.state.meta.volumes.get(t.volId);
    if (!v || !v.inline) fail('NOT_FOUND', `volume ${mapping.volume} is gone or no longer inline`);
    if (pos < 0 || pos + data.length > v.size) fail('OUT_OF_RANGE', 'inline write past the end of the volume');
    if (data.length > 0) this.ops.log({ code: OpCode.INLINE_WRITE, vol: v.id, offset: pos, data: Buffer.from(data) });
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
    for (const id of t.pins) this.state.alloc.unpin(id, this.ops.durableIndex);
    const v = this.state.meta.volumes.get(t.volId);
    const failed = error !== undefined && error !== null;
    if (!v || this.state.latch.poisoned || this.state.closed) {
      if (t.cow) this.state.alloc.settle(t.cow, 0);
      return;
    }
    if (failed) {
      if (t.cow) this.state.alloc.settle(t.cow, 0);
      if (t.filled && !v.inline) this.rollBackFill(v, t);
      return;
    }
    const B = this.state.blockSize;
    if (mapping.type === MappingType.INLINE) {
      if (mapping.intent === Intent.ZERO || mapping.intent === Intent.TRIM) {
        const inl = v.inline;
        if (inl && t.pos < inl.length) {
          const n = Math.min(t.len, inl.length - t.pos);
          this.ops.log({ code: OpCode.INLINE_WRITE, vol: v.id, offset: t.pos, data: Buffer.alloc(n) });
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
            this.ops.log({ code: OpCode.MAP, vol: v.id, start: t.startBlk, len: doneBlocks, kind: ExtentKind.MAPPED, phys: t.cow.start });
          }
          this.state.alloc.settle(t.cow, doneBlocks);
        } else if (mapping.type === MappingType.UNWRITTEN && doneBlocks > 0) {
          this.convert(v, t.startBlk, doneBlocks, mapping.physical / B, ExtentKind.MAPPED);
        }
        return;
      case Intent.ZERO:
      case Intent.TRIM:
        if (doneBlocks === 0) return;
        if (!t.noHole || mapping.intent === Intent.TRIM) {
          if (mapping.type !== MappingType.HOLE) {
            this.ops.log({ code: OpCode.MAP, vol: v.id, start: t.startBlk, len: doneBlocks, kind: 0, phys: 0 });
          }
        } else if (t.cow) {
          this.ops.log({ code: OpCode.MAP, vol: v.id, start: t.startBlk, len: doneBlocks, kind: ExtentKind.UNWRITTEN, phys: t.cow.start });
          this.state.alloc.settle(t.cow, doneBlocks);
        } else if (mapping.type === MappingType.MAPPED) {
          this.convert(v, t.startBlk, doneBlocks, mapping.physical / B, ExtentKind.UNWRITTEN);
        }
        return;
    }
  }

  /** SET_KIND over the parts of [start, start+len) still mapped at the expected physical blocks. */
  private convert(v: Volume, start: number, len: number, phys: number, to: 1 | 2): void {
    for (const [s, n] of this.matching(v, start, len, phys)) {
      this.ops.log({ code: OpCode.SET_KIND, vol: v.id, start: s, len: n, kind: to });
    }
  }

  private rollBackFill(v: Volume, t: Ticket): void {
    const run = t.filled!;
    for (const [s, n] of this.matching(v, t.startBlk, run.len, run.start, ExtentKind.UNWRITTEN)) {
      this.ops.log({ code: OpCode.MAP, vol: v.id, start: s, len: n, kind: 0, phys: 0 });
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
}
