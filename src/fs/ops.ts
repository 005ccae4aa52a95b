// Journal operations: the logical redo records of every metadata change. Each one is a complete,
// consistent state transition, replayed in order on top of the last checkpoint. Allocation choices
// are recorded (MAP carries the physical block), so replay is deterministic and never consults the
// allocator's policy.
//
// Encoding (little-endian), one op after another inside a journal transaction:
//   u8 code, then by code:
//   1 VOL_CREATE   u32 id, u32 flags, u64 size, str name          (str = u16 length + UTF-8)
//   2 VOL_DELETE   u32 id
//   3 VOL_RESIZE   u32 id, u64 size
//   4 VOL_SNAPSHOT u32 src, u32 id, u32 flags, str name
//   5 MAP          u32 vol, u64 start, u64 len, u8 kind (0 hole, 1 unwritten, 2 mapped), u64 phys
//   6 SET_KIND     u32 vol, u64 start, u64 len, u8 kind (1 or 2)
//   7 INLINE_WRITE u32 vol, u32 offset, u32 length, bytes
//   8 UNINLINE     u32 vol, u64 size, u8 hasBlock, u64 phys
//   9 VOL_SET_FLAGS u32 id, u32 flags (the new value of the settable flags; format version 2)
// Positions and lengths of MAP and SET_KIND are in allocation blocks; sizes are in bytes.
import { ByteReader, ByteWriter, corrupt } from '../util/bytes.ts';

export const OpCode = {
  VOL_CREATE: 1,
  VOL_DELETE: 2,
  VOL_RESIZE: 3,
  VOL_SNAPSHOT: 4,
  MAP: 5,
  SET_KIND: 6,
  INLINE_WRITE: 7,
  UNINLINE: 8,
  VOL_SET_FLAGS: 9,
} as const;

export type Op =
  | { code: typeof OpCode.VOL_CREATE; id: number; flags: number; size: number; name: string }
  | { code: typeof OpCode.VOL_DELETE; id: number }
  | { code: typeof OpCode.VOL_RESIZE; id: number; size: number }
  | { code: typeof OpCode.VOL_SNAPSHOT; src: number; id: number; flags: number; name: string }
  | { code: typeof OpCode.MAP; vol: number; start: number; len: number; kind: 0 | 1 | 2; phys: number }
  | { code: typeof OpCode.SET_KIND; vol: number; start: number; len: number; kind: 1 | 2 }
  | { code: typeof OpCode.INLINE_WRITE; vol: number; offset: number; data: Buffer }
  | { code: typeof OpCode.UNINLINE; vol: number; size: number; phys: number | null }
  | { code: typeof OpCode.VOL_SET_FLAGS; id: number; flags: number };

export function encodeOp(w: ByteWriter, op: Op): void {
  w.u8(op.code);
  switch (op.code) {
    case OpCode.VOL_CREATE:
      w.u32(op.id).u32(op.flags).u64(op.size).str(op.name);
      break;
    case OpCode.VOL_DELETE:
      w.u32(op.id);
      break;
    case OpCode.VOL_RESIZE:
      w.u32(op.id).u64(op.size);
      break;
    case OpCode.VOL_SNAPSHOT:
      w.u32(op.src).u32(op.id).u32(op.flags).str(op.name);
      break;
    case OpCode.MAP:
      w.u32(op.vol).u64(op.start).u64(op.len).u8(op.kind).u64(op.phys);
      break;
    case OpCode.SET_KIND:
      w.u32(op.vol).u64(op.start).u64(op.len).u8(op.kind);
      break;
    case OpCode.INLINE_WRITE:
      w.u32(op.vol).u32(op.offset).u32(op.data.length).bytes(op.data);
      break;
    case OpCode.UNINLINE:
      w.u32(op.vol).u64(op.size).u8(op.phys === null ? 0 : 1).u64(op.phys ?? 0);
      break;
    case OpCode.VOL_SET_FLAGS:
      w.u32(op.id).u32(op.flags);
      break;
  }
}

/** Decodes one op; bad bytes raise CORRUPT. */
export function decodeOp(r: ByteReader): Op {
  const code = r.u8();
  switch (code) {
    case OpCode.VOL_CREATE: {
      const id = r.u32();
      const flags = r.u32();
      const size = r.u64();
      return { code, id, flags, size, name: r.str() };
    }
    case OpCode.VOL_DELETE:
      return { code, id: r.u32() };
    case OpCode.VOL_RESIZE: {
      const id = r.u32();
      return { code, id, size: r.u64() };
    }
    case OpCode.VOL_SNAPSHOT: {
      const src = r.u32();
      const id = r.u32();
      const flags = r.u32();
      return { code, src, id, flags, name: r.str() };
    }
    case OpCode.MAP: {
      const vol = r.u32();
      const start = r.u64();
      const len = r.u64();
      const kind = r.u8();
      const phys = r.u64();
      if (kind > 2) throw corrupt(`journal: bad extent kind ${kind}`);
      return { code, vol, start, len, kind: kind as 0 | 1 | 2, phys };
    }
    case OpCode.SET_KIND: {
      const vol = r.u32();
      const start = r.u64();
      const len = r.u64();
      const kind = r.u8();
      if (kind !== 1 && kind !== 2) throw corrupt(`journal: bad extent kind ${kind}`);
      return { code, vol, start, len, kind };
    }
    case OpCode.INLINE_WRITE: {
      const vol = r.u32();
      const offset = r.u32();
      const n = r.u32();
      return { code, vol, offset, data: Buffer.from(r.bytes(n)) };
    }
    case OpCode.UNINLINE: {
      const vol = r.u32();
      const size = r.u64();
      const has = r.u8();
      const phys = r.u64();
      return { code, vol, size, phys: has ? phys : null };
    }
    case OpCode.VOL_SET_FLAGS: {
      const id = r.u32();
      return { code, id, flags: r.u32() };
    }
    default:
      throw corrupt(`journal: unknown op code ${code}`);
  }
}
