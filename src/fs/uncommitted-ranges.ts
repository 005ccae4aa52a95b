// Logical block ranges whose extent-map change (a MAP or SET_KIND op) is applied in memory but not
// yet durable. A write landing there is not a pure overwrite even when the block reads as MAPPED
// and exclusive: after a crash the map would fall back to the committed state (a hole, unwritten
// space, the pre-COW block), so a FUA write there must commit the journal too (semantics E11, D2).
//
// Bounded: past CAP pending ranges in one volume, the whole volume counts as uncommitted until a
// commit covers everything logged so far. That only sends more FUA writes down the full path.

interface Range {
  readonly start: number;
  readonly end: number;
  readonly tag: number;
}

interface VolumeRanges {
  /** In tag order (ops are logged in order), so durable ones form a prefix. */
  ranges: Range[];
  /** Set when CAP was reached: everything up to this tag counts as uncommitted. */
  saturatedUpTo: number;
}

const CAP = 4096;

export class UncommittedRanges {
  private readonly byVolume = new Map<number, VolumeRanges>();

  /** Op `tag` changed the map of blocks [start, start+len) of volume `vol`. */
  add(vol: number, start: number, len: number, tag: number): void {
    let v = this.byVolume.get(vol);
    if (!v) {
      v = { ranges: [], saturatedUpTo: 0 };
      this.byVolume.set(vol, v);
    }
    if (v.saturatedUpTo > 0 || v.ranges.length >= CAP) {
      v.saturatedUpTo = tag;
      v.ranges = [];
      return;
    }
    v.ranges.push({ start, end: start + len, tag });
  }

  /** Whether any block of [start, end) of `vol` has a map change that is not durable yet. */
  overlaps(vol: number, start: number, end: number): boolean {
    const v = this.byVolume.get(vol);
    if (!v) return false;
    if (v.saturatedUpTo > 0) return true;
    for (const r of v.ranges) if (r.start < end && start < r.end) return true;
    return false;
  }

  /** Every op up to `tag` is durable. */
  releaseDurable(tag: number): void {
    for (const [vol, v] of this.byVolume) {
      if (v.saturatedUpTo > 0 && v.saturatedUpTo <= tag) v.saturatedUpTo = 0;
      let n = 0;
      while (n < v.ranges.length && v.ranges[n]!.tag <= tag) n++;
      if (n > 0) v.ranges.splice(0, n);
      if (v.saturatedUpTo === 0 && v.ranges.length === 0) this.byVolume.delete(vol);
    }
  }
}
