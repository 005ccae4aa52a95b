// Handshake codec, table by table. Fixtures are hand-written hex (fields separated by spaces) or
// built with the test-only `bytes()` builder; decoders are fed whole, with trailing bytes, as
// every prefix, byte by byte and split at every offset (checkDecodes).
import { describe, expect, it } from 'vitest';
import {
  decodeClientFlags,
  decodeOptionHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContextEntry,
  encodeOptionReply,
  encodeServerEntry,
  parseInfoRequest,
  parseMetaContextRequest,
  type InfoRequest,
  type MetaContextRequest,
  type OptionHeader,
} from '../../../src/protocol/handshake.ts';
import type { Parsed } from '../../../src/protocol/result.ts';
import { bytes, checkDecodes, checkRejects, hex, toHex, utf8Hex, zeroHex } from './bytes.ts';

const BASE_ALLOCATION_HEX = '626173653a616c6c6f636174696f6e'; // "base:allocation", 15 bytes

describe('greeting', () => {
  it.each([
    [0x0003, '4e42444d41474943 49484156454f5054 0003'], // FIXED_NEWSTYLE | NO_ZEROES
    [0x0001, '4e42444d41474943 49484156454f5054 0001'],
    [0x0000, '4e42444d41474943 49484156454f5054 0000'],
  ])('flags %i', (flags, expected) => {
    expect(toHex(encodeGreeting(flags))).toBe(toHex(hex(expected)));
  });
});

describe('client flags', () => {
  // The decoder returns any u32; the connection rejects unknown bits.
  it.each([
    ['00000003', 3], // nbd-client, libnbd: C_FIXED_NEWSTYLE | C_NO_ZEROES
    ['00000001', 1], // nbd-tester-client
    ['00000000', 0],
    ['80000000', 0x80000000], // unsigned, never negative
    ['ffffffff', 0xffffffff],
  ])('%s', (fixture, value) => {
    checkDecodes(decodeClientFlags, hex(fixture), value);
  });
});

describe('option header', () => {
  it.each<[string, string, OptionHeader]>([
    ['GO with 26 bytes', '49484156454f5054 00000007 0000001a', { option: 7, length: 26 }],
    ['ABORT, no data', '49484156454f5054 00000002 00000000', { option: 2, length: 0 }],
    ["nbd-tester-client's unknown option", '49484156454f5054 07654321 00000000', { option: 0x07654321, length: 0 }],
    ['option number with bit 31', '49484156454f5054 80000001 00000004', { option: 0x80000001, length: 4 }],
    ['length exactly 64 KiB', '49484156454f5054 00000001 00010000', { option: 1, length: 65536 }],
  ])('%s', (_, fixture, value) => {
    checkDecodes(decodeOptionHeader, hex(fixture), value);
  });

  it.each([
    ['IHAVEOPT with the last byte wrong', '49484156454f5055 00000007 00000000', 'bad-magic'],
    ['NBDMAGIC instead of IHAVEOPT', '4e42444d41474943 00000007 00000000', 'bad-magic'],
    ['an option reply magic', '0003e889045565a9 00000007 00000000', 'bad-magic'],
    ['a transmission request', '25609513 00000000 0000000000000000', 'bad-magic'],
    ['length 64 KiB + 1', '49484156454f5054 00000001 00010001', 'too-long'],
    ['length 2^32 - 1', '49484156454f5054 00000007 ffffffff', 'too-long'],
  ])('%s is %s', (_, fixture, kind) => {
    checkRejects(decodeOptionHeader, hex(fixture), kind);
  });
});

/** A malformed payload: not ok, with a message that says why. */
function expectMalformed<T>(r: Parsed<T>, why: RegExp): void {
  expect(r.ok).toBe(false);
  if (!r.ok) expect(r.message).toMatch(why);
}

/** Every truncation of a well-formed payload is malformed (lengths are exact), and nothing throws. */
function expectTruncationsMalformed<T>(parse: (b: Buffer) => Parsed<T>, fixture: Buffer): void {
  for (let p = 0; p < fixture.length; p++) {
    const r = parse(fixture.subarray(0, p));
    expect(r.ok, `truncated to ${p} bytes`).toBe(false);
  }
}

describe('parseInfoRequest (INFO / GO payload)', () => {
  it.each<[string, Buffer, InfoRequest]>([
    ['"disk", no info requests', hex('00000004 6469736b 0000'), { name: 'disk', infos: [] }],
    ['default export, BLOCK_SIZE', hex('00000000 0001 0003'), { name: '', infos: [3] }],
    ['"disk", all four infos', hex('00000004 6469736b 0004 0000 0001 0002 0003'), { name: 'disk', infos: [0, 1, 2, 3] }],
    ['unknown info type kept', hex('00000001 61 0001 ffff'), { name: 'a', infos: [0xffff] }],
    ['UTF-8 name', hex('00000005 64c3af736b 0000'), { name: 'dïsk', infos: [] }],
    // Regression: a leading U+FEFF was silently dropped by TextDecoder, so "\uFEFFabc" opened "abc".
    ['name starting with U+FEFF keeps it', hex('00000006 efbbbf 616263 0000'), { name: '\ufeffabc', infos: [] }],
    ['name of exactly 4096 bytes', bytes().u32(4096).str('a'.repeat(4096)).u16(0).build(), { name: 'a'.repeat(4096), infos: [] }],
  ])('%s', (_, fixture, value) => {
    expect(parseInfoRequest(fixture)).toEqual({ ok: true, value });
    expectTruncationsMalformed(parseInfoRequest, fixture);
  });

  it.each<[string, Buffer, RegExp]>([
    ['empty payload', hex(''), /shorter/],
    ['5 bytes', hex('00000000 00'), /shorter/],
    ['name length past the end', hex('00000005 6469736b 0000'), /past/],
    ['name length 2^32 - 1', hex('ffffffff 0000'), /past/],
    ['count 2 with one info', hex('00000004 6469736b 0002 0003'), /count/],
    ['count 0 with a trailing info', hex('00000004 6469736b 0000 0003'), /count/],
    ['an odd trailing byte', hex('00000004 6469736b 0001 0003 00'), /count/],
    ['invalid UTF-8', hex('00000002 c328 0000'), /UTF-8/],
    ['overlong UTF-8', hex('00000002 c0af 0000'), /UTF-8/],
    ['UTF-8 surrogate', hex('00000003 eda080 0000'), /UTF-8/],
    ['UTF-8 cut off at the end of the name', hex('00000002 e282 0000'), /UTF-8/],
    ['NUL in the name', hex('00000003 610062 0000'), /NUL/],
    ['name of 4097 bytes', bytes().u32(4097).str('a'.repeat(4097)).u16(0).build(), /4096/],
  ])('%s is malformed', (_, fixture, why) => {
    expectMalformed(parseInfoRequest(fixture), why);
  });
});

describe('parseMetaContextRequest (LIST/SET_META_CONTEXT payload)', () => {
  it.each<[string, Buffer, MetaContextRequest]>([
    [
      '"disk", base:allocation',
      hex(`00000004 6469736b 00000001 0000000f ${BASE_ALLOCATION_HEX}`),
      { exportName: 'disk', queries: ['base:allocation'] },
    ],
    [
      'two queries',
      hex(`00000004 6469736b 00000002 00000005 626173653a 00000014 ${utf8Hex('qemu:dirty-bitmap:b0')}`),
      { exportName: 'disk', queries: ['base:', 'qemu:dirty-bitmap:b0'] },
    ],
    ['zero queries', hex('00000004 6469736b 00000000'), { exportName: 'disk', queries: [] }],
    ['default export, one empty query', hex('00000000 00000001 00000000'), { exportName: '', queries: [''] }],
    [
      'query of exactly 4096 bytes',
      bytes().lstr('').u32(1).lstr('x'.repeat(4096)).build(),
      { exportName: '', queries: ['x'.repeat(4096)] },
    ],
  ])('%s', (_, fixture, value) => {
    expect(parseMetaContextRequest(fixture)).toEqual({ ok: true, value });
    expectTruncationsMalformed(parseMetaContextRequest, fixture);
  });

  it.each<[string, Buffer, RegExp]>([
    ['7 bytes', hex('00000000 000000'), /shorter/],
    ['name length past the end', hex('00000005 6469736b 00000000'), /past/],
    ['name length 2^32 - 1', hex('ffffffff 00000000'), /past/],
    ['count 1, no query', hex('00000004 6469736b 00000001'), /past/],
    ['query length cut short', hex('00000004 6469736b 00000001 000000'), /past/],
    ['query running past the end', hex(`00000004 6469736b 00000001 00000010 ${BASE_ALLOCATION_HEX}`), /past/],
    ['count 2, one query', hex(`00000004 6469736b 00000002 0000000f ${BASE_ALLOCATION_HEX}`), /past/],
    ['count 2^32 - 1, no queries', hex('00000004 6469736b ffffffff'), /past/],
    ['trailing bytes after the query', hex(`00000004 6469736b 00000001 0000000f ${BASE_ALLOCATION_HEX} 00`), /trailing/],
    ['zero queries and trailing bytes', hex('00000004 6469736b 00000000 00000000'), /trailing/],
    ['invalid UTF-8 in a query', hex('00000000 00000001 00000002 c328'), /UTF-8/],
    ['NUL in a query', hex('00000000 00000001 00000002 6100'), /NUL/],
    ['NUL in the export name', hex('00000001 00 00000000'), /NUL/],
    ['query of 4097 bytes', bytes().lstr('').u32(1).lstr('x'.repeat(4097)).build(), /4096/],
  ])('%s is malformed', (_, fixture, why) => {
    expectMalformed(parseMetaContextRequest(fixture), why);
  });
});

describe('option reply', () => {
  it.each<[string, Buffer, string]>([
    ['ACK to GO', encodeOptionReply(7, 1), '0003e889045565a9 00000007 00000001 00000000'],
    ['ERR_UNSUP to an unknown option', encodeOptionReply(0x07654321, 0x80000001), '0003e889045565a9 07654321 80000001 00000000'],
    [
      'ERR_UNKNOWN with a message',
      encodeOptionReply(6, 0x80000006, Buffer.from('unknown export')),
      '0003e889045565a9 00000006 80000006 0000000e 756e6b6e6f776e206578706f7274',
    ],
    [
      'SERVER to LIST',
      encodeOptionReply(3, 2, hex('00000004 6469736b')),
      '0003e889045565a9 00000003 00000002 00000008 00000004 6469736b',
    ],
    [
      'INFO (INFO_EXPORT) to GO: the length counts the type',
      encodeOptionReply(7, 3, hex('0000 0000000040000000 0d6d')),
      '0003e889045565a9 00000007 00000003 0000000c 0000 0000000040000000 0d6d',
    ],
    [
      'ERR_EXT_HEADER_REQD',
      encodeOptionReply(8, 0x8000000a),
      '0003e889045565a9 00000008 8000000a 00000000',
    ],
  ])('%s', (_, actual, expected) => {
    expect(toHex(actual)).toBe(toHex(hex(expected)));
  });
});

describe('option reply payloads', () => {
  it.each<[string, Buffer, string]>([
    ['server entry', encodeServerEntry('disk'), '00000004 6469736b'],
    ['server entry with description', encodeServerEntry('disk', 'scratch'), '00000004 6469736b 73637261746368'],
    ['server entry, default export', encodeServerEntry(''), '00000000'],
    ['server entry, UTF-8 name counts bytes', encodeServerEntry('dïsk'), '00000005 64c3af736b'],
    ['meta context entry, LIST id 0', encodeMetaContextEntry(0, 'base:allocation'), `00000000 ${BASE_ALLOCATION_HEX}`],
    ['meta context entry, id 1', encodeMetaContextEntry(1, 'base:allocation'), `00000001 ${BASE_ALLOCATION_HEX}`],
    ['meta context entry, id 2^32 - 1', encodeMetaContextEntry(0xffffffff, 'x'), 'ffffffff 78'],
    ['INFO_EXPORT, 1 GiB, nbdkit flags', encodeInfoExport(2 ** 30, 0x0d6d), '0000 0000000040000000 0d6d'],
    ['INFO_EXPORT, 8 GiB (past 32 bits)', encodeInfoExport(8 * 2 ** 30, 0x0003), '0000 0000000200000000 0003'],
    ['INFO_EXPORT, empty export', encodeInfoExport(0, 0x0001), '0000 0000000000000000 0001'],
    ['INFO_EXPORT, 2^53 - 1 bytes', encodeInfoExport(2 ** 53 - 1, 0x1fff), '0000 001fffffffffffff 1fff'],
    ['INFO_NAME', encodeInfoString(1, 'disk'), '0001 6469736b'],
    ['INFO_NAME, empty', encodeInfoString(1, ''), '0001'],
    ['INFO_DESCRIPTION', encodeInfoString(2, 'scratch'), '0002 73637261746368'],
    ['INFO_BLOCK_SIZE 512 / 4 KiB / 32 MiB', encodeInfoBlockSize(512, 4096, 32 * 2 ** 20), '0003 00000200 00001000 02000000'],
    ['INFO_BLOCK_SIZE 1 / 4 KiB / 2^32 - 1', encodeInfoBlockSize(1, 4096, 0xffffffff), '0003 00000001 00001000 ffffffff'],
  ])('%s', (_, actual, expected) => {
    expect(toHex(actual)).toBe(toHex(hex(expected)));
  });

  it('INFO_EXPORT is 12 bytes and INFO_BLOCK_SIZE 14, as their reply lengths say', () => {
    expect(encodeInfoExport(1, 1)).toHaveLength(12);
    expect(encodeInfoBlockSize(1, 1, 1)).toHaveLength(14);
  });
});

describe('export-name reply', () => {
  it.each<[string, Buffer, string]>([
    ['with NO_ZEROES: 10 bytes', encodeExportNameReply(2 ** 30, 0x0d6d, true), '0000000040000000 0d6d'],
    ['without NO_ZEROES: 124 zero bytes follow', encodeExportNameReply(2 ** 30, 0x0d6d, false), `0000000040000000 0d6d ${zeroHex(124)}`],
    ['8 GiB, read-only', encodeExportNameReply(8 * 2 ** 30, 0x0003, false), `0000000200000000 0003 ${zeroHex(124)}`],
    ['empty export', encodeExportNameReply(0, 0x0001, true), '0000000000000000 0001'],
  ])('%s', (_, actual, expected) => {
    expect(toHex(actual)).toBe(toHex(hex(expected)));
  });

  it('is 134 bytes without NO_ZEROES (nbd-tester-client reads exactly that)', () => {
    expect(encodeExportNameReply(1, 1, false)).toHaveLength(134);
    expect(encodeExportNameReply(1, 1, true)).toHaveLength(10);
  });
});
