import { mkdtemp, open, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkImageFile, createImageFile, openImageFile } from '../../src/fs/image-file.ts';
import { ImageStore } from '../../src/fs/image-store.ts';
import { MappingFlags } from '../../src/fs/mapping.ts';
import { FaultStorage } from '../support/fault-storage.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { punch, readBytes, writeBytes } from './support/mini-engine.ts';

const B = 4096;
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function fresh(dataBytes = 1 << 20): Promise<{ store: ImageStore; storage: MemoryStorage }> {
  const storage = new MemoryStorage(Buffer.alloc(2 << 20, 0xee));
  const store = await ImageStore.create(storage, { dataBytes, journalBytes: 64 << 10 });
  await store.createVolume('v', 16 * B);
  return { store, storage };
}

describe('begin/end mapping contract', () => {
  it('a write into a hole allocates UNWRITTEN, and end converts it to MAPPED', async () => {
    const { store } = await fresh();
    const m = await store.begin('v', 512, 512, 'write');
    expect(m).toMatchObject({ type: 'unwritten', offset: 0, length: B, cowPhysical: -1 });
    expect(m.flags & MappingFlags.DIRTY).toBeTruthy();
    expect(m.flags & MappingFlags.NEW).toBe(0);
    // before end, readers see zeros, never the garbage underneath
    expect((await readBytes(store, 'v', 0, B)).every((x) => x === 0)).toBe(true);
    const block = Buffer.alloc(B);
    block.fill(5, 512, 1024);
    await store.writeData(m.physical, block);
    await store.end(m, B);
    expect(store.lookup('v', 0)).toMatchObject({ type: 'mapped', length: B });
    const back = await readBytes(store, 'v', 0, B);
    expect(back[511]).toBe(0);
    expect(back[512]).toBe(5);
    expect(back[1024]).toBe(0);
  });

  it('an exclusive written block is a pure overwrite (no flags); a shared one gets a COW target', async () => {
    const { store } = await fresh();
    await writeBytes(store, 'v', 0, Buffer.alloc(2 * B, 1));
    // Regression (power-loss campaign): while the conversion that made it MAPPED is not durable,
    // the block is DIRTY, or a FUA overwrite would skip the commit and read zeros after a crash.
    const early = await store.begin('v', 0, B, 'write');
    expect(early).toMatchObject({ type: 'mapped', flags: MappingFlags.DIRTY });
    await store.end(early, B);
    await store.commit();
    const m = await store.begin('v', 0, B, 'write');
    expect(m).toMatchObject({ type: 'mapped', flags: 0, cowPhysical: -1 });
    await store.end(m, B);
    await store.snapshot('v', 's');
    const c = await store.begin('v', 0, 2 * B, 'write');
    expect(c.type).toBe('mapped');
    expect(c.flags & MappingFlags.SHARED).toBeTruthy();
    expect(c.cowPhysical).toBeGreaterThanOrEqual(0);
    expect(c.cowPhysical).not.toBe(c.physical);
    await store.end(c, 0, new Error('write failed'));
    // a failed COW leaves the old mapping and releases the target
    expect(store.lookup('v', 0)).toMatchObject({ shared: true });
    await writeBytes(store, 'v', 512, Buffer.alloc(512, 9));
    const v = await readBytes(store, 'v', 0, B);
    const s = await readBytes(store, 's', 0, B);
    expect(v[0]).toBe(1); // copy-up kept the snapshot's bytes around the write
    expect(v[512]).toBe(9);
    expect(s[512]).toBe(1);
    expect(store.lookup('v', 0).shared).toBe(false);
    expect(store.verify().errors).toEqual([]);
  });

  it('zero with noHole keeps space allocated as UNWRITTEN; trim punches holes', async () => {
    const { store } = await fresh();
    await writeBytes(store, 'v', 0, Buffer.alloc(4 * B, 3));
    await punch(store, 'v', 0, 2 * B, 'zero', true);
    await punch(store, 'v', 2 * B, B, 'trim');
    expect([...store.extents('v', 0, 4 * B)].map((e) => [e.type, e.length])).toEqual([
      ['unwritten', 2 * B],
      ['hole', B],
      ['mapped', B],
    ]);
    expect((await readBytes(store, 'v', 0, 3 * B)).every((x) => x === 0)).toBe(true);
    await expect(store.begin('v', 100, B, 'trim')).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
  });

  it('a failed write into a hole rolls the allocation back; space returns to baseline after many failures', async () => {
    const { store } = await fresh();
    await store.commit();
    const before = store.stats().freeBlocks;
    for (let i = 0; i < 200; i++) {
      const m = await store.begin('v', (i % 16) * B, B, 'write');
      await store.end(m, 0, new Error('EIO'));
    }
    await store.commit();
    expect(store.lookup('v', 0).type).toBe('hole');
    expect(store.stats().freeBlocks).toBe(before);
    expect(store.verify().errors).toEqual([]);
  });

  it('reservations make later allocation succeed and are released', async () => {
    const { store } = await fresh(64 * B);
    const avail = store.alloc.available;
    const res = store.reserve(4);
    expect(store.alloc.available).toBe(avail - 4);
    const m = await store.begin('v', 0, 16 * B, 'write', { reservation: res });
    expect(m.length).toBe(4 * B); // the reservation caps the allocation
    await store.end(m, 0, new Error('x'));
    res.release();
    await store.commit(); // the rolled-back blocks were pending free until the commit
    expect(store.alloc.available).toBe(avail);
    expect(() => store.reserve(10_000)).toThrow(expect.objectContaining({ code: 'NO_SPACE' }));
  });

  it('a full image gives NO_SPACE for hole fills, but overwrites still work', async () => {
    const { store } = await fresh(16 * B);
    await store.createVolume('big', 64 * B);
    let err: unknown = null;
    try {
      await writeBytes(store, 'big', 0, Buffer.alloc(64 * B, 1));
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'NO_SPACE' });
    await writeBytes(store, 'big', 0, Buffer.alloc(B, 2));
    expect(store.verify().errors).toEqual([]);
  });

  it('freed blocks are not reused before the freeing commit is durable, nor while pinned', async () => {
    const { store } = await fresh(32 * B);
    await writeBytes(store, 'v', 0, Buffer.alloc(B, 1));
    await store.commit();
    const read = await store.begin('v', 0, B, 'read'); // pins the block
    await punch(store, 'v', 0, B, 'trim');
    expect(store.stats().pendingFreeBlocks).toBe(1);
    await store.commit();
    expect(store.stats().pendingFreeBlocks).toBe(1); // durable, but still pinned by the read
    await store.end(read, 0);
    expect(store.stats().pendingFreeBlocks).toBe(0);
  });

  it('inline volumes keep data in metadata and move to a block when grown', async () => {
    const { store, storage } = await fresh();
    await store.createVolume('tiny', 1024);
    const m = await store.begin('tiny', 512, 512, 'write');
    expect(m.type).toBe('inline');
    store.writeInline(m, 512, Buffer.alloc(512, 7));
    await store.end(m, 512);
    expect((await readBytes(store, 'tiny', 0, 1024))[512]).toBe(7);
    await store.resizeVolume('tiny', 2 * B);
    expect(store.volume('tiny').inline).toBe(false);
    const r = await readBytes(store, 'tiny', 0, 2 * B);
    expect([r[0], r[512], r[1023], r[1024], r[B]]).toEqual([0, 7, 7, 0, 0]);
    await store.close();
    const again = await ImageStore.open(new MemoryStorage(storage.snapshot()));
    expect((await readBytes(again, 'tiny', 512, 1))[0]).toBe(7);
  });

  it('preallocated volumes are UNWRITTEN and read as zeros over garbage', async () => {
    const { store } = await fresh();
    await store.createVolume('p', 8 * B, { preallocate: true });
    expect([...store.extents('p')].map((e) => e.type)).toEqual(['unwritten']);
    expect((await readBytes(store, 'p', 0, 8 * B)).every((x) => x === 0)).toBe(true);
  });

  it('admin errors use the registry codes', async () => {
    const { store } = await fresh();
    await expect(store.createVolume('v', B)).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await expect(store.createVolume('x', 1000)).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(store.createVolume('x', 3 * 1024 * 3)).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(store.deleteVolume('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await store.snapshot('v', 's');
    await expect(store.begin('s', 0, B, 'write')).rejects.toMatchObject({ code: 'READ_ONLY' });
    await expect(store.begin('v', 16 * B, 1, 'read')).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
  });
});

describe('durability and failures', () => {
  it('a failed sync poisons the store: later commits fail and nothing half-committed is visible', async () => {
    const storage = new FaultStorage(new MemoryStorage());
    const store = await ImageStore.create(storage, { dataBytes: 1 << 20 });
    await store.createVolume('v', 4 * B);
    await writeBytes(store, 'v', 0, Buffer.alloc(B, 1));
    storage.failOn({ op: 'sync', nth: 1, errno: 'EIO' });
    await expect(store.commit()).rejects.toMatchObject({ code: 'IO' });
    // Later callers learn the image is poisoned (EIO on the wire), not a repeat of the first error.
    await expect(store.commit()).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
    await expect(store.begin('v', 0, B, 'write')).rejects.toMatchObject({ code: 'STORAGE_POISONED' });
  });

  it('checkpoints bound replay; reopen after a journal-only commit replays it', async () => {
    const { store, storage } = await fresh();
    await writeBytes(store, 'v', 0, Buffer.alloc(B, 4));
    await store.commit();
    await store.abandon();
    const again = await ImageStore.open(new MemoryStorage(storage.snapshot()));
    expect(again.replay!.transactions).toBeGreaterThan(0);
    expect((await readBytes(again, 'v', 0, 1))[0]).toBe(4);
    await again.checkpoint();
    expect(again.stats().journalUsed).toBe(0);
  });

  it('survives a damaged superblock copy and refuses bad images with clear codes', async () => {
    const { store, storage } = await fresh();
    await store.close();
    const img = storage.snapshot();
    const one = Buffer.from(img);
    one[100] ^= 0xff;
    const s1 = await ImageStore.open(new MemoryStorage(one));
    expect(s1.superblockProblems.length).toBe(1);
    const both = Buffer.from(one);
    both[4096 + 100] ^= 0xff;
    await expect(ImageStore.open(new MemoryStorage(both))).rejects.toMatchObject({ code: 'CORRUPT' });
    await expect(ImageStore.open(new MemoryStorage(Buffer.alloc(1 << 16)))).rejects.toMatchObject({ code: 'BAD_MAGIC' });
    const newer = Buffer.from(img);
    newer.writeUInt32LE(9, 8);
    newer.writeUInt32LE(9, 4096 + 8);
    await expect(ImageStore.open(new MemoryStorage(newer))).rejects.toMatchObject({ code: 'FORMAT_TOO_NEW' });
    await expect(ImageStore.open(new MemoryStorage(img.subarray(0, img.length - 4096)))).rejects.toMatchObject({ code: 'CORRUPT' });
  });
});

describe('image files', () => {
  it('lock the image against a second open, check, and report truncation', async () => {
    const d = await mkdtemp(join(tmpdir(), 'iomapd-fs-'));
    dirs.push(d);
    const path = join(d, 'img');
    const store = await createImageFile(path, { dataBytes: 1 << 20 });
    await store.createVolume('v', 4 * B);
    await expect(openImageFile(path)).rejects.toMatchObject({ code: 'LOCKED' });
    await store.close();
    const r = await checkImageFile(path, false);
    expect(r.errors).toEqual([]);
    // a stale lock of a dead process is taken over
    const fh = await open(`${path}.lock`, 'w');
    await fh.writeFile('999999999\n');
    await fh.close();
    await (await openImageFile(path)).close();
    await truncate(path, 20000);
    const bad = await checkImageFile(path, false);
    expect(bad.unreadable).toBe(true);
    expect(bad.errors[0]).toMatch(/CORRUPT/);
  });
});
