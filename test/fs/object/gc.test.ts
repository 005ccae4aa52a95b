// GC and check of the object-store image: compaction keeps what snapshots and clones reference,
// dead segments, journals and checkpoints go, crash orphans go after their grace period, and the
// bucket comes back within 1.3x of the live data; check proves every reference resolves.
import { describe, expect, it } from 'vitest';
import { checkObjectImage } from '../../../src/fs/object/object-check.ts';
import { collectGarbage } from '../../../src/fs/object/object-gc.ts';
import { MANIFEST_KEY } from '../../../src/fs/object/keys.ts';
import { readManifest } from '../../../src/fs/object/manifest-io.ts';
import type { ObjectInfo } from '../../../src/storage/object-store.ts';
import { FakeObjectStore } from '../../support/fake-object-store.ts';
import { createSmall, openSmall, pattern, readBytes, sameBytes, writeBytes } from './helpers.ts';

const MiB = 1 << 20;
const VOL = 2 * MiB;

async function clean(bucket: FakeObjectStore): Promise<Awaited<ReturnType<typeof checkObjectImage>>> {
  const report = await checkObjectImage(bucket);
  expect(report.errors).toEqual([]);
  return report;
}

describe('object image GC', () => {
  it('overwrite three times, delete the snapshots, compact: the bucket is under 1.3x the live data', async () => {
    const bucket = new FakeObjectStore({ pageSize: 50 });
    const a = await createSmall(bucket, { segmentBlocks: 32, cacheSize: 4 * MiB });
    await a.createVolume('v', VOL);
    for (let round = 0; round < 3; round++) {
      for (let off = 0; off < VOL; off += 64 * 1024) await writeBytes(a, 'v', off, pattern(64 * 1024, round * 1000 + off / 65536));
      await a.commit();
      await a.snapshot('v', `s${round}`);
    }
    for (let off = 0; off < VOL; off += 64 * 1024) await writeBytes(a, 'v', off, pattern(64 * 1024, 3000 + off / 65536));
    await a.commit();
    const before = await clean(bucket);
    expect(before.bytes).toBeGreaterThan(3.5 * VOL);
    // The snapshots keep their data through a compaction.
    await collectGarbage(a, { graceMs: 0 });
    expect(sameBytes(await readBytes(a, 's1', 0, 64 * 1024), pattern(64 * 1024, 1000))).toBe('same');
    for (const s of ['s0', 's1', 's2']) await a.deleteVolume(s);
    const gc = await collectGarbage(a, { graceMs: 0 });
    expect(gc.deleted.length).toBeGreaterThan(0);
    const after = await clean(bucket);
    expect(after.leaked).toEqual([]);
    expect(after.liveBytes).toBe(VOL);
    expect(after.bytes).toBeLessThan(1.3 * after.liveBytes);
    a.abandon();
    const b = await openSmall(bucket.durable());
    for (let off = 0; off < VOL; off += 256 * 1024) {
      expect(sameBytes(await readBytes(b, 'v', off, 64 * 1024), pattern(64 * 1024, 3000 + off / 65536))).toBe('same');
    }
  });

  it('compacts half-dead segments, keeping a clone and its origin readable', async () => {
    const bucket = new FakeObjectStore({ pageSize: 50 });
    const a = await createSmall(bucket, { segmentBlocks: 16 });
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(MiB, 1));
    await a.commit();
    await a.clone('v', 'c');
    // Rewrite every other block of both: each old segment keeps half its blocks live (shared).
    for (let blk = 0; blk < 256; blk += 2) {
      await writeBytes(a, 'v', blk * 4096, pattern(4096, 10_000 + blk));
      await writeBytes(a, 'c', blk * 4096, pattern(4096, 20_000 + blk));
    }
    await a.commit();
    const gc = await collectGarbage(a, { graceMs: 0 });
    expect(gc.segmentsCompacted).toBeGreaterThan(0);
    expect(gc.blocksMoved).toBe(128);
    const report = await clean(bucket);
    expect(report.leaked).toEqual([]);
    a.abandon();
    const b = await openSmall(bucket.durable());
    const base = pattern(MiB, 1);
    for (let blk = 0; blk < 256; blk++) {
      const v = blk % 2 === 0 ? pattern(4096, 10_000 + blk) : base.subarray(blk * 4096, blk * 4096 + 4096);
      const c = blk % 2 === 0 ? pattern(4096, 20_000 + blk) : v;
      expect(sameBytes(await readBytes(b, 'v', blk * 4096, 4096), v)).toBe('same');
      expect(sameBytes(await readBytes(b, 'c', blk * 4096, 4096), c)).toBe('same');
    }
  });

  it('deletes the orphans of a writer cut off mid-upload after the grace period, keeping its seal', async () => {
    const bucket = new FakeObjectStore({ pageSize: 50 });
    const a = await createSmall(bucket, { checkpointEvery: 1000 });
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(4096, 1));
    await a.commit();
    await writeBytes(a, 'v', 4096, pattern(4096, 2));
    bucket.failCall(2); // the segment lands, the journal PUT fails
    await expect(a.commit()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    const b = await openSmall(bucket);
    const orphans = (await checkObjectImage(bucket)).leaked.filter((k) => k.startsWith(`seg/${a.epoch.toString(16).padStart(8, '0')}/`));
    expect(orphans.length).toBe(1);
    let t = 0;
    const waiting = await collectGarbage(b, { graceMs: 1000, now: () => t });
    expect(waiting.waiting).toBe(1);
    expect(bucket.keys()).toContain(orphans[0]);
    t = 5000;
    const done = await collectGarbage(b, { graceMs: 1000, now: () => t });
    expect(done.deleted).toContain(orphans[0]);
    expect((await clean(bucket)).leaked).toEqual([]);
    // The old writer retries its commit: the segment goes up again, the journal loses to the
    // seal GC kept, and nothing of it becomes visible.
    await expect(a.commit()).rejects.toMatchObject({ code: 'FENCED' });
    await b.close();
    const c = await openSmall(bucket);
    expect(sameBytes(await readBytes(c, 'v', 0, 8192), Buffer.concat([pattern(4096, 1), Buffer.alloc(4096)]))).toBe('same');
  });

  it('check reports a missing segment and a stray object', async () => {
    const bucket = new FakeObjectStore({ pageSize: 50 });
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(4096, 1));
    await a.close();
    const seg = bucket.keys().find((k) => k.startsWith('seg/'))!;
    await bucket.delete(seg);
    bucket.poke('seg/00000009/000000000000', Buffer.alloc(4096));
    const report = await checkObjectImage(bucket);
    expect(report.errors.join('\n')).toContain('(missing)');
    expect(report.leaked).toContain('seg/00000009/000000000000');
    // The image stood still, so the problem is reported at once, not read again.
    expect(report.rereads).toBe(0);
  });

  it('check of an image whose checkpoint is missing fails CORRUPT at the first read, not after rereads', async () => {
    let manifestReads = 0;
    class CountingBucket extends FakeObjectStore {
      override get(key: string, range?: { offset: number; length: number }) {
        if (key === MANIFEST_KEY) manifestReads++;
        return super.get(key, range);
      }
    }
    const bucket = new CountingBucket({ pageSize: 50 });
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(4096, 1));
    await a.close();
    const { manifest } = await readManifest(bucket);
    await bucket.delete(manifest.checkpoint.key);
    manifestReads = 0;
    await expect(checkObjectImage(bucket)).rejects.toMatchObject({ code: 'CORRUPT' });
    // One read of the state, one look whether it moved (it did not): the journals it never
    // replayed do not count as the image moving on.
    expect(manifestReads).toBe(2);
  });

  it('check of an image its writer moves on mid-check (overwrite, commit, GC) reads again and is clean', async () => {
    /** A bucket that runs `beforeList` once, just before the next listing: the check's. */
    class MovingBucket extends FakeObjectStore {
      beforeList: (() => Promise<void>) | undefined;
      override async *list(prefix: string): AsyncIterable<ObjectInfo> {
        const step = this.beforeList;
        this.beforeList = undefined;
        if (step) await step();
        yield* super.list(prefix);
      }
    }
    const bucket = new MovingBucket({ pageSize: 50 });
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    for (let b = 0; b < 8; b++) await writeBytes(a, 'v', b * 4096, pattern(4096, b));
    await a.commit();
    const first = bucket.keys().filter((k) => k.startsWith('seg/'));
    // After the check replayed the journal chain, and before it lists: the blocks move to a new
    // segment, and GC deletes the old one the check's index still points into.
    bucket.beforeList = async () => {
      for (let b = 0; b < 8; b++) await writeBytes(a, 'v', b * 4096, pattern(4096, 100 + b));
      await a.commit();
      const gc = await collectGarbage(a, { graceMs: 0 });
      expect(gc.deleted.filter((k) => first.includes(k)).length).toBeGreaterThan(0);
    };
    const report = await checkObjectImage(bucket);
    expect(bucket.beforeList).toBeUndefined();
    expect(report.errors).toEqual([]);
    expect(report.rereads).toBe(1);
    await a.close();
  });
});

describe('object image GC alongside writers', () => {
  it('loses nothing when GC runs while writes and flushes go on', async () => {
    const bucket = new FakeObjectStore({ pageSize: 7 });
    bucket.reorder(3, 5);
    const a = await createSmall(bucket, { segmentBlocks: 8, checkpointEvery: 3 });
    await a.createVolume('v', MiB);
    const latest = new Map<number, number>();
    const writer = (async () => {
      for (let i = 0; i < 120; i++) {
        const blk = (i * 13) % 96;
        await writeBytes(a, 'v', blk * 4096, pattern(4096, 7000 + i));
        latest.set(blk, 7000 + i);
        if (i % 5 === 4) await a.commit();
      }
      await a.commit();
    })();
    let gcs = 0;
    let writing = true;
    void writer.finally(() => (writing = false));
    while (writing) {
      await collectGarbage(a, { graceMs: 0, threshold: 0.9 });
      gcs++;
    }
    await writer;
    await collectGarbage(a, { graceMs: 0, threshold: 0.9 });
    expect(gcs).toBeGreaterThan(2);
    expect((await clean(bucket)).leaked).toEqual([]);
    a.abandon();
    const b = await openSmall(bucket.durable());
    for (const [blk, seed] of latest) expect(sameBytes(await readBytes(b, 'v', blk * 4096, 4096), pattern(4096, seed))).toBe('same');
  });
});

describe('object image GC of small segments', () => {
  it('merges the many small segments that frequent flushes leave', async () => {
    const bucket = new FakeObjectStore({ pageSize: 50 });
    const a = await createSmall(bucket, { segmentBlocks: 64, cacheSize: 2 * MiB });
    await a.createVolume('v', MiB);
    for (let i = 0; i < 40; i++) {
      await writeBytes(a, 'v', i * 4096, pattern(4096, 300 + i));
      await a.commit(); // one 4 KiB segment each
    }
    const segs = () => bucket.keys().filter((k) => k.startsWith('seg/')).length;
    expect(segs()).toBe(40);
    const gc = await collectGarbage(a, { graceMs: 0 });
    expect(gc.blocksMoved).toBe(40);
    expect(segs()).toBe(1);
    // A second pass has nothing left to merge.
    expect((await collectGarbage(a, { graceMs: 0 })).blocksMoved).toBe(0);
    expect((await clean(bucket)).leaked).toEqual([]);
    a.abandon();
    const b = await openSmall(bucket.durable());
    for (let i = 0; i < 40; i++) expect(sameBytes(await readBytes(b, 'v', i * 4096, 4096), pattern(4096, 300 + i))).toBe('same');
  });
});
