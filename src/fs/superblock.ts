// The superblock: two copies at the start of the image, each in its own 4 KiB slot. Open reads
// both and uses the valid one with the highest generation; a checkpoint writes copy 0, syncs, then
// copy 1, syncs, so one copy is always intact.
//
// Superblock format (version 1, little-endian, 4096 bytes):
//   0    8  magic "IOMAPDSB"
//   8    u32 format version (1)   -- read before anything else; newer -> FORMAT_TOO_NEW
//   12   u32 block size (4096..65536, a power of two)
//   16   u64 generation (starts at 1, +1 per checkpoint)
//   24   u64 image bytes (file length)
//   32   u64 journal offset (bytes)
//   40   u64 journal bytes
//   48   u64 data offset (bytes, block-aligned)
//   56   u64 data blocks
//   64   16  image UUID
//   80   u32 journal salt (random per image; every journal transaction repeats it)
//   84   u64 journal start position (bytes into the journal region)
//   92   u64 journal start sequence (the first transaction to replay)
//   100  u32 CRC of the transaction before the start (chain value)
//   104  u64 checkpoint bytes
//   112  u32 checkpoint CRC-32
//   116  u32 checkpoint run count (<= 240)
//   120  runs: u64 start block, u64 block count (data-area blocks holding the checkpoint, in order)
//   4092 u32 CRC-32 of bytes [0, 4092)
import { ByteReader, ByteWriter } from '../util/bytes.ts';
import { checksum } from '../util/checksum.ts';
import { IomapdError } from '../util/errors.ts';
import type { Run } from './extent.ts';
import { FORMAT_VERSION, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, SUPERBLOCK_SLOT, isPowerOfTwo } from './format.ts';

const MAGIC = Buffer.from('IOMAPDSB', 'latin1');
export const MAX_CHECKPOINT_RUNS = 240;

export interface Superblock {
  version: number;
  blockSize: number;
  generation: number;
  imageBytes: number;
  journalOffset: number;
  journalBytes: number;
  dataOffset: number;
  dataBlocks: number;
  uuid: Buffer;
  journalSalt: number;
  journalStart: number;
  journalSeq: number;
  journalPrevCrc: number;
  checkpointBytes: number;
  checkpointCrc: number;
  checkpointRuns: Run[];
}

export function encodeSuperblock(sb: Superblock): Buffer {
  if (sb.checkpointRuns.length > MAX_CHECKPOINT_RUNS) throw new RangeError('too many checkpoint runs');
  const w = new ByteWriter(SUPERBLOCK_SLOT);
  w.bytes(MAGIC).u32(sb.version).u32(sb.blockSize).u64(sb.generation).u64(sb.imageBytes);
  w.u64(sb.journalOffset).u64(sb.journalBytes).u64(sb.dataOffset).u64(sb.dataBlocks);
  w.bytes(sb.uuid).u32(sb.journalSalt).u64(sb.journalStart).u64(sb.journalSeq).u32(sb.journalPrevCrc);
  w.u64(sb.checkpointBytes).u32(sb.checkpointCrc).u32(sb.checkpointRuns.length);
  for (const r of sb.checkpointRuns) w.u64(r.start).u64(r.len);
  const out = Buffer.alloc(SUPERBLOCK_SLOT);
  w.finish().copy(out);
  out.writeUInt32LE(checksum(out.subarray(0, SUPERBLOCK_SLOT - 4)), SUPERBLOCK_SLOT - 4);
  return out;
}

/** Decodes one copy. Raises BAD_MAGIC, FORMAT_TOO_NEW or CORRUPT; never asserts. */
export function decodeSuperblock(buf: Buffer): Superblock {
  if (buf.length < SUPERBLOCK_SLOT || !buf.subarray(0, 8).equals(MAGIC)) {
    throw new IomapdError('BAD_MAGIC', 'not an iomapd image (bad superblock magic)');
  }
  const version = buf.readUInt32LE(8);
  if (version > FORMAT_VERSION) {
    throw new IomapdError('FORMAT_TOO_NEW', `image format version ${version} is newer than ${FORMAT_VERSION}`);
  }
  if (checksum(buf.subarray(0, SUPERBLOCK_SLOT - 4)) !== buf.readUInt32LE(SUPERBLOCK_SLOT - 4)) {
    throw new IomapdError('CORRUPT', 'superblock checksum mismatch');
  }
  const r = new ByteReader(buf, 'superblock', 12, SUPERBLOCK_SLOT - 4);
  const blockSize = r.u32();
  const sb: Superblock = {
    version,
    blockSize,
    generation: r.u64(),
    imageBytes: r.u64(),
    journalOffset: r.u64(),
    journalBytes: r.u64(),
    dataOffset: r.u64(),
    dataBlocks: r.u64(),
    uuid: Buffer.from(r.bytes(16)),
    journalSalt: r.u32(),
    journalStart: r.u64(),
    journalSeq: r.u64(),
    journalPrevCrc: r.u32(),
    checkpointBytes: r.u64(),
    checkpointCrc: r.u32(),
    checkpointRuns: [],
  };
  const n = r.u32();
  if (n > MAX_CHECKPOINT_RUNS) throw new IomapdError('CORRUPT', 'superblock: too many checkpoint runs');
  let blocks = 0;
  for (let i = 0; i < n; i++) {
    const run = { start: r.u64(), len: r.u64() };
    if (run.len === 0 || run.start + run.len > sb.dataBlocks) throw new IomapdError('CORRUPT', 'superblock: bad checkpoint run');
    blocks += run.len;
    sb.checkpointRuns.push(run);
  }
  const bad =
    !isPowerOfTwo(blockSize) ||
    blockSize < MIN_BLOCK_SIZE ||
    blockSize > MAX_BLOCK_SIZE ||
    sb.generation < 1 ||
    sb.journalOffset < 2 * SUPERBLOCK_SLOT ||
    sb.journalStart >= sb.journalBytes ||
    sb.dataOffset < sb.journalOffset + sb.journalBytes ||
    sb.dataOffset % blockSize !== 0 ||
    sb.imageBytes !== sb.dataOffset + sb.dataBlocks * blockSize ||
    sb.checkpointBytes > blocks * blockSize;
  if (bad) throw new IomapdError('CORRUPT', 'superblock: inconsistent layout fields');
  return sb;
}
