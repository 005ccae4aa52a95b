import { describe, expect, it } from 'vitest';
import { ByteReader, ByteWriter } from '../../src/util/bytes.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../../src/fs/checkpoint-codec.ts';
import { committedFree } from '../../src/fs/committed-free.ts';
import { FORMAT_VERSION } from '../../src/fs/format.ts';
import { decodeTransaction, encodeTransaction } from '../../src/fs/journal.ts';
import { type Op, OpCode, decodeOp, encodeOp } from '../../src/fs/ops.ts';
import { BTree, InnerNode, LeafNode } from '../../src/fs/btree.ts';
import { verifyMetadata } from '../../src/fs/check.ts';
import { extentOps } from '../../src/fs/extent.ts';
import { decodeNode, encodeNode } from '../../src/fs/node-codec.ts';
import { RangeMap } from '../../src/fs/range-map.ts';
import { Metadata } from '../../src/fs/state.ts';
import { type Superblock, decodeSuperblock, encodeSuperblock } from '../../src/fs/superblock.ts';
import { IomapdError } from '../../src/util/errors.ts';

const sb: Superblock = {
  version: 1,
  blockSize: 4096,
  generation: 7,
  imageBytes: 8192 + 65536 + 100 * 4096,
  journalOffset: 8192,
  journalBytes: 65536,
  dataOffset: 8192 + 65536,
  dataBlocks: 100,
  uuid: Buffer.alloc(16, 0xab),
  journalSalt: 0x12345678,
  journalStart: 512,
  journalSeq: 9,
  journalPrevCrc: 0xdeadbeef,
  checkpointBytes: 300,
  checkpointCrc: 42,
  checkpointRuns: [{ start: 3, len: 1 }],
};

const ops: Op[] = [
  { code: OpCode.VOL_CREATE, id: 1, flags: 0, size: 1 << 20, name: 'vol-ä' },
  { code: OpCode.VOL_DELETE, id: 3 },
  { code: OpCode.VOL_RESIZE, id: 1, size: 2 ** 40 },
  { code: OpCode.VOL_SNAPSHOT, src: 1, id: 2, flags: 3, name: 's' },
  { code: OpCode.MAP, vol: 1, start: 5, len: 7, kind: 2, phys: 2 ** 33 },
  { code: OpCode.SET_KIND, vol: 1, start: 5, len: 2, kind: 1 },
  { code: OpCode.INLINE_WRITE, vol: 4, offset: 512, data: Buffer.from('hello') },
  { code: OpCode.UNINLINE, vol: 4, size: 8192, phys: null },
  { code: OpCode.UNINLINE, vol: 4, size: 8192, phys: 9 },
  { code: OpCode.VOL_SET_FLAGS, id: 4, flags: 8 },
];

function expectCorrupt(fn: () => unknown, code = 'CORRUPT'): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(IomapdError);
    expect((err as IomapdError).code).toBe(code);
    return;
  }
  throw new Error('expected a decode error');
}

describe('byte codec', () => {
  it('round-trips u64 values up to 2^53 and rejects truncation', () => {
    const w = new ByteWriter(4).u64(2 ** 53 - 1).u64(0).u32(0xffffffff).str('x');
    const r = new ByteReader(w.finish(), 't');
    expect([r.u64(), r.u64(), r.u32(), r.str()]).toEqual([2 ** 53 - 1, 0, 0xffffffff, 'x']);
    expectCorrupt(() => r.u8());
    // hand-written: a u64 of 2^53 (hi word 0x200000) is refused
    expectCorrupt(() => new ByteReader(Buffer.from('0000000000002000', 'hex'), 't').u64());
  });
});

describe('superblock codec', () => {
  it('round-trips and has a fixed 4096-byte layout', () => {
    const buf = encodeSuperblock(sb);
    expect(buf.length).toBe(4096);
    expect(buf.subarray(0, 8).toString('latin1')).toBe('IOMAPDSB');
    expect(buf.readUInt32LE(8)).toBe(1);
    expect(buf.readUInt32LE(12)).toBe(4096);
    expect(buf.readUInt32LE(16)).toBe(7);
    expect(decodeSuperblock(buf)).toEqual(sb);
  });

  it('rejects bad magic, newer versions, flipped bits and inconsistent fields', () => {
    const good = encodeSuperblock(sb);
    const bad = Buffer.from(good);
    bad[0] ^= 1;
    expectCorrupt(() => decodeSuperblock(bad), 'BAD_MAGIC');
    const newer = Buffer.from(good);
    newer.writeUInt32LE(FORMAT_VERSION + 1, 8);
    expectCorrupt(() => decodeSuperblock(newer), 'FORMAT_TOO_NEW');
    for (const at of [12, 20, 100, 130, 4000, 4093]) {
      const f = Buffer.from(good);
      f[at] ^= 0x10;
      expectCorrupt(() => decodeSuperblock(f));
    }
    expectCorrupt(() => decodeSuperblock(encodeSuperblock({ ...sb, dataOffset: 4096 })));
    expectCorrupt(() => decodeSuperblock(encodeSuperblock({ ...sb, blockSize: 3000 })));
  });
});

describe('journal op and transaction codec', () => {
  it('round-trips every op', () => {
    for (const op of ops) {
      const w = new ByteWriter(8);
      encodeOp(w, op);
      expect(decodeOp(new ByteReader(w.finish(), 'op'))).toEqual(op);
    }
  });

  it('a MAP op has the documented layout', () => {
    const w = new ByteWriter(8);
    encodeOp(w, { code: OpCode.MAP, vol: 2, start: 1, len: 3, kind: 1, phys: 4 });
    expect(w.finish().toString('hex')).toBe(
      '05' + '02000000' + '0100000000000000' + '0300000000000000' + '01' + '0400000000000000',
    );
  });

  it('a VOL_SET_FLAGS op has the documented layout', () => {
    const w = new ByteWriter(8);
    encodeOp(w, { code: OpCode.VOL_SET_FLAGS, id: 3, flags: 8 });
    expect(w.finish().toString('hex')).toBe('09' + '03000000' + '08000000');
  });

  it('rejects unknown codes and bad kinds, never asserting', () => {
    expectCorrupt(() => decodeOp(new ByteReader(Buffer.from([99]), 'op')));
    expectCorrupt(() => decodeOp(new ByteReader(Buffer.from('06' + '00'.repeat(20) + '07', 'hex'), 'op')));
    for (let cut = 0; cut < 20; cut++) expectCorrupt(() => decodeOp(new ByteReader(Buffer.from('05' + '00'.repeat(cut), 'hex'), 'op')));
  });

  it('transactions are sector-padded, checksummed and detect any flipped byte', () => {
    const { buf } = encodeTransaction(ops, 77, 5, 123);
    expect(buf.length % 512).toBe(0);
    const hdr = { payload: buf.readUInt32LE(20), count: buf.readUInt32LE(24), crc: buf.readUInt32LE(32) };
    expect(decodeTransaction(buf, hdr)).toEqual(ops);
    for (let at = 40; at < 40 + hdr.payload; at += 7) {
      const f = Buffer.from(buf);
      f[at] ^= 0x40;
      expect(decodeTransaction(f, hdr)).toBeNull();
    }
  });
});

describe('checkpoint codec', () => {
  it('round-trips metadata and rejects any flipped byte', () => {
    const m = Metadata.empty(4096, 64);
    const noop = () => {};
    m.apply({ code: OpCode.VOL_CREATE, id: 1, flags: 0, size: 40960, name: 'a' }, 'replay', noop);
    m.apply({ code: OpCode.MAP, vol: 1, start: 2, len: 3, kind: 2, phys: 10 }, 'replay', noop);
    m.apply({ code: OpCode.MAP, vol: 1, start: 6, len: 1, kind: 1, phys: 20 }, 'replay', noop);
    m.apply({ code: OpCode.VOL_SNAPSHOT, src: 1, id: 2, flags: 3, name: 's' }, 'replay', noop);
    m.apply({ code: OpCode.VOL_CREATE, id: 3, flags: 4, size: 1024, name: 'tiny' }, 'replay', noop);
    m.apply({ code: OpCode.INLINE_WRITE, vol: 3, offset: 10, data: Buffer.from('abc') }, 'replay', noop);
    const free = committedFree(m.free, []);
    const blob = encodeCheckpoint(m, 5, free);
    const back = decodeCheckpoint(blob, { blockSize: 4096, dataBlocks: 64, generation: 5 });
    expect([...back.volumes.values()].map((v) => [v.name, v.size, [...v.map.entries()], v.inline])).toEqual(
      [...m.volumes.values()].map((v) => [v.name, v.size, [...v.map.entries()], v.inline]),
    );
    // In memory the snapshot shares the source's tree (lazy counts: the table is empty); version 1
    // has no shared nodes, so it records each block's count per volume.
    expect([...m.shared.entries()]).toEqual([]);
    expect([...back.shared.entries()]).toEqual([
      { start: 10, v: { len: 3, count: 2 } },
      { start: 20, v: { len: 1, count: 2 } },
    ]);
    expect(verifyMetadata(back, []).errors).toEqual([]);
    expect(back.freeBlocks).toBe(m.freeBlocks);
    expectCorrupt(() => decodeCheckpoint(blob, { blockSize: 4096, dataBlocks: 64, generation: 6 }));
    for (let at = 0; at < blob.length; at += 11) {
      const f = Buffer.from(blob);
      f[at] ^= 0x01;
      expectCorrupt(() => decodeCheckpoint(f, { blockSize: 4096, dataBlocks: 64, generation: 5 }));
    }
  });
});

describe('tree node codec (version 3)', () => {
  it('round-trips a leaf and an inner node and rejects any flipped byte or a misdirected block', () => {
    const entries = [
      { start: 0, v: { len: 3, kind: 2 as const, phys: 10 } },
      { start: 5, v: { len: 1, kind: 1 as const, phys: 40 } },
      { start: 9, v: { len: 7, kind: 2 as const, phys: 50 } },
    ];
    const tree = RangeMap.fromSorted(extentOps, entries.map((e) => e.start), entries.map((e) => e.v)).tree;
    const leaf = tree.root as LeafNode;
    const block = Buffer.alloc(4096);
    encodeNode(leaf, 7, 3, block);
    const back = decodeNode(block, 7, 64);
    expect(back.leaf!.gen).toBe(3);
    expect(back.leaf!.addr).toBe(7);
    expect(new BTree(extentOps, null, back.leaf!, 3).get(5)).toEqual(entries[1]!.v);
    expectCorrupt(() => decodeNode(block, 8, 64)); // another address
    expectCorrupt(() => decodeNode(block, 7, 55)); // an extent past the data area
    for (let at = 0; at < 32 + 3 * 32; at += 3) {
      const f = Buffer.from(block);
      f[at] ^= 0x10;
      expectCorrupt(() => decodeNode(f, 7, 64));
    }
    const inner = new InnerNode();
    leaf.addr = 7;
    const other = new LeafNode(new Float64Array(8));
    other.addr = 9;
    inner.children = [leaf, other];
    inner.keys[0] = 0;
    inner.keys[1] = 20;
    encodeNode(inner, 11, 4, block.fill(0));
    const up = decodeNode(block, 11, 64);
    expect([...up.childAddrs!]).toEqual([7, 9]);
    expect(up.inner!.keys[1]).toBe(20);
    expectCorrupt(() => decodeNode(block, 11, 9)); // a child outside the data area
  });
});
