// The whole checkpoint of format versions 1 and 2: a full copy of the metadata. Images of those
// versions are still read through it (and upgraded by their first checkpoint to version 3, whose
// checkpoints are a root record over tree nodes: root-record.ts, node-codec.ts). The encoder
// stays for tests that make old images, and the object-store image checkpoints through it.
//
// Checkpoint format (versions 1 and 2, little-endian):
//   0   8  magic "IMCKPT01"
//   8   u32 version (2 when some volume records an origin, else 1)
//   12  u32 block size
//   16  u64 data blocks
//   24  u64 generation (equals the superblock's that points here)
//   32  u32 next volume id
//   36  u32 volume count
//   40  u64 shared-run count
//   48  u64 free-run count
//   56  u32 reserved (0)
//   60  u32 CRC-32 of the whole checkpoint with this field zero
//   64  volumes, each: u32 id, u32 flags, [version 2: u32 origin (0 none)], u64 size,
//       str name (u16 length + UTF-8),
//       u32 inline length, inline bytes, u64 extent count,
//       extents: u64 logical block, u64 length, u64 physical block, u8 kind (1 unwritten, 2 mapped)
//       then shared runs: u64 start, u64 length, u32 count (>= 2)
//       then free runs: u64 start, u64 length
// Runs and extents are sorted by start and never overlap.
import { ByteReader, ByteWriter, corrupt } from '../util/bytes.ts';
import { checksum } from '../util/checksum.ts';
import { type Extent, type FreeRun, type Run, type SharedRun, extentOps, freeOps, sharedOps } from './extent.ts';
import { INLINE_MAX, VolumeFlags } from './format.ts';
import { materializedShared } from './check.ts';
import { RangeMap, type RangeOps } from './range-map.ts';
import { Metadata } from './state.ts';

const MAGIC = Buffer.from('IMCKPT01', 'latin1');
const HEADER = 64;

/** Bytes the checkpoint of m will take, given `extraFree` more free runs than m has. */
export function checkpointSize(m: Metadata, extraFree: number): number {
  let n = HEADER;
  for (const v of m.volumes.values()) {
    n += 4 + 4 + 4 + 8 + 2 + Buffer.byteLength(v.name, 'utf8') + 4 + (v.inline?.length ?? 0) + 8 + v.map.size * 25;
  }
  return n + m.shared.size * 20 + (m.free.size + extraFree) * 16;
}

/**
 * Encodes m. `free` is the free-run list to record, sorted and non-overlapping; the caller passes
 * the committed view (free space plus blocks that are only reserved or pending free).
 */
export function encodeCheckpoint(m: Metadata, generation: number, free: Run[]): Buffer {
  // Version 1 has no shared tree nodes: volumes sharing a leaf each count their own reference.
  const shared = materializedShared(m);
  const w = new ByteWriter(checkpointSize(m, free.length - m.free.size) + (shared.length - m.shared.size) * 20 + 16);
  // Version 1 while no volume has an origin, so such images stay readable by older releases.
  const version = [...m.volumes.values()].some((v) => v.origin !== 0) ? 2 : 1;
  w.bytes(MAGIC).u32(version).u32(m.blockSize).u64(m.dataBlocks).u64(generation);
  w.u32(m.nextVolumeId).u32(m.volumes.size).u64(shared.length).u64(free.length);
  w.u32(0);
  const crcAt = w.skip(4);
  for (const v of m.volumes.values()) {
    w.u32(v.id).u32(v.flags);
    if (version === 2) w.u32(v.origin);
    w.u64(v.size).str(v.name);
    const inl = v.inline ?? Buffer.alloc(0);
    w.u32(inl.length).bytes(inl);
    w.u64(v.map.size);
    for (const e of v.map.entries()) w.u64(e.start).u64(e.v.len).u64(e.v.phys).u8(e.v.kind);
  }
  for (const s of shared) w.u64(s.start).u64(s.len).u32(s.count);
  for (const f of free) w.u64(f.start).u64(f.len);
  const buf = w.finish();
  w.patchU32(crcAt, checksum(buf));
  return buf;
}

/** Decodes and verifies a checkpoint; bad bytes raise CORRUPT. */
export function decodeCheckpoint(buf: Buffer, expect: { blockSize: number; dataBlocks: number; generation: number }): Metadata {
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
  if ((version !== 1 && version !== 2) || blockSize !== expect.blockSize || dataBlocks !== expect.dataBlocks) {
    throw corrupt('checkpoint: header does not match the superblock');
  }
  if (generation !== expect.generation) throw corrupt('checkpoint: generation does not match the superblock');
  const nextId = r.u32();
  const volCount = r.u32();
  const sharedCount = r.u64();
  const freeCount = r.u64();
  r.u32();
  r.u32();
  const m = new Metadata(blockSize, dataBlocks);
  for (let i = 0; i < volCount; i++) {
    const id = r.u32();
    const flags = r.u32();
    const origin = version === 2 ? r.u32() : 0;
    const size = r.u64();
    const name = r.str();
    const inlLen = r.u32();
    const inl = Buffer.from(r.bytes(inlLen));
    const isInline = (flags & VolumeFlags.INLINE) !== 0;
    if (isInline ? size > INLINE_MAX || inlLen > size : inlLen !== 0 || size % blockSize !== 0) {
      throw corrupt(`checkpoint: volume ${id} has a bad size or inline length`);
    }
    const n = r.u64();
    if (n * 25 > r.remaining) throw corrupt('checkpoint: extent count past the end');
    const keys = new Array<number>(n);
    const vals = new Array<Extent>(n);
    let prevEnd = 0;
    const blocks = isInline ? 0 : size / blockSize;
    for (let j = 0; j < n; j++) {
      const start = r.u64();
      const len = r.u64();
      const phys = r.u64();
      const kind = r.u8();
      if ((kind !== 1 && kind !== 2) || len === 0 || start < prevEnd || start + len > blocks || phys + len > dataBlocks) {
        throw corrupt(`checkpoint: volume ${id} extent ${j} is invalid`);
      }
      prevEnd = start + len;
      keys[j] = start;
      vals[j] = { len, kind: kind as 1 | 2, phys };
    }
    if (m.volumes.has(id) || m.byName.has(name)) throw corrupt(`checkpoint: duplicate volume ${id}`);
    m.addVolume({
      id,
      name,
      size,
      flags,
      origin,
      map: RangeMap.fromSorted(extentOps, keys, vals),
      inline: isInline ? inl : null,
    });
  }
  m.nextVolumeId = Math.max(m.nextVolumeId, nextId);
  m.shared = readRuns<SharedRun>(r, sharedCount, dataBlocks, 20, sharedOps, (len) => ({ len, count: r.u32() }));
  let freeBlocks = 0;
  m.free = readRuns<FreeRun>(r, freeCount, dataBlocks, 16, freeOps, (len) => {
    freeBlocks += len;
    return { len };
  });
  m.freeBlocks = freeBlocks;
  for (const s of m.shared.entries()) if (s.v.count < 2) throw corrupt('checkpoint: shared run with count < 2');
  return m;
}

export function readRuns<V extends { len: number }>(r: ByteReader, count: number, dataBlocks: number, width: number, ops: RangeOps<V>, val: (len: number) => V): RangeMap<V> {
  if (count * width > r.remaining) throw corrupt('checkpoint: run count past the end');
  const keys = new Array<number>(count);
  const vals = new Array<V>(count);
  let prevEnd = 0;
  for (let i = 0; i < count; i++) {
    const start = r.u64();
    const len = r.u64();
    if (len === 0 || start < prevEnd || start + len > dataBlocks) throw corrupt('checkpoint: run list is invalid');
    prevEnd = start + len;
    keys[i] = start;
    vals[i] = val(len);
  }
  return RangeMap.fromSorted(ops, keys, vals);
}
