// Request validation, done once at the edge (protocol.md §3 "Which error for which condition").
// Everything past this point may assume a request is in bounds, aligned and advertised.
import { Cmd, CmdFlag, TxFlag } from '../protocol/constants.ts';
import type { Request } from '../protocol/transmission.ts';
import type { ErrorCode } from '../util/errors.ts';
import { Limits } from './limits.ts';

/** What validation needs to know about the export and the connection. */
export interface ValidationContext {
  readonly size: number;
  readonly readOnly: boolean;
  readonly transmissionFlags: number;
  readonly minimumBlock: number;
  readonly extended: boolean;
  /** A meta context was selected for the export this connection is attached to. */
  readonly hasMetaContext: boolean;
}

/** A request that passed validation: 64-bit fields are now exact JS numbers. */
export interface ValidRequest {
  readonly type: number;
  readonly flags: number;
  readonly cookie: bigint;
  readonly offset: number;
  readonly length: number;
  /** The offset as sent: extended replies echo it, even where `offset` is 0 (FLUSH, zero length). */
  readonly wireOffset: bigint;
}

export type Validation =
  | { readonly ok: true; readonly request: ValidRequest; readonly payload: number }
  | { readonly ok: false; readonly fatal: false; readonly code: ErrorCode; readonly message: string; readonly payload: number }
  | { readonly ok: false; readonly fatal: true; readonly message: string };

const KNOWN_FLAGS = Object.values(CmdFlag).reduce((a, b) => a | b, 0);
const WRITE_TYPES: ReadonlySet<number> = new Set([Cmd.WRITE, Cmd.TRIM, Cmd.WRITE_ZEROES]);
/** Commands whose range must lie inside the export, and what reaching past the end is. */
const PAST_END: ReadonlyMap<number, ErrorCode> = new Map<number, ErrorCode>([
  [Cmd.READ, 'OUT_OF_RANGE'],
  [Cmd.TRIM, 'OUT_OF_RANGE'],
  [Cmd.CACHE, 'OUT_OF_RANGE'],
  [Cmd.BLOCK_STATUS, 'OUT_OF_RANGE'],
  [Cmd.WRITE, 'NO_SPACE'],
  [Cmd.WRITE_ZEROES, 'NO_SPACE'],
]);
/** The transmission flag that must have been advertised before a command may be sent. */
const NEEDS_FLAG: ReadonlyMap<number, number> = new Map<number, number>([
  [Cmd.FLUSH, TxFlag.SEND_FLUSH],
  [Cmd.TRIM, TxFlag.SEND_TRIM],
  [Cmd.WRITE_ZEROES, TxFlag.SEND_WRITE_ZEROES],
  [Cmd.CACHE, TxFlag.SEND_CACHE],
]);

/** How many payload bytes follow this header on the wire, whatever validation then decides. */
export function payloadLength(req: Request, extended: boolean): bigint {
  if (req.type === Cmd.WRITE) return req.length;
  if (extended && (req.flags & CmdFlag.PAYLOAD_LEN) !== 0) return req.length;
  return 0n;
}

export function validateRequest(req: Request, ctx: ValidationContext): Validation {
  const payloadBig = payloadLength(req, ctx.extended);
  if (payloadBig > BigInt(Limits.drainLimit)) {
    return { ok: false, fatal: true, message: `payload of ${payloadBig} bytes is beyond the drain limit` };
  }
  const payload = Number(payloadBig);
  const reject = (code: ErrorCode, message: string): Validation => ({ ok: false, fatal: false, code, message, payload });

  // The order is semantics.md V1's (tests pin it), with one change: read-only comes before
  // "advertised", so TRIM and WRITE_ZEROES on a read-only export (which does not advertise them)
  // get EPERM as protocol.md's table asks, not EINVAL.
  const { type, flags } = req;
  if (!PAST_END.has(type) && type !== Cmd.FLUSH) return reject('INVALID_REQUEST', `unknown command ${type}`);
  const flagProblem = checkFlags(type, flags, ctx);
  if (flagProblem !== undefined) return reject('INVALID_REQUEST', flagProblem);
  if (ctx.readOnly && WRITE_TYPES.has(type)) return reject('READ_ONLY', 'the export is read-only');
  const needed = NEEDS_FLAG.get(type);
  if (needed !== undefined && (ctx.transmissionFlags & needed) === 0) {
    return reject('INVALID_REQUEST', 'command was not advertised');
  }
  if (type === Cmd.BLOCK_STATUS && !ctx.hasMetaContext) {
    return reject('INVALID_REQUEST', 'no meta context was negotiated for this export');
  }
  // FLUSH carries no range; offset and length should be 0 and are ignored.
  if (type === Cmd.FLUSH) return accept(req, 0, 0, payload);

  // DF first: EOVERFLOW tells the client to retry without DF.
  if (type === Cmd.READ && (flags & CmdFlag.DF) !== 0 && req.length > BigInt(Limits.maxDfRead)) {
    return reject('TOO_LARGE', 'DF read too large for one chunk');
  }
  if ((type === Cmd.WRITE || type === Cmd.READ) && req.length > BigInt(Limits.acceptedMaxPayload)) {
    return reject('INVALID_REQUEST', `${req.length}-byte payload exceeds ${Limits.acceptedMaxPayload}`);
  }
  const min = BigInt(ctx.minimumBlock);
  if (req.offset % min !== 0n || req.length % min !== 0n) {
    return reject('INVALID_REQUEST', `offset and length must be multiples of ${ctx.minimumBlock}`);
  }
  const size = BigInt(ctx.size);
  if (req.offset > size || req.length > size - req.offset) {
    return reject(PAST_END.get(type)!, 'the request reaches past the end of the export');
  }
  // Zero length passed every check above: success with no effect (V1.8).
  return accept(req, Number(req.offset), Number(req.length), payload);
}

function accept(req: Request, offset: number, length: number, payload: number): Validation {
  return { ok: true, request: { type: req.type, flags: req.flags, cookie: req.cookie, offset, length, wireOffset: req.offset }, payload };
}

/** Every flag must be known, valid for the command, and advertised. */
function checkFlags(type: number, flags: number, ctx: ValidationContext): string | undefined {
  if ((flags & ~KNOWN_FLAGS) !== 0) return `unknown flags 0x${flags.toString(16)}`;
  const tx = ctx.transmissionFlags;
  const has = (f: number): boolean => (flags & f) !== 0;
  if (has(CmdFlag.FUA) && (tx & TxFlag.SEND_FUA) === 0) return 'FUA was not advertised';
  if (has(CmdFlag.NO_HOLE) && type !== Cmd.WRITE_ZEROES) return 'NO_HOLE is only valid on WRITE_ZEROES';
  if (has(CmdFlag.DF) && (type !== Cmd.READ || (tx & TxFlag.SEND_DF) === 0)) return 'DF is only valid on READ with structured replies';
  if (has(CmdFlag.REQ_ONE) && type !== Cmd.BLOCK_STATUS) return 'REQ_ONE is only valid on BLOCK_STATUS';
  if (has(CmdFlag.FAST_ZERO) && (type !== Cmd.WRITE_ZEROES || (tx & TxFlag.SEND_FAST_ZERO) === 0)) {
    return 'FAST_ZERO is only valid on WRITE_ZEROES when advertised';
  }
  if (has(CmdFlag.PAYLOAD_LEN) && (!ctx.extended || type !== Cmd.WRITE)) {
    return 'PAYLOAD_LEN is only valid on WRITE with extended headers';
  }
  return undefined;
}
