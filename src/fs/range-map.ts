// An ordered map of non-overlapping block ranges [start, start + v.len) to values, on a B+tree
// keyed by start. Extent maps, the shared-refcount table and free space are all RangeMaps.
// Neighbours that touch and agree (ops.join) are merged on insert. Values are treated as
// immutable: changing one means replacing the entry.
import { BTree, type Packing, type TreeHooks } from './btree.ts';

export interface RangeValue {
  readonly len: number;
}

export interface RangeOps<V extends RangeValue> extends Packing<V> {
  /** The part of v that starts `skip` blocks in and is `len` blocks long. */
  slice(v: V, skip: number, len: number): V;
  /** The merge of a followed directly by b, or null if they must stay apart. */
  join(a: V, b: V): V | null;
}

export interface RangeEntry<V> {
  start: number;
  v: V;
}

export class RangeMap<V extends RangeValue> {
  tree: BTree<V>;
  private readonly ops: RangeOps<V>;

  /** Blocks covered by all entries (an extent map's allocated blocks), kept so info() is O(1). */
  private covered = 0;

  /** A map over `tree`, whose entries cover `blocks` blocks (counted here when not given). */
  constructor(ops: RangeOps<V>, tree?: BTree<V>, blocks?: number) {
    this.ops = ops;
    this.tree = tree ?? new BTree<V>(ops);
    if (blocks !== undefined) this.covered = blocks;
    else if (tree) for (const [, v] of tree.entries()) this.covered += v.len;
  }

  get blocks(): number {
    return this.covered;
  }

  /** A map over entries sorted by start, built in O(n). */
  static fromSorted<V extends RangeValue>(ops: RangeOps<V>, starts: ArrayLike<number>, vals: ArrayLike<V>, hooks: TreeHooks<V> | null = null): RangeMap<V> {
    let blocks = 0;
    for (let i = 0; i < vals.length; i++) blocks += vals[i]!.len;
    return new RangeMap(ops, BTree.fromSorted(ops, starts, vals, hooks), blocks);
  }

  /** A map sharing every node with this one (O(1)); changes to either stay private. */
  clone(): RangeMap<V> {
    return new RangeMap(this.ops, this.tree.clone(), this.covered);
  }

  /** Releases this map's nodes (entries no other map shares go to the tree's hooks). */
  drop(): void {
    this.tree.drop();
    this.covered = 0;
  }

  get size(): number {
    return this.tree.size;
  }

  /**
   * The entry covering block pos and whether it is shared with another map through a shared tree
   * node (a node copied from a snapshot's source and not yet made private); null in a gap.
   */
  coveringShared(pos: number, durableTag: number): { start: number; v: V; shared: boolean } | null {
    const c = this.tree.floor(pos);
    if (!c) return null;
    const start = this.tree.key(c);
    const v = this.tree.value(c);
    return pos < start + v.len ? { start, v, shared: this.tree.sharedPath(c, durableTag) } : null;
  }

  /** The entry covering block pos, or null if pos is in a gap. */
  covering(pos: number): RangeEntry<V> | null {
    const c = this.tree.floor(pos);
    if (!c) return null;
    const start = this.tree.key(c);
    const v = this.tree.value(c);
    return pos < start + v.len ? { start, v } : null;
  }

  /** The first entry that ends after pos: the one covering pos, or the next one. */
  seek(pos: number): RangeEntry<V> | null {
    const hit = this.covering(pos);
    if (hit) return hit;
    const c = this.tree.ceil(pos);
    return c ? { start: this.tree.key(c), v: this.tree.value(c) } : null;
  }

  /** The entry ending at or before pos with the greatest start (pos exclusive), or null. */
  before(pos: number): RangeEntry<V> | null {
    const c = this.tree.floor(pos - 1);
    return c ? { start: this.tree.key(c), v: this.tree.value(c) } : null;
  }

  /** Entries overlapping [start, end), unclipped, in order. */
  overlapping(start: number, end: number): Array<RangeEntry<V>> {
    const out: Array<RangeEntry<V>> = [];
    const first = this.seek(start);
    if (!first || first.start >= end) return out;
    out.push(first);
    this.tree.forEachFrom(first.start + 1, (k, v) => {
      if (k >= end) return false;
      out.push({ start: k, v });
      return true;
    });
    return out;
  }

  /** Splits the entry covering pos so that an entry boundary falls at pos. */
  private splitAt(pos: number): void {
    const hit = this.covering(pos);
    if (!hit || hit.start === pos) return;
    const skip = pos - hit.start;
    this.tree.set(hit.start, this.ops.slice(hit.v, 0, skip));
    this.tree.set(pos, this.ops.slice(hit.v, skip, hit.v.len - skip));
  }

  /** Removes everything in [start, start + len) and returns the removed pieces, clipped. */
  remove(start: number, len: number): Array<RangeEntry<V>> {
    const end = start + len;
    this.splitAt(start);
    this.splitAt(end);
    const removed: Array<RangeEntry<V>> = [];
    this.tree.forEachFrom(start, (k, v) => {
      if (k >= end) return false;
      removed.push({ start: k, v });
      return true;
    });
    for (const r of removed) {
      this.tree.delete(r.start);
      this.covered -= r.v.len;
    }
    return removed;
  }

  /** Inserts v at start; the range must be empty. Merges with agreeing neighbours. */
  insert(start: number, v: V): void {
    this.covered += v.len;
    let s = start;
    let val = v;
    const left = this.before(s);
    if (left && left.start + left.v.len === s) {
      const j = this.ops.join(left.v, val);
      if (j) {
        s = left.start;
        val = j;
      }
    }
    const end = start + v.len;
    const right = this.tree.get(end);
    if (right) {
      const j = this.ops.join(val, right);
      if (j) {
        this.tree.delete(end);
        val = j;
      }
    }
    this.tree.set(s, val);
  }

  /** Replaces [start, start + len) with v (or a gap when v is null); returns what was there. */
  replace(start: number, len: number, v: V | null): Array<RangeEntry<V>> {
    const removed = this.remove(start, len);
    if (v) this.insert(start, v);
    return removed;
  }

  /** Merges the entries on either side of pos if they agree (after a split that changed nothing). */
  rejoinAt(pos: number): void {
    const right = this.tree.get(pos);
    if (!right) return;
    const left = this.before(pos);
    if (!left || left.start + left.v.len !== pos) return;
    const j = this.ops.join(left.v, right);
    if (!j) return;
    this.tree.delete(pos);
    this.tree.set(left.start, j);
  }

  *entries(): IterableIterator<RangeEntry<V>> {
    for (const [start, v] of this.tree.entries()) yield { start, v };
  }
}
