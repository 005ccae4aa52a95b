// Test-only NBD wire bytes, written and read by hand. Nothing here imports src/protocol: the bytes
// tests feed the server and the bytes they expect back are built from the spec's numbers
// (protocol.md §1), so the server's encoders never vouch for its own decoders (style.md habit 2).

/** Wire numbers, written out again from protocol.md §1 on purpose (not imported from src). */
export const W = {
  NBDMAGIC: 0x4e42444d41474943n,
  IHAVEOPT: 0x49484156454f5054n,
  OPTION_REPLY_MAGIC: 0x3e889045565a9n,
  REQUEST_MAGIC: 0x25609513,
  EXTENDED_REQUEST_MAGIC: 0x21e41c71,
  SIMPLE_REPLY_MAGIC: 0x67446698,
  STRUCTURED_REPLY_MAGIC: 0x668e33ef,
  EXTENDED_REPLY_MAGIC: 0x6e8a278c,
} as const;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

export const TX = {
  HAS_FLAGS: 0x0001,
  READ_ONLY: 0x0002,
  SEND_FLUSH: 0x0004,
  SEND_FUA: 0x0008,
  ROTATIONAL: 0x0010,
  SEND_TRIM: 0x0020,
  SEND_WRITE_ZEROES: 0x0040,
  SEND_DF: 0x0080,
  CAN_MULTI_CONN: 0x0100,
  SEND_RESIZE: 0x0200,
  SEND_CACHE: 0x0400,
  SEND_FAST_ZERO: 0x0800,
} as const;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;

export const FLAG = {
  FUA: 0x01,
  NO_HOLE: 0x02,
  DF: 0x04,
  REQ_ONE: 0x08,
  FAST_ZERO: 0x10,
  PAYLOAD_LEN: 0x20,
} as const;

export const CHUNK = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  BLOCK_STATUS_EXT: 6,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;

export const DONE = 0x0001;

export const ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** What iomapd advertises for a writable MemoryDevice over simple replies (nbdkit memory's 0x0d6d). */
export const MEMORY_FLAGS = 0x0d6d;

/** A big-endian byte builder with its own arithmetic (BigInt shifts, no Buffer write helpers). */
export class WireBuilder {
  private readonly out: number[] = [];

  private uint(value: bigint | number, width: number): this {
    let v = BigInt(value);
    if (v < 0n || v >= 1n << BigInt(8 * width)) throw new Error(`${value} does not fit in ${width} bytes`);
    const bytes: number[] = [];
    for (let i = 0; i < width; i++) {
      bytes.unshift(Number(v & 0xffn));
      v >>= 8n;
    }
    this.out.push(...bytes);
    return this;
  }

  u16(v: number): this {
    return this.uint(v, 2);
  }
  u32(v: number): this {
    return this.uint(v, 4);
  }
  u64(v: bigint | number): this {
    return this.uint(v, 8);
  }
  /** A string's UTF-8 bytes with no length prefix. */
  str(text: string): this {
    return this.raw(Buffer.from(text, 'utf8'));
  }
  /** u32 length, then the UTF-8 bytes. */
  lstr(text: string): this {
    const b = Buffer.from(text, 'utf8');
    return this.u32(b.length).raw(b);
  }
  raw(bytes: Uint8Array): this {
    for (const b of bytes) this.out.push(b);
    return this;
  }
  zeroes(n: number): this {
    for (let i = 0; i < n; i++) this.out.push(0);
    return this;
  }
  build(): Buffer {
    return Buffer.from(this.out);
  }
}

export const wire = (): WireBuilder => new WireBuilder();

/** Reads big-endian integers by hand, with bounds checks that throw (a test failure, not a hang). */
export function be(buf: Buffer, at: number, width: number): bigint {
  if (at + width > buf.length) throw new Error(`reading ${width} bytes at ${at} of a ${buf.length}-byte buffer`);
  let v = 0n;
  for (let i = 0; i < width; i++) v = (v << 8n) | BigInt(buf[at + i]!);
  return v;
}
export const be16 = (buf: Buffer, at: number): number => Number(be(buf, at, 2));
export const be32 = (buf: Buffer, at: number): number => Number(be(buf, at, 4));
export const be64 = (buf: Buffer, at: number): bigint => be(buf, at, 8);

// ---- client to server ----

export const clientFlags = (flags: number): Buffer => wire().u32(flags).build();

/** IHAVEOPT, option, length, data. `length` may lie (for tests of absurd lengths). */
export function option(opt: number, data: Buffer = Buffer.alloc(0), length: number = data.length): Buffer {
  return wire().u64(W.IHAVEOPT).u32(opt).u32(length).raw(data).build();
}

/** INFO/GO data: u32 name length, name, u16 count, the info types. */
export function infoData(name: string, infos: readonly number[] = []): Buffer {
  const b = wire().lstr(name).u16(infos.length);
  for (const i of infos) b.u16(i);
  return b.build();
}

/** LIST/SET_META_CONTEXT data: u32 name length, name, u32 count, queries as u32 length + string. */
export function metaData(name: string, queries: readonly string[]): Buffer {
  const b = wire().lstr(name).u32(queries.length);
  for (const q of queries) b.lstr(q);
  return b.build();
}

export interface RequestFields {
  readonly type: number;
  readonly flags?: number;
  readonly cookie?: bigint;
  readonly offset?: bigint | number;
  readonly length?: bigint | number;
  /** WRITE (or PAYLOAD_LEN) data to append after the header. */
  readonly payload?: Buffer;
  /** Overrides the magic (for bad-magic tests). */
  readonly magic?: number;
}

/** A 28-byte compact request, then its payload. */
export function request(r: RequestFields): Buffer {
  const b = wire()
    .u32(r.magic ?? W.REQUEST_MAGIC)
    .u16(r.flags ?? 0)
    .u16(r.type)
    .u64(r.cookie ?? 0n)
    .u64(r.offset ?? 0)
    .u32(Number(r.length ?? r.payload?.length ?? 0));
  if (r.payload !== undefined) b.raw(r.payload);
  return b.build();
}

/** A 32-byte extended request, then its payload. */
export function extRequest(r: RequestFields): Buffer {
  const b = wire()
    .u32(r.magic ?? W.EXTENDED_REQUEST_MAGIC)
    .u16(r.flags ?? 0)
    .u16(r.type)
    .u64(r.cookie ?? 0n)
    .u64(r.offset ?? 0)
    .u64(r.length ?? r.payload?.length ?? 0);
  if (r.payload !== undefined) b.raw(r.payload);
  return b.build();
}

// ---- server to client: expected bytes ----

export function optionReply(opt: number, type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  return wire().u64(W.OPTION_REPLY_MAGIC).u32(opt).u32(type).u32(payload.length).raw(payload).build();
}

export const infoExport = (size: number | bigint, flags: number): Buffer => wire().u16(INFO.EXPORT).u64(size).u16(flags).build();
export const infoString = (type: number, text: string): Buffer => wire().u16(type).str(text).build();
export const infoBlockSize = (min: number, preferred: number, max: number): Buffer =>
  wire().u16(INFO.BLOCK_SIZE).u32(min).u32(preferred).u32(max).build();
export const serverEntry = (name: string, description = ''): Buffer => wire().lstr(name).str(description).build();
export const metaEntry = (id: number, name: string): Buffer => wire().u32(id).str(name).build();

// ---- server to client: parsing ----

export interface OptionReply {
  readonly option: number;
  readonly type: number;
  readonly payload: Buffer;
}

/** One whole option reply (header and payload, nothing more); throws on a bad magic or length. */
export function parseOptionReply(buf: Buffer): OptionReply {
  if (be64(buf, 0) !== W.OPTION_REPLY_MAGIC) throw new Error(`bad option reply magic in ${buf.toString('hex')}`);
  const length = be32(buf, 16);
  if (buf.length !== 20 + length) throw new Error(`option reply says ${length} payload bytes, has ${buf.length - 20}`);
  return { option: be32(buf, 8), type: be32(buf, 12), payload: buf.subarray(20) };
}

export const isErrorReply = (type: number): boolean => type >= 0x80000000;

/** A decoded INFO_EXPORT payload. */
export function parseInfoExport(payload: Buffer): { size: bigint; flags: number } {
  if (be16(payload, 0) !== INFO.EXPORT || payload.length !== 12) throw new Error(`not INFO_EXPORT: ${payload.toString('hex')}`);
  return { size: be64(payload, 2), flags: be16(payload, 10) };
}

/** One reply chunk (structured: 20-byte header; extended: 32-byte header). */
export interface Chunk {
  readonly flags: number;
  readonly type: number;
  readonly cookie: bigint;
  /** Extended headers only: the request offset the reply echoes. */
  readonly offset?: bigint;
  readonly payload: Buffer;
}

export interface ErrorPayload {
  readonly error: number;
  readonly message: string;
  readonly offset?: bigint;
}

export function parseErrorPayload(c: Chunk): ErrorPayload {
  const error = be32(c.payload, 0);
  const len = be16(c.payload, 4);
  const message = c.payload.subarray(6, 6 + len).toString('utf8');
  if (c.type === CHUNK.ERROR_OFFSET) {
    if (c.payload.length !== 6 + len + 8) throw new Error('ERROR_OFFSET length mismatch');
    return { error, message, offset: be64(c.payload, 6 + len) };
  }
  if (c.payload.length !== 6 + len) throw new Error('ERROR length mismatch');
  return { error, message };
}

export interface Extent {
  readonly length: bigint;
  readonly flags: bigint;
}

/** BLOCK_STATUS (5) or BLOCK_STATUS_EXT (6) payload. */
export function parseBlockStatus(c: Chunk): { id: number; extents: Extent[] } {
  const id = be32(c.payload, 0);
  const extents: Extent[] = [];
  if (c.type === CHUNK.BLOCK_STATUS) {
    if ((c.payload.length - 4) % 8 !== 0) throw new Error('BLOCK_STATUS length is not 4 + 8n');
    for (let at = 4; at < c.payload.length; at += 8) {
      extents.push({ length: BigInt(be32(c.payload, at)), flags: BigInt(be32(c.payload, at + 4)) });
    }
  } else if (c.type === CHUNK.BLOCK_STATUS_EXT) {
    const count = be32(c.payload, 4);
    if (c.payload.length !== 8 + 16 * count) throw new Error('BLOCK_STATUS_EXT length is not 8 + 16 * count');
    for (let at = 8; at < c.payload.length; at += 16) {
      extents.push({ length: be64(c.payload, at), flags: be64(c.payload, at + 8) });
    }
  } else {
    throw new Error(`chunk type ${c.type} is not block status`);
  }
  return { id, extents };
}

/** Bytes that differ with position and seed and are never zero, so misplaced data shows. */
export function pattern(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = ((i * 31 + seed * 7) % 251) + 1;
  return out;
}
