// Extent values and the range operations for the three block maps: a volume's extent map
// (logical block -> physical block), the shared-refcount table (physical block -> count >= 2) and
// free space (physical block ranges). All positions and lengths here are in allocation blocks.
import type { RangeOps } from './range-map.ts';
// Values are packed into a tree leaf's Float64Array (btree.ts): block numbers stay below 2^53.

/** A run of physical blocks [start, start+len): free space, allocations, checkpoint blocks. */
export interface Run {
  start: number;
  len: number;
}

/** Extent types as stored; a hole is the absence of an extent. */
export const ExtentKind = {
  UNWRITTEN: 1,
  MAPPED: 2,
} as const;
export type ExtentKind = (typeof ExtentKind)[keyof typeof ExtentKind];

export interface Extent {
  readonly len: number;
  readonly kind: ExtentKind;
  readonly phys: number;
}

export const extentOps: RangeOps<Extent> = {
  width: 3,
  pack: (v, d, at) => {
    d[at] = v.len;
    d[at + 1] = v.phys;
    d[at + 2] = v.kind;
  },
  unpack: (d, at) => ({ len: d[at]!, kind: d[at + 2] as ExtentKind, phys: d[at + 1]! }),
  slice: (v, skip, len) => ({ len, kind: v.kind, phys: v.phys + skip }),
  join: (a, b) => (a.kind === b.kind && a.phys + a.len === b.phys ? { len: a.len + b.len, kind: a.kind, phys: a.phys } : null),
};

/** A run of physical blocks referenced `count` (>= 2) times. Count 1 is implicit for used blocks. */
export interface SharedRun {
  readonly len: number;
  readonly count: number;
}

export const sharedOps: RangeOps<SharedRun> = {
  width: 2,
  pack: (v, d, at) => {
    d[at] = v.len;
    d[at + 1] = v.count;
  },
  unpack: (d, at) => ({ len: d[at]!, count: d[at + 1]! }),
  slice: (v, _skip, len) => ({ len, count: v.count }),
  join: (a, b) => (a.count === b.count ? { len: a.len + b.len, count: a.count } : null),
};

export interface FreeRun {
  readonly len: number;
}

export const freeOps: RangeOps<FreeRun> = {
  width: 1,
  pack: (v, d, at) => {
    d[at] = v.len;
  },
  unpack: (d, at) => ({ len: d[at]! }),
  slice: (_v, _skip, len) => ({ len }),
  join: (a, b) => ({ len: a.len + b.len }),
};
