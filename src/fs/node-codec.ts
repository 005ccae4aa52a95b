// Extent-tree nodes on disk (format version 3): one node per data block, written by the checkpoint
// that created or changed it and never rewritten in place. Entries are stored as the little-endian
// doubles the tree keeps in memory, so encoding and decoding a leaf is one copy.
//
// Node block (little-endian; the rest of the block is zero):
//   0   4  magic "INOD"
//   4   u8 type (1 leaf, 2 inner)
//   5   u8 numbers per leaf entry (4: start, length, physical block, kind); 0 for inner nodes
//   6   u16 entry or child count (1..120; a leaf that is a whole empty tree has 0)
//   8   u64 generation of the checkpoint that wrote the node
//   16  u64 the node's own block (catches a misdirected or stale write)
//   24  u32 CRC-32 of bytes [0, 32 + payload) with this field zero
//   28  u32 reserved (0)
//   32  leaf: count x (start, length, physical, kind) as f64
//       inner: count lower bounds as f64, then count child blocks as f64
import { endianness } from 'node:os';
import { corrupt } from '../util/bytes.ts';
import { checksum } from '../util/checksum.ts';
import { InnerNode, LeafNode, NODE_MAX, type TreeNode } from './btree.ts';

const MAGIC = 0x444f4e49; // "INOD" read as a little-endian u32
const HEADER = 32;
const LEAF = 1;
const INNER = 2;
/** Numbers per extent-map entry: the key and extentOps' three. */
export const EXTENT_STRIDE = 4;
/** Bytes a node takes at most; every block size (>= 4096) holds one. */
export const NODE_BYTES = HEADER + NODE_MAX * EXTENT_STRIDE * 8;

if (endianness() !== 'LE') throw new Error('the node format stores little-endian doubles; this host is big-endian');

/** Writes node into `into` (one zeroed block) as stored at block `addr` by checkpoint `gen`. */
export function encodeNode(node: TreeNode, addr: number, gen: number, into: Buffer): void {
  const leaf = node instanceof LeafNode;
  const count = leaf ? node.n : node.children.length;
  into.writeUInt32LE(MAGIC, 0);
  into.writeUInt8(leaf ? LEAF : INNER, 4);
  into.writeUInt8(leaf ? EXTENT_STRIDE : 0, 5);
  into.writeUInt16LE(count, 6);
  into.writeDoubleLE(gen, 8);
  into.writeDoubleLE(addr, 16);
  let end: number;
  if (leaf) {
    const bytes = new Uint8Array(node.data.buffer, node.data.byteOffset, count * EXTENT_STRIDE * 8);
    into.set(bytes, HEADER);
    end = HEADER + bytes.length;
  } else {
    into.set(new Uint8Array(node.keys.buffer, 0, count * 8), HEADER);
    let at = HEADER + count * 8;
    for (const c of node.children) {
      into.writeDoubleLE(c.addr, at);
      at += 8;
    }
    end = at;
  }
  into.writeUInt32LE(checksum(into.subarray(0, end)), 24);
}

/** A decoded node: a leaf, or an inner node whose children are still block addresses. */
export type DecodedNode = { leaf: LeafNode; inner: null; childAddrs: null } | { leaf: null; inner: InnerNode; childAddrs: Float64Array };

/** Decodes and verifies the node stored at block `addr`; anything wrong raises CORRUPT. */
export function decodeNode(buf: Buffer, addr: number, dataBlocks: number): DecodedNode {
  const bad = (why: string) => corrupt(`tree node at block ${addr}: ${why}`);
  if (buf.length < HEADER || buf.readUInt32LE(0) !== MAGIC) throw bad('bad magic (a dangling node address?)');
  const type = buf.readUInt8(4);
  const width = buf.readUInt8(5);
  const count = buf.readUInt16LE(6);
  const gen = buf.readDoubleLE(8);
  if (buf.readDoubleLE(16) !== addr) throw bad('it records another address (a misdirected write?)');
  if (count > NODE_MAX || (type === LEAF ? width !== EXTENT_STRIDE : type !== INNER || width !== 0 || count === 0)) throw bad('bad type or count');
  const end = HEADER + count * (type === LEAF ? EXTENT_STRIDE : 2) * 8;
  const stored = buf.readUInt32LE(24);
  let crc = checksum(buf.subarray(0, 24));
  crc = checksum(Buffer.alloc(4), crc);
  crc = checksum(buf.subarray(28, end), crc);
  if (crc !== stored) throw bad('checksum mismatch');
  const len = count * (type === LEAF ? EXTENT_STRIDE : 2);
  // A leaf's entries stay where they were read when aligned (no copy at open); a leaf that grows
  // gets its own array (btree.ts ensure).
  let nums: Float64Array;
  if (type === LEAF && (buf.byteOffset + HEADER) % 8 === 0 && count > 0) nums = new Float64Array(buf.buffer, buf.byteOffset + HEADER, len);
  else {
    nums = new Float64Array(Math.max(len, 1));
    new Uint8Array(nums.buffer).set(buf.subarray(HEADER, end));
  }
  if (type === LEAF) {
    let prevEnd = -1;
    for (let i = 0; i < count; i++) {
      const at = i * EXTENT_STRIDE;
      const start = nums[at]!;
      const len = nums[at + 1]!;
      const phys = nums[at + 2]!;
      const kind = nums[at + 3]!;
      // Integers, sorted, non-overlapping, inside the data area, kind 1 or 2.
      if (!(start >= prevEnd && len >= 1 && phys >= 0 && phys + len <= dataBlocks && (kind === 1 || kind === 2))) throw bad(`entry ${i} is invalid`);
      if (!Number.isInteger(start + len + phys)) throw bad(`entry ${i} is not whole blocks`);
      prevEnd = start + len;
    }
    const leaf = new LeafNode(nums);
    leaf.n = count;
    leaf.addr = addr;
    leaf.gen = gen;
    return { leaf, inner: null, childAddrs: null };
  }
  const inner = new InnerNode();
  inner.keys.set(nums.subarray(0, count));
  // keys[0] is never used for routing, so only the others must ascend.
  for (let i = 2; i < count; i++) if (!(inner.keys[i]! > inner.keys[i - 1]!)) throw bad('bounds are not ascending');
  inner.addr = addr;
  inner.gen = gen;
  const childAddrs = nums.slice(count, 2 * count);
  for (const c of childAddrs) if (!Number.isInteger(c) || c < 0 || c >= dataBlocks) throw bad('a child address lies outside the data area');
  return { leaf: null, inner, childAddrs };
}
