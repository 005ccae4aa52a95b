// Reply framing for the header style a connection negotiated. Each function returns whole reply
// buffers; the connection writes them as one unit so no other reply's bytes interleave.
import { Size } from '../protocol/constants.ts';
import {
  encodeErrorChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeSimpleReply,
  type ChunkTarget,
  type HeaderStyle,
} from '../protocol/transmission.ts';
import { takeReplyBuffer } from './io-buffers.ts';
import type { ValidRequest } from './validate.ts';

/** The identity a reply echoes: the cookie always, the request offset as sent in extended headers. */
export interface ReplyTo {
  readonly cookie: bigint;
  readonly wireOffset: bigint;
}

export const chunkTarget = (style: 'structured' | 'extended', to: ReplyTo): ChunkTarget => ({
  style,
  cookie: to.cookie,
  requestOffset: to.wireOffset,
});

/** Success with nothing to say: a simple reply, or NONE+DONE where every reply must be a chunk. */
export function successReply(style: HeaderStyle, to: ReplyTo): Buffer {
  if (style === 'extended') return encodeNoneChunk(chunkTarget(style, to));
  return encodeSimpleReply(to.cookie, 0);
}

/** An error reply. Structured clients get an ERROR chunk with a message they can show. */
export function errorReply(style: HeaderStyle, to: ReplyTo, errno: number, message: string): Buffer {
  if (style === 'simple') return encodeSimpleReply(to.cookie, errno);
  return encodeErrorChunk(chunkTarget(style, to), errno, message);
}

/** Bytes in front of READ data: the reply header (and the OFFSET_DATA offset). */
export function readHeaderRoom(style: HeaderStyle): number {
  if (style === 'simple') return Size.SIMPLE_REPLY;
  if (style === 'structured') return Size.STRUCTURED_REPLY_HEADER + 8;
  return Size.EXTENDED_REPLY_HEADER + 8;
}

/**
 * A READ reply buffer: room for the header, then `req.length` bytes the device reads into, so the
 * data goes from the device to the socket without another copy. Call `finishReadReply` after.
 * It comes from the pool (io-buffers.ts); the transport gives it back once the socket has sent it.
 */
export function allocReadReply(style: HeaderStyle, req: ValidRequest): { reply: Buffer; data: Buffer } {
  const room = readHeaderRoom(style);
  const reply = takeReplyBuffer(room + req.length);
  return { reply, data: reply.subarray(room) };
}

export function finishReadReply(style: HeaderStyle, req: ValidRequest, reply: Buffer): Buffer {
  const header =
    style === 'simple'
      ? encodeSimpleReply(req.cookie, 0)
      : encodeOffsetDataHeader(chunkTarget(style, req), BigInt(req.offset), req.length, true);
  header.copy(reply, 0);
  return reply;
}
