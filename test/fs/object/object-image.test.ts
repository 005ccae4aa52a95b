// The object-store image's backend over the fake bucket: create, write, flush, reopen on a new
// "host" (a fresh process, an empty cache), snapshots and clones, sub-block writes, coalesced
// commits, and what each commit puts in the bucket.
import { describe, expect, it } from 'vitest';
import { ObjectImageStore } from '../../../src/fs/object/object-image-store.ts';
import { FakeObjectStore } from '../../support/fake-object-store.ts';
import { SMALL, createSmall, openSmall, pattern, readBytes, sameBytes, writeBytes } from './helpers.ts';

const MiB = 1 << 20;

describe('object image', () => {
  it('serves flushed writes from the bucket on a new host with an empty cache', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket);
    await a.createVolume('v', 4 * MiB);
    const data = pattern(300 * 1024, 1);
    await writeBytes(a, 'v', 8192, data);
    await a.commit();
    expect(sameBytes(await readBytes(a, 'v', 8192, data.length), data)).toBe('same');
    a.abandon();
    const b = await openSmall(bucket.durable());
    expect(b.segments.cache.bytes).toBe(0);
    expect(sameBytes(await readBytes(b, 'v', 8192, data.length), data)).toBe('same');
    expect(sameBytes(await readBytes(b, 'v', 0, 8192), Buffer.alloc(8192))).toBe('same');
    expect(b.segments.fetches).toBeGreaterThan(0);
    expect(b.epoch).toBe(a.epoch + 1);
  });

  it('loses unflushed writes only, and keeps sub-block writes into one block apart', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(4096, 2));
    await a.commit();
    await Promise.all([writeBytes(a, 'v', 512, Buffer.alloc(512, 0xaa)), writeBytes(a, 'v', 2048, Buffer.alloc(1024, 0xbb))]);
    await a.commit();
    await writeBytes(a, 'v', 4096, pattern(4096, 3)); // never flushed
    const expected = pattern(4096, 2);
    expected.fill(0xaa, 512, 1024);
    expected.fill(0xbb, 2048, 3072);
    expect(sameBytes(await readBytes(a, 'v', 0, 4096), expected)).toBe('same');
    a.abandon();
    const b = await openSmall(bucket.durable());
    expect(sameBytes(await readBytes(b, 'v', 0, 4096), expected)).toBe('same');
    expect(sameBytes(await readBytes(b, 'v', 4096, 4096), Buffer.alloc(4096))).toBe('same');
  });

  it('keeps snapshots and clones metadata-only and readable after a reopen', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(64 * 1024, 4));
    await a.commit();
    const before = bucket.counters.bytesWritten;
    await a.snapshot('v', 's');
    await a.clone('s', 'c');
    // Metadata-only: the journal objects of two structural changes, no segment.
    expect(bucket.counters.bytesWritten - before).toBeLessThan(4096);
    await writeBytes(a, 'v', 0, pattern(64 * 1024, 5));
    await writeBytes(a, 'c', 4096, pattern(4096, 6));
    await a.close();
    const b = await openSmall(bucket.durable());
    expect(sameBytes(await readBytes(b, 's', 0, 64 * 1024), pattern(64 * 1024, 4))).toBe('same');
    expect(sameBytes(await readBytes(b, 'v', 0, 64 * 1024), pattern(64 * 1024, 5))).toBe('same');
    const c = pattern(64 * 1024, 4);
    pattern(4096, 6).copy(c, 4096);
    expect(sameBytes(await readBytes(b, 'c', 0, 64 * 1024), c)).toBe('same');
  });

  it('coalesces concurrent flushes into one commit', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket, { checkpointEvery: 1000 });
    await a.createVolume('v', MiB);
    const commitsBefore = a.durability.commits;
    const journalsBefore = bucket.keys().filter((k) => k.startsWith('journal/')).length;
    bucket.hang('put');
    const writes = Array.from({ length: 8 }, (_, i) => writeBytes(a, 'v', i * 4096, pattern(4096, 10 + i)));
    await Promise.all(writes);
    const first = a.commit(); // takes everything so far and hangs in its upload
    const more = Array.from({ length: 8 }, () => a.commit());
    await new Promise((r) => setTimeout(r, 20));
    bucket.release();
    await Promise.all([first, ...more]);
    expect(a.durability.commits - commitsBefore).toBe(1);
    expect(bucket.keys().filter((k) => k.startsWith('journal/')).length - journalsBefore).toBe(1);
  });

  it('opens read-only without writing, and refuses writes there', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(4096, 7));
    await a.commit();
    const puts = bucket.counters.calls.putIfAbsent + bucket.counters.calls.putIfMatch;
    const r = await ObjectImageStore.open(bucket, { ...SMALL, readOnly: true });
    expect(sameBytes(await readBytes(r, 'v', 0, 4096), pattern(4096, 7))).toBe('same');
    await expect(writeBytes(r, 'v', 0, pattern(4096, 8))).rejects.toMatchObject({ code: 'READ_ONLY' });
    expect(bucket.counters.calls.putIfAbsent + bucket.counters.calls.putIfMatch).toBe(puts);
  });

  it('refuses to create over an image and to open an empty prefix', async () => {
    const bucket = new FakeObjectStore();
    await createSmall(bucket);
    await expect(createSmall(bucket)).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await expect(openSmall(new FakeObjectStore())).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const half = new FakeObjectStore();
    half.poke('ckpt/00000001/000000000001', Buffer.from('left by a create that died'));
    await expect(createSmall(half)).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringContaining('half-created') });
  });
});
