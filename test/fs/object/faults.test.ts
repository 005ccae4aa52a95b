// Store faults: what the ObjectStore still fails after its own retries becomes STORE_UNAVAILABLE
// (EIO) for the calls that need the store; nothing is poisoned or wedged, a failed commit is
// retried verbatim by the next FLUSH, and service resumes when the store answers.
import { describe, expect, it } from 'vitest';
import { FakeObjectStore } from '../../support/fake-object-store.ts';
import { createSmall, openSmall, pattern, readBytes, sameBytes, writeBytes } from './helpers.ts';

const MiB = 1 << 20;

describe('object image faults', () => {
  it('turns a store that is down into STORE_UNAVAILABLE, then recovers by itself', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(8192, 1));
    await a.commit();
    bucket.goDown();
    await writeBytes(a, 'v', 8192, pattern(8192, 2)); // lands in the local cache
    await expect(a.commit()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(a.commit()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(a.createVolume('w', MiB)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    // Reads of data the host still holds keep working.
    expect(sameBytes(await readBytes(a, 'v', 8192, 8192), pattern(8192, 2))).toBe('same');
    bucket.up();
    await a.commit();
    expect(a.durability.failure).toBeNull();
    await writeBytes(a, 'v', 16384, pattern(4096, 3));
    await a.commit();
    a.abandon();
    const b = await openSmall(bucket.durable());
    expect(sameBytes(await readBytes(b, 'v', 0, 20480), Buffer.concat([pattern(8192, 1), pattern(8192, 2), pattern(4096, 3)]))).toBe('same');
    expect(b.listVolumes().map((v) => v.name).sort()).toEqual(['v', 'w']);
  });

  it('answers reads the cache cannot serve with STORE_UNAVAILABLE while the store is down', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(8192, 4));
    await a.close();
    const b = await openSmall(bucket);
    bucket.goDown('get');
    await expect(readBytes(b, 'v', 0, 4096)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    bucket.up();
    expect(sameBytes(await readBytes(b, 'v', 0, 8192), pattern(8192, 4))).toBe('same');
  });

  it('retries commits whose PUT landed but whose answer was lost, without fencing itself', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket, { checkpointEvery: 3 });
    await a.createVolume('v', MiB);
    bucket.ambiguousPuts(0.5, 3);
    let failed = 0;
    for (let i = 0; i < 30; i++) {
      await writeBytes(a, 'v', i * 4096, pattern(4096, 50 + i));
      await a.commit().catch((err) => {
        expect(err).toMatchObject({ code: 'STORE_UNAVAILABLE' });
        failed++;
      });
    }
    bucket.ambiguousPuts(0);
    await a.commit();
    expect(failed).toBeGreaterThan(5);
    expect(a.durability.failure).toBeNull();
    a.abandon();
    const b = await openSmall(bucket.durable());
    for (let i = 0; i < 30; i++) expect(sameBytes(await readBytes(b, 'v', i * 4096, 4096), pattern(4096, 50 + i))).toBe(`same`);
  });

  it('keeps every acknowledged flush under a fraction of failing calls', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket, { checkpointEvery: 3 });
    await a.createVolume('v', MiB);
    bucket.failFraction(0.2, 11);
    const acked = new Map<number, number>();
    const written = new Map<number, number>();
    for (let i = 0; i < 60; i++) {
      const blk = (i * 7) % 40;
      await writeBytes(a, 'v', blk * 4096, pattern(4096, 200 + i));
      written.set(blk, 200 + i);
      try {
        await a.commit();
        for (const [k, v] of written) acked.set(k, v);
      } catch (err) {
        expect(err).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      }
    }
    expect(bucket.counters.failures).toBeGreaterThan(5);
    bucket.failFraction(0);
    a.abandon();
    const b = await openSmall(bucket.durable());
    for (const [blk, seed] of acked) {
      const got = await readBytes(b, 'v', blk * 4096, 4096);
      // A later write of the block may have landed too (a failed commit can still succeed on retry).
      const ok = [...Array(60).keys()].some((i) => (i * 7) % 40 === blk && 200 + i >= seed && got.equals(pattern(4096, 200 + i)));
      expect(ok).toBe(true);
    }
  });

  it('does not wedge on a hung store: a commit waits, later ones join it, all finish on release', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(4096, 9));
    bucket.hang('put');
    const flushes = [a.commit(), a.commit(), a.commit()];
    await new Promise((r) => setTimeout(r, 20));
    expect(bucket.hungCalls).toBeGreaterThan(0);
    // Reads keep working meanwhile.
    expect(sameBytes(await readBytes(a, 'v', 0, 4096), pattern(4096, 9))).toBe('same');
    bucket.release();
    await Promise.all(flushes);
  });
});
