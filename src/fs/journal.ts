// The metadata journal: a ring of transactions in a fixed region after the superblocks. A
// transaction holds the ops of one group commit; it is written after the data it points to is
// durable, then synced. Replay starts at the superblock's start position and sequence and stops at
// the first transaction that is torn or invalid.
//
// Transaction format (version 1, little-endian), padded with zeros to a multiple of 512 bytes:
//   0   u32 magic 0x544a4d49 ("IMJT")
//   4   u32 journal salt (from the superblock: rejects records of an older image in the same file)
//   8   u64 sequence number (one more than the previous transaction)
//   16  u32 CRC of the previous transaction (a chain: a stale transaction from an earlier lap or
//       an interrupted run cannot follow a newer one)
//   20  u32 payload bytes
//   24  u32 op count
//   28  u32 reserved (0)
//   32  u32 CRC-32 of header (this field zero) and payload
//   36  u32 reserved (0)
//   40  payload: ops (ops.ts)
// A transaction never wraps: if it does not fit before the end of the region it is written at the
// start; the reader, finding no valid transaction at its position, tries the start once.
import { ByteReader, ByteWriter } from '../util/bytes.ts';
import { checksum } from '../util/checksum.ts';
import type { Storage } from '../storage/storage.ts';
import { SECTOR, roundUp } from './format.ts';
import { type Op, decodeOp, encodeOp } from './ops.ts';

const MAGIC = 0x544a4d49;
const HEADER = 40;
/** Group commits larger than this are split into several transactions (each op is consistent alone). */
const MAX_TX_PAYLOAD = 1 << 20;

export interface JournalPosition {
  /** Bytes into the journal region where the next transaction goes. */
  head: number;
  seq: number;
  prevCrc: number;
}

export interface ReplayResult extends JournalPosition {
  transactions: number;
  ops: number;
  /** Why replay stopped: 'end' (no further transaction) or a description of an invalid one. */
  stop: string;
}

export function encodeTransaction(ops: Op[], salt: number, seq: number, prevCrc: number): { buf: Buffer; crc: number } {
  const w = new ByteWriter(4096);
  w.u32(MAGIC).u32(salt).u64(seq).u32(prevCrc);
  const payloadAt = w.skip(4);
  w.u32(ops.length).u32(0);
  const crcAt = w.skip(4);
  w.u32(0);
  for (const op of ops) encodeOp(w, op);
  const body = w.finish();
  const buf = Buffer.alloc(roundUp(body.length, SECTOR));
  body.copy(buf);
  buf.writeUInt32LE(body.length - HEADER, payloadAt);
  const crc = checksum(buf.subarray(0, body.length));
  buf.writeUInt32LE(crc, crcAt);
  return { buf, crc };
}

type Header = { payload: number; count: number; crc: number };

function parseHeader(h: Buffer, salt: number, seq: number, prevCrc: number, room: number): Header | string {
  if (h.readUInt32LE(0) !== MAGIC) return 'no transaction (magic)';
  if (h.readUInt32LE(4) !== salt) return 'transaction of another image (salt)';
  const r = new ByteReader(h, 'journal header', 8, HEADER);
  if (r.u64() !== seq) return `sequence is not ${seq}`;
  if (h.readUInt32LE(16) !== prevCrc) return 'chain CRC mismatch';
  const payload = h.readUInt32LE(20);
  if (HEADER + payload > room) return 'length runs past the journal';
  return { payload, count: h.readUInt32LE(24), crc: h.readUInt32LE(32) };
}

/** Decodes the ops of a transaction whose bytes are complete; null if the CRC or an op is bad. */
export function decodeTransaction(buf: Buffer, hdr: Header): Op[] | null {
  const body = Buffer.from(buf.subarray(0, HEADER + hdr.payload));
  body.writeUInt32LE(0, 32);
  if (checksum(body) !== hdr.crc) return null;
  const r = new ByteReader(buf, 'journal transaction', HEADER, HEADER + hdr.payload);
  const ops: Op[] = [];
  try {
    for (let i = 0; i < hdr.count; i++) ops.push(decodeOp(r));
  } catch {
    return null;
  }
  return r.remaining === 0 ? ops : null;
}

export class Journal {
  private readonly storage: Storage;
  readonly offset: number;
  readonly size: number;
  private readonly salt: number;
  pos: JournalPosition;
  /** Start of the live part of the ring (the current checkpoint's start position). */
  private tail: number;

  /** `pos` is where the next transaction goes; `tail` where the live part starts (default: pos). */
  constructor(storage: Storage, region: { offset: number; size: number; salt: number }, pos: JournalPosition, tail = pos.head) {
    this.storage = storage;
    this.offset = region.offset;
    this.size = region.size;
    this.salt = region.salt;
    this.pos = { head: pos.head, seq: pos.seq, prevCrc: pos.prevCrc };
    this.tail = tail;
  }

  /** Marks everything before the current head as covered by a checkpoint. */
  truncate(): void {
    this.tail = this.pos.head;
  }

  /** Bytes in use, including space skipped at a wrap. */
  get used(): number {
    return this.pos.head >= this.tail ? this.pos.head - this.tail : this.size - this.tail + this.pos.head;
  }

  /** Where a transaction of n bytes would go, or -1 if the ring has no room for it. */
  private placeFor(n: number): number {
    const { head } = this.pos;
    if (head >= this.tail) {
      if (head + n <= this.size) return head;
      return n < this.tail ? 0 : -1;
    }
    return head + n < this.tail ? head : -1;
  }

  /** Encodes ops into transactions that fit; null if the ring lacks room (nothing written). */
  plan(ops: Op[]): Array<{ at: number; buf: Buffer; crc: number; seq: number }> | null {
    const groups: Op[][] = [];
    let cur: Op[] = [];
    let bytes = 0;
    for (const op of ops) {
      const sz = op.code === 7 ? op.data.length + 16 : 40;
      if (cur.length > 0 && bytes + sz > MAX_TX_PAYLOAD) {
        groups.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(op);
      bytes += sz;
    }
    if (cur.length > 0) groups.push(cur);
    const saved = { ...this.pos };
    const out: Array<{ at: number; buf: Buffer; crc: number; seq: number }> = [];
    for (const g of groups) {
      const tx = encodeTransaction(g, this.salt, this.pos.seq, this.pos.prevCrc);
      const at = this.placeFor(tx.buf.length);
      if (at < 0) {
        this.pos = saved;
        return null;
      }
      out.push({ at, buf: tx.buf, crc: tx.crc, seq: this.pos.seq });
      this.pos = { head: at + tx.buf.length, seq: this.pos.seq + 1, prevCrc: tx.crc };
      if (this.pos.head >= this.size) this.pos.head = 0;
    }
    this.pos = saved;
    return out;
  }

  /** Writes planned transactions (no sync) and advances the head. */
  async write(planned: Array<{ at: number; buf: Buffer; crc: number; seq: number }>): Promise<void> {
    for (const t of planned) {
      await this.storage.write(t.buf, this.offset + t.at);
      let head = t.at + t.buf.length;
      if (head >= this.size) head = 0;
      this.pos = { head, seq: t.seq + 1, prevCrc: t.crc };
    }
  }

  /** Reads transactions from `start`, handing each one's ops to apply; stops at the first bad one. */
  static async replay(
    storage: Storage,
    region: { offset: number; size: number; salt: number },
    start: JournalPosition,
    apply: (ops: Op[]) => string | null,
  ): Promise<ReplayResult> {
    let pos = { ...start };
    let transactions = 0;
    let opCount = 0;
    const hbuf = Buffer.alloc(SECTOR);
    for (;;) {
      let hdr: Header | string = 'no room for a header';
      let at = pos.head;
      const tryAt = async (p: number): Promise<Header | string> => {
        if (p + SECTOR > region.size) return 'no room for a header';
        await storage.read(hbuf, region.offset + p);
        return parseHeader(hbuf, region.salt, pos.seq, pos.prevCrc, region.size - p);
      };
      hdr = await tryAt(at);
      if (typeof hdr === 'string' && at !== 0) {
        const again = await tryAt(0);
        if (typeof again !== 'string') {
          hdr = again;
          at = 0;
        }
      }
      if (typeof hdr === 'string') return { ...pos, transactions, ops: opCount, stop: transactions === 0 && hdr.startsWith('no transaction') ? 'end' : endReason(hdr) };
      const len = roundUp(HEADER + hdr.payload, SECTOR);
      const buf = Buffer.alloc(len);
      await storage.read(buf, region.offset + at);
      const ops = decodeTransaction(buf, hdr);
      if (!ops) return { ...pos, transactions, ops: opCount, stop: `transaction ${pos.seq} is torn or corrupt` };
      const err = apply(ops);
      transactions++;
      opCount += ops.length;
      let head = at + len;
      if (head >= region.size) head = 0;
      pos = { head, seq: pos.seq + 1, prevCrc: hdr.crc };
      if (err) return { ...pos, transactions, ops: opCount, stop: `transaction ${pos.seq - 1} has an invalid op: ${err}` };
    }
  }
}

function endReason(why: string): string {
  return why.startsWith('no transaction') || why.startsWith('sequence') || why.startsWith('chain') || why.startsWith('transaction of another')
    ? 'end'
    : why;
}
