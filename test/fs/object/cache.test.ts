// The local cache of an object-store image: sealed segments wait there (pinned) for their upload,
// read segments stay there up to the bound; writes are held back when unuploaded data reaches the
// bound, and fail with STORE_UNAVAILABLE when the store cannot take it. Losing the cache loses only
// unflushed writes.
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SegmentCache } from '../../../src/fs/object/segment-cache.ts';
import { FakeObjectStore } from '../../support/fake-object-store.ts';
import { createSmall, openSmall, pattern, readBytes, sameBytes, writeBytes } from './helpers.ts';

const MiB = 1 << 20;
const SEG = 8 * 4096; // SMALL's segments
const dirs: string[] = [];

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'iomapd-objcache-'));
  dirs.push(d);
  return d;
}

afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** Bytes of the files under `dir` (the image's cache is a subdirectory named by its uuid). */
async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir, { recursive: true })) {
    const st = await stat(join(dir, f));
    if (st.isFile()) n += st.size;
  }
  return n;
}

describe('object image cache', () => {
  it('keeps segments in the cache directory within its bound, and serves reads from it', async () => {
    const dir = await tempDir();
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket, { cacheDir: dir, cacheSize: 4 * SEG });
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(16 * SEG, 1));
    await a.commit();
    expect(await dirBytes(dir)).toBeGreaterThan(0);
    expect(await dirBytes(dir)).toBeLessThanOrEqual(4 * SEG);
    await a.close();
    const b = await openSmall(bucket, { cacheDir: dir, cacheSize: 4 * SEG });
    expect(await dirBytes(dir)).toBe(0); // a new process starts with an empty cache
    const fetches = b.segments.fetches;
    expect(sameBytes(await readBytes(b, 'v', 0, SEG), pattern(16 * SEG, 1).subarray(0, SEG))).toBe('same');
    expect(b.segments.fetches).toBe(fetches + 1);
    expect(sameBytes(await readBytes(b, 'v', 0, SEG), pattern(16 * SEG, 1).subarray(0, SEG))).toBe('same');
    expect(b.segments.fetches).toBe(fetches + 1); // the second read hit the cache
    expect(await dirBytes(dir)).toBe(SEG);
  });

  it('holds writes back while unuploaded data fills the cache, and lets them go as uploads finish', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket, { cacheSize: 3 * SEG });
    await a.createVolume('v', MiB);
    bucket.hang('putIfAbsent');
    let done = false;
    const w = writeBytes(a, 'v', 0, pattern(8 * SEG, 2)).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(done).toBe(false);
    expect(a.segments.unuploadedBytes).toBeLessThanOrEqual(3 * SEG);
    bucket.release();
    await w;
    await a.commit();
    a.abandon();
    const b = await openSmall(bucket.durable());
    expect(sameBytes(await readBytes(b, 'v', 0, 8 * SEG), pattern(8 * SEG, 2))).toBe('same');
  });

  it('fails writes with STORE_UNAVAILABLE when the cache is full and the store is down', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket, { cacheSize: 3 * SEG });
    await a.createVolume('v', MiB);
    bucket.goDown('put');
    await expect(writeBytes(a, 'v', 0, pattern(8 * SEG, 3))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    bucket.up();
    await writeBytes(a, 'v', 0, pattern(8 * SEG, 4));
    await a.commit();
    a.abandon();
    const b = await openSmall(bucket.durable());
    expect(sameBytes(await readBytes(b, 'v', 0, 8 * SEG), pattern(8 * SEG, 4))).toBe('same');
  });

  it('gives each image its own subdirectory of a shared cache directory', async () => {
    const dir = await tempDir();
    const one = await createSmall(new FakeObjectStore(), { cacheDir: dir });
    const two = await createSmall(new FakeObjectStore(), { cacheDir: dir });
    for (const image of [one, two]) {
      await image.createVolume('v', MiB);
      await writeBytes(image, 'v', 0, pattern(2 * SEG, 5));
      await image.commit();
    }
    // Opening a third image in the same directory clears only its own subdirectory.
    const three = await createSmall(new FakeObjectStore(), { cacheDir: dir });
    expect((await readdir(dir)).sort()).toEqual([one, two, three].map((i) => i.stats().uuid).sort());
    expect(await readdir(join(dir, one.stats().uuid))).not.toEqual([]);
    expect(await readdir(join(dir, two.stats().uuid))).not.toEqual([]);
  });

  it('never evicts a pinned segment, and evicts clean ones least recently used first', async () => {
    const c = await SegmentCache.open(null, 3 * 10);
    await c.put('p', Buffer.alloc(10, 1), true);
    await c.put('a', Buffer.alloc(10, 2), false);
    await c.put('b', Buffer.alloc(10, 3), false);
    await c.get('a');
    await c.put('c', Buffer.alloc(10, 4), false); // over the bound: b is the least recent clean one
    expect([c.has('p'), c.has('a'), c.has('b'), c.has('c')]).toEqual([true, true, false, true]);
    await c.put('d', Buffer.alloc(10, 5), false);
    expect(c.has('p')).toBe(true);
    await c.unpin('p');
    await c.put('e', Buffer.alloc(10, 6), false);
    expect(c.has('p')).toBe(false);
    expect(c.bytes).toBeLessThanOrEqual(30);
  });
});
