// Whether a pread or pwrite may run on the calling (event-loop) thread instead of libuv's thread
// pool.
//
// A read the page cache can answer, or a write into it, takes a couple of microseconds; sending
// it to the pool and back costs several times that in wake-ups (docs/PERFORMANCE.md). But a read
// that misses the cache blocks for as long as the disk takes, and a write can block too (dirty
// page throttling, a page under writeback); on the event loop that stalls every connection. Node
// has no preadv2(RWF_NOWAIT) or mincore to ask first, so the gate judges afterwards: calls run
// inline while they stay fast. A slow one sends calls to the pool for a back-off period, after
// which one call probes inline again; consecutive slow probes double the back-off, so a cold
// working set or a throttled disk costs at most one stalled call per period.
//
// Calls can also be uniformly costly without being slow (a file whose 4 KiB writes take 15 µs
// where another's take 3): inline, that cost is the event loop's alone, while the pool would run
// it beside the event loop on another core. So the gate also keeps a running mean of 4 KiB-sized
// calls and backs off the same way while it is above a few microseconds.
//
// A slow call may also just be the thread being preempted (common when the client shares two
// cores with us). For reads the gate can tell: the process's block input count (getrusage
// ru_inblock, asked only after a slow read) moves only on a real disk read. Writes have no such
// witness, so every slow write counts.
//
// Modes: 'auto' (the above), 'never' (always the pool, as Node does by default) and 'always'
// (inline whatever it costs; for measurements).

export type InlineIoMode = 'auto' | 'never' | 'always';
export const INLINE_IO_MODES: readonly InlineIoMode[] = ['auto', 'never', 'always'];

/** Calls longer than this always go to the pool: a copy this size holds the loop long enough. */
const MAX_INLINE_BYTES = 256 * 1024;
/** A fixed allowance plus a copy rate far below memory's: slower than this was not a cache hit. */
const SLOW_BASE_NS = 150_000;
const SLOW_NS_PER_BYTE = 1; // 1 GB/s
/** Above this running mean per 4 KiB, a core of the thread pool does the work more cheaply. */
const MEAN_LIMIT_NS_PER_4K = 8_000;
/** Weight of the newest call in the running mean. */
const MEAN_WEIGHT = 1 / 32;
const FIRST_BACKOFF_NS = 50_000_000;
const MAX_BACKOFF_NS = 2_000_000_000;

export class InlineIoGate {
  #mode: InlineIoMode;
  #pooledUntil = 0n;
  #backoffNs = FIRST_BACKOFF_NS;
  /** Counters for stats and tests. */
  inline = 0;
  pooled = 0;
  slow = 0;
  misses = 0;
  /** Back-offs because the running mean was too high. */
  costly = 0;
  #meanNsPer4k = 0;
  #inputBlocks = 0;

  readonly #inputBlocksNow: (() => number) | null;

  /**
   * `inputBlocks` reads the process's block input count (asked only after a slow call); without
   * it every slow call counts as blocked.
   */
  constructor(mode: InlineIoMode, inputBlocks: (() => number) | null) {
    this.#mode = mode;
    this.#inputBlocksNow = inputBlocks;
    this.#inputBlocks = inputBlocks?.() ?? 0;
  }

  get mode(): InlineIoMode {
    return this.#mode;
  }

  set mode(mode: InlineIoMode) {
    this.#mode = mode;
    this.#pooledUntil = 0n;
    this.#backoffNs = FIRST_BACKOFF_NS;
    this.#meanNsPer4k = 0;
    this.#inputBlocks = this.#inputBlocksNow?.() ?? 0;
  }

  /** True when a call moving `length` bytes should run inline now. */
  admit(length: number, now: bigint): boolean {
    const ok =
      this.#mode === 'always' ||
      (this.#mode === 'auto' && length <= MAX_INLINE_BYTES && now >= this.#pooledUntil);
    if (ok) this.inline++;
    else this.pooled++;
    return ok;
  }

  /** Reports how long an admitted inline call moving `length` bytes took. */
  record(length: number, elapsedNs: bigint, now: bigint): void {
    if (elapsedNs <= BigInt(SLOW_BASE_NS + SLOW_NS_PER_BYTE * length)) {
      // Capped, so that a call that was preempted now and then does not drag the mean up alone.
      const per4k = Math.min((Number(elapsedNs) * 4096) / Math.max(length, 4096), 2 * MEAN_LIMIT_NS_PER_4K);
      this.#meanNsPer4k += (per4k - this.#meanNsPer4k) * MEAN_WEIGHT;
      if (this.#mode === 'auto' && this.#meanNsPer4k > MEAN_LIMIT_NS_PER_4K) {
        this.costly++;
        this.#meanNsPer4k = 0; // the probe after the back-off starts a fresh mean
        this.#backOff(now);
        return;
      }
      this.#backoffNs = FIRST_BACKOFF_NS;
      return;
    }
    this.slow++;
    if (this.#inputBlocksNow !== null) {
      const blocks = this.#inputBlocksNow();
      const diskRead = blocks !== this.#inputBlocks;
      this.#inputBlocks = blocks;
      if (!diskRead) return; // preempted, not a miss
    }
    this.misses++;
    this.#backOff(now);
  }

  #backOff(now: bigint): void {
    this.#pooledUntil = now + BigInt(this.#backoffNs);
    this.#backoffNs = Math.min(this.#backoffNs * 2, MAX_BACKOFF_NS);
  }
}
