// The block index of an object-store image: physical block -> (segment, slot). Three layers, read
// newest first: `staged` (writes since the last commit began, and GC's moves), `inflight` (taken
// by a commit or checkpoint whose upload has not finished, retried verbatim if it failed) and
// `committed` (durable: replay of the manifest's checkpoint and journal chain gives exactly this).
import type { IndexChange, SegmentLoc } from './object-codec.ts';

export type Changes = Map<number, SegmentLoc | null>;

export class BlockIndex {
  readonly committed = new Map<number, SegmentLoc>();
  private inflight: Changes | null = null;
  private staged: Changes = new Map();

  lookup(block: number): SegmentLoc | null {
    if (this.staged.has(block)) return this.staged.get(block)!;
    if (this.inflight?.has(block)) return this.inflight.get(block)!;
    return this.committed.get(block) ?? null;
  }

  stage(block: number, loc: SegmentLoc | null): void {
    this.staged.set(block, loc);
  }

  get stagedCount(): number {
    return this.staged.size;
  }

  /** Takes the staged changes for a commit or checkpoint (they stay visible as in flight). */
  take(): Changes {
    if (this.inflight) throw new Error('block index: a commit is already in flight');
    const taken = this.staged;
    this.staged = new Map();
    this.inflight = taken;
    return taken;
  }

  /** The taken changes are durable. */
  settle(): void {
    for (const [b, loc] of this.inflight ?? []) {
      if (loc) this.committed.set(b, loc);
      else this.committed.delete(b);
    }
    this.inflight = null;
  }

  /** The taken changes were not written: back under whatever was staged since. */
  restore(): void {
    for (const [b, loc] of this.inflight ?? []) if (!this.staged.has(b)) this.staged.set(b, loc);
    this.inflight = null;
  }

  /** Applies replayed changes straight to the committed layer (open). */
  apply(changes: Iterable<IndexChange>): void {
    for (const c of changes) {
      if (c.loc) this.committed.set(c.block, c.loc);
      else this.committed.delete(c.block);
    }
  }

  /** Committed overlaid with the in-flight changes, sorted by block (a checkpoint's index). */
  snapshot(): IndexChange[] {
    const out: IndexChange[] = [];
    for (const [block, loc] of this.committed) if (!this.inflight?.has(block)) out.push({ block, loc });
    for (const [block, loc] of this.inflight ?? []) if (loc) out.push({ block, loc });
    return out.sort((a, b) => a.block - b.block);
  }

  /** Every location anything may still read: committed, in flight and staged. */
  *allLocations(): Iterable<SegmentLoc> {
    yield* this.committed.values();
    for (const l of this.inflight?.values() ?? []) if (l) yield l;
    for (const l of this.staged.values()) if (l) yield l;
  }

  static changeList(changes: Changes): IndexChange[] {
    return [...changes].map(([block, loc]) => ({ block, loc }));
  }
}
