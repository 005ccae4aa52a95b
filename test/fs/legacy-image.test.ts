// Images of format versions 1 and 2 (whole extent lists) are read as they are, pass check, open
// read-only without change, and are upgraded to version 3 by the first checkpoint after a
// writable open, keeping every byte, snapshot and refcount.
import { describe, expect, it } from 'vitest';
import { checkImageStore } from '../../src/fs/image-file.ts';
import { FORMAT_VERSION } from '../../src/fs/format.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { downgradeImage } from './support/legacy-image.ts';
import { readBytes, writeBytes } from './support/mini-engine.ts';

const B = 4096;

async function oldImage(version: 1 | 2): Promise<MemoryStorage> {
  const storage = new MemoryStorage(Buffer.alloc(4 << 20, 0xee));
  const store = await ImageStore.create(storage, { dataBytes: 2 << 20, journalBytes: 64 << 10 });
  await store.createVolume('v', 300 * B);
  for (let i = 0; i < 150; i++) await writeBytes(store, 'v', 2 * i * B, Buffer.alloc(B, (i % 250) + 1));
  await store.snapshot('v', 's');
  await writeBytes(store, 'v', 0, Buffer.alloc(B, 0xcc));
  await store.createVolume('tiny', 1024);
  await store.close();
  return new MemoryStorage(await downgradeImage(storage.snapshot(), version));
}

async function expectContents(store: ImageStore): Promise<void> {
  expect((await readBytes(store, 'v', 0, B))[0]).toBe(0xcc);
  expect((await readBytes(store, 's', 0, B))[0]).toBe(1);
  for (const i of [1, 77, 149]) {
    expect((await readBytes(store, 'v', 2 * i * B, B))[0]).toBe((i % 250) + 1);
    expect((await readBytes(store, 's', 2 * i * B, B))[0]).toBe((i % 250) + 1);
  }
  expect(store.volume('v').extents).toBe(150);
}

describe('images of format versions 1 and 2', () => {
  for (const version of [1, 2] as const) {
    it(`version ${version}: read as is, check clean, read-only open changes nothing`, async () => {
      const storage = await oldImage(version);
      const before = storage.snapshot();
      const ro = await ImageStore.open(new MemoryStorage(storage.snapshot()), { readOnly: true });
      expect(ro.superblock.version).toBe(version);
      await expectContents(ro);
      const report = await checkImageStore(ro, false);
      expect(report.errors).toEqual([]);
      expect(report.volumes).toBe(3);
      await ro.close();
      expect((ro.storage as MemoryStorage).snapshot().equals(before)).toBe(true);
    });

    it(`version ${version}: the first checkpoint after a writable open upgrades it to version ${FORMAT_VERSION}`, async () => {
      const storage = await oldImage(version);
      const live = new MemoryStorage(storage.snapshot());
      const store = await ImageStore.open(live);
      expect(store.superblock.version).toBe(version);
      await writeBytes(store, 'v', 4 * B, Buffer.alloc(B, 0xdd));
      await store.checkpoint();
      expect(store.superblock.version).toBe(FORMAT_VERSION);
      expect(store.verify().errors).toEqual([]);
      const upgraded = live.snapshot();
      await store.close();
      const back = await ImageStore.open(new MemoryStorage(upgraded));
      expect(back.superblock.version).toBe(FORMAT_VERSION);
      await expectContents(back);
      expect((await readBytes(back, 'v', 4 * B, B))[0]).toBe(0xdd);
      expect((await checkImageStore(back, false)).errors).toEqual([]);
      // After the upgrade, a checkpoint writes only what changed: one write dirties one path.
      const gen = back.superblock.generation;
      await writeBytes(back, 'v', 6 * B, Buffer.alloc(B, 0xee));
      await back.checkpoint();
      expect(back.superblock.generation).toBe(gen + 1);
      expect(back.superblock.checkpointBytes).toBeLessThan(1024);
      await back.close();
    });
  }
});
