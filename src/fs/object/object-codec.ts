// Journal and checkpoint objects of an object-store image (docs/OBJECT-STORE.md, "Objects").
//
// Journal object (version 1, little-endian):
//   0   4  magic "IMOJ"
//   4   u32 version (1)
//   8   u32 epoch (of the writer; equals the key's)
//   12  u64 sequence (equals the key's)
//   20  u32 flags (1 = seal: the chain of this epoch ends here)
//   24  u32 sealing epoch (the opener that sealed; 0 for a commit)
//   28  u32 op count
//   32  u32 op bytes
//   36  ops (ops.ts encoding)
//   ..  u32 index-change count, then changes: u64 physical block, u32 segment epoch
//       (0xffffffff: the block has no data), u32 segment number, u32 slot
//   ..  u32 CRC-32 of every byte before it
// Checkpoint object (version 1, little-endian):
//   0   4  magic "IMOC"
//   4   u32 version (1)
//   8   u32 epoch
//   12  u64 generation
//   20  u32 metadata checkpoint bytes, then the metadata checkpoint (checkpoint-codec.ts)
//   ..  u64 index entries, then entries: u64 physical block, u32 segment epoch, u32 segment
//       number, u32 slot (sorted by block)
//   ..  u32 CRC-32 of every byte before it
import { ByteReader, ByteWriter } from '../../util/bytes.ts';
import { checksum } from '../../util/checksum.ts';
import { IomapdError } from '../../util/errors.ts';
import { type Op, decodeOp, encodeOp } from '../ops.ts';

const JOURNAL_MAGIC = Buffer.from('IMOJ', 'latin1');
const CKPT_MAGIC = Buffer.from('IMOC', 'latin1');
const NO_SEGMENT = 0xffffffff;
const SEAL = 1;

/** Where a block's bytes are: slot `slot` (of block size) in segment (epoch, num). */
export interface SegmentLoc {
  readonly epoch: number;
  readonly num: number;
  readonly slot: number;
}

/** A block-index change: the block's new location, or null (its data is dropped). */
export interface IndexChange {
  readonly block: number;
  readonly loc: SegmentLoc | null;
}

export interface JournalObject {
  epoch: number;
  seq: number;
  /** The epoch that sealed this chain, or null for a commit. */
  sealedBy: number | null;
  ops: Op[];
  changes: IndexChange[];
}

export interface CheckpointObject {
  epoch: number;
  generation: number;
  meta: Buffer;
  index: IndexChange[];
}

function writeLoc(w: ByteWriter, c: IndexChange): void {
  w.u64(c.block);
  if (c.loc) w.u32(c.loc.epoch).u32(c.loc.num).u32(c.loc.slot);
  else w.u32(NO_SEGMENT).u32(0).u32(0);
}

function readLoc(r: ByteReader): IndexChange {
  const block = r.u64();
  const epoch = r.u32();
  const num = r.u32();
  const slot = r.u32();
  return { block, loc: epoch === NO_SEGMENT ? null : { epoch, num, slot } };
}

function sealed(w: ByteWriter): Buffer {
  const body = w.finish();
  const out = Buffer.alloc(body.length + 4);
  body.copy(out);
  out.writeUInt32LE(checksum(body), body.length);
  return out;
}

function verified(buf: Buffer, magic: Buffer, what: string): ByteReader {
  if (buf.length < 12 || !buf.subarray(0, 4).equals(magic)) throw new IomapdError('CORRUPT', `${what}: bad magic`);
  const end = buf.length - 4;
  if (checksum(buf.subarray(0, end)) !== buf.readUInt32LE(end)) throw new IomapdError('CORRUPT', `${what}: CRC mismatch`);
  const r = new ByteReader(buf, what, 4, end);
  const version = r.u32();
  if (version !== 1) throw new IomapdError('FORMAT_TOO_NEW', `${what}: version ${version}`);
  return r;
}

export function encodeJournal(j: JournalObject): Buffer {
  const w = new ByteWriter(4096);
  w.bytes(JOURNAL_MAGIC).u32(1).u32(j.epoch).u64(j.seq).u32(j.sealedBy === null ? 0 : SEAL).u32(j.sealedBy ?? 0);
  w.u32(j.ops.length);
  const bytesAt = w.skip(4);
  const opsFrom = w.finish().length;
  for (const op of j.ops) encodeOp(w, op);
  w.patchU32(bytesAt, w.finish().length - opsFrom);
  w.u32(j.changes.length);
  for (const c of j.changes) writeLoc(w, c);
  return sealed(w);
}

export function decodeJournal(buf: Buffer, what = 'journal object'): JournalObject {
  const r = verified(buf, JOURNAL_MAGIC, what);
  const epoch = r.u32();
  const seq = r.u64();
  const flags = r.u32();
  const sealer = r.u32();
  const count = r.u32();
  const opBytes = r.u32();
  const opsEnd = r.offset + opBytes;
  const ops: Op[] = [];
  for (let i = 0; i < count; i++) ops.push(decodeOp(r));
  if (r.offset !== opsEnd) throw new IomapdError('CORRUPT', `${what}: op bytes do not add up`);
  const n = r.u32();
  const changes: IndexChange[] = [];
  for (let i = 0; i < n; i++) changes.push(readLoc(r));
  if (r.remaining !== 0) throw new IomapdError('CORRUPT', `${what}: trailing bytes`);
  return { epoch, seq, sealedBy: flags & SEAL ? sealer : null, ops, changes };
}

export function encodeCheckpointObject(c: CheckpointObject): Buffer {
  const w = new ByteWriter(c.meta.length + c.index.length * 20 + 64);
  w.bytes(CKPT_MAGIC).u32(1).u32(c.epoch).u64(c.generation).u32(c.meta.length).bytes(c.meta);
  w.u64(c.index.length);
  for (const e of c.index) writeLoc(w, e);
  return sealed(w);
}

export function decodeCheckpointObject(buf: Buffer, what = 'checkpoint object'): CheckpointObject {
  const r = verified(buf, CKPT_MAGIC, what);
  const epoch = r.u32();
  const generation = r.u64();
  const metaLen = r.u32();
  const meta = Buffer.from(r.bytes(metaLen));
  const n = r.u64();
  const index: IndexChange[] = [];
  for (let i = 0; i < n; i++) {
    const e = readLoc(r);
    if (!e.loc) throw new IomapdError('CORRUPT', `${what}: index entry without a segment`);
    index.push(e);
  }
  if (r.remaining !== 0) throw new IomapdError('CORRUPT', `${what}: trailing bytes`);
  return { epoch, generation, meta, index };
}
