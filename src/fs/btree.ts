// A persistent (copy-on-write) B+tree from number keys to values packed into typed arrays: the
// index under every extent map, the refcount table and the free-space map.
//
// Packing: a leaf keeps its entries row by row in one Float64Array (key, then the value's numbers),
// so an extent costs 32 bytes of array instead of an object, and a leaf is copied, written to disk
// and read back as one block of numbers (node-codec.ts).
//
// Sharing: several trees may hold the same nodes (a snapshot takes a reference to its source's
// root, O(1)). `refs` counts the parents and roots holding a node. Before a tree changes a node it
// owns the path to it: every node on the path with refs > 1 is copied (path copying); the copy of
// an inner node adds a reference to each child, the copy of a leaf tells `hooks.leafCopied` (the
// extent map's owner then counts one more reference to each data block the leaf points to).
// Dropping a tree releases its root; nodes whose count reaches zero are released in turn.
//
// Disk: a node written by a checkpoint has an address (`addr`, a data block) and the generation
// that wrote it. Changing such a node in place hands the address to `hooks.retired` (freed once
// the next checkpoint is durable) and makes the node dirty (addr -1). So a clean node has only
// clean descendants, and a checkpoint writes just the dirty part of each tree.
//
// Deletion removes empty nodes but does not merge under-full ones: the height stays bounded by the
// largest size the tree ever had, which is fine for our access pattern.

import { type Cursor, InnerNode, LeafNode, NODE_MAX, type Packing, type TreeHooks, type TreeNode, isEmpty, minKey, route } from './tree-node.ts';

export { type Cursor, InnerNode, LeafNode, NODE_MAX, type Packing, type TreeHooks, type TreeNode } from './tree-node.ts';

export class BTree<V> {
  root: TreeNode;
  private count = 0;
  readonly packing: Packing<V>;
  private readonly stride: number;
  hooks: TreeHooks<V> | null;

  constructor(packing: Packing<V>, hooks: TreeHooks<V> | null = null, root?: TreeNode, count = 0) {
    this.packing = packing;
    this.stride = 1 + packing.width;
    this.hooks = hooks;
    this.root = root ?? new LeafNode(new Float64Array(4 * this.stride));
    this.count = count;
  }

  get size(): number {
    return this.count;
  }

  /** A tree sharing every node with this one (O(1)). */
  clone(): BTree<V> {
    this.root.refs++;
    return new BTree(this.packing, this.hooks, this.root, this.count);
  }

  /** Releases this tree's hold on its nodes; the tree must not be used afterwards. */
  drop(): void {
    this.release(this.root);
    this.root = new LeafNode(new Float64Array(this.stride));
    this.count = 0;
  }

  private release(node: TreeNode): void {
    node.refs--;
    if (node.refs === 1) this.hooks?.unshared(node);
    if (node.refs > 0) return;
    if (node.addr >= 0) this.hooks?.retired(node.addr);
    if (node instanceof LeafNode) {
      if (node.n > 0) this.hooks?.leafFreed(this.leafValues(node));
    } else for (const c of node.children) this.release(c);
  }

  /** Builds a tree from entries sorted by key with no duplicates, in O(n); leaves nearly full. */
  static fromSorted<V>(packing: Packing<V>, keys: ArrayLike<number>, vals: ArrayLike<V>, hooks: TreeHooks<V> | null = null): BTree<V> {
    const t = new BTree<V>(packing, hooks);
    const n = keys.length;
    if (n === 0) return t;
    const s = t.stride;
    const fill = Math.floor(NODE_MAX * 0.9);
    let level: TreeNode[] = [];
    for (let i = 0; i < n; i += fill) {
      const end = Math.min(n, i + fill);
      const leaf = new LeafNode(new Float64Array((end - i) * s));
      for (let j = i; j < end; j++) {
        leaf.data[(j - i) * s] = keys[j]!;
        packing.pack(vals[j]!, leaf.data, (j - i) * s + 1);
      }
      leaf.n = end - i;
      level.push(leaf);
    }
    t.root = BTree.stack(level);
    t.count = n;
    return t;
  }

  /** Builds inner levels over nodes given in key order. */
  static stack(level: TreeNode[]): TreeNode {
    const fill = Math.floor(NODE_MAX * 0.9);
    while (level.length > 1) {
      const up: TreeNode[] = [];
      for (let i = 0; i < level.length; i += fill) {
        const node = new InnerNode();
        for (let j = i; j < Math.min(level.length, i + fill); j++) {
          node.keys[node.children.length] = minKey(level[j]!);
          node.children.push(level[j]!);
        }
        up.push(node);
      }
      level = up;
    }
    return level[0]!;
  }

  leafValues(leaf: LeafNode): V[] {
    const out: V[] = [];
    for (let i = 0; i < leaf.n; i++) out.push(this.packing.unpack(leaf.data, i * this.stride + 1));
    return out;
  }

  // ---------------------------------------------------------------- reads

  private descend(key: number): Cursor {
    const path: TreeNode[] = [];
    const idxs: number[] = [];
    let node = this.root;
    while (node instanceof InnerNode) {
      const ci = route(node.keys, node.children.length, key);
      path.push(node);
      idxs.push(ci);
      node = node.children[ci]!;
    }
    return { path, idxs, leaf: node, idx: this.floorIdx(node, key) };
  }

  /** Index of the last key <= key in the leaf, or -1. */
  private floorIdx(leaf: LeafNode, key: number): number {
    const d = leaf.data;
    const s = this.stride;
    let lo = 0;
    let hi = leaf.n - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (d[mid * s]! <= key) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  get(key: number): V | undefined {
    const c = this.descend(key);
    return c.idx >= 0 && this.key(c) === key ? this.value(c) : undefined;
  }

  /** Cursor at the entry with the largest key <= key, or null. */
  floor(key: number): Cursor | null {
    const c = this.descend(key);
    return c.idx >= 0 ? c : this.retreat(c);
  }

  /** Cursor at the entry with the smallest key >= key, or null. */
  ceil(key: number): Cursor | null {
    const c = this.descend(key);
    if (c.idx >= 0 && this.key(c) === key) return c;
    return this.advance(c);
  }

  first(): Cursor | null {
    return this.ceil(-Infinity);
  }

  last(): Cursor | null {
    return this.floor(Infinity);
  }

  /** The entry after c (c.idx may be -1: before the first entry of its leaf). Moves c. */
  advance(c: Cursor): Cursor | null {
    c.idx++;
    if (c.idx < c.leaf.n) return c;
    // Up to the first ancestor with a next child, then down its leftmost path.
    let d = c.path.length - 1;
    while (d >= 0 && c.idxs[d]! + 1 >= (c.path[d] as InnerNode).children.length) d--;
    if (d < 0) return null;
    c.idxs[d]!++;
    c.path.length = d + 1;
    c.idxs.length = d + 1;
    let node = (c.path[d] as InnerNode).children[c.idxs[d]!]!;
    while (node instanceof InnerNode) {
      c.path.push(node);
      c.idxs.push(0);
      node = node.children[0]!;
    }
    c.leaf = node;
    c.idx = -1;
    return this.advance(c);
  }

  /** The entry before c. Moves c. */
  retreat(c: Cursor): Cursor | null {
    c.idx--;
    if (c.idx >= 0) return c;
    let d = c.path.length - 1;
    while (d >= 0 && c.idxs[d]! === 0) d--;
    if (d < 0) return null;
    c.idxs[d]!--;
    c.path.length = d + 1;
    c.idxs.length = d + 1;
    let node = (c.path[d] as InnerNode).children[c.idxs[d]!]!;
    while (node instanceof InnerNode) {
      c.path.push(node);
      c.idxs.push(node.children.length - 1);
      node = node.children[node.children.length - 1]!;
    }
    c.leaf = node;
    c.idx = node.n;
    return this.retreat(c);
  }

  key(c: Cursor): number {
    return c.leaf.data[c.idx * this.stride]!;
  }

  value(c: Cursor): V {
    return this.packing.unpack(c.leaf.data, c.idx * this.stride + 1);
  }

  /** Whether the cursor's entry is shared with another tree: a node on its path has several holders. */
  sharedPath(c: Cursor, durableTag: number): boolean {
    for (const n of c.path) if (n.refs > 1 || n.held > durableTag) return true;
    return c.leaf.refs > 1 || c.leaf.held > durableTag;
  }

  // ---------------------------------------------------------------- writes

  /** The writable version of `node` (child `ci` of `parent`, or the root when parent is null). */
  private own<N extends TreeNode>(node: N, parent: InnerNode | null, ci: number): N {
    if (node.refs <= 1) {
      if (node.addr >= 0) {
        this.hooks?.retired(node.addr);
        node.addr = -1;
      }
      return node;
    }
    let copy: TreeNode;
    if (node instanceof LeafNode) {
      copy = new LeafNode(node.data.slice());
      copy.n = node.n;
      if (node.n > 0) this.hooks?.leafCopied(this.leafValues(node));
    } else {
      const inner = new InnerNode();
      inner.keys.set(node.keys);
      inner.children = node.children.slice();
      for (const ch of inner.children) ch.refs++;
      copy = inner;
    }
    node.refs--;
    if (node.refs === 1) this.hooks?.unshared(node);
    if (parent) parent.children[ci] = copy;
    else this.root = copy;
    return copy as N;
  }

  /** Owns the path to key's leaf; returns it with the owned nodes. */
  private ownPath(key: number): Cursor {
    const path: TreeNode[] = [];
    const idxs: number[] = [];
    let parent: InnerNode | null = null;
    let ci = 0;
    let node = this.own(this.root, null, 0);
    while (node instanceof InnerNode) {
      parent = node;
      ci = route(node.keys, node.children.length, key);
      path.push(node);
      idxs.push(ci);
      node = this.own(node.children[ci]!, parent, ci);
    }
    return { path, idxs, leaf: node, idx: this.floorIdx(node, key) };
  }

  /** Inserts or replaces. */
  set(key: number, val: V): void {
    const c = this.ownPath(key);
    const leaf = c.leaf;
    const s = this.stride;
    if (c.idx >= 0 && leaf.data[c.idx * s] === key) {
      this.packing.pack(val, leaf.data, c.idx * s + 1);
      return;
    }
    const at = c.idx + 1;
    this.ensure(leaf, leaf.n + 1);
    leaf.data.copyWithin((at + 1) * s, at * s, leaf.n * s);
    leaf.data[at * s] = key;
    this.packing.pack(val, leaf.data, at * s + 1);
    leaf.n++;
    this.count++;
    c.idx = at;
    if (at === 0) this.fixBounds(c, key);
    if (leaf.n > NODE_MAX) this.splitUp(c);
  }

  /** Grows a leaf's array to hold `n` entries (doubling, capped at one more than the maximum). */
  private ensure(leaf: LeafNode, n: number): void {
    const s = this.stride;
    if (leaf.data.length >= n * s) return;
    const grown = new Float64Array(Math.min(NODE_MAX + 1, Math.max(8, leaf.n * 2)) * s);
    grown.set(leaf.data.subarray(0, leaf.n * s));
    leaf.data = grown;
  }

  /** Keeps routing bounds valid after a leaf's first key went down to `key`. */
  private fixBounds(c: Cursor, key: number): void {
    for (let d = c.path.length - 1; d >= 0; d--) {
      const p = c.path[d] as InnerNode;
      if (p.keys[c.idxs[d]!]! <= key) return;
      p.keys[c.idxs[d]!] = key;
    }
  }

  private splitUp(c: Cursor): void {
    const s = this.stride;
    // Appends at the right edge of the tree split off one entry, so the left node stays full and
    // sequential builds pack leaves completely.
    let appended = c.idx === c.leaf.n - 1;
    for (let d = 0; d < c.path.length; d++) {
      if (c.idxs[d]! !== (c.path[d] as InnerNode).children.length - 1) appended = false;
    }
    let node: TreeNode = c.leaf;
    for (let d = c.path.length; ; d--) {
      const parent = d > 0 ? (c.path[d - 1] as InnerNode) : null;
      const ci = d > 0 ? c.idxs[d - 1]! : 0;
      const rightmost = appended;
      let right: TreeNode;
      if (node instanceof LeafNode) {
        if (node.n <= NODE_MAX) return;
        const keep = rightmost ? node.n - 1 : node.n >> 1;
        const moved = node.n - keep;
        const r = new LeafNode(new Float64Array(Math.max(8, moved * 2) * s));
        r.data.set(node.data.subarray(keep * s, node.n * s));
        r.n = moved;
        node.n = keep;
        node.data = node.data.slice(0, Math.max(keep + 1, 8) * s);
        right = r;
      } else {
        if (node.children.length <= NODE_MAX) return;
        const keep = rightmost ? node.children.length - 1 : node.children.length >> 1;
        const r = new InnerNode();
        r.children = node.children.splice(keep);
        r.keys.set(node.keys.subarray(keep, keep + r.children.length));
        right = r;
      }
      if (!parent) {
        const top = new InnerNode();
        top.children.push(node, right);
        top.keys[0] = minKey(node);
        top.keys[1] = minKey(right);
        this.root = top;
        return;
      }
      parent.children.splice(ci + 1, 0, right);
      parent.keys.copyWithin(ci + 2, ci + 1, parent.children.length - 1);
      parent.keys[ci + 1] = minKey(right);
      node = parent;
    }
  }

  /** Removes key if present; returns whether it was. */
  delete(key: number): boolean {
    const probe = this.descend(key);
    if (probe.idx < 0 || this.key(probe) !== key) return false;
    const c = this.ownPath(key);
    const leaf = c.leaf;
    const s = this.stride;
    leaf.data.copyWithin(c.idx * s, (c.idx + 1) * s, leaf.n * s);
    leaf.n--;
    this.count--;
    // Remove emptied nodes bottom-up; an owned node has refs 1, so releasing it frees it.
    let node: TreeNode = leaf;
    for (let d = c.path.length - 1; d >= 0 && isEmpty(node); d--) {
      const p = c.path[d] as InnerNode;
      const ci = c.idxs[d]!;
      p.children.splice(ci, 1);
      p.keys.copyWithin(ci, ci + 1, p.children.length + 1);
      this.release(node);
      node = p;
    }
    while (this.root instanceof InnerNode && this.root.children.length === 1) {
      const only = this.root.children[0]!;
      only.refs++;
      this.release(this.root);
      this.root = only;
    }
    if (this.root instanceof InnerNode && this.root.children.length === 0) {
      this.release(this.root);
      this.root = new LeafNode(new Float64Array(4 * s));
    }
    return true;
  }

  // ---------------------------------------------------------------- walks

  /** Walks entries with key >= from in order; stop by returning false. */
  forEachFrom(from: number, fn: (key: number, val: V) => boolean | void): void {
    let c = this.ceil(from);
    while (c) {
      if (fn(this.key(c), this.value(c)) === false) return;
      c = this.advance(c);
    }
  }

  *entries(): IterableIterator<[number, V]> {
    let c = this.first();
    while (c) {
      yield [this.key(c), this.value(c)];
      c = this.advance(c);
    }
  }
}
