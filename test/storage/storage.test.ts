import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CrashStorage } from '../support/crash-storage.ts';
import { FaultStorage } from '../support/fault-storage.ts';
import { FileStorage } from '../../src/storage/file-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { isIomapdError } from '../../src/util/errors.ts';
import { PoisonLatch } from '../../src/storage/poison-latch.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function basics(s: Storage): Promise<void> {
  await s.resize(8192);
  expect(await s.size()).toBe(8192);
  await s.write(Buffer.alloc(512, 7), 1024);
  const b = Buffer.alloc(2048, 0xee);
  await s.read(b, 512);
  expect(b[0]).toBe(0);
  expect(b[512]).toBe(7);
  expect(b[1023]).toBe(7);
  expect(b[1024]).toBe(0);
  const past = Buffer.alloc(100, 0xee);
  await s.read(past, 8150);
  expect(past.every((x) => x === 0)).toBe(true); // bytes past the end read as zeros
  await s.sync();
  await s.close();
}

describe('storage backends', () => {
  it('memory storage reads, writes and resizes', async () => {
    await basics(new MemoryStorage());
  });

  it('file storage reads, writes, syncs and resizes', async () => {
    const d = await mkdtemp(join(tmpdir(), 'iomapd-st-'));
    dirs.push(d);
    await basics(await FileStorage.open(join(d, 'f'), { create: true }));
    await expect(FileStorage.open(join(d, 'f'), { create: true })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await expect(FileStorage.open(join(d, 'nope'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('fault storage fails the nth call with the chosen errno', async () => {
    const f = new FaultStorage(new MemoryStorage(Buffer.alloc(4096)));
    f.failOn({ op: 'write', nth: 2, errno: 'ENOSPC' });
    await f.write(Buffer.alloc(1), 0);
    await expect(f.write(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'NO_SPACE' });
    await f.write(Buffer.alloc(1), 0);
    f.failOn({ op: 'read', nth: 1, errno: 'EIO' });
    await expect(f.read(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'IO' });
  });

  it('a failed sync poisons the storage through its latch: later writes and syncs are refused, reads work', async () => {
    const faults = new FaultStorage(new MemoryStorage(Buffer.alloc(4096)));
    const f = new PoisonLatch(faults);
    faults.failOn({ op: 'sync', nth: 1, errno: 'EIO' });
    await expect(f.sync()).rejects.toMatchObject({ code: 'IO' });
    await expect(f.write(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
    await expect(f.sync()).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
    await f.read(Buffer.alloc(1), 0);
    const crash = new CrashStorage(Buffer.alloc(4096), 1);
    const c = new PoisonLatch(crash);
    crash.failNextSync();
    await expect(c.sync()).rejects.toSatisfy((e) => isIomapdError(e, 'IO'));
    await expect(c.write(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
  });

  it('crash storage keeps synced writes and drops, keeps or tears unsynced ones per 512-byte sector', async () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      const c = new CrashStorage(Buffer.alloc(4096), seed);
      await c.write(Buffer.alloc(1024, 1), 0);
      await c.sync();
      await c.write(Buffer.alloc(2048, 2), 1024);
      const img = c.crashImage();
      expect(img.subarray(0, 1024).every((x) => x === 1)).toBe(true);
      for (let s = 1024; s < 3072; s += 512) {
        const sector = img.subarray(s, s + 512);
        expect(sector.every((x) => x === sector[0])).toBe(true); // never torn inside a sector
      }
      seen.add([1024, 1536, 2048, 2560].map((s) => img[s]).join(''));
    }
    expect(seen.has('0000')).toBe(true); // dropped
    expect(seen.has('2222')).toBe(true); // kept
    expect([...seen].some((k) => k.includes('0') && k.includes('2'))).toBe(true); // torn
  });

  it('an armed crash freezes the durable image and fails every later call', async () => {
    const c = new CrashStorage(Buffer.alloc(4096), 3);
    c.armCrash(1);
    await c.write(Buffer.alloc(512, 1), 0);
    await expect(c.sync()).rejects.toMatchObject({ code: 'IO' });
    expect(c.hasCrashed).toBe(true);
    await expect(c.write(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'IO' });
  });
});
