// Making and opening a file image, up to the in-memory metadata: a new image's layout, or on open
// the newest valid superblock, its checkpoint, then journal replay up to the first torn or invalid
// transaction. A crash loses at most uncommitted ops; replay never applies a half transaction.
import { randomBytes } from 'node:crypto';
import { fail } from '../util/errors.ts';
import { checksum } from '../util/checksum.ts';
import type { Storage } from '../storage/storage.ts';
import { BTree } from './btree.ts';
import { decodeCheckpoint } from './checkpoint-codec.ts';
import { extentOps } from './extent.ts';
import { RangeMap } from './range-map.ts';
import { ROOT_RECORD_VERSION, decodeRootRecord } from './root-record.ts';
import { loadTrees } from './tree-io.ts';
import { FORMAT_VERSION, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, SUPERBLOCK_SLOT, dataBlocksFor, isPowerOfTwo, roundUp } from './format.ts';
import { Journal, type ReplayResult } from './journal.ts';
import { Metadata } from './state.ts';
import { SB_COPIES, readSuperblocks } from './superblock-io.ts';
import type { Superblock } from './superblock.ts';

export interface CreateOptions {
  /** Capacity of the data area in bytes (rounded up to the block size). */
  dataBytes: number;
  blockSize?: number;
  journalBytes?: number;
}

/** What recovery hands to the composition root (image-store.ts). */
export interface Recovered {
  sb: Superblock;
  meta: Metadata;
  journal: Journal;
  /** How the journal replay ended (null for a new image). */
  replay: ReplayResult | null;
  superblockProblems: string[];
}

/** The layout of a new image, resized to fit; the caller writes its first checkpoint. */
export async function layoutNewImage(storage: Storage, opts: CreateOptions): Promise<Recovered> {
  const B = opts.blockSize ?? 4096;
  if (!isPowerOfTwo(B) || B < MIN_BLOCK_SIZE || B > MAX_BLOCK_SIZE) {
    fail('BAD_ARGUMENT', `block size must be a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}`);
  }
  if (!Number.isSafeInteger(opts.dataBytes) || opts.dataBytes <= 0) fail('BAD_ARGUMENT', 'size must be a positive integer');
  const dataBlocks = dataBlocksFor(Math.ceil(opts.dataBytes / B));
  const journalBytes = roundUp(opts.journalBytes ?? Math.min(64 << 20, Math.max(256 << 10, Math.floor((dataBlocks * B) / 256))), B);
  const journalOffset = roundUp(SB_COPIES * SUPERBLOCK_SLOT, B);
  const dataOffset = roundUp(journalOffset + journalBytes, B);
  const sb: Superblock = {
    version: FORMAT_VERSION,
    blockSize: B,
    generation: 0,
    imageBytes: dataOffset + dataBlocks * B,
    journalOffset,
    journalBytes,
    dataOffset,
    dataBlocks,
    uuid: randomBytes(16),
    journalSalt: randomBytes(4).readUInt32LE(0) || 1,
    journalStart: 0,
    journalSeq: 1,
    journalPrevCrc: 0,
    checkpointBytes: 0,
    checkpointCrc: 0,
    checkpointRuns: [],
  };
  await storage.resize(sb.imageBytes);
  const meta = Metadata.empty(B, dataBlocks);
  const journal = new Journal(storage, journalRegion(sb), { head: 0, seq: 1, prevCrc: 0 });
  return { sb, meta, journal, replay: null, superblockProblems: [] };
}

/** Reads an existing image's metadata: superblocks, checkpoint, journal replay. */
export async function recoverImage(storage: Storage): Promise<Recovered> {
  const { sb, problems } = await readSuperblocks(storage);
  const size = await storage.size();
  if (size < sb.imageBytes) fail('CORRUPT', `image is truncated: ${size} bytes, expected ${sb.imageBytes}`);
  const blob = Buffer.alloc(sb.checkpointRuns.reduce((n, r) => n + r.len, 0) * sb.blockSize);
  let at = 0;
  for (const r of sb.checkpointRuns) {
    await storage.read(blob.subarray(at, at + r.len * sb.blockSize), sb.dataOffset + r.start * sb.blockSize);
    at += r.len * sb.blockSize;
  }
  const ckpt = blob.subarray(0, sb.checkpointBytes);
  if (checksum(ckpt) !== sb.checkpointCrc) fail('CORRUPT', 'checkpoint checksum mismatch');
  // Versions 1 and 2 hold whole extent lists; version 3 a root record over node blocks.
  const meta = sb.version >= ROOT_RECORD_VERSION ? await loadMetadata(storage, sb, ckpt) : decodeCheckpoint(ckpt, sb);
  const replay = await Journal.replay(storage, journalRegion(sb), { head: sb.journalStart, seq: sb.journalSeq, prevCrc: sb.journalPrevCrc }, (ops) => {
    for (const op of ops) {
      try {
        meta.apply(op, 'replay', (s, l) => meta.putFree(s, l));
      } catch (err) {
        return (err as Error).message;
      }
    }
    return null;
  });
  // The live part of the ring starts at the checkpoint's position, not at the replay end.
  const journal = new Journal(storage, journalRegion(sb), replay, sb.journalStart);
  return { sb, meta, journal, replay, superblockProblems: problems };
}

/** The metadata of a version-3 image: its root record, then every extent tree's nodes. */
async function loadMetadata(storage: Storage, sb: Superblock, record: Buffer): Promise<Metadata> {
  const root = decodeRootRecord(record, sb);
  const src = { read: (buf: Buffer, offset: number) => storage.read(buf, offset), dataOffset: sb.dataOffset, blockSize: sb.blockSize, dataBlocks: sb.dataBlocks };
  const { roots, nodes } = await loadTrees(src, root.volumes.map((v) => v.rootAddr));
  const meta = new Metadata(sb.blockSize, sb.dataBlocks);
  root.volumes.forEach((v, i) => {
    const tree = new BTree(extentOps, meta.treeHooks, roots[i], v.extents);
    meta.addVolume({ id: v.id, name: v.name, size: v.size, flags: v.flags, origin: v.origin, map: new RangeMap(extentOps, tree, v.blocks), inline: v.inline });
  });
  meta.nextVolumeId = Math.max(meta.nextVolumeId, root.nextVolumeId);
  meta.shared = root.shared;
  meta.free = root.free;
  meta.freeBlocks = root.freeBlocks;
  meta.nodeBlocks = nodes;
  return meta;
}

function journalRegion(sb: Superblock): { offset: number; size: number; salt: number } {
  return { offset: sb.journalOffset, size: sb.journalBytes, salt: sb.journalSalt };
}
