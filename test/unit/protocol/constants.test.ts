// Golden values for every wire constant, copied by hand from docs protocol.md §1 (itself from
// doc/proto.md and the extension-ext-header branch). Nothing here is computed from the module: a
// wrong constant (0x8000 for ERROR, `1 << 31` for ERR_UNSUP) shows up as a byte mismatch.
import { describe, expect, it } from 'vitest';
import * as C from '../../../src/protocol/constants.ts';
import { hex, toHex } from './bytes.ts';

type Width = 'u16' | 'u32' | 'u64';

/** [name as exported (Table.KEY for tables), value as written in protocol.md, wire width, wire bytes]. */
type Golden = readonly [name: string, value: number | bigint, width: Width, bytes: string];

const GOLDEN: readonly Golden[] = [
  // Magics
  ['NBDMAGIC', 0x4e42444d41474943n, 'u64', '4e42444d41474943'],
  ['IHAVEOPT', 0x49484156454f5054n, 'u64', '49484156454f5054'],
  ['OPTION_REPLY_MAGIC', 0x3e889045565a9n, 'u64', '0003e889045565a9'],
  ['REQUEST_MAGIC', 0x25609513, 'u32', '25609513'],
  ['SIMPLE_REPLY_MAGIC', 0x67446698, 'u32', '67446698'],
  ['STRUCTURED_REPLY_MAGIC', 0x668e33ef, 'u32', '668e33ef'],
  ['EXTENDED_REQUEST_MAGIC', 0x21e41c71, 'u32', '21e41c71'],
  ['EXTENDED_REPLY_MAGIC', 0x6e8a278c, 'u32', '6e8a278c'],

  // Handshake flags (u16, server)
  ['HandshakeFlag.FIXED_NEWSTYLE', 0x1, 'u16', '0001'],
  ['HandshakeFlag.NO_ZEROES', 0x2, 'u16', '0002'],

  // Client flags (u32)
  ['ClientFlag.C_FIXED_NEWSTYLE', 0x1, 'u32', '00000001'],
  ['ClientFlag.C_NO_ZEROES', 0x2, 'u32', '00000002'],

  // Options (u32)
  ['Opt.EXPORT_NAME', 1, 'u32', '00000001'],
  ['Opt.ABORT', 2, 'u32', '00000002'],
  ['Opt.LIST', 3, 'u32', '00000003'],
  ['Opt.PEEK_EXPORT', 4, 'u32', '00000004'],
  ['Opt.STARTTLS', 5, 'u32', '00000005'],
  ['Opt.INFO', 6, 'u32', '00000006'],
  ['Opt.GO', 7, 'u32', '00000007'],
  ['Opt.STRUCTURED_REPLY', 8, 'u32', '00000008'],
  ['Opt.LIST_META_CONTEXT', 9, 'u32', '00000009'],
  ['Opt.SET_META_CONTEXT', 10, 'u32', '0000000a'],
  ['Opt.EXTENDED_HEADERS', 11, 'u32', '0000000b'],

  // Option reply types (u32); errors are 2^31 + n
  ['Rep.ACK', 1, 'u32', '00000001'],
  ['Rep.SERVER', 2, 'u32', '00000002'],
  ['Rep.INFO', 3, 'u32', '00000003'],
  ['Rep.META_CONTEXT', 4, 'u32', '00000004'],
  ['Rep.ERR_UNSUP', 0x80000001, 'u32', '80000001'],
  ['Rep.ERR_POLICY', 0x80000002, 'u32', '80000002'],
  ['Rep.ERR_INVALID', 0x80000003, 'u32', '80000003'],
  ['Rep.ERR_PLATFORM', 0x80000004, 'u32', '80000004'],
  ['Rep.ERR_TLS_REQD', 0x80000005, 'u32', '80000005'],
  ['Rep.ERR_UNKNOWN', 0x80000006, 'u32', '80000006'],
  ['Rep.ERR_SHUTDOWN', 0x80000007, 'u32', '80000007'],
  ['Rep.ERR_BLOCK_SIZE_REQD', 0x80000008, 'u32', '80000008'],
  ['Rep.ERR_TOO_BIG', 0x80000009, 'u32', '80000009'],
  ['Rep.ERR_EXT_HEADER_REQD', 0x8000000a, 'u32', '8000000a'],

  // Info types (u16)
  ['Info.EXPORT', 0, 'u16', '0000'],
  ['Info.NAME', 1, 'u16', '0001'],
  ['Info.DESCRIPTION', 2, 'u16', '0002'],
  ['Info.BLOCK_SIZE', 3, 'u16', '0003'],

  // Transmission flags (u16)
  ['TxFlag.HAS_FLAGS', 0x0001, 'u16', '0001'],
  ['TxFlag.READ_ONLY', 0x0002, 'u16', '0002'],
  ['TxFlag.SEND_FLUSH', 0x0004, 'u16', '0004'],
  ['TxFlag.SEND_FUA', 0x0008, 'u16', '0008'],
  ['TxFlag.ROTATIONAL', 0x0010, 'u16', '0010'],
  ['TxFlag.SEND_TRIM', 0x0020, 'u16', '0020'],
  ['TxFlag.SEND_WRITE_ZEROES', 0x0040, 'u16', '0040'],
  ['TxFlag.SEND_DF', 0x0080, 'u16', '0080'],
  ['TxFlag.CAN_MULTI_CONN', 0x0100, 'u16', '0100'],
  ['TxFlag.SEND_RESIZE', 0x0200, 'u16', '0200'],
  ['TxFlag.SEND_CACHE', 0x0400, 'u16', '0400'],
  ['TxFlag.SEND_FAST_ZERO', 0x0800, 'u16', '0800'],
  ['TxFlag.BLOCK_STATUS_PAYLOAD', 0x1000, 'u16', '1000'],

  // Commands (u16)
  ['Cmd.READ', 0, 'u16', '0000'],
  ['Cmd.WRITE', 1, 'u16', '0001'],
  ['Cmd.DISC', 2, 'u16', '0002'],
  ['Cmd.FLUSH', 3, 'u16', '0003'],
  ['Cmd.TRIM', 4, 'u16', '0004'],
  ['Cmd.CACHE', 5, 'u16', '0005'],
  ['Cmd.WRITE_ZEROES', 6, 'u16', '0006'],
  ['Cmd.BLOCK_STATUS', 7, 'u16', '0007'],
  ['Cmd.RESIZE', 8, 'u16', '0008'],

  // Command flags (u16)
  ['CmdFlag.FUA', 0x01, 'u16', '0001'],
  ['CmdFlag.NO_HOLE', 0x02, 'u16', '0002'],
  ['CmdFlag.DF', 0x04, 'u16', '0004'],
  ['CmdFlag.REQ_ONE', 0x08, 'u16', '0008'],
  ['CmdFlag.FAST_ZERO', 0x10, 'u16', '0010'],
  ['CmdFlag.PAYLOAD_LEN', 0x20, 'u16', '0020'],

  // Structured reply flag (u16)
  ['ReplyFlag.DONE', 0x1, 'u16', '0001'],

  // Chunk types (u16); error types are 2^15 + n
  ['ReplyType.NONE', 0, 'u16', '0000'],
  ['ReplyType.OFFSET_DATA', 1, 'u16', '0001'],
  ['ReplyType.OFFSET_HOLE', 2, 'u16', '0002'],
  ['ReplyType.BLOCK_STATUS', 5, 'u16', '0005'],
  ['ReplyType.BLOCK_STATUS_EXT', 6, 'u16', '0006'],
  ['ReplyType.ERROR', 0x8001, 'u16', '8001'],
  ['ReplyType.ERROR_OFFSET', 0x8002, 'u16', '8002'],

  // base:allocation state flags (u32 in a BLOCK_STATUS descriptor)
  ['StateFlag.HOLE', 1, 'u32', '00000001'],
  ['StateFlag.ZERO', 2, 'u32', '00000002'],

  // NBD errors (u32 in simple replies and error chunks)
  ['NbdErr.EPERM', 1, 'u32', '00000001'],
  ['NbdErr.EIO', 5, 'u32', '00000005'],
  ['NbdErr.ENOMEM', 12, 'u32', '0000000c'],
  ['NbdErr.EINVAL', 22, 'u32', '00000016'],
  ['NbdErr.ENOSPC', 28, 'u32', '0000001c'],
  ['NbdErr.EOVERFLOW', 75, 'u32', '0000004b'],
  ['NbdErr.ENOTSUP', 95, 'u32', '0000005f'],
  ['NbdErr.ESHUTDOWN', 108, 'u32', '0000006c'],
];

/** Structure sizes, each the sum of the field widths in protocol.md §2-3. */
const SIZES: Readonly<Record<string, number>> = {
  'Size.GREETING': 18, // 8 + 8 + 2
  'Size.CLIENT_FLAGS': 4,
  'Size.OPTION_HEADER': 16, // 8 + 4 + 4
  'Size.OPTION_REPLY_HEADER': 20, // 8 + 4 + 4 + 4
  'Size.EXPORT_NAME_REPLY': 10, // 8 + 2
  'Size.EXPORT_NAME_PADDING': 124,
  'Size.REQUEST': 28, // 4 + 2 + 2 + 8 + 8 + 4
  'Size.EXTENDED_REQUEST': 32, // 4 + 2 + 2 + 8 + 8 + 8
  'Size.SIMPLE_REPLY': 16, // 4 + 4 + 8
  'Size.STRUCTURED_REPLY_HEADER': 20, // 4 + 2 + 2 + 8 + 4
  'Size.EXTENDED_REPLY_HEADER': 32, // 4 + 2 + 2 + 8 + 8 + 8
};

const STRINGS: Readonly<Record<string, string>> = {
  BASE_ALLOCATION: 'base:allocation',
  IOMAPD_MAPPING: 'iomapd:mapping',
  // qemu's docs/interop/nbd.rst
  QEMU_ALLOCATION_DEPTH: 'qemu:allocation-depth',
  QEMU_DIRTY_BITMAP_PREFIX: 'qemu:dirty-bitmap:',
};

/** Magics that protocol.md lists but iomapd must never accept or send. */
const NOT_IMPLEMENTED: readonly Golden[] = [
  ['cliserv_magic (oldstyle)', 0x00420281861253n, 'u64', '0000420281861253'],
  ['reserved', 0x12560953, 'u32', '12560953'],
  ['reserved', 0x96744668, 'u32', '96744668'],
  ['reserved', 0x25609514, 'u32', '25609514'],
];

/** Every scalar exported by constants.ts, flattened to `NAME` or `Table.KEY`. */
function flatten(): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [name, value] of Object.entries(C)) {
    if (value !== null && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) out.set(`${name}.${key}`, inner);
    } else {
      out.set(name, value);
    }
  }
  return out;
}

function encode(value: number | bigint, width: Width): Buffer {
  const bytes = { u16: 2, u32: 4, u64: 8 }[width];
  const buf = Buffer.alloc(bytes);
  if (width === 'u64') buf.writeBigUInt64BE(BigInt(value));
  else if (width === 'u32') buf.writeUInt32BE(Number(value));
  else buf.writeUInt16BE(Number(value));
  return buf;
}

const exported = flatten();

describe('wire constants match protocol.md §1 byte for byte', () => {
  it('the golden table itself is consistent (value literal = hex literal, right width)', () => {
    for (const [name, value, width, bytes] of [...GOLDEN, ...NOT_IMPLEMENTED]) {
      const b = hex(bytes);
      expect(b.length, name).toBe({ u16: 2, u32: 4, u64: 8 }[width]);
      expect(BigInt(`0x${bytes}`), name).toBe(BigInt(value));
    }
  });

  it.each(GOLDEN.map((g) => [g[0], g] as const))('%s', (_, [name, value, width, bytes]) => {
    expect(exported.has(name), `${name} is exported`).toBe(true);
    const actual = exported.get(name);
    // 64-bit magics are bigints; everything else is a plain number (never a negative int32).
    expect(typeof actual, name).toBe(typeof value);
    expect(actual, name).toBe(value);
    expect(toHex(encode(actual as number | bigint, width)), name).toBe(bytes);
  });

  it('error option replies are 2^31 + n and positive (no `1 << 31`)', () => {
    const errs = GOLDEN.filter(([n]) => n.startsWith('Rep.ERR_'));
    expect(errs).toHaveLength(10);
    errs.forEach(([name], i) => {
      expect(exported.get(name), name).toBe(2 ** 31 + i + 1);
    });
  });

  it('error chunk types are 2^15 + 1 and 2^15 + 2 (not 0x8000, not 1 << 16)', () => {
    expect(C.ReplyType.ERROR).toBe(2 ** 15 + 1);
    expect(C.ReplyType.ERROR_OFFSET).toBe(2 ** 15 + 2);
  });

  it('the 64-bit magics spell their ASCII names', () => {
    expect(toHex(encode(C.NBDMAGIC, 'u64'))).toBe(Buffer.from('NBDMAGIC', 'ascii').toString('hex'));
    expect(toHex(encode(C.IHAVEOPT, 'u64'))).toBe(Buffer.from('IHAVEOPT', 'ascii').toString('hex'));
  });

  it('the option reply magic is exact as a JS number (< 2^53)', () => {
    expect(C.OPTION_REPLY_MAGIC < 2n ** 53n).toBe(true);
    expect(BigInt(Number(C.OPTION_REPLY_MAGIC))).toBe(C.OPTION_REPLY_MAGIC);
  });

  it('reserved and oldstyle magics are not used by any exported constant', () => {
    const values = [...exported.values()].map((v) => (typeof v === 'number' || typeof v === 'bigint' ? BigInt(v) : v));
    for (const [name, value] of NOT_IMPLEMENTED) expect(values, `${name} 0x${value.toString(16)}`).not.toContain(BigInt(value));
  });

  it('structure sizes are the sums of their fields', () => {
    for (const [name, size] of Object.entries(SIZES)) expect(exported.get(name), name).toBe(size);
  });

  it('string constants', () => {
    for (const [name, text] of Object.entries(STRINGS)) expect(exported.get(name), name).toBe(text);
  });

  it('constants.ts exports nothing without a golden test here', () => {
    const covered = new Set([...GOLDEN.map((g) => g[0]), ...Object.keys(SIZES), ...Object.keys(STRINGS)]);
    const untested = [...exported.keys()].filter((name) => !covered.has(name));
    expect(untested, 'add a golden row (from protocol.md) for each new constant').toEqual([]);
  });

  it('no table has two names for one value (names.ts inverts them)', () => {
    for (const [table, value] of Object.entries(C)) {
      if (value === null || typeof value !== 'object' || table === 'Size') continue;
      const values = Object.values(value);
      expect(new Set(values).size, table).toBe(values.length);
    }
  });
});
