// Moving extent trees between memory and their node blocks: which nodes a checkpoint must write
// (the dirty ones, children before parents), and loading every tree of an image at open, level by
// level, with adjacent node blocks read in one request.
import { corrupt } from '../util/bytes.ts';
import { InnerNode, LeafNode, type TreeNode } from './btree.ts';
import { decodeNode } from './node-codec.ts';

/**
 * Nodes not yet on disk (addr -1) under the given roots, each once, children before parents. A
 * clean node has only clean descendants (btree.ts), so the walk never enters a clean subtree.
 */
export function dirtyNodes(roots: Iterable<TreeNode>): TreeNode[] {
  const out: TreeNode[] = [];
  const seen = new Set<TreeNode>();
  const visit = (n: TreeNode) => {
    if (n.addr >= 0 || seen.has(n)) return;
    seen.add(n);
    if (n instanceof InnerNode) for (const c of n.children) visit(c);
    out.push(n);
  };
  for (const r of roots) visit(r);
  return out;
}

export interface NodeSource {
  read(buf: Buffer, offset: number): Promise<void>;
  /** Byte offset of data block 0, block size, data blocks. */
  dataOffset: number;
  blockSize: number;
  dataBlocks: number;
}

/** Node blocks read per request at most (adjacent blocks are read together). */
const READ_BLOCKS = 1024;
const READS_IN_FLIGHT = 4;

/**
 * Loads the trees rooted at `rootAddrs` (shared subtrees once), sets each node's refs to its
 * holders (parents plus roots) and returns the roots in order. A bad node raises CORRUPT.
 */
export async function loadTrees(src: NodeSource, rootAddrs: readonly number[]): Promise<{ roots: TreeNode[]; nodes: number }> {
  const nodes = new Map<number, TreeNode>();
  const links: Array<{ inner: InnerNode; addrs: Float64Array }> = [];
  let level = [...new Set(rootAddrs)];
  while (level.length > 0) {
    level.sort((a, b) => a - b);
    const found: Array<{ inner: InnerNode; addrs: Float64Array }> = [];
    await readNodeBlocks(src, level, (addr, buf) => {
      const d = decodeNode(buf, addr, src.dataBlocks);
      const node = d.leaf ?? d.inner;
      node.refs = 0;
      nodes.set(addr, node);
      if (d.inner) found.push({ inner: d.inner, addrs: d.childAddrs });
    });
    links.push(...found);
    const next = new Set<number>();
    for (const f of found) for (const a of f.addrs) if (!nodes.has(a)) next.add(a);
    level = [...next];
  }
  for (const { inner, addrs } of links) {
    inner.children = Array.from(addrs, (a) => nodes.get(a)!);
    for (const c of inner.children) c.refs++;
  }
  const roots = rootAddrs.map((a) => nodes.get(a)!);
  for (const r of roots) r.refs++;
  checkShape(roots);
  return { roots, nodes: nodes.size };
}

/** Rejects cycles and uneven depth (every leaf under a node at the same depth), which would break walks. */
function checkShape(roots: TreeNode[]): void {
  const height = new Map<TreeNode, number>();
  const visiting = new Set<TreeNode>();
  const h = (n: TreeNode): number => {
    const known = height.get(n);
    if (known !== undefined) return known;
    if (n instanceof LeafNode) {
      height.set(n, 0);
      return 0;
    }
    if (visiting.has(n)) throw corrupt(`tree node at block ${n.addr} is its own descendant`);
    visiting.add(n);
    let want = -1;
    for (const c of n.children) {
      const ch = h(c);
      if (want >= 0 && ch !== want) throw corrupt(`tree node at block ${n.addr} has children of different depth`);
      want = ch;
    }
    visiting.delete(n);
    height.set(n, want + 1);
    return want + 1;
  };
  for (const r of roots) h(r);
}

/** Reads the given sorted node blocks, adjacent ones in one request, a few requests at a time. */
async function readNodeBlocks(src: NodeSource, addrs: number[], each: (addr: number, buf: Buffer) => void): Promise<void> {
  const B = src.blockSize;
  const runs: Array<{ start: number; len: number }> = [];
  for (const a of addrs) {
    const last = runs[runs.length - 1];
    if (last && last.start + last.len === a && last.len < READ_BLOCKS) last.len++;
    else runs.push({ start: a, len: 1 });
  }
  let next = 0;
  const worker = async () => {
    while (next < runs.length) {
      const r = runs[next++]!;
      const buf = Buffer.allocUnsafe(r.len * B);
      await src.read(buf, src.dataOffset + r.start * B);
      for (let i = 0; i < r.len; i++) each(r.start + i, buf.subarray(i * B, (i + 1) * B));
    }
  };
  await Promise.all(Array.from({ length: Math.min(READS_IN_FLIGHT, runs.length) }, worker));
}
