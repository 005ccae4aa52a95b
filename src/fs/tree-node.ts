// The nodes of the persistent B+tree (btree.ts) and what a tree needs from its values and its
// owner: how values pack into numbers, and the hooks that keep block refcounts and node blocks.

/** How a value is stored as `width` numbers (every number exactly representable in a double). */
export interface Packing<V> {
  readonly width: number;
  pack(v: V, into: Float64Array, at: number): void;
  unpack(from: Float64Array, at: number): V;
}

/** Nodes hold at most this many entries or children, so a node fits one 4 KiB block on disk. */
export const NODE_MAX = 120;

export interface TreeHooks<V> {
  /** A shared leaf was copied: its entries gained a holder. */
  leafCopied(vals: V[]): void;
  /** A leaf lost its last holder: its entries lost one. */
  leafFreed(vals: V[]): void;
  /** A node written to disk was changed or released: its block is free after the next checkpoint. */
  retired(addr: number): void;
  /** A node went from shared to held by one tree (live mode keeps it shared until durable). */
  unshared(node: TreeNode): void;
}

export class LeafNode {
  n = 0;
  data: Float64Array;
  refs = 1;
  addr = -1;
  gen = 0;
  /** Op tag until which the node counts as shared (see TreeHooks.unshared). */
  held = 0;
  constructor(data: Float64Array) {
    this.data = data;
  }
}

export class InnerNode {
  /** keys[i] is a lower bound of the keys under children[i]; keys[0] is never used for routing. */
  keys: Float64Array = new Float64Array(NODE_MAX + 1);
  children: TreeNode[] = [];
  refs = 1;
  addr = -1;
  gen = 0;
  held = 0;
}

export type TreeNode = LeafNode | InnerNode;

/** A position in a tree: the path from the root and the entry index in the leaf. */
export interface Cursor {
  path: TreeNode[];
  idxs: number[];
  leaf: LeafNode;
  idx: number;
}

export function route(keys: Float64Array, count: number, key: number): number {
  let lo = 1;
  let hi = count - 1;
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

export function minKey(n: TreeNode): number {
  return n instanceof LeafNode ? n.data[0]! : n.keys[0]!;
}

export function isEmpty(n: TreeNode): boolean {
  return n instanceof LeafNode ? n.n === 0 : n.children.length === 0;
}
