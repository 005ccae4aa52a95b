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
// working set or a throttled disk costs at most one stalled call per period (writes: two, below).
//
// Calls can also be uniformly costly without being slow (a file whose 4 KiB writes take 30 µs
// where another's take 3: ext4 writes into 2 MiB page-cache folios, docs/PERFORMANCE.md): inline,
// that cost is the event loop's alone, while the pool would run it beside the event loop on
// another core. So the gate also backs off while calls cost more than a few microseconds per 4 KiB.
//
// That trade is only worth it while other requests wait for the event loop. With one request in
// flight in the whole process (QD1), a costly call runs inline anyway: the pool would add its two
// wake-ups to the request's latency and CPU and free the loop for nothing (4 KiB overwrites into
// 2 MiB folios at QD1: 1.29x the IOPS at 0.72x the CPU inline, docs/PERFORMANCE.md). Calls that
// are slow (a disk read, a throttled writer) still go to the pool.
//
// Both judgements are of the I/O's own latency, not of the machine's load. When other work keeps
// the CPUs busy (load averages of 3 to 6 on two cores), the event-loop thread is preempted in the
// middle of calls, and a preempted call looks slow for as long as the thread waited for a CPU.
// Preemption only ever adds time, and only to some calls, so the cost is judged by the lower
// quartile of each window of WINDOW_CALLS calls: cheap I/O stays cheap in most calls of a window,
// while I/O that is cheap only now and then (a few writes into small folios among many into 2 MiB
// ones) is judged by what it usually costs. And a preempted call is followed by a normal one (the
// thread resumes with a fresh time slice), while a blocked disk or throttled writer stalls call
// after call.
//
// Large writes (up to 1 MiB) run inline too while no client over a Unix socket has a request in
// flight. Over TCP the pool costs a 1 MiB write more than the write itself: the payload the loop
// just received is copied into the page cache on another core, and fio, the loop and two pool
// threads contend for two cores; inline, 1 MiB sequential writes over TCP ran 1.30x at 0.77x
// the CPU. But a Unix-socket client can send only a socket buffer (about 208 KiB) ahead, so it
// stalls while the loop writes: 0.84x over a Unix socket (docs/PERFORMANCE.md, util/work-in-flight.ts).
//
// For reads the gate can also tell directly: the process's block input count (getrusage
// ru_inblock, asked only after a slow read) moves only on a real disk read. Writes have no such
// witness, so they back off after SLOW_RUN slow calls in a row.
//
// Modes: 'auto' (the above), 'never' (always the pool, as Node does by default) and 'always'
// (inline whatever it costs; for measurements).

import { workInFlight } from './work-in-flight.ts';

export type InlineIoMode = 'auto' | 'never' | 'always';
export const INLINE_IO_MODES: readonly InlineIoMode[] = ['auto', 'never', 'always'];

/** Calls longer than this go to the pool: a copy this size holds the loop long enough. */
const MAX_INLINE_BYTES = 256 * 1024;
/** Writes up to this size may run inline while no Unix-socket client waits (above). */
const MAX_INLINE_WRITE_BYTES = 1024 * 1024;
/** A fixed allowance plus a copy rate far below memory's: slower than this was not a cache hit. */
const SLOW_BASE_NS = 150_000;
const SLOW_NS_PER_BYTE = 1; // 1 GB/s
/** Above this cost per 4 KiB, a core of the thread pool does the work more cheaply. */
const COST_LIMIT_NS_PER_4K = 8_000;
/** Calls per cost window; its lower quartile is the I/O's own cost (preemption only adds). */
const WINDOW_CALLS = 32;
const WINDOW_QUARTILE = WINDOW_CALLS / 4 - 1;
/** Slow calls in a row that count as blocked when there is no witness (writes). */
const SLOW_RUN = 2;
const FIRST_BACKOFF_NS = 50_000_000;
const MAX_BACKOFF_NS = 2_000_000_000;

/** Whether the process has no request in flight but the one asking (util/work-in-flight.ts). */
const onlyRequestInFlight = (): boolean => workInFlight.requests <= 1;

/** The largest read the gate may admit inline. */
export const readInlineLimit = (): number => MAX_INLINE_BYTES;

/** The largest write the gate may admit inline: 1 MiB unless a Unix-socket client waits (above). */
export const writeInlineLimit = (): number => (workInFlight.overUnixSockets === 0 ? MAX_INLINE_WRITE_BYTES : MAX_INLINE_BYTES);

/** What a gate asks about the process; tests pass their own. */
export interface InlineIoGateOptions {
  /** Whether no other request waits for the event loop (default: the servers' count). */
  readonly alone?: () => boolean;
  /** The largest call that may run inline now (default: readInlineLimit). */
  readonly maxInlineBytes?: () => number;
}

export class InlineIoGate {
  #mode: InlineIoMode;
  /** Until then every call goes to the pool: calls were slow (a miss, a blocked writer). */
  #pooledUntil = 0n;
  /** Until then calls go to the pool while other requests are in flight: calls were costly. */
  #costlyUntil = 0n;
  #backoffNs = FIRST_BACKOFF_NS;
  /** Counters for stats and tests. */
  inline = 0;
  pooled = 0;
  slow = 0;
  misses = 0;
  /** Back-offs because a window of calls was costly (its lower quartile above the limit). */
  costly = 0;
  /** The current window's calls, each as ns per 4 KiB, and how many it holds. */
  readonly #window = new Float64Array(WINDOW_CALLS);
  #windowCalls = 0;
  /** Slow calls in a row (writes: no witness). */
  #slowRun = 0;
  #inputBlocks = 0;

  readonly #inputBlocksNow: (() => number) | null;
  readonly #alone: () => boolean;
  readonly #maxInlineBytes: () => number;

  /**
   * `inputBlocks` reads the process's block input count (asked only after a slow call); without
   * it, SLOW_RUN slow calls in a row count as blocked.
   */
  constructor(mode: InlineIoMode, inputBlocks: (() => number) | null, options: InlineIoGateOptions = {}) {
    this.#mode = mode;
    this.#inputBlocksNow = inputBlocks;
    this.#alone = options.alone ?? onlyRequestInFlight;
    this.#maxInlineBytes = options.maxInlineBytes ?? readInlineLimit;
    this.#inputBlocks = inputBlocks?.() ?? 0;
  }

  get mode(): InlineIoMode {
    return this.#mode;
  }

  set mode(mode: InlineIoMode) {
    this.#mode = mode;
    this.#pooledUntil = 0n;
    this.#costlyUntil = 0n;
    this.#backoffNs = FIRST_BACKOFF_NS;
    this.#startWindow();
    this.#slowRun = 0;
    this.#inputBlocks = this.#inputBlocksNow?.() ?? 0;
  }

  /** True when a call moving `length` bytes should run inline now. */
  admit(length: number, now: bigint): boolean {
    const ok =
      this.#mode === 'always' ||
      (this.#mode === 'auto' && length <= this.#maxInlineBytes() && now >= this.#pooledUntil && (now >= this.#costlyUntil || this.#alone()));
    if (ok) this.inline++;
    else this.pooled++;
    return ok;
  }

  /** Reports how long an admitted inline call moving `length` bytes took. */
  record(length: number, elapsedNs: bigint, now: bigint): void {
    if (elapsedNs <= BigInt(SLOW_BASE_NS + SLOW_NS_PER_BYTE * length)) {
      this.#slowRun = 0;
      this.#backoffNs = FIRST_BACKOFF_NS; // fast again: the next back-off starts short
      this.#window[this.#windowCalls] = (Number(elapsedNs) * 4096) / Math.max(length, 4096);
      if (++this.#windowCalls < WINDOW_CALLS) return;
      const cost = this.#window.sort()[WINDOW_QUARTILE]!;
      this.#startWindow(); // the probe after a back-off starts a fresh window too
      if (this.#mode === 'auto' && cost > COST_LIMIT_NS_PER_4K) {
        this.costly++;
        this.#costlyUntil = this.#backOff(now);
      }
      return;
    }
    this.slow++;
    if (this.#inputBlocksNow !== null) {
      const blocks = this.#inputBlocksNow();
      const diskRead = blocks !== this.#inputBlocks;
      this.#inputBlocks = blocks;
      if (!diskRead) return; // preempted, not a miss
    } else if (++this.#slowRun < SLOW_RUN) {
      return; // one slow write alone is most likely the thread being preempted
    }
    this.#slowRun = 0;
    this.misses++;
    this.#startWindow();
    this.#pooledUntil = this.#backOff(now);
  }

  #startWindow(): void {
    this.#windowCalls = 0;
  }

  /** The end of a back-off starting now; the next one lasts twice as long (until a fast call). */
  #backOff(now: bigint): bigint {
    const until = now + BigInt(this.#backoffNs);
    this.#backoffNs = Math.min(this.#backoffNs * 2, MAX_BACKOFF_NS);
    return until;
  }
}
