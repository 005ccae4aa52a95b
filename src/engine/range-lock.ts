// Byte-range lock for write-type requests on one volume (semantics Z6, K1). A request waits for
// every overlapping request that arrived before it, held or still waiting, so conflicting requests
// run in arrival order and nobody waits on a later arrival (no deadlock). Reads never lock.

interface Entry {
  readonly start: number;
  readonly end: number;
  readonly released: Promise<void>;
}

export class RangeLock {
  private entries = new Set<Entry>();

  /** Waits for [start, end) and returns the release function (call exactly once). */
  async acquire(start: number, end: number): Promise<() => void> {
    const before = [...this.entries].filter((e) => e.start < end && start < e.end).map((e) => e.released);
    let release!: () => void;
    const entry: Entry = { start, end, released: new Promise<void>((r) => (release = r)) };
    this.entries.add(entry);
    if (before.length > 0) await Promise.all(before);
    return () => {
      this.entries.delete(entry);
      release();
    };
  }

  get size(): number {
    return this.entries.size;
  }
}
