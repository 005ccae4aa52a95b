// The image's Durability with its commits timed, for the commit-latency histogram of /metrics.
// Only the daemon with --metrics wraps its store's durability in this; a commit (one per FLUSH or
// non-shortcut FUA, shared by concurrent callers) costs one performance.now() pair more.
import type { Durability } from '../fs/store-contract.ts';
import type { IomapdError } from '../util/errors.ts';
import { LATENCY_BUCKETS } from '../server/request-metrics.ts';

const BOUNDS_MS = LATENCY_BUCKETS.map((s) => s * 1000);

/** Latency buckets (not cumulative, the last +Inf) and the sum in seconds. */
export class LatencyTally {
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;

  observe(ms: number): void {
    let b = 0;
    while (b < BOUNDS_MS.length && ms > BOUNDS_MS[b]!) b++;
    this.buckets[b]!++;
    this.sum += ms / 1000;
  }
}

export class MeteredDurability implements Durability {
  private readonly inner: Durability;
  /** Every commit() call as the engine sees it: waiting for a shared group commit included. */
  readonly commits = new LatencyTally();
  readonly dataSyncs = new LatencyTally();

  constructor(inner: Durability) {
    this.inner = inner;
  }

  async commit(): Promise<void> {
    const start = performance.now();
    try {
      await this.inner.commit();
    } finally {
      this.commits.observe(performance.now() - start);
    }
  }

  async syncData(): Promise<void> {
    const start = performance.now();
    try {
      await this.inner.syncData();
    } finally {
      this.dataSyncs.observe(performance.now() - start);
    }
  }

  checkpoint(): Promise<void> {
    return this.inner.checkpoint();
  }

  get uncommitted(): number {
    return this.inner.uncommitted;
  }

  get failure(): IomapdError | null {
    return this.inner.failure;
  }

  get journalBytes(): number {
    return this.inner.journalBytes;
  }

  get journalUsed(): number {
    return this.inner.journalUsed;
  }
}
