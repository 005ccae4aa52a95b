// Test wrapper that fails chosen calls of an inner storage: "fail the Nth write with EIO".
// Like a real backend it does not latch after a failed sync itself: the PoisonLatch that every
// backend is used through (src/storage/poison-latch.ts) does.
import { type Storage, storageError } from '../../src/storage/storage.ts';

export type FaultOp = 'read' | 'write' | 'sync' | 'resize';
export type FaultErrno = 'EIO' | 'ENOSPC';

export interface FaultRule {
  op: FaultOp;
  /** 1-based: the nth call of this op (counted from when the rule was added) fails. */
  nth: number;
  errno: FaultErrno;
  /** Keep failing every later call of this op too. */
  sticky?: boolean;
}

export class FaultStorage implements Storage {
  private readonly inner: Storage;
  private rules: Array<FaultRule & { seen: number }> = [];
  readonly counts: Record<FaultOp, number> = { read: 0, write: 0, sync: 0, resize: 0 };

  constructor(inner: Storage) {
    this.inner = inner;
  }

  failOn(rule: FaultRule): void {
    this.rules.push({ ...rule, seen: 0 });
  }

  clearFaults(): void {
    this.rules = [];
  }

  private check(op: FaultOp): void {
    this.counts[op]++;
    for (const r of this.rules) {
      if (r.op !== op) continue;
      r.seen++;
      if (r.seen === r.nth || (r.sticky && r.seen > r.nth)) {
        const err = Object.assign(new Error(`injected ${r.errno} on ${op} #${r.seen}`), { code: r.errno });
        throw storageError(err, op);
      }
    }
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    this.check('read');
    return this.inner.read(buf, offset);
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    this.check('write');
    return this.inner.write(buf, offset);
  }

  async sync(): Promise<void> {
    this.check('sync');
    await this.inner.sync();
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  async resize(size: number): Promise<void> {
    this.check('resize');
    return this.inner.resize(size);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
