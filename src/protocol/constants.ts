// Every NBD wire constant, in one place (doc/proto.md of the NetworkBlockDevice/nbd repository,
// plus the extension-ext-header branch). Log names are derived from these tables in names.ts.
// All integers on the wire are big-endian.

/** "NBDMAGIC": the first 8 bytes the server sends. */
export const NBDMAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": in the greeting and at the start of every option request. */
export const IHAVEOPT = 0x49484156454f5054n;
/** Option reply magic. Below 2^53, so exact as a number too. */
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;

export const REQUEST_MAGIC = 0x25609513;
export const EXTENDED_REQUEST_MAGIC = 0x21e41c71;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const EXTENDED_REPLY_MAGIC = 0x6e8a278c;

/** Handshake flags (u16, server to client). */
export const HandshakeFlag = {
  FIXED_NEWSTYLE: 0x0001,
  NO_ZEROES: 0x0002,
} as const;

/** Client flags (u32, client to server). Any other bit closes the connection. */
export const ClientFlag = {
  C_FIXED_NEWSTYLE: 0x00000001,
  C_NO_ZEROES: 0x00000002,
} as const;

/** Option types (NBD_OPT_*). */
export const Opt = {
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

/** Option reply types. Errors have bit 31 set; written as literals so no shift goes negative. */
export const Rep = {
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
  ERR_EXT_HEADER_REQD: 0x8000000a,
} as const;

/** Info types carried in REP_INFO (u16). */
export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags (u16). */
export const TxFlag = {
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
  BLOCK_STATUS_PAYLOAD: 0x1000,
} as const;

/** Commands (u16). */
export const Cmd = {
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

/** Command flags (u16). */
export const CmdFlag = {
  FUA: 0x0001,
  NO_HOLE: 0x0002,
  DF: 0x0004,
  REQ_ONE: 0x0008,
  FAST_ZERO: 0x0010,
  PAYLOAD_LEN: 0x0020,
} as const;

/** Structured reply chunk flags (u16). */
export const ReplyFlag = {
  DONE: 0x0001,
} as const;

/** Structured reply chunk types (u16). Error types have bit 15 set: 0x8001, 0x8002. */
export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  BLOCK_STATUS_EXT: 6,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;

/** base:allocation block status flags. */
export const StateFlag = {
  HOLE: 0x1,
  ZERO: 0x2,
} as const;

/** NBD error values: protocol values, never the host's errno. */
export const NbdErr = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export type NbdErrno = (typeof NbdErr)[keyof typeof NbdErr];

/** Fixed sizes of wire structures, in bytes. */
export const Size = {
  GREETING: 18, // NBDMAGIC u64, IHAVEOPT u64, handshake flags u16
  CLIENT_FLAGS: 4,
  OPTION_HEADER: 16, // IHAVEOPT u64, option u32, length u32
  OPTION_REPLY_HEADER: 20, // magic u64, option u32, type u32, length u32
  EXPORT_NAME_REPLY: 10, // size u64, flags u16 (+124 zeroes without NO_ZEROES)
  EXPORT_NAME_PADDING: 124,
  REQUEST: 28,
  EXTENDED_REQUEST: 32,
  SIMPLE_REPLY: 16,
  STRUCTURED_REPLY_HEADER: 20,
  EXTENDED_REPLY_HEADER: 32,
} as const;

/** The name of the one meta context iomapd shares with every NBD server. */
export const BASE_ALLOCATION = 'base:allocation';
/** iomapd's own context: each extent's mapping type and sharing (docs/CONTEXTS.md). */
export const IOMAPD_MAPPING = 'iomapd:mapping';
/** qemu's context for a volume's source layer: 0 hole, 1 this volume, 2+ its origins (docs/BACKUP.md). */
export const QEMU_ALLOCATION_DEPTH = 'qemu:allocation-depth';
/** qemu's dirty-bitmap contexts are this prefix plus a bitmap name; bit 0 is NBD_STATE_DIRTY. */
export const QEMU_DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:';
