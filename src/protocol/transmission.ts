// Transmission codec: requests (compact 28-byte and extended 32-byte) and replies (simple,
// structured chunks, extended chunks). Pure functions over Buffer. Payload bytes (READ data,
// WRITE data) never pass through here: callers send and receive them beside these headers.
import {
  EXTENDED_REPLY_MAGIC,
  EXTENDED_REQUEST_MAGIC,
  REQUEST_MAGIC,
  ReplyFlag,
  ReplyType,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  Size,
} from './constants.ts';
import { decoded, needMore, protocolError, type Decoded } from './result.ts';

export interface Request {
  readonly flags: number;
  readonly type: number;
  /** Opaque: echoed back exactly. A bigint keeps all 64 bits (the kernel uses the high ones). */
  readonly cookie: bigint;
  /** 64-bit on the wire: kept as bigint until validation turns it into a number. */
  readonly offset: bigint;
  /** u32 in compact requests, u64 in extended ones. */
  readonly length: bigint;
}

/** Which request and reply headers were negotiated. */
export type HeaderStyle = 'simple' | 'structured' | 'extended';

/**
 * One request header. With extended headers only the 32-byte form is valid and vice versa;
 * the wrong magic cannot be resynchronised from, so it is 'bad-magic'.
 */
export function decodeRequest(buf: Buffer, extended: boolean): Decoded<Request> {
  const size = extended ? Size.EXTENDED_REQUEST : Size.REQUEST;
  if (buf.length < 4) return needMore(size - buf.length);
  const magic = buf.readUInt32BE(0);
  const want = extended ? EXTENDED_REQUEST_MAGIC : REQUEST_MAGIC;
  if (magic !== want) return protocolError('bad-magic', `request magic 0x${magic.toString(16)}`);
  if (buf.length < size) return needMore(size - buf.length);
  return decoded(
    {
      flags: buf.readUInt16BE(4),
      type: buf.readUInt16BE(6),
      cookie: buf.readBigUInt64BE(8),
      offset: buf.readBigUInt64BE(16),
      length: extended ? buf.readBigUInt64BE(24) : BigInt(buf.readUInt32BE(24)),
    },
    size,
  );
}

/** Simple reply: magic, error, cookie. A successful READ's data follows it. */
export function encodeSimpleReply(cookie: bigint, error: number): Buffer {
  const buf = Buffer.allocUnsafe(Size.SIMPLE_REPLY);
  buf.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  buf.writeUInt32BE(error, 4);
  buf.writeBigUInt64BE(cookie, 8);
  return buf;
}

/** The fields every chunk header carries. `requestOffset` is used only by extended headers. */
export interface ChunkTarget {
  readonly style: 'structured' | 'extended';
  readonly cookie: bigint;
  readonly requestOffset: bigint;
}

/** A chunk header (20 bytes structured, 32 extended) with room for `extra` payload bytes after it. */
function chunkHeader(t: ChunkTarget, flags: number, type: number, payloadLength: number, extra: number): Buffer {
  if (t.style === 'extended') {
    const buf = Buffer.allocUnsafe(Size.EXTENDED_REPLY_HEADER + extra);
    buf.writeUInt32BE(EXTENDED_REPLY_MAGIC, 0);
    buf.writeUInt16BE(flags, 4);
    buf.writeUInt16BE(type, 6);
    buf.writeBigUInt64BE(t.cookie, 8);
    buf.writeBigUInt64BE(t.requestOffset, 16);
    buf.writeBigUInt64BE(BigInt(payloadLength), 24);
    return buf;
  }
  const buf = Buffer.allocUnsafe(Size.STRUCTURED_REPLY_HEADER + extra);
  buf.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  buf.writeUInt16BE(flags, 4);
  buf.writeUInt16BE(type, 6);
  buf.writeBigUInt64BE(t.cookie, 8);
  buf.writeUInt32BE(payloadLength, 16);
  return buf;
}

const headerSize = (t: ChunkTarget): number =>
  t.style === 'extended' ? Size.EXTENDED_REPLY_HEADER : Size.STRUCTURED_REPLY_HEADER;

const doneFlag = (done: boolean): number => (done ? ReplyFlag.DONE : 0);

/** NONE with DONE: the whole reply to a command that succeeded with nothing to say. */
export function encodeNoneChunk(t: ChunkTarget): Buffer {
  return chunkHeader(t, ReplyFlag.DONE, ReplyType.NONE, 0, 0);
}

/** OFFSET_DATA header and its u64 offset; `dataLength` bytes of data must follow it. */
export function encodeOffsetDataHeader(t: ChunkTarget, offset: bigint, dataLength: number, done: boolean): Buffer {
  const buf = chunkHeader(t, doneFlag(done), ReplyType.OFFSET_DATA, 8 + dataLength, 8);
  buf.writeBigUInt64BE(offset, headerSize(t));
  return buf;
}

/** OFFSET_HOLE: u64 offset, u32 hole size (> 0). */
export function encodeOffsetHoleChunk(t: ChunkTarget, offset: bigint, holeLength: number, done: boolean): Buffer {
  const buf = chunkHeader(t, doneFlag(done), ReplyType.OFFSET_HOLE, 12, 12);
  const at = headerSize(t);
  buf.writeBigUInt64BE(offset, at);
  buf.writeUInt32BE(holeLength, at + 8);
  return buf;
}

/** ERROR (or ERROR_OFFSET when `errorOffset` is given): u32 error, u16 message length, message [, u64 offset]. */
export function encodeErrorChunk(t: ChunkTarget, error: number, message: string, errorOffset?: bigint): Buffer {
  // Cut to the 4096-byte string limit on a character boundary: never end on a partial UTF-8 sequence.
  let text = Buffer.from(message, 'utf8');
  if (text.length > 4096) {
    let end = 4096;
    while (end > 0 && (text[end]! & 0xc0) === 0x80) end--; // text[end] is a continuation byte
    text = text.subarray(0, end);
  }
  const withOffset = errorOffset !== undefined;
  const payload = 6 + text.length + (withOffset ? 8 : 0);
  const type = withOffset ? ReplyType.ERROR_OFFSET : ReplyType.ERROR;
  const buf = chunkHeader(t, ReplyFlag.DONE, type, payload, payload);
  let at = headerSize(t);
  buf.writeUInt32BE(error, at);
  buf.writeUInt16BE(text.length, at + 4);
  text.copy(buf, at + 6);
  at += 6 + text.length;
  if (withOffset) buf.writeBigUInt64BE(errorOffset, at);
  return buf;
}

export interface StatusExtent {
  readonly length: number;
  readonly flags: number;
}

/**
 * BLOCK_STATUS (structured: u32 id, n x (u32 length, u32 flags)) or BLOCK_STATUS_EXT (extended:
 * u32 id, u32 count, n x (u64 length, u64 flags)); extended headers require the second.
 */
export function encodeBlockStatusChunk(
  t: ChunkTarget,
  contextId: number,
  extents: readonly StatusExtent[],
  done: boolean,
): Buffer {
  const wide = t.style === 'extended';
  const payload = wide ? 8 + 16 * extents.length : 4 + 8 * extents.length;
  const type = wide ? ReplyType.BLOCK_STATUS_EXT : ReplyType.BLOCK_STATUS;
  const buf = chunkHeader(t, doneFlag(done), type, payload, payload);
  let at = headerSize(t);
  buf.writeUInt32BE(contextId, at);
  at += 4;
  if (wide) {
    buf.writeUInt32BE(extents.length, at);
    at += 4;
  }
  for (const e of extents) {
    if (wide) {
      buf.writeBigUInt64BE(BigInt(e.length), at);
      buf.writeBigUInt64BE(BigInt(e.flags), at + 8);
      at += 16;
    } else {
      buf.writeUInt32BE(e.length, at);
      buf.writeUInt32BE(e.flags, at + 4);
      at += 8;
    }
  }
  return buf;
}
