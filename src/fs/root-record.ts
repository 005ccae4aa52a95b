// The root record of a version-3 checkpoint: everything but the extent maps, whose trees live in
// node blocks (node-codec.ts) and are written only where they changed. Small: its size grows with
// volumes, shared runs and free runs, never with extents.
//
// Root record (version 3, little-endian):
//   0   8  magic "IMCKPT03"
//   8   u32 version (3)
//   12  u32 block size
//   16  u64 data blocks
//   24  u64 generation (equals the superblock's that points here)
//   32  u32 next volume id
//   36  u32 volume count
//   40  u64 shared-run count
//   48  u64 free-run count
//   56  u32 reserved (0)
//   60  u32 CRC-32 of the whole record with this field zero
//   64  volumes, each: u32 id, u32 flags, u64 size, str name (u16 length + UTF-8),
//       u32 inline length, inline bytes, u32 origin volume id (0: none),
//       u64 root node block, u64 extent count, u64 blocks the extents cover
//       then shared runs: u64 start, u64 length, u32 count (>= 2, lazy: see state.ts)
//       then free runs: u64 start, u64 length
import { ByteReader, ByteWriter, corrupt } from '../util/bytes.ts';
import { checksum } from '../util/checksum.ts';
import { readRuns } from './checkpoint-codec.ts';
import { type FreeRun, type Run, type SharedRun, freeOps, sharedOps } from './extent.ts';
import { INLINE_MAX, VolumeFlags } from './format.ts';
import type { RangeMap } from './range-map.ts';
import type { Metadata } from './state.ts';

const MAGIC = Buffer.from('IMCKPT03', 'latin1');
const HEADER = 64;
export const ROOT_RECORD_VERSION = 3;

/** Bytes the root record of m takes, given `extraFree` more free runs than m has. */
export function rootRecordSize(m: Metadata, extraFree: number): number {
  let n = HEADER;
  for (const v of m.volumes.values()) n += 4 + 4 + 8 + 2 + Buffer.byteLength(v.name, 'utf8') + 4 + (v.inline?.length ?? 0) + 4 + 8 + 8 + 8;
  return n + m.shared.size * 20 + (m.free.size + extraFree) * 16;
}

/** Encodes m's root record; every tree root must have its block (addr) already. */
export function encodeRootRecord(m: Metadata, generation: number, free: Run[]): Buffer {
  const w = new ByteWriter(rootRecordSize(m, free.length - m.free.size) + 16);
  w.bytes(MAGIC).u32(ROOT_RECORD_VERSION).u32(m.blockSize).u64(m.dataBlocks).u64(generation);
  w.u32(m.nextVolumeId).u32(m.volumes.size).u64(m.shared.size).u64(free.length);
  w.u32(0);
  const crcAt = w.skip(4);
  for (const v of m.volumes.values()) {
    const root = v.map.tree.root;
    if (root.addr < 0) throw new Error(`volume ${v.id}: tree root not written`);
    w.u32(v.id).u32(v.flags).u64(v.size).str(v.name);
    const inl = v.inline ?? Buffer.alloc(0);
    w.u32(inl.length).bytes(inl);
    w.u32(v.origin).u64(root.addr).u64(v.map.size).u64(v.map.blocks);
  }
  for (const s of m.shared.entries()) w.u64(s.start).u64(s.v.len).u32(s.v.count);
  for (const f of free) w.u64(f.start).u64(f.len);
  const buf = w.finish();
  w.patchU32(crcAt, checksum(buf));
  return buf;
}

export interface RootVolume {
  id: number;
  flags: number;
  size: number;
  name: string;
  inline: Buffer | null;
  origin: number;
  rootAddr: number;
  extents: number;
  blocks: number;
}

export interface RootRecord {
  nextVolumeId: number;
  volumes: RootVolume[];
  shared: RangeMap<SharedRun>;
  free: RangeMap<FreeRun>;
  freeBlocks: number;
}

/** Decodes and verifies a root record; bad bytes raise CORRUPT. */
export function decodeRootRecord(buf: Buffer, expect: { blockSize: number; dataBlocks: number; generation: number }): RootRecord {
  if (buf.length < HEADER || !buf.subarray(0, 8).equals(MAGIC)) throw corrupt('checkpoint: bad magic');
  const stored = buf.readUInt32LE(60);
  let crc = checksum(buf.subarray(0, 60));
  crc = checksum(Buffer.alloc(4), crc);
  crc = checksum(buf.subarray(64), crc);
  if (crc !== stored) throw corrupt('checkpoint: checksum mismatch');
  const r = new ByteReader(buf, 'checkpoint', 8);
  const version = r.u32();
  const blockSize = r.u32();
  const dataBlocks = r.u64();
  const generation = r.u64();
  if (version !== ROOT_RECORD_VERSION || blockSize !== expect.blockSize || dataBlocks !== expect.dataBlocks) {
    throw corrupt('checkpoint: header does not match the superblock');
  }
  if (generation !== expect.generation) throw corrupt('checkpoint: generation does not match the superblock');
  const nextVolumeId = r.u32();
  const volCount = r.u32();
  const sharedCount = r.u64();
  const freeCount = r.u64();
  r.u32();
  r.u32();
  const volumes: RootVolume[] = [];
  const ids = new Set<number>();
  const names = new Set<string>();
  for (let i = 0; i < volCount; i++) {
    const id = r.u32();
    const flags = r.u32();
    const size = r.u64();
    const name = r.str();
    const inlLen = r.u32();
    const inl = Buffer.from(r.bytes(inlLen));
    const origin = r.u32();
    const rootAddr = r.u64();
    const extents = r.u64();
    const blocks = r.u64();
    const isInline = (flags & VolumeFlags.INLINE) !== 0;
    if (isInline ? size > INLINE_MAX || inlLen > size : inlLen !== 0 || size % blockSize !== 0) {
      throw corrupt(`checkpoint: volume ${id} has a bad size or inline length`);
    }
    if (rootAddr >= dataBlocks) throw corrupt(`checkpoint: volume ${id} has its tree root outside the data area`);
    if (ids.has(id) || names.has(name)) throw corrupt(`checkpoint: duplicate volume ${id}`);
    ids.add(id);
    names.add(name);
    volumes.push({ id, flags, size, name, inline: isInline ? inl : null, origin, rootAddr, extents, blocks });
  }
  const shared = readRuns<SharedRun>(r, sharedCount, dataBlocks, 20, sharedOps, (len) => ({ len, count: r.u32() }));
  for (const s of shared.entries()) if (s.v.count < 2) throw corrupt('checkpoint: shared run with count < 2');
  let freeBlocks = 0;
  const free = readRuns<FreeRun>(r, freeCount, dataBlocks, 16, freeOps, (len) => {
    freeBlocks += len;
    return { len };
  });
  return { nextVolumeId, volumes, shared, free, freeBlocks };
}
