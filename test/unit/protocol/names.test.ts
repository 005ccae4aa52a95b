// Log names are derived from the constant tables (names.ts); these pin the wire names and the
// fallbacks for values a peer may send that we do not know.
import { describe, expect, it } from 'vitest';
import { Cmd, CmdFlag, NbdErr, Opt, Rep, ReplyType, TxFlag } from '../../../src/protocol/constants.ts';
import {
  cmdFlagNames,
  cmdName,
  errName,
  optName,
  repName,
  replyTypeName,
  txFlagNames,
} from '../../../src/protocol/names.ts';

type Row = readonly [fn: (value: number) => string, value: number, name: string];

describe('value names', () => {
  const rows: readonly Row[] = [
    [cmdName, 0, 'READ'],
    [cmdName, 1, 'WRITE'],
    [cmdName, 2, 'DISC'],
    [cmdName, 6, 'WRITE_ZEROES'],
    [cmdName, 7, 'BLOCK_STATUS'],
    [cmdName, 9, 'UNKNOWN(9)'],
    [cmdName, 0xffff, 'UNKNOWN(65535)'],
    [optName, 1, 'EXPORT_NAME'],
    [optName, 7, 'GO'],
    [optName, 11, 'EXTENDED_HEADERS'],
    [optName, 0, 'UNKNOWN(0)'],
    [optName, 0x7654321, 'UNKNOWN(124076833)'], // nbd-tester-client's unknown option
    [repName, 1, 'ACK'],
    [repName, 4, 'META_CONTEXT'],
    [repName, 0x80000001, 'ERR_UNSUP'],
    [repName, 0x8000000a, 'ERR_EXT_HEADER_REQD'],
    [repName, 0x80000000, 'UNKNOWN(2147483648)'],
    [errName, 0, 'OK'],
    [errName, 1, 'EPERM'],
    [errName, 22, 'EINVAL'],
    [errName, 108, 'ESHUTDOWN'],
    [errName, 2, 'UNKNOWN(2)'],
    [replyTypeName, 0, 'NONE'],
    [replyTypeName, 6, 'BLOCK_STATUS_EXT'],
    [replyTypeName, 0x8001, 'ERROR'],
    [replyTypeName, 0x8002, 'ERROR_OFFSET'],
    [replyTypeName, 3, 'UNKNOWN(3)'],
    [replyTypeName, 0x8000, 'UNKNOWN(32768)'],
  ];
  it.each(rows.map(([fn, value, name]) => ({ label: fn.name, fn, value, name })))('$label($value) is $name', ({ fn, value, name }) => {
    expect(fn(value)).toBe(name);
  });

  it('every table entry names itself', () => {
    const cases: [Record<string, number>, (v: number) => string][] = [
      [Cmd, cmdName],
      [Opt, optName],
      [Rep, repName],
      [NbdErr, errName],
      [ReplyType, replyTypeName],
    ];
    for (const [table, fn] of cases) {
      for (const [name, value] of Object.entries(table)) expect(fn(value)).toBe(name);
    }
  });
});

describe('flag names', () => {
  it.each([
    [0x00, []],
    [0x01, ['FUA']],
    [0x11, ['FUA', 'FAST_ZERO']],
    [0x12, ['NO_HOLE', 'FAST_ZERO']],
    [0x3f, ['FUA', 'NO_HOLE', 'DF', 'REQ_ONE', 'FAST_ZERO', 'PAYLOAD_LEN']],
    [0x40, ['0x40']],
    [0x8005, ['FUA', 'DF', '0x8000']],
    [0xffc0, ['0xffc0']],
  ] as const)('cmdFlagNames(%i)', (flags, names) => {
    expect(cmdFlagNames(flags)).toEqual(names);
  });

  it.each([
    [0x0001, ['HAS_FLAGS']],
    // nbdkit memory plugin, protocol.md §1
    [0x0d6d, ['HAS_FLAGS', 'SEND_FLUSH', 'SEND_FUA', 'SEND_TRIM', 'SEND_WRITE_ZEROES', 'CAN_MULTI_CONN', 'SEND_CACHE', 'SEND_FAST_ZERO']],
    [0x0003, ['HAS_FLAGS', 'READ_ONLY']],
    [0x2001, ['HAS_FLAGS', '0x2000']],
    [0x8000, ['0x8000']],
  ] as const)('txFlagNames(%i)', (flags, names) => {
    expect(txFlagNames(flags)).toEqual(names);
  });

  it('every flag bit names itself', () => {
    for (const [name, bit] of Object.entries(CmdFlag)) expect(cmdFlagNames(bit)).toEqual([name]);
    for (const [name, bit] of Object.entries(TxFlag)) expect(txFlagNames(bit)).toEqual([name]);
    expect(txFlagNames(0x1fff)).toEqual(Object.keys(TxFlag));
  });
});
