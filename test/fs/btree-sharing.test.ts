// The persistent B+tree: clones share nodes until written, each tree keeps its own contents, node
// reference counts equal their real holders, and the hooks see exactly one leafCopied per copied
// leaf and one leafFreed per released leaf (the extent map builds block refcounts on them).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BTree, InnerNode, LeafNode, type Packing, type TreeHooks, type TreeNode } from '../../src/fs/btree.ts';

const RUNS = Number(process.env.IOMAPD_FS_CASES ?? 60);
const numberPacking: Packing<number> = { width: 1, pack: (v, d, at) => void (d[at] = v), unpack: (d, at) => d[at]! };

/** Holders of each value as the hooks and the caller report them. */
function countingHooks(): { hooks: TreeHooks<number>; holders: Map<number, number>; retired: number[] } {
  const holders = new Map<number, number>();
  const retired: number[] = [];
  const add = (v: number, d: number) => holders.set(v, (holders.get(v) ?? 0) + d);
  return {
    holders,
    retired,
    hooks: {
      leafCopied: (vals) => vals.forEach((v) => add(v, 1)),
      leafFreed: (vals) => vals.forEach((v) => add(v, -1)),
      retired: (addr) => retired.push(addr),
      unshared: () => {},
    },
  };
}

/** Walks the nodes reachable from roots: incoming references per node and leaves holding each value. */
function census(roots: TreeNode[]): { refs: Map<TreeNode, number>; holders: Map<number, number> } {
  const refs = new Map<TreeNode, number>();
  const holders = new Map<number, number>();
  const visit = (n: TreeNode) => {
    const seen = refs.has(n);
    refs.set(n, (refs.get(n) ?? 0) + 1);
    if (seen) return;
    if (n instanceof LeafNode) for (let i = 0; i < n.n; i++) holders.set(n.data[i * 2 + 1]!, (holders.get(n.data[i * 2 + 1]!) ?? 0) + 1);
    else for (const c of (n as InnerNode).children) visit(c);
  };
  for (const r of roots) visit(r);
  return { refs, holders };
}

describe('BTree sharing (clone)', () => {
  it('clones diverge on write; node refs and value holders stay exact', () => {
    const op = fc.record({ tree: fc.nat(3), del: fc.boolean(), key: fc.integer({ min: 0, max: 3000 }), clone: fc.integer({ min: 0, max: 40 }) });
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 800 }), fc.array(op, { maxLength: 600 }), (seed, ops) => {
        const { hooks, holders } = countingHooks();
        // Values are unique per write, so a value's holders are leaves, never other keys.
        let nextVal = 1;
        const trees: Array<BTree<number>> = [new BTree(numberPacking, hooks)];
        const models: Array<Map<number, number>> = [new Map()];
        const put = (t: number, k: number) => {
          const old = models[t]!.get(k);
          if (old !== undefined) holders.set(old, holders.get(old)! - 1);
          const v = nextVal++;
          trees[t]!.set(k, v);
          models[t]!.set(k, v);
          holders.set(v, 1);
        };
        for (const k of seed) put(0, k);
        for (const o of ops) {
          if (o.clone === 0 && trees.length < 4) {
            const src = o.tree % trees.length;
            trees.push(trees[src]!.clone());
            models.push(new Map(models[src]!));
            continue;
          }
          const t = o.tree % trees.length;
          if (o.del) {
            const old = models[t]!.get(o.key);
            expect(trees[t]!.delete(o.key)).toBe(old !== undefined);
            if (old !== undefined) {
              models[t]!.delete(o.key);
              holders.set(old, holders.get(old)! - 1);
            }
          } else put(t, o.key);
        }
        // Drop one tree when there are several: its private leaves release their values.
        if (trees.length > 1) {
          trees.pop()!.drop();
          models.pop();
        }
        trees.forEach((t, i) => {
          const keys = [...models[i]!.keys()].sort((a, b) => a - b);
          expect([...t.entries()]).toEqual(keys.map((k) => [k, models[i]!.get(k)]));
          expect(t.size).toBe(keys.length);
        });
        const c = census(trees.map((t) => t.root));
        for (const [node, n] of c.refs) expect(node.refs).toBe(n);
        for (const [v, n] of holders) expect(n).toBe(c.holders.get(v) ?? 0);
      }),
      { numRuns: RUNS },
    );
  });

  it('a clone is O(1): it shares the root until the first write, which copies one path', () => {
    const keys = Array.from({ length: 100_000 }, (_, i) => i * 2);
    const a = BTree.fromSorted(numberPacking, keys, keys);
    const before = census([a.root]).refs.size;
    const b = a.clone();
    expect(b.root).toBe(a.root);
    expect(a.root.refs).toBe(2);
    b.set(1, 1);
    expect(b.root).not.toBe(a.root);
    // The two trees together hold the original nodes plus one copied path (root to leaf).
    let depth = 1;
    for (let n: TreeNode = a.root; n instanceof InnerNode; n = n.children[0]!) depth++;
    expect(depth).toBe(3);
    expect(census([a.root, b.root]).refs.size).toBe(before + depth);
    expect(a.get(1)).toBeUndefined();
    expect(b.get(1)).toBe(1);
  });

  it('changing a node written to disk retires its address once', () => {
    const { hooks, retired } = countingHooks();
    const keys = Array.from({ length: 1000 }, (_, i) => i);
    const t = BTree.fromSorted(numberPacking, keys, keys, hooks);
    const stamp = (n: TreeNode, addr: { next: number }) => {
      n.addr = addr.next++;
      if (n instanceof InnerNode) for (const ch of n.children) stamp(ch, addr);
    };
    stamp(t.root, { next: 100 });
    const rootAddr = t.root.addr;
    t.set(5, 50);
    t.set(6, 60);
    expect(retired).toContain(rootAddr);
    expect(retired.length).toBe(new Set(retired).size);
    expect(retired.length).toBe(2); // the root and one leaf
  });
});
