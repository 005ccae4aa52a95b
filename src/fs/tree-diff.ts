// Where two extent maps that share tree nodes can differ, without entering what they share.
// Snapshots and clones share their source's nodes (btree.ts) and a change copies only the path it
// touches, so two points of one history differ only inside the leaves one of them does not share
// with the other. The argument, position by position: a position covered by an extent of a leaf
// both trees hold reads the same in both (each tree's extents are disjoint, so that extent is the
// one covering it in either tree); a hole in both is the same; so a position can differ only where
// an extent of an unshared leaf (of either tree) covers it. The spans of those extents are the
// candidates; the caller compares extents only there.
// Cost: one walk of FROM's nodes (a Set of identities, about n/60 nodes for n extents), then the
// unshared parts of both trees; no leaf that both hold is decoded.
import type { BTree } from './btree.ts';
import { InnerNode, LeafNode, type TreeNode } from './tree-node.ts';

export interface Span {
  start: number;
  end: number;
}

/** Sorted, merged spans [start, end) of the entries of the leaves `a` and `b` do not share. */
export function unsharedSpans<V>(a: BTree<V>, b: BTree<V>, lenOf: (v: V) => number): Span[] {
  const inA = new Set<TreeNode>();
  collect(a.root, inA);
  const shared = new Set<TreeNode>();
  const leaves: LeafNode[] = [];
  unshared(b.root, inA, shared, leaves);
  // A's own unshared leaves: where B's walk stopped, A holds the same node and all below it (a
  // node sits once in a tree, so A's path to anything below passes through it).
  unshared(a.root, shared, new Set(), leaves);
  const spans: Span[] = [];
  for (const leaf of leaves) spans.push(...leafSpans(a, leaf, lenOf));
  spans.sort((x, y) => x.start - y.start);
  const out: Span[] = [];
  for (const s of spans) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out;
}

function collect(node: TreeNode, into: Set<TreeNode>): void {
  into.add(node);
  if (node instanceof InnerNode) for (const c of node.children) collect(c, into);
}

/** Leaves under `node` not in `other`, not entering any node `other` holds (recorded in `shared`). */
function unshared(node: TreeNode, other: Set<TreeNode>, shared: Set<TreeNode>, out: LeafNode[]): void {
  if (other.has(node)) {
    shared.add(node);
    return;
  }
  if (node instanceof LeafNode) out.push(node);
  else for (const c of node.children) unshared(c, other, shared, out);
}

function leafSpans<V>(tree: BTree<V>, leaf: LeafNode, lenOf: (v: V) => number): Span[] {
  const stride = 1 + tree.packing.width;
  const out: Span[] = [];
  for (let i = 0; i < leaf.n; i++) {
    const start = leaf.data[i * stride]!;
    out.push({ start, end: start + lenOf(tree.packing.unpack(leaf.data, i * stride + 1)) });
  }
  return out;
}
