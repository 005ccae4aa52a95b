// An in-memory B+tree from number keys to values, the index under every extent map, the refcount
// table and the free-space map. Leaves are linked both ways for ordered walks.
//
// Design note: inner nodes keep, for each child, a lower bound of the keys in that child; the first
// bound of a node is never used for routing, so inserting a key smaller than every key needs no
// bound updates. Deletion removes empty nodes but does not merge under-full ones: the height stays
// bounded by the largest size the tree ever had, which is fine for our access pattern.

const LEAF_MAX = 64;
const INNER_MAX = 64;

class Leaf<V> {
  keys: number[] = [];
  vals: V[] = [];
  next: Leaf<V> | null = null;
  prev: Leaf<V> | null = null;
}

class Inner<V> {
  keys: number[] = [];
  children: Array<Node<V>> = [];
}

type Node<V> = Leaf<V> | Inner<V>;

/** A position in the tree; valid until the next modification. */
export interface Cursor<V> {
  leaf: Leaf<V>;
  idx: number;
}

function isLeaf<V>(n: Node<V>): n is Leaf<V> {
  return n instanceof Leaf;
}

/** Index of the child to descend into for key: the last bound <= key (bound 0 is -infinity). */
function route(keys: number[], key: number): number {
  let lo = 1;
  let hi = keys.length - 1;
  let ans = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid]! <= key) {
      ans = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return ans;
}

/** Index of the last key <= key, or -1. */
function floorIdx(keys: number[], key: number): number {
  let lo = 0;
  let hi = keys.length - 1;
  let ans = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid]! <= key) {
      ans = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return ans;
}

export class BTree<V> {
  private root: Node<V> = new Leaf<V>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Builds a tree from entries already sorted by key with no duplicates, in O(n). */
  static fromSorted<V>(keys: ArrayLike<number>, vals: ArrayLike<V>): BTree<V> {
    const t = new BTree<V>();
    const n = keys.length;
    if (n === 0) return t;
    const fill = Math.max(1, Math.floor(LEAF_MAX * 0.75));
    let level: Array<Node<V>> = [];
    let prev: Leaf<V> | null = null;
    for (let i = 0; i < n; i += fill) {
      const leaf = new Leaf<V>();
      const end = Math.min(n, i + fill);
      for (let j = i; j < end; j++) {
        leaf.keys.push(keys[j]!);
        leaf.vals.push(vals[j]!);
      }
      leaf.prev = prev;
      if (prev) prev.next = leaf;
      prev = leaf;
      level.push(leaf);
    }
    const innerFill = Math.max(2, Math.floor(INNER_MAX * 0.75));
    while (level.length > 1) {
      const up: Array<Node<V>> = [];
      for (let i = 0; i < level.length; i += innerFill) {
        const node = new Inner<V>();
        for (let j = i; j < Math.min(level.length, i + innerFill); j++) {
          node.children.push(level[j]!);
          node.keys.push(minKey(level[j]!));
        }
        up.push(node);
      }
      level = up;
    }
    t.root = level[0]!;
    t.count = n;
    return t;
  }

  private leafFor(key: number): Leaf<V> {
    let n = this.root;
    while (!isLeaf(n)) n = n.children[route(n.keys, key)]!;
    return n;
  }

  get(key: number): V | undefined {
    const leaf = this.leafFor(key);
    const i = floorIdx(leaf.keys, key);
    return i >= 0 && leaf.keys[i] === key ? leaf.vals[i] : undefined;
  }

  /** Cursor at the entry with the largest key <= key, or null. */
  floor(key: number): Cursor<V> | null {
    const leaf = this.leafFor(key);
    const i = floorIdx(leaf.keys, key);
    if (i >= 0) return { leaf, idx: i };
    let p = leaf.prev;
    while (p && p.keys.length === 0) p = p.prev;
    return p ? { leaf: p, idx: p.keys.length - 1 } : null;
  }

  /** Cursor at the entry with the smallest key >= key, or null. */
  ceil(key: number): Cursor<V> | null {
    const leaf = this.leafFor(key);
    const i = floorIdx(leaf.keys, key);
    if (i >= 0 && leaf.keys[i] === key) return { leaf, idx: i };
    return this.advance({ leaf, idx: i });
  }

  first(): Cursor<V> | null {
    return this.ceil(-Infinity);
  }

  last(): Cursor<V> | null {
    return this.floor(Infinity);
  }

  /** The entry after c (c.idx may be -1 meaning "before the first of this leaf"). */
  advance(c: Cursor<V>): Cursor<V> | null {
    let leaf: Leaf<V> | null = c.leaf;
    let idx = c.idx + 1;
    while (leaf && idx >= leaf.keys.length) {
      leaf = leaf.next;
      idx = 0;
    }
    return leaf ? { leaf, idx } : null;
  }

  retreat(c: Cursor<V>): Cursor<V> | null {
    let leaf: Leaf<V> | null = c.leaf;
    let idx = c.idx - 1;
    while (leaf && idx < 0) {
      leaf = leaf.prev;
      idx = leaf ? leaf.keys.length - 1 : -1;
    }
    return leaf ? { leaf, idx } : null;
  }

  key(c: Cursor<V>): number {
    return c.leaf.keys[c.idx]!;
  }

  value(c: Cursor<V>): V {
    return c.leaf.vals[c.idx]!;
  }

  /** Inserts or replaces. */
  set(key: number, val: V): void {
    const split = this.insertAt(this.root, key, val);
    if (split) {
      const r = new Inner<V>();
      r.children.push(this.root, split);
      r.keys.push(minKey(this.root), minKey(split));
      this.root = r;
    }
  }

  private insertAt(node: Node<V>, key: number, val: V): Node<V> | null {
    if (isLeaf(node)) {
      const i = floorIdx(node.keys, key);
      if (i >= 0 && node.keys[i] === key) {
        node.vals[i] = val;
        return null;
      }
      node.keys.splice(i + 1, 0, key);
      node.vals.splice(i + 1, 0, val);
      this.count++;
      if (node.keys.length <= LEAF_MAX) return null;
      const right = new Leaf<V>();
      const half = node.keys.length >> 1;
      right.keys = node.keys.splice(half);
      right.vals = node.vals.splice(half);
      right.next = node.next;
      if (right.next) right.next.prev = right;
      right.prev = node;
      node.next = right;
      return right;
    }
    const ci = route(node.keys, key);
    const split = this.insertAt(node.children[ci]!, key, val);
    if (!split) return null;
    node.children.splice(ci + 1, 0, split);
    node.keys.splice(ci + 1, 0, minKey(split));
    if (node.children.length <= INNER_MAX) return null;
    const right = new Inner<V>();
    const half = node.children.length >> 1;
    right.children = node.children.splice(half);
    right.keys = node.keys.splice(half);
    return right;
  }

  /** Removes key if present; returns whether it was. */
  delete(key: number): boolean {
    const removed = this.deleteAt(this.root, key);
    while (!isLeaf(this.root) && this.root.children.length === 1) this.root = this.root.children[0]!;
    if (!isLeaf(this.root) && this.root.children.length === 0) this.root = new Leaf<V>();
    return removed;
  }

  private deleteAt(node: Node<V>, key: number): boolean {
    if (isLeaf(node)) {
      const i = floorIdx(node.keys, key);
      if (i < 0 || node.keys[i] !== key) return false;
      node.keys.splice(i, 1);
      node.vals.splice(i, 1);
      this.count--;
      return true;
    }
    const ci = route(node.keys, key);
    const child = node.children[ci]!;
    const removed = this.deleteAt(child, key);
    if (removed && isEmpty(child)) {
      if (isLeaf(child)) {
        if (child.prev) child.prev.next = child.next;
        if (child.next) child.next.prev = child.prev;
      }
      node.children.splice(ci, 1);
      node.keys.splice(ci, 1);
    }
    return removed;
  }

  /** Walks entries with key >= from in order; stop by returning false. */
  forEachFrom(from: number, fn: (key: number, val: V) => boolean | void): void {
    let c = this.ceil(from);
    while (c) {
      if (fn(c.leaf.keys[c.idx]!, c.leaf.vals[c.idx]!) === false) return;
      c = this.advance(c);
    }
  }

  *entries(): IterableIterator<[number, V]> {
    let c = this.first();
    while (c) {
      yield [c.leaf.keys[c.idx]!, c.leaf.vals[c.idx]!];
      c = this.advance(c);
    }
  }
}

function minKey<V>(n: Node<V>): number {
  return n.keys[0]!;
}

function isEmpty<V>(n: Node<V>): boolean {
  return isLeaf(n) ? n.keys.length === 0 : n.children.length === 0;
}
