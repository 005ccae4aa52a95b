// Byte-range lock for write-type requests on one volume (semantics Z6, K1). A request waits for
// every overlapping request that arrived before it, held or still waiting, so conflicting requests
// run in arrival order and nobody waits on a later arrival (no deadlock). Reads never lock.
//
// Most writes overlap nothing in flight: tryAcquire takes the range at once, with no promise; an
// entry makes its release promise only when a later request has to wait for it.

class Entry {
  readonly start: number;
  readonly end: number;
  #released: Promise<void> | null = null;
  #resolve: (() => void) | null = null;
  #done = false;

  constructor(start: number, end: number) {
    this.start = start;
    this.end = end;
  }

  /** Settles when the holder releases (made on first use). */
  get released(): Promise<void> {
    if (this.#done) return Promise.resolve();
    return (this.#released ??= new Promise<void>((r) => (this.#resolve = r)));
  }

  release(): void {
    this.#done = true;
    this.#resolve?.();
  }
}

export class RangeLock {
  private entries = new Set<Entry>();

  /** Takes [start, end) now if nothing that arrived before overlaps it: the release function, else null. */
  tryAcquire(start: number, end: number): (() => void) | null {
    for (const e of this.entries) if (e.start < end && start < e.end) return null;
    return this.#enter(new Entry(start, end));
  }

  /** Waits for [start, end) and returns the release function (call exactly once). */
  async acquire(start: number, end: number): Promise<() => void> {
    const before: Promise<void>[] = [];
    for (const e of this.entries) if (e.start < end && start < e.end) before.push(e.released);
    const release = this.#enter(new Entry(start, end));
    if (before.length > 0) await Promise.all(before);
    return release;
  }

  #enter(entry: Entry): () => void {
    this.entries.add(entry);
    return () => {
      this.entries.delete(entry);
      entry.release();
    };
  }

  get size(): number {
    return this.entries.size;
  }
}
