// Metadata ops applied in memory and not yet durable. `log` is the only way live metadata changes:
// the op is applied at once (so begin/end see it), gets a tag (its 1-based index), and waits in
// the pending list for Durability to make it durable. Backend-independent: a journal ring and an
// object store both take their transactions from here and report back with markDurable.
//
// What waits for durability (durability rule 5, semantics E11):
// - blocks freed by an op are reused only once the op is durable and no pin covers them;
// - blocks unshared by an op stay shared for placement until then;
// - a map change not yet durable makes a write there "not a pure overwrite".
import type { Op } from './ops.ts';
import { OpCode } from './ops.ts';
import type { StoreState } from './store-state.ts';
import { UncommittedRanges } from './uncommitted-ranges.ts';

export class OpLog {
  private readonly state: StoreState;
  private pending: Op[] = [];
  /** Tag of the last op applied. */
  private applied = 0;
  /** Tag of the last op known durable. */
  private durable = 0;
  /** Map changes not yet durable: a write there is no pure overwrite (E11). */
  readonly uncommittedMaps = new UncommittedRanges();

  constructor(state: StoreState) {
    this.state = state;
  }

  /** Appends an op: applied to memory now, durable at the next commit. */
  log(op: Op): void {
    const { meta, alloc } = this.state;
    const tag = this.applied + 1;
    meta.onUnshare = (s, l) => alloc.deferUnshare(s, l, tag);
    meta.liveTag = tag;
    try {
      meta.apply(op, 'live', (s, l) => alloc.deferFree(s, l, tag));
    } finally {
      meta.onUnshare = null;
      meta.liveTag = 0;
    }
    this.applied = tag;
    this.pending.push(op);
    if (op.code === OpCode.MAP || op.code === OpCode.SET_KIND) this.uncommittedMaps.add(op.vol, op.start, op.len, tag);
  }

  get appliedIndex(): number {
    return this.applied;
  }

  get durableIndex(): number {
    return this.durable;
  }

  get uncommitted(): number {
    return this.applied - this.durable;
  }

  /** Pending ops not yet handed to a transaction. */
  get pendingCount(): number {
    return this.pending.length;
  }

  /** Takes every pending op for one transaction; give them back with restore() if it cannot be planned. */
  take(): Op[] {
    const ops = this.pending;
    this.pending = [];
    return ops;
  }

  /** Puts taken ops back in front (the transaction was not written). */
  restore(ops: Op[]): void {
    this.pending = ops.concat(this.pending);
  }

  /** Drops the first `count` pending ops (a checkpoint covered them). */
  dropCovered(count: number): void {
    this.pending.splice(0, count);
  }

  /** Every op up to `tag` is durable: release what waited for it. */
  markDurable(tag: number): void {
    this.durable = Math.max(this.durable, tag);
    this.state.alloc.releaseDurable(this.durable);
    this.uncommittedMaps.releaseDurable(this.durable);
  }
}
