// Option negotiation as transcripts over handleOption (pure: no sockets). Each step feeds one
// option with hand-built payload bytes (test/support/wire.ts) and compares every reply: byte for
// byte where the reply is fixed, by option and type (with a UTF-8 message) for errors.
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../../src/devices/memory-device.ts';
import { ExportRegistry } from '../../../src/server/export-registry.ts';
import { handleOption, newSession, type OptionResult, type Session } from '../../../src/server/negotiation.ts';
import {
  INFO,
  infoBlockSize,
  infoData,
  infoExport,
  infoString,
  isErrorReply,
  MEMORY_FLAGS,
  metaData,
  metaEntry,
  OPT,
  optionReply,
  parseInfoExport,
  parseOptionReply,
  REP,
  serverEntry,
  TX,
  W,
  wire,
} from '../../support/wire.ts';

const MiB = 1024 * 1024;
const DISK_SIZE = 4 * MiB;
const RO_SIZE = 64 * 1024;
/** Block sizes every MemoryDevice export advertises: minimum 512, preferred 4096, maximum 32 MiB. */
const BLOCK_SIZE_INFO = infoBlockSize(512, 4096, 33554432);
const RO_FLAGS = TX.HAS_FLAGS | TX.READ_ONLY | TX.SEND_FLUSH | TX.SEND_FUA | TX.CAN_MULTI_CONN | TX.SEND_CACHE;

function registry(): ExportRegistry {
  const r = new ExportRegistry();
  r.add({ name: 'disk', description: 'the test disk', device: new MemoryDevice({ size: DISK_SIZE }) });
  r.add({ name: 'ro', description: '', device: new MemoryDevice({ size: RO_SIZE, readOnly: true }) });
  return r;
}

const empty = Buffer.alloc(0);

/** Replies as hex, with error payloads replaced by a marker once they are checked to be UTF-8 text. */
function shape(result: OptionResult): string[] {
  return result.replies.map((buf) => {
    // The EXPORT_NAME reply is not an option reply: compared as raw bytes.
    if (buf.length < 20 || buf.readBigUInt64BE(0) !== W.OPTION_REPLY_MAGIC) return buf.toString('hex');
    const r = parseOptionReply(buf);
    if (!isErrorReply(r.type)) return buf.toString('hex');
    expect(() => new TextDecoder('utf-8', { fatal: true }).decode(r.payload)).not.toThrow();
    expect(r.payload.includes(0)).toBe(false);
    return `error option=${r.option} type=0x${r.type.toString(16)}`;
  });
}

const err = (opt: number, type: number): string => `error option=${opt} type=0x${type.toString(16)}`;
const hexOf = (b: Buffer): string => b.toString('hex');
const ack = (opt: number): string => hexOf(optionReply(opt, REP.ACK));
const info = (opt: number, payload: Buffer): string => hexOf(optionReply(opt, REP.INFO, payload));
const metaReply = (opt: number, id: number, name: string): string => hexOf(optionReply(opt, REP.META_CONTEXT, metaEntry(id, name)));

interface Step {
  readonly opt: number;
  readonly data?: Buffer;
  readonly kind: OptionResult['kind'];
  /** Expected replies: hex, an error marker from `err`, or an asymmetric matcher. */
  readonly replies: readonly unknown[];
  readonly shuttingDown?: boolean;
}

/** Feeds each step to one session and registry; returns the session and results for more checks. */
function transcript(steps: readonly Step[], session: Session = newSession(true), reg = registry()): { session: Session; results: OptionResult[] } {
  const results: OptionResult[] = [];
  steps.forEach((step, i) => {
    const result = handleOption(session, step.opt, step.data ?? empty, reg, step.shuttingDown ?? false);
    expect({ step: i, kind: result.kind, replies: shape(result) }).toEqual({ step: i, kind: step.kind, replies: [...step.replies] });
    results.push(result);
  });
  return { session, results };
}

describe('LIST', () => {
  it('lists every export with its description, then ACK', () => {
    transcript([
      {
        opt: OPT.LIST,
        kind: 'continue',
        replies: [
          hexOf(optionReply(OPT.LIST, REP.SERVER, serverEntry('disk', 'the test disk'))),
          hexOf(optionReply(OPT.LIST, REP.SERVER, serverEntry('ro'))),
          ack(OPT.LIST),
        ],
      },
    ]);
  });

  it('with data answers ERR_INVALID and nothing else (nbd-server 3.24 also sent the list)', () => {
    transcript([
      { opt: OPT.LIST, data: Buffer.from([0, 0, 0, 0]), kind: 'continue', replies: [err(OPT.LIST, REP.ERR_INVALID)] },
      // The session is still in step: a plain LIST afterwards works.
      { opt: OPT.LIST, kind: 'continue', replies: [expect.any(String), expect.any(String), ack(OPT.LIST)] },
    ]);
  });
});

describe('INFO and GO', () => {
  it('INFO without requests: INFO_EXPORT, INFO_BLOCK_SIZE (always), ACK; negotiation continues', () => {
    transcript([
      {
        opt: OPT.INFO,
        data: infoData('disk'),
        kind: 'continue',
        replies: [info(OPT.INFO, infoExport(DISK_SIZE, MEMORY_FLAGS)), info(OPT.INFO, BLOCK_SIZE_INFO), ack(OPT.INFO)],
      },
    ]);
  });

  it('INFO then an identical GO report the same size and flags; GO enters transmission', () => {
    const { results } = transcript([
      {
        opt: OPT.INFO,
        data: infoData('disk', [INFO.BLOCK_SIZE]),
        kind: 'continue',
        replies: [info(OPT.INFO, infoExport(DISK_SIZE, MEMORY_FLAGS)), info(OPT.INFO, BLOCK_SIZE_INFO), ack(OPT.INFO)],
      },
      {
        opt: OPT.GO,
        data: infoData('disk', [INFO.BLOCK_SIZE]),
        kind: 'transmission',
        replies: [info(OPT.GO, infoExport(DISK_SIZE, MEMORY_FLAGS)), info(OPT.GO, BLOCK_SIZE_INFO), ack(OPT.GO)],
      },
    ]);
    const exportInfo = (r: OptionResult) => parseInfoExport(parseOptionReply(r.replies[0]!).payload);
    expect(exportInfo(results[0]!)).toEqual(exportInfo(results[1]!));
    const go = results[1]!;
    expect(go.kind === 'transmission' && go.export.name).toBe('disk');
  });

  it('after STRUCTURED_REPLY both INFO and GO add SEND_DF, consistently', () => {
    const flags = MEMORY_FLAGS | TX.SEND_DF;
    transcript([
      { opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [ack(OPT.STRUCTURED_REPLY)] },
      {
        opt: OPT.INFO,
        data: infoData('disk'),
        kind: 'continue',
        replies: [info(OPT.INFO, infoExport(DISK_SIZE, flags)), info(OPT.INFO, BLOCK_SIZE_INFO), ack(OPT.INFO)],
      },
      {
        opt: OPT.GO,
        data: infoData('disk'),
        kind: 'transmission',
        replies: [info(OPT.GO, infoExport(DISK_SIZE, flags)), info(OPT.GO, BLOCK_SIZE_INFO), ack(OPT.GO)],
      },
    ]);
  });

  it('GO with the empty name reaches the default export (nbd-client -N "")', () => {
    const { results } = transcript([
      {
        opt: OPT.GO,
        data: infoData(''),
        kind: 'transmission',
        replies: [info(OPT.GO, infoExport(DISK_SIZE, MEMORY_FLAGS)), info(OPT.GO, BLOCK_SIZE_INFO), ack(OPT.GO)],
      },
    ]);
    expect(results[0]!.kind === 'transmission' && results[0]!.export.name).toBe('disk');
  });

  it('a read-only export advertises READ_ONLY and no TRIM or WRITE_ZEROES', () => {
    transcript([
      {
        opt: OPT.INFO,
        data: infoData('ro'),
        kind: 'continue',
        replies: [info(OPT.INFO, infoExport(RO_SIZE, RO_FLAGS)), info(OPT.INFO, BLOCK_SIZE_INFO), ack(OPT.INFO)],
      },
    ]);
  });

  it.each([OPT.INFO, OPT.GO])('option %i for an unknown export: ERR_UNKNOWN and no REP_INFO', (opt) => {
    transcript([
      { opt, data: infoData('nope', [INFO.NAME, INFO.BLOCK_SIZE]), kind: 'continue', replies: [err(opt, REP.ERR_UNKNOWN)] },
    ]);
  });

  it('NAME and DESCRIPTION only when asked; BLOCK_SIZE always', () => {
    transcript([
      {
        opt: OPT.INFO,
        data: infoData('disk', [INFO.NAME]),
        kind: 'continue',
        replies: [
          info(OPT.INFO, infoExport(DISK_SIZE, MEMORY_FLAGS)),
          info(OPT.INFO, infoString(INFO.NAME, 'disk')),
          info(OPT.INFO, BLOCK_SIZE_INFO),
          ack(OPT.INFO),
        ],
      },
      {
        opt: OPT.INFO,
        data: infoData('disk', [INFO.DESCRIPTION, INFO.NAME]),
        kind: 'continue',
        replies: [
          info(OPT.INFO, infoExport(DISK_SIZE, MEMORY_FLAGS)),
          info(OPT.INFO, infoString(INFO.NAME, 'disk')),
          info(OPT.INFO, infoString(INFO.DESCRIPTION, 'the test disk')),
          info(OPT.INFO, BLOCK_SIZE_INFO),
          ack(OPT.INFO),
        ],
      },
      {
        // Unknown info types are ignored, never an error.
        opt: OPT.GO,
        data: infoData('disk', [INFO.BLOCK_SIZE, 0x7777]),
        kind: 'transmission',
        replies: [info(OPT.GO, infoExport(DISK_SIZE, MEMORY_FLAGS)), info(OPT.GO, BLOCK_SIZE_INFO), ack(OPT.GO)],
      },
    ]);
  });

  it('the default export by its empty name reports its real name when asked', () => {
    transcript([
      {
        opt: OPT.INFO,
        data: infoData('', [INFO.NAME]),
        kind: 'continue',
        replies: [
          info(OPT.INFO, infoExport(DISK_SIZE, MEMORY_FLAGS)),
          info(OPT.INFO, infoString(INFO.NAME, 'disk')),
          info(OPT.INFO, BLOCK_SIZE_INFO),
          ack(OPT.INFO),
        ],
      },
    ]);
  });

  it.each([
    ['empty', Buffer.alloc(0)],
    ['shorter than 6 bytes', Buffer.from([0, 0, 0, 0, 0])],
    ['name length one past the option', wire().u32(5).str('disk').u16(0).build()],
    ['name length 2^32-1', wire().u32(0xffffffff).str('disk').u16(0).build()],
    ['count claims more requests than sent', wire().lstr('disk').u16(2).u16(INFO.NAME).build()],
    ['trailing byte after the requests', wire().lstr('disk').u16(1).u16(INFO.NAME).raw(Buffer.from([0])).build()],
    ['name with a NUL byte', wire().u32(5).raw(Buffer.from('di\0sk')).u16(0).build()],
    ['name that is not UTF-8', wire().u32(2).raw(Buffer.from([0xc3, 0x28])).u16(0).build()],
  ])('malformed INFO and GO (%s): ERR_INVALID, negotiation continues', (_name, data) => {
    transcript([
      { opt: OPT.INFO, data, kind: 'continue', replies: [err(OPT.INFO, REP.ERR_INVALID)] },
      { opt: OPT.GO, data, kind: 'continue', replies: [err(OPT.GO, REP.ERR_INVALID)] },
    ]);
  });
});

describe('STRUCTURED_REPLY', () => {
  it('ACK once; a repeat is ERR_INVALID; data is ERR_INVALID', () => {
    const { session } = transcript([
      { opt: OPT.STRUCTURED_REPLY, data: Buffer.from([1]), kind: 'continue', replies: [err(OPT.STRUCTURED_REPLY, REP.ERR_INVALID)] },
      { opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [ack(OPT.STRUCTURED_REPLY)] },
      { opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [err(OPT.STRUCTURED_REPLY, REP.ERR_INVALID)] },
    ]);
    expect(session.structured).toBe(true);
    expect(session.extended).toBe(false);
  });

  it('data with the first request leaves structured replies off', () => {
    const { session } = transcript([
      { opt: OPT.STRUCTURED_REPLY, data: Buffer.from([0, 0, 0, 0]), kind: 'continue', replies: [err(OPT.STRUCTURED_REPLY, REP.ERR_INVALID)] },
    ]);
    expect(session.structured).toBe(false);
  });
});

describe('EXTENDED_HEADERS', () => {
  it('ACK; then EXPORT_NAME closes without a reply', () => {
    const { session } = transcript([
      { opt: OPT.EXTENDED_HEADERS, kind: 'continue', replies: [ack(OPT.EXTENDED_HEADERS)] },
      { opt: OPT.EXPORT_NAME, data: Buffer.from('disk'), kind: 'close', replies: [] },
    ]);
    expect(session.extended).toBe(true);
  });

  it('supersedes STRUCTURED_REPLY: a later STRUCTURED_REPLY or a repeat is ERR_INVALID; GO still works', () => {
    transcript([
      { opt: OPT.EXTENDED_HEADERS, data: Buffer.from([9]), kind: 'continue', replies: [err(OPT.EXTENDED_HEADERS, REP.ERR_INVALID)] },
      { opt: OPT.EXTENDED_HEADERS, kind: 'continue', replies: [ack(OPT.EXTENDED_HEADERS)] },
      { opt: OPT.EXTENDED_HEADERS, kind: 'continue', replies: [err(OPT.EXTENDED_HEADERS, REP.ERR_INVALID)] },
      { opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [err(OPT.STRUCTURED_REPLY, REP.ERR_INVALID)] },
      {
        opt: OPT.GO,
        data: infoData('disk'),
        kind: 'transmission',
        replies: [info(OPT.GO, infoExport(DISK_SIZE, MEMORY_FLAGS | TX.SEND_DF)), info(OPT.GO, BLOCK_SIZE_INFO), ack(OPT.GO)],
      },
    ]);
  });
});

describe('STARTTLS, unknown options, ABORT', () => {
  it('STARTTLS without TLS configured: ERR_UNSUP (never TLS_REQD); with data: ERR_INVALID', () => {
    transcript([
      { opt: OPT.STARTTLS, kind: 'continue', replies: [err(OPT.STARTTLS, REP.ERR_UNSUP)] },
      { opt: OPT.STARTTLS, data: Buffer.from('x'), kind: 'continue', replies: [err(OPT.STARTTLS, REP.ERR_INVALID)] },
      { opt: OPT.LIST, kind: 'continue', replies: [expect.any(String), expect.any(String), ack(OPT.LIST)] },
    ]);
  });

  it.each([
    ['0x7654321 as nbd-tester-client sends', 0x7654321, Buffer.alloc(0)],
    ['withdrawn PEEK_EXPORT', OPT.PEEK_EXPORT, Buffer.alloc(0)],
    ['0 with data', 0, Buffer.from('ignored')],
    ['0xffffffff', 0xffffffff, Buffer.alloc(16)],
  ])('unknown option %s: ERR_UNSUP echoing the option, negotiation continues', (_name, opt, data) => {
    transcript([
      { opt, data, kind: 'continue', replies: [err(opt, REP.ERR_UNSUP)] },
      { opt: OPT.INFO, data: infoData('disk'), kind: 'continue', replies: [expect.any(String), expect.any(String), ack(OPT.INFO)] },
    ]);
  });

  it('ABORT: ACK then close, with or without data', () => {
    transcript([{ opt: OPT.ABORT, kind: 'close', replies: [ack(OPT.ABORT)] }]);
    transcript([{ opt: OPT.ABORT, data: Buffer.from('junk'), kind: 'close', replies: [ack(OPT.ABORT)] }]);
  });
});

describe('LIST_META_CONTEXT and SET_META_CONTEXT', () => {
  const LIST = OPT.LIST_META_CONTEXT;
  const SET = OPT.SET_META_CONTEXT;

  it('LIST with no queries returns base:allocation with id 0', () => {
    transcript([{ opt: LIST, data: metaData('disk', []), kind: 'continue', replies: [metaReply(LIST, 0, 'base:allocation'), ack(LIST)] }]);
  });

  it('LIST "base:" is a wildcard; exact names match; unknown namespaces are ignored', () => {
    transcript([
      { opt: LIST, data: metaData('disk', ['base:']), kind: 'continue', replies: [metaReply(LIST, 0, 'base:allocation'), ack(LIST)] },
      { opt: LIST, data: metaData('disk', ['base:allocation']), kind: 'continue', replies: [metaReply(LIST, 0, 'base:allocation'), ack(LIST)] },
      { opt: LIST, data: metaData('disk', ['qemu:dirty-bitmap:b0', 'x-unknown:']), kind: 'continue', replies: [ack(LIST)] },
      {
        opt: LIST,
        data: metaData('disk', ['qemu:allocation-depth', 'base:allocation', 'base:']),
        kind: 'continue',
        replies: [metaReply(LIST, 0, 'base:allocation'), ack(LIST)],
      },
    ]);
  });

  it('SET before STRUCTURED_REPLY: ERR_INVALID and nothing selected (a prior selection is cleared)', () => {
    // A session holding a selection from before (as after a STARTTLS reset) is cleared by the failing SET.
    const session = newSession(true);
    session.meta = { exportName: 'disk', ids: new Map([['base:allocation', 7]]) };
    transcript([{ opt: SET, data: metaData('disk', ['base:allocation']), kind: 'continue', replies: [err(SET, REP.ERR_INVALID)] }], session);
    expect(session.meta).toBeNull();
  });

  it('SET selects base:allocation with a non-zero id; a failing SET replaces the selection', () => {
    const { session } = transcript([
      { opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [ack(OPT.STRUCTURED_REPLY)] },
      { opt: SET, data: metaData('disk', ['base:allocation']), kind: 'continue', replies: [metaReply(SET, 1, 'base:allocation'), ack(SET)] },
    ]);
    expect(session.meta).toEqual({ exportName: 'disk', ids: new Map([['base:allocation', 1]]) });
    // Malformed: the query length runs past the option.
    const bad = wire().lstr('disk').u32(1).u32(100).str('base:allocation').build();
    transcript([{ opt: SET, data: bad, kind: 'continue', replies: [err(SET, REP.ERR_INVALID)] }], session);
    expect(session.meta).toBeNull();
  });

  it('SET "base:" selects nothing, SET with no queries selects nothing, unknown namespaces are ignored', () => {
    const { session } = transcript([
      { opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [ack(OPT.STRUCTURED_REPLY)] },
      { opt: SET, data: metaData('disk', ['base:']), kind: 'continue', replies: [ack(SET)] },
    ]);
    expect(session.meta?.ids.size).toBe(0);
    transcript([{ opt: SET, data: metaData('disk', []), kind: 'continue', replies: [ack(SET)] }], session);
    expect(session.meta?.ids.size).toBe(0);
    transcript([{ opt: SET, data: metaData('disk', ['qemu:dirty-bitmap:b0']), kind: 'continue', replies: [ack(SET)] }], session);
    expect(session.meta?.ids.size).toBe(0);
  });

  it('SET remembers the export it was made for', () => {
    const { session } = transcript([
      { opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [ack(OPT.STRUCTURED_REPLY)] },
      { opt: SET, data: metaData('ro', ['base:allocation']), kind: 'continue', replies: [metaReply(SET, 1, 'base:allocation'), ack(SET)] },
    ]);
    expect(session.meta?.exportName).toBe('ro');
  });

  it.each([
    ['shorter than 8 bytes', Buffer.from([0, 0, 0, 4, 0x64])],
    ['export name past the option', wire().u32(50).str('disk').u32(0).build()],
    ['query count with no queries', wire().lstr('disk').u32(2).build()],
    ['query length past the option', wire().lstr('disk').u32(1).u32(16).str('base:allocation').build()],
    ['trailing bytes', Buffer.concat([metaData('disk', ['base:']), Buffer.from([0])])],
  ])('malformed meta context data (%s): ERR_INVALID for LIST and SET', (_name, data) => {
    const session = newSession(true);
    session.structured = true;
    transcript(
      [
        { opt: LIST, data, kind: 'continue', replies: [err(LIST, REP.ERR_INVALID)] },
        { opt: SET, data, kind: 'continue', replies: [err(SET, REP.ERR_INVALID)] },
      ],
      session,
    );
  });

  it('an unknown export: ERR_UNKNOWN', () => {
    const session = newSession(true);
    session.structured = true;
    transcript(
      [
        { opt: LIST, data: metaData('nope', []), kind: 'continue', replies: [err(LIST, REP.ERR_UNKNOWN)] },
        { opt: SET, data: metaData('nope', ['base:allocation']), kind: 'continue', replies: [err(SET, REP.ERR_UNKNOWN)] },
      ],
      session,
    );
  });
});

describe('iomapd:mapping is offered per export', () => {
  const LIST = OPT.LIST_META_CONTEXT;
  const SET = OPT.SET_META_CONTEXT;
  /** 'disk' and 'ro' are plain memory; 'img' has mappingStatus, as an image volume does. */
  function withMapped(): ExportRegistry {
    const r = registry();
    const device = Object.assign(new MemoryDevice({ size: DISK_SIZE }), { mappingStatus: async () => [] });
    r.add({ name: 'img', description: '', device });
    return r;
  }

  it('LIST on an export with mapping types: both contexts; "iomapd:" is a wildcard', () => {
    transcript(
      [
        { opt: LIST, data: metaData('img', []), kind: 'continue', replies: [metaReply(LIST, 0, 'base:allocation'), metaReply(LIST, 0, 'iomapd:mapping'), ack(LIST)] },
        { opt: LIST, data: metaData('img', ['iomapd:']), kind: 'continue', replies: [metaReply(LIST, 0, 'iomapd:mapping'), ack(LIST)] },
        { opt: LIST, data: metaData('img', ['iomapd:mapping', 'iomapd:other']), kind: 'continue', replies: [metaReply(LIST, 0, 'iomapd:mapping'), ack(LIST)] },
      ],
      newSession(true),
      withMapped(),
    );
  });

  it('LIST and SET on an export without mapping types never offer it', () => {
    const { session } = transcript(
      [
        { opt: LIST, data: metaData('disk', ['iomapd:']), kind: 'continue', replies: [ack(LIST)] },
        { opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [ack(OPT.STRUCTURED_REPLY)] },
        { opt: SET, data: metaData('disk', ['iomapd:mapping']), kind: 'continue', replies: [ack(SET)] },
      ],
      newSession(true),
      withMapped(),
    );
    expect(session.meta?.ids.size).toBe(0);
  });

  it('SET selects both with their own ids; "iomapd:" selects nothing in SET', () => {
    const { session } = transcript(
      [
        { opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [ack(OPT.STRUCTURED_REPLY)] },
        {
          opt: SET,
          data: metaData('img', ['iomapd:mapping', 'iomapd:', 'base:allocation']),
          kind: 'continue',
          replies: [metaReply(SET, 1, 'iomapd:mapping'), metaReply(SET, 2, 'base:allocation'), ack(SET)],
        },
      ],
      newSession(true),
      withMapped(),
    );
    expect(session.meta?.ids).toEqual(new Map([['iomapd:mapping', 1], ['base:allocation', 2]]));
  });
});

describe('while shutting down', () => {
  it.each([
    ['LIST', OPT.LIST, empty],
    ['INFO', OPT.INFO, infoData('disk')],
    ['GO', OPT.GO, infoData('disk')],
    ['STRUCTURED_REPLY', OPT.STRUCTURED_REPLY, empty],
    ['STARTTLS', OPT.STARTTLS, empty],
    ['LIST_META_CONTEXT', OPT.LIST_META_CONTEXT, metaData('disk', [])],
    ['unknown 0x7654321', 0x7654321, empty],
  ])('%s: ERR_SHUTDOWN', (_name, opt, data) => {
    transcript([{ opt, data, kind: 'continue', replies: [err(opt, REP.ERR_SHUTDOWN)], shuttingDown: true }]);
  });

  it('ABORT still gets its ACK; EXPORT_NAME closes without a reply', () => {
    transcript([{ opt: OPT.ABORT, kind: 'close', replies: [ack(OPT.ABORT)], shuttingDown: true }]);
    transcript([{ opt: OPT.EXPORT_NAME, data: Buffer.from('disk'), kind: 'close', replies: [], shuttingDown: true }]);
  });
});

describe('EXPORT_NAME', () => {
  const reply = (size: number, flags: number, zeroes: boolean): string =>
    hexOf(wire().u64(size).u16(flags).zeroes(zeroes ? 124 : 0).build());

  it('with C_NO_ZEROES: size and flags, no padding', () => {
    const { results } = transcript(
      [{ opt: OPT.EXPORT_NAME, data: Buffer.from('disk'), kind: 'transmission', replies: [reply(DISK_SIZE, MEMORY_FLAGS, false)] }],
      newSession(true),
    );
    expect(results[0]!.replies[0]!.length).toBe(10);
  });

  it('without C_NO_ZEROES (nbd-tester-client): 124 zero bytes follow', () => {
    const { results } = transcript(
      [{ opt: OPT.EXPORT_NAME, data: Buffer.from('disk'), kind: 'transmission', replies: [reply(DISK_SIZE, MEMORY_FLAGS, true)] }],
      newSession(false),
    );
    expect(results[0]!.replies[0]!.length).toBe(134);
  });

  it('the empty name is the default export; STRUCTURED_REPLY first adds SEND_DF', () => {
    const session = newSession(true);
    transcript([{ opt: OPT.STRUCTURED_REPLY, kind: 'continue', replies: [ack(OPT.STRUCTURED_REPLY)] }], session);
    const { results } = transcript([{ opt: OPT.EXPORT_NAME, kind: 'transmission', replies: [reply(DISK_SIZE, MEMORY_FLAGS | TX.SEND_DF, false)] }], session);
    expect(results[0]!.kind === 'transmission' && results[0]!.export.name).toBe('disk');
  });

  it('an unknown export closes the connection (EXPORT_NAME cannot carry an error)', () => {
    transcript([{ opt: OPT.EXPORT_NAME, data: Buffer.from('nope'), kind: 'close', replies: [] }]);
  });

  it('a read-only export', () => {
    const { results } = transcript(
      [{ opt: OPT.EXPORT_NAME, data: Buffer.from('ro'), kind: 'transmission', replies: [reply(RO_SIZE, RO_FLAGS, true)] }],
      newSession(false),
    );
    expect(results[0]!.kind === 'transmission' && results[0]!.export.name).toBe('ro');
  });
});
