// BLOCK_STATUS from the map (semantics T6): base:allocation flags per extent, and the iomapd:mapping
// context (type and sharing; bits documented in docs/CONTEXTS.md). Adjacent extents with equal
// answers merge; the first extent is trimmed to start at `offset`; the answer never runs past
// the volume's end and is capped at MAX_EXTENTS (the caller asks again for the rest).
import type { ExtentInfo } from '../fs/mapping.ts';
import type { DeviceExtent, MappingExtent } from './block-device.ts';
import type { VolumeContext } from './volume-context.ts';

const MAX_EXTENTS = 1 << 16;

/** iomapd:mapping flag bits: the low two bits are the type, bit 2 says "shared". */
export const MappingStatus = {
  HOLE: 0,
  UNWRITTEN: 1,
  MAPPED: 2,
  INLINE: 3,
  SHARED: 4,
} as const;

function walk<T extends { length: number }>(vc: VolumeContext, offset: number, length: number, key: (e: ExtentInfo) => number, make: (len: number, k: number) => T): T[] {
  const out: Array<{ len: number; k: number }> = [];
  const end = offset + length;
  for (const e of vc.mapper.extents(vc.name, offset, end)) {
    const start = Math.max(e.offset, offset);
    const len = e.offset + e.length - start;
    if (len <= 0) continue;
    const k = key(e);
    const last = out[out.length - 1];
    if (last && last.k === k) last.len += len;
    else if (out.length >= MAX_EXTENTS) break;
    else out.push({ len, k });
  }
  return out.map((x) => make(x.len, x.k));
}

export function allocationStatus(vc: VolumeContext, offset: number, length: number): DeviceExtent[] {
  // key: bit 0 hole, bit 1 zero
  return walk(vc, offset, length, (e) => (e.type === 'hole' ? 3 : e.type === 'unwritten' ? 2 : 0), (len, k) => ({ length: len, hole: (k & 1) !== 0, zero: (k & 2) !== 0 }));
}

export function mappingStatus(vc: VolumeContext, offset: number, length: number): MappingExtent[] {
  const code = (e: ExtentInfo): number =>
    (e.type === 'hole' ? MappingStatus.HOLE : e.type === 'unwritten' ? MappingStatus.UNWRITTEN : e.type === 'mapped' ? MappingStatus.MAPPED : MappingStatus.INLINE) +
    (e.shared ? MappingStatus.SHARED : 0);
  return walk(vc, offset, length, code, (len, k) => ({ length: len, flags: k }));
}
