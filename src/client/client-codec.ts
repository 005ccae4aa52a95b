// The client's side of the NBD wire (doc/proto.md): encoders for what a client sends and decoders
// for what a server answers, pure functions over Buffer on the constants of src/protocol. A
// decoder returns a value, or how many more bytes it needs, or a protocol error; never throws on
// short input. Only what import/export needs: fixed newstyle, structured replies, meta contexts,
// compact (not extended) headers.
import {
  IHAVEOPT,
  NBDMAGIC,
  OPTION_REPLY_MAGIC,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  Size,
} from '../protocol/constants.ts';
import { type Decoded, decoded, needMore, protocolError } from '../protocol/result.ts';

export function decodeGreeting(buf: Buffer): Decoded<{ handshakeFlags: number }> {
  if (buf.length < Size.GREETING) return needMore(Size.GREETING - buf.length);
  if (buf.readBigUInt64BE(0) !== NBDMAGIC || buf.readBigUInt64BE(8) !== IHAVEOPT) {
    return protocolError('bad-magic', 'not an NBD server (no NBDMAGIC/IHAVEOPT greeting; oldstyle servers are not supported)');
  }
  return decoded({ handshakeFlags: buf.readUInt16BE(16) }, Size.GREETING);
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(Size.CLIENT_FLAGS);
  b.writeUInt32BE(flags, 0);
  return b;
}

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(Size.OPTION_HEADER);
  h.writeBigUInt64BE(IHAVEOPT, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

function lengthPrefixed(text: string): Buffer {
  const s = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(4 + s.length);
  b.writeUInt32BE(s.length, 0);
  s.copy(b, 4);
  return b;
}

/** NBD_OPT_SET_META_CONTEXT's data: the export name and the queries. */
export function metaContextData(exportName: string, queries: readonly string[]): Buffer {
  const count = Buffer.alloc(4);
  count.writeUInt32BE(queries.length, 0);
  return Buffer.concat([lengthPrefixed(exportName), count, ...queries.map(lengthPrefixed)]);
}

/** NBD_OPT_GO's data: the export name and the info types asked for. */
export function goData(exportName: string, infos: readonly number[]): Buffer {
  const list = Buffer.alloc(2 + 2 * infos.length);
  list.writeUInt16BE(infos.length, 0);
  infos.forEach((t, i) => list.writeUInt16BE(t, 2 + 2 * i));
  return Buffer.concat([lengthPrefixed(exportName), list]);
}

export interface OptionReply {
  readonly option: number;
  readonly type: number;
  readonly data: Buffer;
}

/** Option replies longer than this end the connection (iomapd's own options are capped at 64 KiB). */
const MAX_OPTION_REPLY = 16 * 1024 * 1024;

export function decodeOptionReply(buf: Buffer): Decoded<OptionReply> {
  const H = Size.OPTION_REPLY_HEADER;
  if (buf.length < H) return needMore(H - buf.length);
  if (buf.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) return protocolError('bad-magic', 'bad option reply magic');
  const length = buf.readUInt32BE(16);
  if (length > MAX_OPTION_REPLY) return protocolError('too-long', `option reply of ${length} bytes`);
  if (buf.length < H + length) return needMore(H + length - buf.length);
  return decoded({ option: buf.readUInt32BE(8), type: buf.readUInt32BE(12), data: buf.subarray(H, H + length) }, H + length);
}

/** A compact request header (28 bytes); a WRITE's payload follows it. */
export function encodeRequest(flags: number, command: number, cookie: bigint, offset: number, length: number): Buffer {
  const b = Buffer.alloc(Size.REQUEST);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(command, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return b;
}

export type ReplyHeader =
  | { readonly kind: 'simple'; readonly error: number; readonly cookie: bigint }
  | { readonly kind: 'structured'; readonly flags: number; readonly type: number; readonly cookie: bigint; readonly length: number };

/** A reply header without its payload (a simple READ reply's data length is known only to the caller). */
export function decodeReplyHeader(buf: Buffer): Decoded<ReplyHeader> {
  if (buf.length < 4) return needMore(4 - buf.length);
  const magic = buf.readUInt32BE(0);
  if (magic === SIMPLE_REPLY_MAGIC) {
    if (buf.length < Size.SIMPLE_REPLY) return needMore(Size.SIMPLE_REPLY - buf.length);
    return decoded({ kind: 'simple', error: buf.readUInt32BE(4), cookie: buf.readBigUInt64BE(8) }, Size.SIMPLE_REPLY);
  }
  if (magic === STRUCTURED_REPLY_MAGIC) {
    const H = Size.STRUCTURED_REPLY_HEADER;
    if (buf.length < H) return needMore(H - buf.length);
    return decoded(
      { kind: 'structured', flags: buf.readUInt16BE(4), type: buf.readUInt16BE(6), cookie: buf.readBigUInt64BE(8), length: buf.readUInt32BE(16) },
      H,
    );
  }
  return protocolError('bad-magic', `bad reply magic 0x${magic.toString(16)}`);
}
