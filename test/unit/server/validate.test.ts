// validateRequest as a table: one row per condition of protocol.md §3 "Which error for which
// condition", each checked for the error code, the NBD errno it becomes at the one errno boundary
// (src/server/errno.ts), and the payload bytes the connection must drain for a rejected WRITE.
import { describe, expect, it } from 'vitest';
import type { Request } from '../../../src/protocol/transmission.ts';
import { nbdErrnoFor, toNbdErrno } from '../../../src/server/errno.ts';
import { validateRequest, type ValidationContext } from '../../../src/server/validate.ts';
import { ErrorCodes, IomapdError, type ErrorCode } from '../../../src/util/errors.ts';
import { CMD, ERR, FLAG, MEMORY_FLAGS, TX } from '../../support/wire.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 1 * MiB;
const TWO_64 = 1n << 64n;

/** A writable MemoryDevice export after STRUCTURED_REPLY and SET_META_CONTEXT base:allocation. */
const STRUCTURED: ValidationContext = {
  size: SIZE,
  readOnly: false,
  transmissionFlags: MEMORY_FLAGS | TX.SEND_DF,
  minimumBlock: 512,
  extended: false,
  hasMetaContext: true,
};
/** The same export to a simple-reply client (nbd-client): no DF, no meta context. */
const SIMPLE: ValidationContext = { ...STRUCTURED, transmissionFlags: MEMORY_FLAGS, hasMetaContext: false };
const EXTENDED: ValidationContext = { ...STRUCTURED, extended: true };
const READ_ONLY: ValidationContext = {
  ...STRUCTURED,
  readOnly: true,
  transmissionFlags: TX.HAS_FLAGS | TX.READ_ONLY | TX.SEND_FLUSH | TX.SEND_FUA | TX.SEND_DF | TX.CAN_MULTI_CONN | TX.SEND_CACHE,
};
/** A device that advertises nothing optional (no FLUSH, FUA, TRIM, WRITE_ZEROES, CACHE, DF). */
const BARE: ValidationContext = { ...STRUCTURED, transmissionFlags: TX.HAS_FLAGS, hasMetaContext: false };
/** A large export, so that size limits and not bounds decide. */
const HUGE: ValidationContext = { ...STRUCTURED, size: 2 ** 40 };
/** The largest export a JS number can address to the byte, rounded down to 512. */
const MAX_SAFE: ValidationContext = { ...STRUCTURED, size: 2 ** 53 - 512 };

function req(type: number, offset: bigint | number, length: bigint | number, flags = 0): Request {
  return { type, flags, cookie: 0x0102030405060708n, offset: BigInt(offset), length: BigInt(length) };
}

interface RejectRow {
  readonly name: string;
  readonly ctx: ValidationContext;
  readonly req: Request;
  readonly code: ErrorCode;
  readonly errno: number;
  /** Payload bytes following the header on the wire (drained after the rejection). */
  readonly payload?: number;
}

const rejects: RejectRow[] = [
  // unknown command type; unknown flag; flag not valid for the command; not advertised -> EINVAL
  { name: 'unknown command 9', ctx: STRUCTURED, req: req(9, 0, 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'RESIZE (experimental, not implemented)', ctx: STRUCTURED, req: req(CMD.RESIZE, 0, 0), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'unknown command 0xffff', ctx: STRUCTURED, req: req(0xffff, 0, 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'unknown flag 0x40 on READ', ctx: STRUCTURED, req: req(CMD.READ, 0, 512, 0x40), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'unknown flag 0x8000 on FLUSH', ctx: STRUCTURED, req: req(CMD.FLUSH, 0, 0, 0x8000), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'unknown flag on WRITE (payload drained)', ctx: STRUCTURED, req: req(CMD.WRITE, 0, 4096, 0x100), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 4096 },
  { name: 'READ|NO_HOLE', ctx: STRUCTURED, req: req(CMD.READ, 0, 512, FLAG.NO_HOLE), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'WRITE|NO_HOLE', ctx: STRUCTURED, req: req(CMD.WRITE, 0, 512, FLAG.NO_HOLE), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 512 },
  { name: 'TRIM|NO_HOLE', ctx: STRUCTURED, req: req(CMD.TRIM, 0, 512, FLAG.NO_HOLE), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'WRITE|DF', ctx: STRUCTURED, req: req(CMD.WRITE, 0, 512, FLAG.DF), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 512 },
  { name: 'BLOCK_STATUS|DF', ctx: STRUCTURED, req: req(CMD.BLOCK_STATUS, 0, 512, FLAG.DF), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'READ|REQ_ONE', ctx: STRUCTURED, req: req(CMD.READ, 0, 512, FLAG.REQ_ONE), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'WRITE|FAST_ZERO', ctx: STRUCTURED, req: req(CMD.WRITE, 0, 512, FLAG.FAST_ZERO), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 512 },
  { name: 'TRIM|FAST_ZERO', ctx: STRUCTURED, req: req(CMD.TRIM, 0, 512, FLAG.FAST_ZERO), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'PAYLOAD_LEN without extended headers', ctx: STRUCTURED, req: req(CMD.READ, 0, 512, FLAG.PAYLOAD_LEN), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'WRITE|PAYLOAD_LEN without extended headers', ctx: STRUCTURED, req: req(CMD.WRITE, 0, 512, FLAG.PAYLOAD_LEN), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 512 },
  // Extended headers: a payload on a command that takes none is consumed, then refused.
  { name: 'extended READ|PAYLOAD_LEN (payload drained)', ctx: EXTENDED, req: req(CMD.READ, 0, 512, FLAG.PAYLOAD_LEN), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 512 },
  { name: 'extended TRIM|PAYLOAD_LEN (payload drained)', ctx: EXTENDED, req: req(CMD.TRIM, 0, 1024, FLAG.PAYLOAD_LEN), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 1024 },
  // Commands and flags that were not advertised.
  { name: 'FLUSH without SEND_FLUSH', ctx: BARE, req: req(CMD.FLUSH, 0, 0), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'TRIM without SEND_TRIM', ctx: BARE, req: req(CMD.TRIM, 0, 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'WRITE_ZEROES without SEND_WRITE_ZEROES', ctx: BARE, req: req(CMD.WRITE_ZEROES, 0, 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'CACHE without SEND_CACHE', ctx: BARE, req: req(CMD.CACHE, 0, 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'WRITE|FUA without SEND_FUA', ctx: BARE, req: req(CMD.WRITE, 0, 512, FLAG.FUA), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 512 },
  { name: 'READ|DF with simple replies (no SEND_DF)', ctx: SIMPLE, req: req(CMD.READ, 0, 512, FLAG.DF), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  {
    name: 'WRITE_ZEROES|FAST_ZERO without SEND_FAST_ZERO (nbdkit 1.32 crashed here)',
    ctx: { ...STRUCTURED, transmissionFlags: STRUCTURED.transmissionFlags & ~TX.SEND_FAST_ZERO },
    req: req(CMD.WRITE_ZEROES, 0, 512, FLAG.FAST_ZERO),
    code: 'INVALID_REQUEST',
    errno: ERR.EINVAL,
  },
  // Alignment to the advertised minimum block.
  { name: 'READ at a misaligned offset', ctx: STRUCTURED, req: req(CMD.READ, 100, 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'READ of a misaligned length', ctx: STRUCTURED, req: req(CMD.READ, 0, 100), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'WRITE of 1 byte (payload drained)', ctx: STRUCTURED, req: req(CMD.WRITE, 512, 1), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 1 },
  { name: 'TRIM misaligned for a 4096 minimum', ctx: { ...STRUCTURED, minimumBlock: 4096 }, req: req(CMD.TRIM, 512, 4096), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'BLOCK_STATUS misaligned', ctx: STRUCTURED, req: req(CMD.BLOCK_STATUS, 511, 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  // Beyond the end: EINVAL for READ, TRIM, CACHE, BLOCK_STATUS; ENOSPC for WRITE, WRITE_ZEROES.
  { name: 'READ reaching past the end', ctx: STRUCTURED, req: req(CMD.READ, SIZE - 512, 1024), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'READ starting at the end', ctx: STRUCTURED, req: req(CMD.READ, SIZE, 512), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'TRIM past the end', ctx: STRUCTURED, req: req(CMD.TRIM, SIZE, 512), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'CACHE past the end', ctx: STRUCTURED, req: req(CMD.CACHE, 0, SIZE + 512), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'BLOCK_STATUS past the end', ctx: STRUCTURED, req: req(CMD.BLOCK_STATUS, SIZE, 512), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'WRITE past the end (payload drained)', ctx: STRUCTURED, req: req(CMD.WRITE, SIZE - 512, 1024), code: 'NO_SPACE', errno: ERR.ENOSPC, payload: 1024 },
  { name: 'WRITE starting at the end', ctx: STRUCTURED, req: req(CMD.WRITE, SIZE, 512), code: 'NO_SPACE', errno: ERR.ENOSPC, payload: 512 },
  { name: 'WRITE_ZEROES past the end', ctx: STRUCTURED, req: req(CMD.WRITE_ZEROES, SIZE, 4096), code: 'NO_SPACE', errno: ERR.ENOSPC },
  // Offsets near 2^64 must be rejected, not rounded to a JS number (2^64 - 512 rounds to 2^64).
  { name: 'READ at 2^63', ctx: STRUCTURED, req: req(CMD.READ, 1n << 63n, 512), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'READ at 2^64 - 512', ctx: STRUCTURED, req: req(CMD.READ, TWO_64 - 512n, 512), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'READ at 2^53 (first offset a double cannot step by 1 from)', ctx: STRUCTURED, req: req(CMD.READ, 1n << 53n, 512), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'TRIM at 2^64 - 4096 on a 1 TiB export', ctx: HUGE, req: req(CMD.TRIM, TWO_64 - 4096n, 4096), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'WRITE at 2^64 - 512', ctx: STRUCTURED, req: req(CMD.WRITE, TWO_64 - 512n, 512), code: 'NO_SPACE', errno: ERR.ENOSPC, payload: 512 },
  { name: 'WRITE_ZEROES at 2^63', ctx: STRUCTURED, req: req(CMD.WRITE_ZEROES, 1n << 63n, 512), code: 'NO_SPACE', errno: ERR.ENOSPC },
  // Alignment must be judged on the exact value: as doubles, 2^64 - 1 and 2^53 + 1 round to even.
  { name: 'WRITE at 2^64 - 1 is misaligned (EINVAL, not ENOSPC)', ctx: STRUCTURED, req: req(CMD.WRITE, TWO_64 - 1n, 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 512 },
  { name: 'WRITE_ZEROES at 2^53 + 1 is misaligned', ctx: MAX_SAFE, req: req(CMD.WRITE_ZEROES, (1n << 53n) + 1n, 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'READ at 2^53 on an export of 2^53 - 512 bytes', ctx: MAX_SAFE, req: req(CMD.READ, 1n << 53n, 512), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'WRITE of 1024 at 2^53 - 512 on an export of 2^53 - 512 bytes', ctx: MAX_SAFE, req: req(CMD.WRITE, (1n << 53n) - 512n, 1024), code: 'NO_SPACE', errno: ERR.ENOSPC, payload: 1024 },
  // offset + length wraps past 2^64 with 64-bit extended lengths.
  // The payload limit comes before bounds (semantics.md V1 step 5 before 7): EINVAL either way.
  { name: 'extended READ of 2^64 - 512 bytes at 512', ctx: EXTENDED, req: req(CMD.READ, 512, TWO_64 - 512n), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'extended BLOCK_STATUS of 2^63 bytes', ctx: EXTENDED, req: req(CMD.BLOCK_STATUS, 0, 1n << 63n), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  // Read-only exports: EPERM for WRITE, TRIM, WRITE_ZEROES (even where those are not advertised).
  { name: 'WRITE on a read-only export (payload drained)', ctx: READ_ONLY, req: req(CMD.WRITE, 0, 4096), code: 'READ_ONLY', errno: ERR.EPERM, payload: 4096 },
  { name: 'WRITE|FUA on a read-only export', ctx: READ_ONLY, req: req(CMD.WRITE, 0, 512, FLAG.FUA), code: 'READ_ONLY', errno: ERR.EPERM, payload: 512 },
  { name: 'TRIM on a read-only export', ctx: READ_ONLY, req: req(CMD.TRIM, 0, 4096), code: 'READ_ONLY', errno: ERR.EPERM },
  { name: 'WRITE_ZEROES on a read-only export', ctx: READ_ONLY, req: req(CMD.WRITE_ZEROES, 0, 4096), code: 'READ_ONLY', errno: ERR.EPERM },
  { name: 'WRITE past the end of a read-only export', ctx: READ_ONLY, req: req(CMD.WRITE, SIZE, 512), code: 'READ_ONLY', errno: ERR.EPERM, payload: 512 },
  // Flags are judged before read-only (V1 step 2 before 4).
  { name: 'WRITE with NO_HOLE on a read-only export', ctx: READ_ONLY, req: req(CMD.WRITE, 0, 512, FLAG.NO_HOLE), code: 'INVALID_REQUEST', errno: ERR.EINVAL, payload: 512 },
  // Zero length succeeds only after alignment and bounds passed (V1.8).
  { name: 'zero-length READ at a misaligned offset', ctx: STRUCTURED, req: req(CMD.READ, 100, 0), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'zero-length READ past the end', ctx: STRUCTURED, req: req(CMD.READ, SIZE + 512, 0), code: 'OUT_OF_RANGE', errno: ERR.EINVAL },
  { name: 'zero-length WRITE past the end', ctx: STRUCTURED, req: req(CMD.WRITE, SIZE + 512, 0), code: 'NO_SPACE', errno: ERR.ENOSPC },
  // Size limits: a READ longer than 64 MiB (the accepted maximum) is EINVAL, never a disconnect.
  { name: 'READ of 64 MiB + 512', ctx: HUGE, req: req(CMD.READ, 0, 64 * MiB + 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'simple READ of 64 MiB + 512', ctx: { ...HUGE, transmissionFlags: MEMORY_FLAGS }, req: req(CMD.READ, 0, 64 * MiB + 512), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'extended READ of 4 GiB', ctx: { ...HUGE, extended: true }, req: req(CMD.READ, 0, 4n * 1024n * BigInt(MiB)), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  // DF: at most one content chunk; too large is EOVERFLOW (the client may retry without DF).
  { name: 'READ|DF of 64 MiB + 512', ctx: HUGE, req: req(CMD.READ, 0, 64 * MiB + 512, FLAG.DF), code: 'TOO_LARGE', errno: ERR.EOVERFLOW },
  // BLOCK_STATUS needs a meta context selected for this export.
  { name: 'BLOCK_STATUS without a meta context', ctx: { ...STRUCTURED, hasMetaContext: false }, req: req(CMD.BLOCK_STATUS, 0, 4096), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
  { name: 'BLOCK_STATUS with simple replies', ctx: SIMPLE, req: req(CMD.BLOCK_STATUS, 0, 4096), code: 'INVALID_REQUEST', errno: ERR.EINVAL },
];

describe('rejected requests (protocol.md §3 error table)', () => {
  it.each(rejects.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    const v = validateRequest(row.req, row.ctx);
    expect(v).toMatchObject({ ok: false, fatal: false, code: row.code, payload: row.payload ?? 0 });
    if (v.ok || v.fatal) return;
    expect(v.message.length).toBeGreaterThan(0);
    // The one errno boundary: the code becomes this NBD error, as a value and when thrown.
    expect(nbdErrnoFor(v.code)).toBe(row.errno);
    expect(toNbdErrno(new IomapdError(v.code, v.message))).toEqual({ errno: row.errno, message: v.message, isExpected: true });
  });
});

interface AcceptRow {
  readonly name: string;
  readonly ctx: ValidationContext;
  readonly req: Request;
  /** What the request becomes: exact JS numbers. */
  readonly offset: number;
  readonly length: number;
  readonly payload?: number;
}

const accepts: AcceptRow[] = [
  { name: 'READ of the last block', ctx: STRUCTURED, req: req(CMD.READ, SIZE - 512, 512), offset: SIZE - 512, length: 512 },
  { name: 'READ of the whole export', ctx: STRUCTURED, req: req(CMD.READ, 0, SIZE), offset: 0, length: SIZE },
  { name: 'READ of the last block of a 2^53 - 512 byte export', ctx: MAX_SAFE, req: req(CMD.READ, (1n << 53n) - 1024n, 512), offset: 2 ** 53 - 1024, length: 512 },
  { name: 'WRITE of the last block', ctx: STRUCTURED, req: req(CMD.WRITE, SIZE - 512, 512), offset: SIZE - 512, length: 512, payload: 512 },
  { name: 'WRITE|FUA', ctx: STRUCTURED, req: req(CMD.WRITE, 4096, 4096, FLAG.FUA), offset: 4096, length: 4096, payload: 4096 },
  { name: 'READ|FUA (FUA is valid on every command once advertised)', ctx: STRUCTURED, req: req(CMD.READ, 0, 512, FLAG.FUA), offset: 0, length: 512 },
  { name: 'READ|DF with structured replies', ctx: STRUCTURED, req: req(CMD.READ, 0, 64 * KiB, FLAG.DF), offset: 0, length: 64 * KiB },
  { name: 'FLUSH', ctx: STRUCTURED, req: req(CMD.FLUSH, 0, 0), offset: 0, length: 0 },
  { name: 'FLUSH|FUA', ctx: STRUCTURED, req: req(CMD.FLUSH, 0, 0, FLAG.FUA), offset: 0, length: 0 },
  { name: 'FLUSH with a stray offset and length (ignored)', ctx: STRUCTURED, req: req(CMD.FLUSH, 4096, 4096), offset: 0, length: 0 },
  { name: 'TRIM of the whole export', ctx: STRUCTURED, req: req(CMD.TRIM, 0, SIZE), offset: 0, length: SIZE },
  { name: 'WRITE_ZEROES|NO_HOLE|FAST_ZERO|FUA', ctx: STRUCTURED, req: req(CMD.WRITE_ZEROES, 0, 8192, FLAG.NO_HOLE | FLAG.FAST_ZERO | FLAG.FUA), offset: 0, length: 8192 },
  { name: 'CACHE', ctx: STRUCTURED, req: req(CMD.CACHE, 0, 65536), offset: 0, length: 65536 },
  { name: 'BLOCK_STATUS|REQ_ONE', ctx: STRUCTURED, req: req(CMD.BLOCK_STATUS, 0, SIZE, FLAG.REQ_ONE), offset: 0, length: SIZE },
  { name: 'READ on a read-only export', ctx: READ_ONLY, req: req(CMD.READ, 0, 4096), offset: 0, length: 4096 },
  { name: 'FLUSH on a read-only export', ctx: READ_ONLY, req: req(CMD.FLUSH, 0, 0), offset: 0, length: 0 },
  // Payloads up to 64 MiB are accepted although 32 MiB is advertised (nbd-tester-client integrityhuge).
  { name: 'WRITE of 32 MiB + 512', ctx: HUGE, req: req(CMD.WRITE, 0, 32 * MiB + 512), offset: 0, length: 32 * MiB + 512, payload: 32 * MiB + 512 },
  { name: 'WRITE of 64 MiB', ctx: HUGE, req: req(CMD.WRITE, 0, 64 * MiB), offset: 0, length: 64 * MiB, payload: 64 * MiB },
  { name: 'simple READ of 64 MiB', ctx: { ...HUGE, transmissionFlags: MEMORY_FLAGS }, req: req(CMD.READ, 0, 64 * MiB), offset: 0, length: 64 * MiB },
  // TRIM and WRITE_ZEROES may be longer than any payload limit.
  { name: 'TRIM of 4 GiB - 4 KiB (the kernel split)', ctx: HUGE, req: req(CMD.TRIM, 0, 0xfffff000), offset: 0, length: 0xfffff000 },
  { name: 'extended WRITE_ZEROES of 8 GiB', ctx: { ...HUGE, extended: true }, req: req(CMD.WRITE_ZEROES, 0, 8n << 30n), offset: 0, length: 8 * 1024 * MiB },
  { name: 'extended WRITE|PAYLOAD_LEN', ctx: EXTENDED, req: req(CMD.WRITE, 512, 1024, FLAG.PAYLOAD_LEN), offset: 512, length: 1024, payload: 1024 },
  { name: 'extended WRITE without PAYLOAD_LEN still carries its payload', ctx: EXTENDED, req: req(CMD.WRITE, 512, 1024), offset: 512, length: 1024, payload: 1024 },
  // Zero length: unspecified by the spec; success, no payload, never a disconnect.
  { name: 'zero-length READ', ctx: STRUCTURED, req: req(CMD.READ, 0, 0), offset: 0, length: 0 },
  { name: 'zero-length WRITE', ctx: STRUCTURED, req: req(CMD.WRITE, 4096, 0), offset: 4096, length: 0 },
  { name: 'zero-length TRIM at the end', ctx: STRUCTURED, req: req(CMD.TRIM, SIZE, 0), offset: SIZE, length: 0 },
  { name: 'zero-length BLOCK_STATUS', ctx: STRUCTURED, req: req(CMD.BLOCK_STATUS, 0, 0), offset: 0, length: 0 },
];

describe('accepted requests', () => {
  it.each(accepts.map((r) => [r.name, r] as const))('%s', (_name, row) => {
    const v = validateRequest(row.req, row.ctx);
    expect(v).toEqual({
      ok: true,
      request: { type: row.req.type, flags: row.req.flags, cookie: row.req.cookie, offset: row.offset, length: row.length, wireOffset: row.req.offset },
      payload: row.payload ?? 0,
    });
  });
});

describe('fatal requests: the payload is beyond the drain limit, so the connection closes', () => {
  it.each([
    ['WRITE of 64 MiB + 512', STRUCTURED, req(CMD.WRITE, 0, 64 * MiB + 512)],
    ['WRITE of 0xffffffff bytes', HUGE, req(CMD.WRITE, 0, 0xffffffff)],
    ['read-only WRITE of 64 MiB + 512 (no drain either)', READ_ONLY, req(CMD.WRITE, 0, 64 * MiB + 512)],
    ['misaligned WRITE of 100 MiB', STRUCTURED, req(CMD.WRITE, 1, 100 * MiB)],
    ['extended WRITE of 2^40 bytes', { ...HUGE, extended: true }, req(CMD.WRITE, 0, 1n << 40n, FLAG.PAYLOAD_LEN)],
    ['extended READ|PAYLOAD_LEN of 2^63 bytes', EXTENDED, req(CMD.READ, 0, 1n << 63n, FLAG.PAYLOAD_LEN)],
  ])('%s', (_name, ctx, r) => {
    const v = validateRequest(r, ctx);
    expect(v.ok).toBe(false);
    expect(!v.ok && v.fatal).toBe(true);
  });

  it('a READ of the same length is not fatal: it carries no payload', () => {
    const v = validateRequest(req(CMD.READ, 0, 64 * MiB + 512), HUGE);
    expect(!v.ok && !v.fatal && v.payload).toBe(0);
  });
});

describe('the errno boundary (src/server/errno.ts)', () => {
  // Every error code maps to a protocol value from protocol.md §1, never a host errno.
  const expected: Record<ErrorCode, number> = {
    INVALID_REQUEST: ERR.EINVAL,
    OUT_OF_RANGE: ERR.EINVAL,
    NO_SPACE: ERR.ENOSPC,
    READ_ONLY: ERR.EPERM,
    TOO_LARGE: ERR.EOVERFLOW,
    NOT_SUPPORTED: ERR.ENOTSUP,
    FAST_ZERO_UNAVAILABLE: ERR.ENOTSUP,
    SHUTTING_DOWN: ERR.ESHUTDOWN,
    NO_MEMORY: ERR.ENOMEM,
    IO: ERR.EIO,
    STORAGE_POISONED: ERR.EIO,
    CORRUPT: ERR.EIO,
    BAD_MAGIC: ERR.EIO,
    FORMAT_TOO_NEW: ERR.EIO,
    LOCKED: ERR.EIO,
    FENCED: ERR.EIO,
    STORE_UNAVAILABLE: ERR.EIO,
    STORE_CONFIG: ERR.EIO,
    STORE_UNSUPPORTED: ERR.EIO,
    NOT_FOUND: ERR.EINVAL,
    ALREADY_EXISTS: ERR.EINVAL,
    BAD_ARGUMENT: ERR.EINVAL,
    BUSY: ERR.EINVAL,
    NOT_RUNNING: ERR.EINVAL,
  };

  it.each(Object.keys(ErrorCodes) as ErrorCode[])('%s', (code) => {
    expect(nbdErrnoFor(code)).toBe(expected[code]);
    expect(toNbdErrno(new IomapdError(code)).errno).toBe(expected[code]);
  });

  it.each([
    ['a plain Error', new Error('boom')],
    ['a Node errno error (ENOSPC must not pass through as 28 by accident of naming)', Object.assign(new Error('disk full'), { code: 'ENOSPC', errno: -28 })],
    ['a string', 'oops'],
    ['undefined', undefined],
  ])('anything else is EIO, flagged as unexpected: %s', (_name, thrown) => {
    expect(toNbdErrno(thrown)).toEqual({ errno: ERR.EIO, message: 'internal error', isExpected: false });
  });
});
