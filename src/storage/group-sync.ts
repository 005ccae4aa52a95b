// Group commit for fdatasync. Callers that overlap share syncs: a sync covers the writes that had
// completed when it started, so a caller waits for the running sync if that covers its writes,
// and otherwise for the next one, which starts when the running one ends and is shared by every
// caller that arrives meanwhile. Writes still in flight when a sync starts may land after it, so
// they count only once they completed (noteWrite), and a later sync must cover them.
//
// One batcher serves the image store's data syncs and the raw-file device's FUA and FLUSH.

interface RunningSync {
  readonly upto: number;
  done: Promise<void>;
}

export class GroupSync {
  readonly #syncOnce: () => Promise<void>;
  #completed = 0;
  #synced = 0;
  #running: RunningSync | null = null;
  #queued: Promise<void> | null = null;

  /** `syncOnce` is one fdatasync (or its equivalent); a failure rejects every caller it covered. */
  constructor(syncOnce: () => Promise<void>) {
    this.#syncOnce = syncOnce;
  }

  /** Counts a write that has completed: call after it resolved, never before. */
  noteWrite(): void {
    this.#completed++;
  }

  /** Writes completed so far (a mark for markSynced). */
  get completed(): number {
    return this.#completed;
  }

  /** True when some completed write is not yet covered by a finished sync. */
  get unsynced(): boolean {
    return this.#completed > this.#synced;
  }

  /** Records a sync done outside this batcher that started when `completed` was `mark`. */
  markSynced(mark: number): void {
    this.#synced = Math.max(this.#synced, mark);
  }

  /** Resolves once every write completed before the call is durable. */
  sync(): Promise<void> {
    const need = this.#completed;
    if (this.#queued !== null) return this.#queued;
    const running = this.#running;
    if (running === null) return this.#start();
    if (running.upto >= need) return running.done;
    this.#queued = running.done
      .catch(() => {})
      .then(() => {
        this.#queued = null;
        return this.#start();
      });
    return this.#queued;
  }

  #start(): Promise<void> {
    const entry: RunningSync = { upto: this.#completed, done: Promise.resolve() };
    this.#running = entry; // before the sync starts, so its end always finds it
    entry.done = this.#run(entry);
    return entry.done;
  }

  async #run(entry: RunningSync): Promise<void> {
    try {
      await this.#syncOnce();
    } finally {
      if (this.#running === entry) this.#running = null;
    }
    this.markSynced(entry.upto);
  }
}
