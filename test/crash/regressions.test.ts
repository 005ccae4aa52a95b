// Bugs the crash campaigns found, each pinned by the smallest schedule that showed it.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { CrashStorage } from '../support/crash-storage.ts';
import { FaultStorage } from '../support/fault-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';

const B = 4096;

async function fresh(storageFor: (initial: Buffer) => CrashStorage | FaultStorage): Promise<{ store: ImageStore; engine: Engine }> {
  const store = await ImageStore.create(storageFor(Buffer.alloc(2 << 20, 0xee)), { dataBytes: 1 << 20, journalBytes: 16 << 10 });
  await store.createVolume('v', 16 * B);
  return { store, engine: new Engine(store) };
}

describe('crash-campaign regressions', () => {
  it('a FUA overwrite of a block whose hole fill is not committed yet survives power loss (it took the data-only shortcut)', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      let crash!: CrashStorage;
      const { engine } = await fresh((initial) => (crash = new CrashStorage(initial, seed)));
      const dev = engine.device('v');
      await dev.write(Buffer.alloc(B, 1), 0, { fua: false }); // hole fill: conversion pending
      await dev.write(Buffer.alloc(512, 2), 512, { fua: true }); // must commit that conversion too
      expect(dev.counters.fuaShortcuts).toBe(0);
      const after = await ImageStore.open(new MemoryStorage(crash.crashImage()));
      const got = Buffer.alloc(1024);
      await new Engine(after).device('v').read(got, 0);
      expect(got.subarray(512).every((x) => x === 2)).toBe(true);
      expect(got.subarray(0, 512).every((x) => x === 1)).toBe(true);
    }
  });

  it('ENOSPC from a journal write poisons the store instead of dropping the metadata of acknowledged writes', async () => {
    let faults!: FaultStorage;
    let inner!: MemoryStorage;
    const { store, engine } = await fresh((initial) => (faults = new FaultStorage((inner = new MemoryStorage(initial)))));
    const dev = engine.device('v');
    await dev.write(Buffer.alloc(B, 7), 0, { fua: false });
    // The FLUSH syncs the data, then writes the journal transaction: that write finds no space.
    faults.failOn({ op: 'write', nth: 1, errno: 'ENOSPC' });
    await expect(dev.flush()).rejects.toMatchObject({ code: 'NO_SPACE' });
    // Before the fix the next FLUSH succeeded without ever journaling the first write's conversion.
    await expect(dev.flush()).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
    await expect(dev.write(Buffer.alloc(B, 8), B, { fua: false })).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
    const got = Buffer.alloc(B);
    await dev.read(got, 0); // reads still work
    expect(got.every((x) => x === 7)).toBe(true);
    await store.abandon();
    const after = await ImageStore.open(new MemoryStorage(inner.snapshot()));
    expect(after.verify().errors).toEqual([]);
  });

  it('after a failed fsync (even ENOSPC) later writes get STORAGE_POISONED (EIO), not a repeat of the first error', async () => {
    let faults!: FaultStorage;
    const { engine } = await fresh((initial) => (faults = new FaultStorage(new MemoryStorage(initial))));
    const dev = engine.device('v');
    await dev.write(Buffer.alloc(B, 1), 0, { fua: false });
    faults.failOn({ op: 'sync', nth: 1, errno: 'ENOSPC' });
    await expect(dev.flush()).rejects.toMatchObject({ code: 'NO_SPACE' });
    await expect(dev.write(Buffer.alloc(B, 2), 0, { fua: false })).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
    await expect(dev.trim(0, B, { fua: false })).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
    await expect(dev.flush()).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
  });
});
