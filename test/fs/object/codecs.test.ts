// The object image's encodings against bytes written out by hand (never the encoder checking its
// own decoder): journal objects, checkpoint objects, the manifest, and keys; damaged bytes are
// CORRUPT, a newer version FORMAT_TOO_NEW, a foreign manifest BAD_MAGIC.
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { checkpointKey, journalKey, parseKey, segmentKey } from '../../../src/fs/object/keys.ts';
import { decodeManifest, encodeManifest } from '../../../src/fs/object/manifest-codec.ts';
import { decodeCheckpointObject, decodeJournal, encodeCheckpointObject, encodeJournal } from '../../../src/fs/object/object-codec.ts';
import { OpCode } from '../../../src/fs/ops.ts';

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

function withCrc(body: Buffer): Buffer {
  const out = Buffer.alloc(body.length + 4);
  body.copy(out);
  out.writeUInt32LE(crc32(body) >>> 0, body.length);
  return out;
}

// Journal: epoch 2, seq 5, a commit with one VOL_DELETE(7) and two index changes.
const JOURNAL = withCrc(
  hex(`
    494d4f4a 01000000 02000000 0500000000000000 00000000 00000000
    01000000 05000000
    02 07000000
    02000000
    0900000000000000 02000000 03000000 04000000
    0a00000000000000 ffffffff 00000000 00000000
  `),
);
// Journal: epoch 2, seq 6, a seal by epoch 3.
const SEAL = withCrc(hex('494d4f4a 01000000 02000000 0600000000000000 01000000 03000000 00000000 00000000 00000000'));
// Checkpoint object: epoch 3, generation 9, metadata bytes "abc", one index entry.
const CKPT = withCrc(
  hex(`
    494d4f43 01000000 03000000 0900000000000000 03000000 616263
    0100000000000000
    0500000000000000 03000000 01000000 02000000
  `),
);

describe('object image codecs', () => {
  it('encodes and decodes a journal object as written by hand', () => {
    const j = {
      epoch: 2,
      seq: 5,
      sealedBy: null,
      ops: [{ code: OpCode.VOL_DELETE, id: 7 } as const],
      changes: [
        { block: 9, loc: { epoch: 2, num: 3, slot: 4 } },
        { block: 10, loc: null },
      ],
    };
    expect(encodeJournal(j).toString('hex')).toBe(JOURNAL.toString('hex'));
    expect(decodeJournal(JOURNAL)).toEqual(j);
  });

  it('encodes and decodes a seal', () => {
    const j = { epoch: 2, seq: 6, sealedBy: 3, ops: [], changes: [] };
    expect(encodeJournal(j).toString('hex')).toBe(SEAL.toString('hex'));
    expect(decodeJournal(SEAL)).toEqual(j);
  });

  it('encodes and decodes a checkpoint object', () => {
    const c = { epoch: 3, generation: 9, meta: Buffer.from('abc'), index: [{ block: 5, loc: { epoch: 3, num: 1, slot: 2 } }] };
    expect(encodeCheckpointObject(c).toString('hex')).toBe(CKPT.toString('hex'));
    expect(decodeCheckpointObject(CKPT)).toEqual(c);
  });

  it('refuses damaged objects: every flipped byte, every truncation, a newer version', () => {
    for (const [buf, decode] of [
      [JOURNAL, decodeJournal],
      [CKPT, decodeCheckpointObject],
    ] as const) {
      for (let i = 0; i < buf.length; i++) {
        const bad = Buffer.from(buf);
        bad[i]! ^= 0x40;
        expect(() => decode(bad), `byte ${i}`).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
      }
      for (let n = 0; n < buf.length; n++) expect(() => decode(buf.subarray(0, n)), `length ${n}`).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
      const newer = Buffer.from(buf.subarray(0, buf.length - 4));
      newer.writeUInt32LE(2, 4);
      expect(() => decode(withCrc(newer))).toThrow(expect.objectContaining({ code: 'FORMAT_TOO_NEW' }));
    }
  });

  it('round-trips the manifest and refuses a damaged or foreign one', () => {
    const m = {
      uuid: '00112233445566778899aabbccddeeff',
      blockSize: 4096,
      dataBlocks: 2048,
      formatVersion: 1,
      epoch: 4,
      checkpoint: { key: 'ckpt/00000004/000000000002', generation: 2 },
      journal: { epoch: 4, seq: 17 },
    };
    const buf = encodeManifest(m);
    expect(JSON.parse(buf.toString())).toMatchObject({ format: 'iomapd-object-image', version: 1, epoch: 4 });
    expect(decodeManifest(buf)).toEqual(m);
    const edited = Buffer.from(buf.toString().replace('"epoch":4', '"epoch":5'));
    expect(() => decodeManifest(edited)).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    expect(() => decodeManifest(Buffer.from('{"format":"other"}'))).toThrow(expect.objectContaining({ code: 'BAD_MAGIC' }));
    expect(() => decodeManifest(Buffer.from('not json'))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    const newer = Buffer.from(buf.toString().replace('"version":1', '"version":2'));
    expect(() => decodeManifest(newer)).toThrow(expect.objectContaining({ code: 'FORMAT_TOO_NEW' }));
  });

  it('names keys in fixed-width hex, so a list comes back in order', () => {
    expect(segmentKey(2, 10)).toBe('seg/00000002/00000000000a');
    expect(journalKey(0x10, 0)).toBe('journal/00000010/000000000000');
    expect(checkpointKey(1, 1)).toBe('ckpt/00000001/000000000001');
    expect(parseKey('journal/00000010/00000000000f')).toEqual({ kind: 'journal', epoch: 16, num: 15 });
    expect(parseKey('manifest')).toBeNull();
    expect(parseKey('seg/2/1')).toBeNull();
    const keys = [journalKey(1, 9), journalKey(1, 10), journalKey(2, 0), journalKey(1, 0x100)];
    expect([...keys].sort()).toEqual([journalKey(1, 9), journalKey(1, 10), journalKey(1, 0x100), journalKey(2, 0)]);
  });
});
