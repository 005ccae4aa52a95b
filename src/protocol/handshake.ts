// Handshake codec: the greeting, client flags, option requests and option replies
// (proto.md "Fixed newstyle negotiation"). Pure functions over Buffer.
import { IHAVEOPT, Info, NBDMAGIC, OPTION_REPLY_MAGIC, Size } from './constants.ts';
import { decoded, malformed, needMore, parsed, protocolError, type Decoded, type Parsed } from './result.ts';
import { decodeString } from './strings.ts';

/** Option payloads larger than this are treated as an attack: the connection is closed. */
export const MAX_OPTION_LENGTH = 64 * 1024;

export function encodeGreeting(handshakeFlags: number): Buffer {
  const buf = Buffer.allocUnsafe(Size.GREETING);
  buf.writeBigUInt64BE(NBDMAGIC, 0);
  buf.writeBigUInt64BE(IHAVEOPT, 8);
  buf.writeUInt16BE(handshakeFlags, 16);
  return buf;
}

export function decodeClientFlags(buf: Buffer): Decoded<number> {
  if (buf.length < Size.CLIENT_FLAGS) return needMore(Size.CLIENT_FLAGS - buf.length);
  return decoded(buf.readUInt32BE(0), Size.CLIENT_FLAGS);
}

export interface OptionHeader {
  readonly option: number;
  readonly length: number;
}

/** The 16-byte option header. The payload (`length` bytes) follows and is read separately. */
export function decodeOptionHeader(buf: Buffer): Decoded<OptionHeader> {
  if (buf.length < Size.OPTION_HEADER) return needMore(Size.OPTION_HEADER - buf.length);
  if (buf.readBigUInt64BE(0) !== IHAVEOPT) return protocolError('bad-magic', 'option request without IHAVEOPT');
  const option = buf.readUInt32BE(8);
  const length = buf.readUInt32BE(12);
  if (length > MAX_OPTION_LENGTH) {
    return protocolError('too-long', `option payload of ${length} bytes exceeds ${MAX_OPTION_LENGTH}`);
  }
  return decoded({ option, length }, Size.OPTION_HEADER);
}

/** INFO and GO payload: u32 name length, name, u16 count, count x u16 info type. */
export interface InfoRequest {
  readonly name: string;
  readonly infos: readonly number[];
}

export function parseInfoRequest(data: Buffer): Parsed<InfoRequest> {
  if (data.length < 6) return malformed('INFO/GO payload shorter than 6 bytes');
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6) return malformed('INFO/GO export name runs past the option');
  const name = decodeString(data, 4, nameLength, 'export name');
  if (!name.ok) return name;
  const countAt = 4 + nameLength;
  const count = data.readUInt16BE(countAt);
  if (data.length !== countAt + 2 + 2 * count) return malformed('INFO/GO request count does not match the option length');
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(countAt + 2 + 2 * i));
  return parsed({ name: name.value, infos });
}

/** LIST_META_CONTEXT and SET_META_CONTEXT payload: u32 name length, name, u32 count, queries. */
export interface MetaContextRequest {
  readonly exportName: string;
  readonly queries: readonly string[];
}

export function parseMetaContextRequest(data: Buffer): Parsed<MetaContextRequest> {
  if (data.length < 8) return malformed('meta context payload shorter than 8 bytes');
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 8) return malformed('meta context export name runs past the option');
  const exportName = decodeString(data, 4, nameLength, 'export name');
  if (!exportName.ok) return exportName;
  let at = 4 + nameLength;
  const count = data.readUInt32BE(at);
  at += 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (data.length - at < 4) return malformed('meta context query runs past the option');
    const len = data.readUInt32BE(at);
    at += 4;
    if (len > data.length - at) return malformed('meta context query runs past the option');
    const query = decodeString(data, at, len, 'meta context query');
    if (!query.ok) return query;
    queries.push(query.value);
    at += len;
  }
  if (at !== data.length) return malformed('trailing bytes after the meta context queries');
  return parsed({ exportName: exportName.value, queries });
}

/** One option reply: header and payload in one buffer (option replies are small). */
export function encodeOptionReply(option: number, type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const buf = Buffer.allocUnsafe(Size.OPTION_REPLY_HEADER + payload.length);
  buf.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  buf.writeUInt32BE(option, 8);
  buf.writeUInt32BE(type, 12);
  buf.writeUInt32BE(payload.length, 16);
  payload.copy(buf, Size.OPTION_REPLY_HEADER);
  return buf;
}

const stringBytes = (s: string): Buffer => Buffer.from(s, 'utf8');

/** REP_SERVER payload for LIST: u32 name length, name, then the optional description. */
export function encodeServerEntry(name: string, description = ''): Buffer {
  const nameBytes = stringBytes(name);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(nameBytes.length, 0);
  return Buffer.concat([head, nameBytes, stringBytes(description)]);
}

/** REP_META_CONTEXT payload: u32 context id, name. */
export function encodeMetaContextEntry(id: number, name: string): Buffer {
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(id, 0);
  return Buffer.concat([head, stringBytes(name)]);
}

/** REP_INFO payload for INFO_EXPORT: u16 type, u64 size, u16 transmission flags. */
export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const buf = Buffer.allocUnsafe(12);
  buf.writeUInt16BE(Info.EXPORT, 0);
  buf.writeBigUInt64BE(BigInt(size), 2);
  buf.writeUInt16BE(transmissionFlags, 10);
  return buf;
}

/** REP_INFO payload for INFO_NAME or INFO_DESCRIPTION: u16 type, string. */
export function encodeInfoString(type: typeof Info.NAME | typeof Info.DESCRIPTION, text: string): Buffer {
  const head = Buffer.allocUnsafe(2);
  head.writeUInt16BE(type, 0);
  return Buffer.concat([head, stringBytes(text)]);
}

/** REP_INFO payload for INFO_BLOCK_SIZE: u16 type, u32 minimum, u32 preferred, u32 maximum payload. */
export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const buf = Buffer.allocUnsafe(14);
  buf.writeUInt16BE(Info.BLOCK_SIZE, 0);
  buf.writeUInt32BE(minimum, 2);
  buf.writeUInt32BE(preferred, 6);
  buf.writeUInt32BE(maximum, 10);
  return buf;
}

/** The reply to NBD_OPT_EXPORT_NAME: u64 size, u16 flags, then 124 zeroes unless NO_ZEROES. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const buf = Buffer.alloc(Size.EXPORT_NAME_REPLY + (noZeroes ? 0 : Size.EXPORT_NAME_PADDING));
  buf.writeBigUInt64BE(BigInt(size), 0);
  buf.writeUInt16BE(transmissionFlags, 8);
  return buf;
}
