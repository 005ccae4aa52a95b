// Transmission codec, table by table: compact (28-byte) and extended (32-byte) requests, the simple
// reply, and every chunk in both the structured (20-byte header) and extended (32-byte header) form.
// Fixture hex is laid out one field per group: magic | flags | type | cookie | ... .
import { describe, expect, it } from 'vitest';
import {
  decodeRequest,
  encodeBlockStatusChunk,
  encodeErrorChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeOffsetHoleChunk,
  encodeSimpleReply,
  type ChunkTarget,
  type Request,
} from '../../../src/protocol/transmission.ts';
import { checkDecodes, checkRejects, hex, toHex } from './bytes.ts';

const compact = (b: Buffer) => decodeRequest(b, false);
const extended = (b: Buffer) => decodeRequest(b, true);

describe('compact request (28 bytes)', () => {
  it.each<[string, string, Request]>([
    [
      'READ 4 KiB at 0',
      '25609513 0000 0000 0000000000000001 0000000000000000 00001000',
      { flags: 0, type: 0, cookie: 1n, offset: 0n, length: 4096n },
    ],
    [
      // The kernel writes `type | flags << 16` as one u32: 0x00010001 is WRITE with FUA.
      'kernel WRITE|FUA with a generation counter in the cookie',
      '25609513 0001 0001 deadbeef00000001 0000000000100000 00020000',
      { flags: 1, type: 1, cookie: 0xdeadbeef00000001n, offset: 0x100000n, length: 0x20000n },
    ],
    [
      'offset near 2^64, all-ones cookie',
      '25609513 0000 0000 ffffffffffffffff fffffffffffffe00 00000200',
      { flags: 0, type: 0, cookie: 0xffffffffffffffffn, offset: 0xfffffffffffffe00n, length: 512n },
    ],
    [
      'offset 2^63 (tests send it; must not round)',
      '25609513 0000 0000 0000000000000007 8000000000000000 00000200',
      { flags: 0, type: 0, cookie: 7n, offset: 0x8000000000000000n, length: 512n },
    ],
    [
      'offset 2^53 + 1 (not exact as a number)',
      '25609513 0000 0001 0000000000000008 0020000000000001 00000001',
      { flags: 0, type: 1, cookie: 8n, offset: 0x20000000000001n, length: 1n },
    ],
    ['DISC with cookie 0', '25609513 0000 0002 0000000000000000 0000000000000000 00000000', { flags: 0, type: 2, cookie: 0n, offset: 0n, length: 0n }],
    [
      'TRIM split at 4 GiB - 4 KiB',
      '25609513 0000 0004 8000000000000000 0000000100000000 fffff000',
      { flags: 0, type: 4, cookie: 0x8000000000000000n, offset: 0x100000000n, length: 0xfffff000n },
    ],
    [
      'WRITE_ZEROES with NO_HOLE|FAST_ZERO',
      '25609513 0012 0006 0000000100000000 0000000000000000 40000000',
      { flags: 0x12, type: 6, cookie: 0x100000000n, offset: 0n, length: 0x40000000n },
    ],
    [
      'unknown type and flags are decoded (validation rejects them later)',
      '25609513 ffff ffff 0102030405060708 0000000000000200 ffffffff',
      { flags: 0xffff, type: 0xffff, cookie: 0x0102030405060708n, offset: 0x200n, length: 0xffffffffn },
    ],
  ])('%s', (_, fixture, value) => {
    checkDecodes(compact, hex(fixture), value);
  });

  it.each([
    ['an extended request', '21e41c71 0000 0000 0000000000000001 0000000000000000 0000000000001000'],
    ['the simple reply magic', '67446698 0000 0000 0000000000000001 0000000000000000 00001000'],
    ['the structured reply magic', '668e33ef 0000 0000 0000000000000001 0000000000000000 00001000'],
    ['reserved 0x25609514', '25609514 0000 0000 0000000000000001 0000000000000000 00001000'],
    ['reserved 0x12560953', '12560953 0000 0000 0000000000000001 0000000000000000 00001000'],
    ['the magic little-endian', '13956025 0000 0000 0000000000000001 0000000000000000 00001000'],
    ['zeroes', '00000000 0000 0000 0000000000000000 0000000000000000 00000000'],
  ])('%s is bad-magic', (_, fixture) => {
    checkRejects(compact, hex(fixture), 'bad-magic');
  });

  it('wrong magic is reported after 4 bytes, without waiting for the rest of the header', () => {
    const r = compact(hex('25609514'));
    expect(r.ok === false && 'error' in r && r.error.kind).toBe('bad-magic');
  });

  it('fewer than 4 bytes ask for the rest of the header', () => {
    expect(compact(hex(''))).toEqual({ ok: false, more: 28 });
    expect(compact(hex('2560'))).toEqual({ ok: false, more: 26 });
    expect(compact(hex('25609513 0000'))).toEqual({ ok: false, more: 22 });
  });
});

describe('extended request (32 bytes)', () => {
  it.each<[string, string, Request]>([
    [
      'WRITE with PAYLOAD_LEN',
      '21e41c71 0020 0001 deadbeef00000001 0000000000001000 0000000000001000',
      { flags: 0x20, type: 1, cookie: 0xdeadbeef00000001n, offset: 0x1000n, length: 0x1000n },
    ],
    [
      'TRIM of 4 GiB (length past 32 bits)',
      '21e41c71 0000 0004 0000000000000002 0000000000000000 0000000100000000',
      { flags: 0, type: 4, cookie: 2n, offset: 0n, length: 0x100000000n },
    ],
    [
      'everything all-ones',
      '21e41c71 ffff ffff ffffffffffffffff ffffffffffffffff ffffffffffffffff',
      { flags: 0xffff, type: 0xffff, cookie: 0xffffffffffffffffn, offset: 0xffffffffffffffffn, length: 0xffffffffffffffffn },
    ],
  ])('%s', (_, fixture, value) => {
    checkDecodes(extended, hex(fixture), value);
  });

  it.each([
    ['a compact request', '25609513 0000 0000 0000000000000001 0000000000000000 00001000 00000000'],
    ['the extended reply magic', '6e8a278c 0000 0000 0000000000000001 0000000000000000 0000000000001000'],
  ])('%s is bad-magic', (_, fixture) => {
    checkRejects(extended, hex(fixture), 'bad-magic');
  });

  it('asks for the whole 32 bytes', () => {
    expect(extended(hex(''))).toEqual({ ok: false, more: 32 });
    expect(extended(hex('21e41c71 0000 0000'))).toEqual({ ok: false, more: 24 });
  });
});

describe('simple reply (16 bytes)', () => {
  it.each<[string, Buffer, string]>([
    ['success, kernel cookie', encodeSimpleReply(0xdeadbeef00000001n, 0), '67446698 00000000 deadbeef00000001'],
    ['EINVAL', encodeSimpleReply(1n, 22), '67446698 00000016 0000000000000001'],
    ['ESHUTDOWN, all-ones cookie', encodeSimpleReply(0xffffffffffffffffn, 108), '67446698 0000006c ffffffffffffffff'],
    ['EPERM, cookie 0', encodeSimpleReply(0n, 1), '67446698 00000001 0000000000000000'],
  ])('%s', (_, actual, expected) => {
    expect(toHex(actual)).toBe(toHex(hex(expected)));
  });

  it('echoes a decoded cookie with high bits set exactly', () => {
    const r = compact(hex('25609513 0000 0000 deadbeef00000001 0000000000000000 00000200'));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.cookie).toBe(0xdeadbeef00000001n);
    expect(toHex(encodeSimpleReply(r.value.cookie, 0))).toBe('67446698' + '00000000' + 'deadbeef00000001');
  });
});

const COOKIE = 0xdeadbeef00000001n;
const S: ChunkTarget = { style: 'structured', cookie: COOKIE, requestOffset: 0x10000n };
const X: ChunkTarget = { style: 'extended', cookie: COOKIE, requestOffset: 0x10000n };

// Structured header: magic 668e33ef | flags u16 | type u16 | cookie u64 | length u32.
// Extended header:   magic 6e8a278c | flags u16 | type u16 | cookie u64 | request offset u64 | length u64.
describe('reply chunks', () => {
  it.each<[string, Buffer, string]>([
    // NONE
    ['NONE, structured', encodeNoneChunk(S), '668e33ef 0001 0000 deadbeef00000001 00000000'],
    ['NONE, extended', encodeNoneChunk(X), '6e8a278c 0001 0000 deadbeef00000001 0000000000010000 0000000000000000'],

    // OFFSET_DATA: the header and u64 offset; the data follows separately
    [
      'OFFSET_DATA 512 bytes, final, structured',
      encodeOffsetDataHeader(S, 0x10200n, 512, true),
      '668e33ef 0001 0001 deadbeef00000001 00000208 0000000000010200',
    ],
    [
      'OFFSET_DATA 512 bytes, final, extended',
      encodeOffsetDataHeader(X, 0x10200n, 512, true),
      '6e8a278c 0001 0001 deadbeef00000001 0000000000010000 0000000000000208 0000000000010200',
    ],
    [
      'OFFSET_DATA 64 KiB, not final, structured',
      encodeOffsetDataHeader(S, 0x10000n, 0x10000, false),
      '668e33ef 0000 0001 deadbeef00000001 00010008 0000000000010000',
    ],
    [
      'OFFSET_DATA 4 GiB, not final, extended (length past 32 bits)',
      encodeOffsetDataHeader(X, 0x10000n, 2 ** 32, false),
      '6e8a278c 0000 0001 deadbeef00000001 0000000000010000 0000000100000008 0000000000010000',
    ],

    // OFFSET_HOLE: u64 offset, u32 size; length exactly 12
    [
      'OFFSET_HOLE 32 KiB, not final, structured',
      encodeOffsetHoleChunk(S, 0x10000n, 0x8000, false),
      '668e33ef 0000 0002 deadbeef00000001 0000000c 0000000000010000 00008000',
    ],
    [
      'OFFSET_HOLE 32 KiB, final, structured',
      encodeOffsetHoleChunk(S, 0x18000n, 0x8000, true),
      '668e33ef 0001 0002 deadbeef00000001 0000000c 0000000000018000 00008000',
    ],
    [
      'OFFSET_HOLE 32 KiB, not final, extended',
      encodeOffsetHoleChunk(X, 0x10000n, 0x8000, false),
      '6e8a278c 0000 0002 deadbeef00000001 0000000000010000 000000000000000c 0000000000010000 00008000',
    ],

    // ERROR: u32 error, u16 message length, message; type 0x8001
    [
      'ERROR EINVAL "bad flags", structured',
      encodeErrorChunk(S, 22, 'bad flags'),
      '668e33ef 0001 8001 deadbeef00000001 0000000f 00000016 0009 62616420666c616773',
    ],
    [
      'ERROR EINVAL "bad flags", extended',
      encodeErrorChunk(X, 22, 'bad flags'),
      '6e8a278c 0001 8001 deadbeef00000001 0000000000010000 000000000000000f 00000016 0009 62616420666c616773',
    ],
    ['ERROR EIO, no message, structured', encodeErrorChunk(S, 5, ''), '668e33ef 0001 8001 deadbeef00000001 00000006 00000005 0000'],
    [
      'ERROR ESHUTDOWN, no message, extended',
      encodeErrorChunk(X, 108, ''),
      '6e8a278c 0001 8001 deadbeef00000001 0000000000010000 0000000000000006 0000006c 0000',
    ],

    // ERROR_OFFSET: as ERROR plus a trailing u64 offset; type 0x8002
    [
      'ERROR_OFFSET EIO "read failed", structured',
      encodeErrorChunk(S, 5, 'read failed', 0x10200n),
      '668e33ef 0001 8002 deadbeef00000001 00000019 00000005 000b 72656164206661696c6564 0000000000010200',
    ],
    [
      'ERROR_OFFSET EIO "read failed", extended',
      encodeErrorChunk(X, 5, 'read failed', 0x10200n),
      '6e8a278c 0001 8002 deadbeef00000001 0000000000010000 0000000000000019 00000005 000b 72656164206661696c6564 0000000000010200',
    ],
    [
      'ERROR_OFFSET at offset 0 (0n is an offset, not "none")',
      encodeErrorChunk(S, 5, '', 0n),
      '668e33ef 0001 8002 deadbeef00000001 0000000e 00000005 0000 0000000000000000',
    ],

    // BLOCK_STATUS (structured only): u32 context id, n x (u32 length, u32 flags)
    [
      'BLOCK_STATUS two extents, final, structured',
      encodeBlockStatusChunk(S, 1, [{ length: 0x10000, flags: 0 }, { length: 0x20000, flags: 3 }], true),
      '668e33ef 0001 0005 deadbeef00000001 00000014 00000001 00010000 00000000 00020000 00000003',
    ],
    [
      'BLOCK_STATUS one extent (REQ_ONE), not final, structured',
      encodeBlockStatusChunk(S, 2, [{ length: 0x1000, flags: 1 }], false),
      '668e33ef 0000 0005 deadbeef00000001 0000000c 00000002 00001000 00000001',
    ],

    // BLOCK_STATUS_EXT (extended only): u32 id, u32 count, n x (u64 length, u64 flags)
    [
      'BLOCK_STATUS_EXT two extents, final, extended',
      encodeBlockStatusChunk(X, 1, [{ length: 0x10000, flags: 0 }, { length: 0x20000, flags: 3 }], true),
      '6e8a278c 0001 0006 deadbeef00000001 0000000000010000 0000000000000028 ' +
        '00000001 00000002 0000000000010000 0000000000000000 0000000000020000 0000000000000003',
    ],
    [
      'BLOCK_STATUS_EXT one 8 GiB extent, not final, extended',
      encodeBlockStatusChunk(X, 2, [{ length: 2 ** 33, flags: 1 }], false),
      '6e8a278c 0000 0006 deadbeef00000001 0000000000010000 0000000000000018 00000002 00000001 0000000200000000 0000000000000001',
    ],
  ])('%s', (_, actual, expected) => {
    expect(toHex(actual)).toBe(toHex(hex(expected)));
  });

  it('the extended header echoes the request offset; the structured one has no such field', () => {
    const far: ChunkTarget = { style: 'extended', cookie: 1n, requestOffset: 0xfffffffffffffe00n };
    expect(toHex(encodeNoneChunk(far))).toBe(toHex(hex('6e8a278c 0001 0000 0000000000000001 fffffffffffffe00 0000000000000000')));
    const near: ChunkTarget = { style: 'structured', cookie: 1n, requestOffset: 0xfffffffffffffe00n };
    expect(toHex(encodeNoneChunk(near))).toBe(toHex(hex('668e33ef 0001 0000 0000000000000001 00000000')));
  });

  it('a structured OFFSET_DATA payload that overflows u32 throws instead of wrapping', () => {
    expect(() => encodeOffsetDataHeader(S, 0n, 2 ** 32 - 8, true)).toThrow(RangeError);
  });
});

describe('error chunk messages', () => {
  it('are cut to 4096 bytes (the NBD string limit)', () => {
    const chunk = encodeErrorChunk(S, 5, 'x'.repeat(5000));
    const expected = hex('668e33ef 0001 8001 deadbeef00000001 00001006 00000005 1000' + '78'.repeat(4096));
    expect(toHex(chunk)).toBe(toHex(expected));
  });

  // Regression: the cut fell inside a two-byte character and sent invalid UTF-8 (a lone 0xc3).
  it('are cut on a UTF-8 character boundary', () => {
    const chunk = encodeErrorChunk(S, 5, 'a' + 'é'.repeat(2100)); // 1 + 4200 bytes
    const expected = hex('668e33ef 0001 8001 deadbeef00000001 00001005 00000005 0fff 61' + 'c3a9'.repeat(2047));
    expect(toHex(chunk)).toBe(toHex(expected));
    const message = chunk.subarray(20 + 6);
    expect(() => new TextDecoder('utf-8', { fatal: true }).decode(message)).not.toThrow();
  });

  it('of exactly 4096 bytes are not cut', () => {
    const chunk = encodeErrorChunk(X, 5, '€'.repeat(1365) + 'z'); // 3 * 1365 + 1 = 4096 bytes
    expect(chunk.readUInt16BE(32 + 4)).toBe(4096);
    expect(chunk.subarray(32 + 6).toString('utf8')).toBe('€'.repeat(1365) + 'z');
  });
});
