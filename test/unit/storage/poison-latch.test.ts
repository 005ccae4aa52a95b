// PoisonLatch: after a failed sync every write, resize and sync is refused with STORAGE_POISONED,
// the failing caller sees the real error, and reads still work.
import { describe, expect, it } from 'vitest';
import { isIomapdError } from '../../../src/util/errors.ts';
import { MemoryStorage } from '../../../src/storage/memory-storage.ts';
import { PoisonLatch } from '../../../src/storage/poison-latch.ts';

class FailingSync extends MemoryStorage {
  fail: NodeJS.ErrnoException | null = null;
  override async sync(): Promise<void> {
    if (this.fail) throw this.fail;
  }
}

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

describe('PoisonLatch', () => {
  it('passes calls through while healthy', async () => {
    const latch = new PoisonLatch(new MemoryStorage());
    await latch.write(Buffer.from('abc'), 10);
    await latch.sync();
    const out = Buffer.alloc(3);
    await latch.read(out, 10);
    expect(out.toString()).toBe('abc');
    expect(latch.poisoned).toBe(false);
  });

  it('reports the real error once, then refuses writes, resizes and syncs', async () => {
    const inner = new FailingSync();
    const latch = new PoisonLatch(inner);
    await latch.write(Buffer.from('x'), 0);
    inner.fail = errno('ENOSPC');
    const first = await latch.sync().catch((e: unknown) => e);
    expect(isIomapdError(first, 'NO_SPACE')).toBe(true);
    inner.fail = null;
    for (const call of [() => latch.sync(), () => latch.write(Buffer.from('y'), 0), () => latch.resize(10)]) {
      const err = await call().catch((e: unknown) => e);
      expect(isIomapdError(err, 'STORAGE_POISONED')).toBe(true);
    }
    const out = Buffer.alloc(1);
    await latch.read(out, 0);
    expect(out.toString()).toBe('x');
  });

  it('can be latched by its owner, and over() never wraps twice', async () => {
    const latch = PoisonLatch.over(new MemoryStorage());
    expect(PoisonLatch.over(latch)).toBe(latch);
    const first = latch.poison(errno('EIO'), 'journal write');
    expect(isIomapdError(first, 'IO')).toBe(true);
    expect(first.message).toContain('journal write');
    await expect(latch.write(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
  });
});
