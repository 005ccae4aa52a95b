// The READ reply pool: buffers come back by exact size, small ones are never pooled, foreign ones
// are never taken in, and the idle cap holds.
import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../../src/server/buffer-pool.ts';

describe('BufferPool', () => {
  it('hands a given-back buffer out again for the same size only', () => {
    const pool = new BufferPool(1 << 20);
    const a = pool.take(4112);
    expect(a.length).toBe(4112);
    pool.give(a);
    expect(pool.idleBytes).toBe(4112);
    expect(pool.take(8192)).not.toBe(a);
    expect(pool.take(4112)).toBe(a);
    expect(pool.idleBytes).toBe(0);
  });

  it('leaves small buffers to Node and refuses buffers it did not make', () => {
    const pool = new BufferPool(1 << 20);
    const small = pool.take(16);
    expect(pool.owns(small)).toBe(false);
    pool.give(small);
    pool.give(Buffer.alloc(4096));
    expect(pool.idleBytes).toBe(0);
  });

  it('keeps at most maxIdleBytes idle and drops the rest', () => {
    const pool = new BufferPool(10_000);
    const bufs = [pool.take(4096), pool.take(4096), pool.take(4096)];
    for (const b of bufs) pool.give(b);
    expect(pool.idleBytes).toBe(8192);
    const again = [pool.take(4096), pool.take(4096), pool.take(4096)];
    expect(new Set(again).size).toBe(3);
    expect(again.filter((b) => bufs.includes(b))).toHaveLength(2);
  });
});
