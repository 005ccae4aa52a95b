// --cache=none: O_DIRECT file storage through page-aligned bounce slots. It must behave exactly
// like buffered file storage (compared op by op against MemoryStorage), fall back cleanly when the
// probe fails, and carry an image store whose I/O is all 512-aligned (no read-modify-write).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../../src/engine/engine.ts';
import { createImageFile, openImage } from '../../../src/fs/image-file.ts';
import { AlignedPool, SLOT_BYTES } from '../../../src/storage/aligned-pool.ts';
import { seededRandom } from '../../support/seeded-random.ts';
import { DirectFileStorage } from '../../../src/storage/direct-file-storage.ts';
import { MemoryStorage } from '../../../src/storage/memory-storage.ts';
import { openFileStorage } from '../../../src/storage/open-file.ts';
import { PoisonLatch } from '../../../src/storage/poison-latch.ts';
import type { Storage } from '../../../src/storage/storage.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function scratch(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'iomapd-direct-'));
  dirs.push(d);
  return d;
}

/** Opens `path` with O_DIRECT; null (and why) when this filesystem refuses it. */
async function direct(path: string): Promise<DirectFileStorage | null> {
  const r = await DirectFileStorage.open(path);
  if (!r.ok) console.warn(`O_DIRECT is not available under ${tmpdir()}: ${r.reason}; the direct cases check the fallback only`);
  return r.ok ? r.storage : null;
}

describe('aligned pool', () => {
  it('hands out whole slots, queues callers when empty, and serves them in order', async () => {
    const pool = new AlignedPool(2, 4096);
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect(a.length).toBe(4096);
    expect(a.byteOffset % 4096).toBe(0);
    const order: number[] = [];
    const c = pool.acquire().then((s) => (order.push(1), s));
    const d = pool.acquire().then((s) => (order.push(2), s));
    pool.release(a);
    pool.release(b);
    await Promise.all([c, d]);
    expect(order).toEqual([1, 2]);
  });
});

describe('O_DIRECT file storage', () => {
  it('matches buffered semantics op by op: aligned, unaligned, multi-slot, past the end', async () => {
    const path = join(await scratch(), 'f');
    await writeFile(path, Buffer.alloc(0));
    const s = await direct(path);
    if (s === null) return;
    const model = new MemoryStorage();
    await s.resize(6 << 20);
    await model.resize(6 << 20);
    const random = seededRandom(5);
    const pick = (n: number) => Math.floor(random() * n);
    for (let i = 0; i < 200; i++) {
      const aligned = random() < 0.8;
      const offset = aligned ? pick(12_000) * 512 : pick(6 << 20);
      const length = aligned ? (1 + pick(i % 20 === 0 ? 3000 : 16)) * 512 : 1 + pick(5000);
      if (random() < 0.5) {
        const data = Buffer.alloc(length, 1 + pick(250));
        await s.write(data, offset);
        await model.write(data, offset);
      } else {
        const got = Buffer.alloc(length, 0xee);
        const want = Buffer.alloc(length, 0xee);
        await s.read(got, offset);
        await model.read(want, offset);
        expect(got.equals(want), `read ${offset}+${length}`).toBe(true);
      }
    }
    // Reads past the end of the file are zeros (the model's too); a write past it extends the file.
    const size = await s.size();
    expect(size).toBe(await model.size());
    const past = Buffer.alloc(SLOT_BYTES + 4096, 0xee);
    await s.read(past, size - 1000);
    const want = Buffer.alloc(past.length, 0xee);
    await model.read(want, size - 1000);
    expect(past.equals(want)).toBe(true);
    expect(past.subarray(1000).every((x) => x === 0)).toBe(true);
    await s.write(Buffer.alloc(4096, 9), 7 << 20);
    expect(await s.size()).toBe((7 << 20) + 4096);
    expect(s.unalignedWrites).toBeGreaterThan(0);
    await s.sync();
    await s.close();
  });

  it('falls back to buffered I/O, with the reason, when the probe fails', async () => {
    const path = join(await scratch(), 'f');
    await writeFile(path, Buffer.alloc(8192, 3));
    const opened = await openFileStorage(path, { cache: 'none' }, async () => ({ ok: false, reason: 'EINVAL from the probe' }));
    expect(opened).toMatchObject({ direct: false, fallback: 'EINVAL from the probe' });
    const b = Buffer.alloc(100);
    await opened.storage.read(b, 10);
    expect(b.every((x) => x === 3)).toBe(true);
    await opened.storage.close();
    const buffered = await openFileStorage(path, { cache: 'writeback' });
    expect(buffered).toMatchObject({ direct: false, fallback: null });
    await buffered.storage.close();
  });

  it('carries an image store: every I/O aligned, data and metadata back after reopening buffered', async () => {
    const path = join(await scratch(), 'img');
    const created = await createImageFile(path, { dataBytes: 8 << 20, journalBytes: 128 << 10 });
    await created.createVolume('v', 4 << 20);
    await created.close();
    const { store, io } = await openImage(path, { cache: 'none' });
    if (!io.direct) {
      expect(io.fallback).not.toBeNull();
      await store.close();
      return;
    }
    const engine = new Engine(store);
    const dev = engine.device('v');
    const B = 4096;
    for (let i = 0; i < 200; i++) {
      // Whole blocks, sub-blocks into holes and mapped blocks, FUA now and then: journal commits and a checkpoint.
      const sub = i % 3 === 0;
      await dev.write(Buffer.alloc(sub ? 512 : B, i % 251), (i % 97) * B + (sub ? 1536 : 0), { fua: i % 5 === 0 });
    }
    await dev.zero(100 * B, 8 * B, { fua: true, mayTrim: false, fast: false });
    await dev.trim(120 * B, 4 * B, { fua: false });
    await dev.flush();
    const before = Buffer.alloc(200 * B);
    await dev.read(before, 0);
    // The store holds the O_DIRECT storage through the poison latch openFileStorage wraps it in.
    const held = (store as unknown as { storage: Storage }).storage;
    const direct = (held instanceof PoisonLatch ? held.inner : held) as DirectFileStorage;
    expect(direct).toBeInstanceOf(DirectFileStorage);
    expect(direct.unalignedWrites).toBe(0);
    await store.close();

    const again = await openImage(path, { cache: 'writeback' });
    expect(again.store.verify().errors).toEqual([]);
    const after = Buffer.alloc(200 * B);
    await new Engine(again.store).device('v').read(after, 0);
    expect(after.equals(before)).toBe(true);
    await again.store.close();
  });
});
