// Block allocation over the metadata's free space, plus the in-memory states a block passes through
// that never reach the disk:
// - reserved: counted space promised to a request (SpaceReservation), so it cannot hit ENOSPC later;
// - taken: removed from free space for a request but not yet linked into a map (COW targets);
// - pending free: its reference count reached zero, but it is reused only after the commit that
//   freed it is durable and no I/O pinned on it is in flight (durability rule 5).
// Placement is next-fit from a hint (the block after the previous extent), so sequential writes
// land contiguously.
import { IomapdError } from '../util/errors.ts';
import type { Run } from './extent.ts';
import type { Metadata } from './state.ts';

/** Space set aside for one request; draw from it with allocate, then release the rest. */
export class SpaceReservation {
  remaining: number;
  private readonly owner: Allocator;

  constructor(owner: Allocator, blocks: number) {
    this.owner = owner;
    this.remaining = blocks;
  }

  /** Gives back whatever was not used. Safe to call more than once. */
  release(): void {
    this.owner.unreserve(this.remaining);
    this.remaining = 0;
  }
}

interface Pending extends Run {
  /** The op index whose durability frees it. */
  tag: number;
}

export class Allocator {
  meta: Metadata;
  /** Blocks promised to reservations and not yet drawn. */
  reservedBlocks = 0;
  /** Blocks taken out of free space and not yet linked (or given back). */
  takenBlocks = 0;
  private pending: Pending[] = [];
  pendingBlocks = 0;
  private pins = new Map<number, Run>();
  private taken = new Set<Run>();
  private nextPin = 1;
  private cursor = 0;

  constructor(meta: Metadata) {
    this.meta = meta;
  }

  /** Blocks kept back for metadata checkpoints; data allocations never use them. */
  metaReserve = 0;
  /** Blocks the current checkpoint occupies (they count against the reserve). */
  checkpointBlocks = 0;

  /** Blocks an unreserved allocation may still take. */
  get available(): number {
    return this.meta.freeBlocks - this.reservedBlocks - Math.max(0, this.metaReserve - this.checkpointBlocks);
  }

  reserve(blocks: number): SpaceReservation {
    if (blocks > this.available) throw new IomapdError('NO_SPACE', `need ${blocks} blocks, ${this.available} available`);
    this.reservedBlocks += blocks;
    return new SpaceReservation(this, blocks);
  }

  unreserve(blocks: number): void {
    this.reservedBlocks -= blocks;
  }

  /**
   * Takes up to `want` contiguous blocks, at `hint` if that block is free, else next-fit. With a
   * reservation the blocks come out of it; without one, only unreserved space is used.
   * Returns null when nothing can be allocated.
   */
  allocate(want: number, hint: number | null, res?: SpaceReservation): Run | null {
    const limit = res ? Math.min(want, res.remaining) : Math.min(want, this.available);
    if (limit <= 0) return null;
    const free = this.meta.free;
    let hit = hint !== null ? free.covering(hint) : null;
    let start = hint ?? 0;
    if (!hit) {
      hit = free.seek(this.cursor) ?? free.seek(0);
      if (!hit) return null;
      const coversCursor = hit.start <= this.cursor && this.cursor < hit.start + hit.v.len;
      start = coversCursor ? this.cursor : hit.start;
    }
    const len = Math.min(limit, hit.start + hit.v.len - start);
    this.meta.takeFree(start, len);
    this.takenBlocks += len;
    if (res) {
      res.remaining -= len;
      this.reservedBlocks -= len;
    }
    this.cursor = start + len;
    if (this.cursor >= this.meta.dataBlocks) this.cursor = 0;
    const run = { start, len };
    this.taken.add(run);
    return run;
  }

  /**
   * Settles a taken run: its first `linkedBlocks` blocks were linked into a map (count 1 now);
   * the rest go straight back to free space, since nothing durable ever referred to them.
   */
  settle(run: Run, linkedBlocks: number): void {
    if (!this.taken.delete(run)) return;
    this.takenBlocks -= run.len;
    if (linkedBlocks < run.len) this.meta.putFree(run.start + linkedBlocks, run.len - linkedBlocks);
  }

  /** Runs taken and not yet settled (free in the committed view). */
  takenRuns(): Run[] {
    return [...this.taken].map((r) => ({ start: r.start, len: r.len }));
  }

  /** A block whose count reached zero: reusable once op `tag` is durable and no pin covers it. */
  deferFree(start: number, len: number, tag: number): void {
    this.pending.push({ start, len, tag });
    this.pendingBlocks += len;
  }

  pin(start: number, len: number): number {
    const id = this.nextPin++;
    this.pins.set(id, { start, len });
    return id;
  }

  unpin(id: number, durableTag: number): void {
    if (this.pins.delete(id)) this.releaseDurable(durableTag);
  }

  get pinCount(): number {
    return this.pins.size;
  }

  private pinned(r: Run): boolean {
    for (const p of this.pins.values()) {
      if (p.start < r.start + r.len && r.start < p.start + p.len) return true;
    }
    return false;
  }

  /** Moves pending frees whose op is durable (tag <= durableTag) and that are unpinned to free space. */
  releaseDurable(durableTag: number): void {
    if (this.unsharing.length > 0) this.unsharing = this.unsharing.filter((u) => u.tag > durableTag);
    if (this.pending.length === 0) return;
    const keep: Pending[] = [];
    for (const p of this.pending) {
      if (p.tag <= durableTag && (this.pins.size === 0 || !this.pinned(p))) {
        this.meta.putFree(p.start, p.len);
        this.pendingBlocks -= p.len;
      } else keep.push(p);
    }
    this.pending = keep;
  }

  /**
   * Blocks that went from shared to exclusive in an op not yet durable. Until it is, the
   * committed state still shares them, so writes must not go in place (a crash would show the
   * write through the other volume).
   */
  private unsharing: Pending[] = [];

  deferUnshare(start: number, len: number, tag: number): void {
    this.unsharing.push({ start, len, tag });
  }

  /** For [start, start+len): whether its first block is still shared durably, and how far that holds. */
  stillShared(start: number, len: number): { shared: boolean; len: number } {
    let n = len;
    for (const u of this.unsharing) {
      if (u.start <= start && start < u.start + u.len) return { shared: true, len: Math.min(len, u.start + u.len - start) };
      if (u.start > start && u.start < start + n) n = u.start - start;
    }
    return { shared: false, len: n };
  }

  /** Pending-free runs (for the committed view written into a checkpoint). */
  pendingRuns(): Run[] {
    return this.pending.map((p) => ({ start: p.start, len: p.len }));
  }
}
