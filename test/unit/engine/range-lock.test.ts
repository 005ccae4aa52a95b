// The range lock (src/engine/range-lock.ts): arrival order among overlapping requests, and the
// promise-free tryAcquire the write path takes first.
import { describe, expect, it } from 'vitest';
import { RangeLock } from '../../../src/engine/range-lock.ts';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('RangeLock', () => {
  it('tryAcquire takes a free range at once and refuses one that overlaps a holder', () => {
    const lock = new RangeLock();
    const a = lock.tryAcquire(0, 4096);
    expect(a).not.toBeNull();
    expect(lock.tryAcquire(4096, 8192)).not.toBeNull(); // adjacent: no overlap
    expect(lock.tryAcquire(4095, 4097)).toBeNull();
    expect(lock.size).toBe(2);
    a!();
    expect(lock.tryAcquire(0, 4096)).not.toBeNull();
  });

  it('overlapping requests run in arrival order, and a waiter blocks later tryAcquires too', async () => {
    const lock = new RangeLock();
    const order: string[] = [];
    const first = lock.tryAcquire(0, 8192)!;
    const second = lock.acquire(4096, 12_288).then((release) => (order.push('second'), release));
    // The waiter arrived first: a later request overlapping only it must not overtake it.
    expect(lock.tryAcquire(8192, 12_288)).toBeNull();
    const third = lock.acquire(8192, 12_288).then((release) => (order.push('third'), release));
    await tick();
    expect(order).toEqual([]);
    first();
    const releaseSecond = await second;
    await tick();
    expect(order).toEqual(['second']);
    releaseSecond();
    (await third)();
    expect(order).toEqual(['second', 'third']);
    expect(lock.size).toBe(0);
  });

  it('acquire of a free range resolves without waiting for unrelated holders', async () => {
    const lock = new RangeLock();
    const held = lock.tryAcquire(0, 4096)!;
    const release = await lock.acquire(1 << 20, (1 << 20) + 4096);
    expect(lock.size).toBe(2);
    release();
    held();
    expect(lock.size).toBe(0);
  });
});
