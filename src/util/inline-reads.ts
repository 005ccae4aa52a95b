// Whether a pread may run on the calling (event-loop) thread instead of libuv's thread pool.
//
// A read the page cache can answer takes a couple of microseconds; sending it to the pool and
// back costs several times that in wake-ups (docs/PERFORMANCE.md). But a read that misses the
// cache blocks for as long as the disk takes, and on the event loop that stalls every
// connection. Node has no preadv2(RWF_NOWAIT) or mincore to ask first, so the gate learns after
// the fact: reads run inline while they stay fast. A slow one is either a cache miss or the
// thread being preempted (common when the client shares two cores with us); the process's block
// input count (getrusage ru_inblock, asked only after a slow read) tells them apart. A miss sends
// reads to the pool for a back-off period, after which one read probes inline again.
// Consecutive missing probes double the back-off, so a cold working set costs at most one
// stalled read per period.
//
// Modes: 'auto' (the above), 'never' (always the pool, as Node does by default) and 'always'
// (inline whatever it costs; for measurements).

export type InlineReadMode = 'auto' | 'never' | 'always';
export const INLINE_READ_MODES: readonly InlineReadMode[] = ['auto', 'never', 'always'];

/** Reads longer than this always go to the pool: a copy this size holds the loop long enough. */
const MAX_INLINE_BYTES = 256 * 1024;
/** A fixed allowance plus a copy rate far below memory's: slower than this was not a cache hit. */
const SLOW_BASE_NS = 150_000;
const SLOW_NS_PER_BYTE = 1; // 1 GB/s
const FIRST_BACKOFF_NS = 50_000_000;
const MAX_BACKOFF_NS = 2_000_000_000;

export class InlineReadGate {
  #mode: InlineReadMode;
  #pooledUntil = 0n;
  #backoffNs = FIRST_BACKOFF_NS;
  /** Counters for stats and tests. */
  inline = 0;
  pooled = 0;
  slow = 0;
  misses = 0;
  #inputBlocks = 0;

  readonly #inputBlocksNow: () => number;

  /** `inputBlocks` reads the process's block input count (asked only after a slow read). */
  constructor(mode: InlineReadMode, inputBlocks: () => number) {
    this.#mode = mode;
    this.#inputBlocksNow = inputBlocks;
    this.#inputBlocks = inputBlocks();
  }

  get mode(): InlineReadMode {
    return this.#mode;
  }

  set mode(mode: InlineReadMode) {
    this.#mode = mode;
    this.#pooledUntil = 0n;
    this.#backoffNs = FIRST_BACKOFF_NS;
    this.#inputBlocks = this.#inputBlocksNow();
  }

  /** True when a read of `length` bytes should run inline now. */
  admit(length: number, now: bigint): boolean {
    const ok =
      this.#mode === 'always' ||
      (this.#mode === 'auto' && length <= MAX_INLINE_BYTES && now >= this.#pooledUntil);
    if (ok) this.inline++;
    else this.pooled++;
    return ok;
  }

  /** Reports how long an admitted inline read of `length` bytes took. */
  record(length: number, elapsedNs: bigint, now: bigint): void {
    if (elapsedNs <= BigInt(SLOW_BASE_NS + SLOW_NS_PER_BYTE * length)) {
      this.#backoffNs = FIRST_BACKOFF_NS;
      return;
    }
    this.slow++;
    const blocks = this.#inputBlocksNow();
    const diskRead = blocks !== this.#inputBlocks;
    this.#inputBlocks = blocks;
    if (!diskRead) return; // preempted, not a miss
    this.misses++;
    this.#pooledUntil = now + BigInt(this.#backoffNs);
    this.#backoffNs = Math.min(this.#backoffNs * 2, MAX_BACKOFF_NS);
  }
}
