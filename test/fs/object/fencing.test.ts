// One writer at a time: a new read-write open raises the epoch and seals the old writer's journal
// chain; the old writer's next commit or checkpoint fails FENCED, it never writes again, and none
// of its writes after the takeover ever appear. Every flush it acknowledged before does.
import { describe, expect, it } from 'vitest';
import { FakeObjectStore } from '../../support/fake-object-store.ts';
import { createSmall, openSmall, pattern, readBytes, sameBytes, writeBytes } from './helpers.ts';

const MiB = 1 << 20;

describe('object image fencing', () => {
  it('fences the old writer: its later writes fail FENCED and never appear', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    await writeBytes(a, 'v', 0, pattern(8192, 1));
    await a.commit();

    const b = await openSmall(bucket); // another host takes over, empty cache
    expect(b.epoch).toBeGreaterThan(a.epoch);
    expect(sameBytes(await readBytes(b, 'v', 0, 8192), pattern(8192, 1))).toBe('same');

    // A has not noticed yet: its write lands in its own cache, its commit loses to the seal.
    await writeBytes(a, 'v', 0, pattern(4096, 2));
    await expect(a.commit()).rejects.toMatchObject({ code: 'FENCED' });
    const puts = bucket.counters.calls.putIfAbsent + bucket.counters.calls.putIfMatch + bucket.counters.calls.delete;
    await expect(writeBytes(a, 'v', 8192, pattern(4096, 3))).rejects.toMatchObject({ code: 'FENCED' });
    await expect(a.commit()).rejects.toMatchObject({ code: 'FENCED' });
    await expect(a.checkpoint()).rejects.toMatchObject({ code: 'FENCED' });
    await expect(a.createVolume('w', MiB)).rejects.toMatchObject({ code: 'FENCED' });
    await a.close();
    expect(bucket.counters.calls.putIfAbsent + bucket.counters.calls.putIfMatch + bucket.counters.calls.delete).toBe(puts);
    expect(a.durability.failure?.code).toBe('FENCED');

    await writeBytes(b, 'v', 4096, pattern(4096, 4));
    await b.close();
    const c = await openSmall(bucket);
    expect(sameBytes(await readBytes(c, 'v', 0, 4096), pattern(4096, 1))).toBe('same');
    expect(sameBytes(await readBytes(c, 'v', 4096, 4096), pattern(4096, 4))).toBe('same');
    expect(c.listVolumes().map((v) => v.name)).toEqual(['v']);
  });

  it('fences a writer whose checkpoint loses the manifest CAS to a takeover', async () => {
    const bucket = new FakeObjectStore();
    const a = await createSmall(bucket);
    await a.createVolume('v', MiB);
    const b = await openSmall(bucket);
    await expect(a.checkpoint()).rejects.toMatchObject({ code: 'FENCED' });
    await b.createVolume('w', MiB);
    await b.close();
    const c = await openSmall(bucket);
    expect(c.listVolumes().map((v) => v.name).sort()).toEqual(['v', 'w']);
  });

  it('keeps every flush the old writer acknowledged while racing the takeover', async () => {
    const N = 200; // more commits than A can make before B's replay catches up with it
    let raced = 0;
    for (let seed = 1; seed <= 6; seed++) {
      const bucket = new FakeObjectStore();
      const a = await createSmall(bucket, { checkpointEvery: 1000 });
      await a.createVolume('v', MiB);
      const acked: number[] = [];
      const writer = (async () => {
        for (let i = 0; i < N; i++) {
          try {
            await writeBytes(a, 'v', i * 4096, pattern(4096, 1000 * seed + i));
            await a.commit();
            acked.push(i);
            // A pause between commits (as a client has): otherwise A and B's seal attempts
            // alternate in lockstep and A, issuing first, wins every round until it stops.
            for (let t = 0; t < 2; t++) await new Promise((r) => setImmediate(r));
          } catch (err) {
            expect((err as { code?: string }).code).toBe('FENCED');
            return;
          }
        }
      })();
      // Let A commit a few times (each commit is a handful of store calls), then take over.
      for (let t = 0; t < seed * 12; t++) await new Promise((r) => setImmediate(r));
      const b = await openSmall(bucket);
      await writer;
      if (acked.length > 0 && acked.length < N) raced++;
      for (const i of acked) expect(sameBytes(await readBytes(b, 'v', i * 4096, 4096), pattern(4096, 1000 * seed + i))).toBe('same');
      // Nothing A wrote after being fenced became visible: every non-acked block reads as zeros.
      for (let i = 0; i < N; i++) {
        if (!acked.includes(i)) expect(sameBytes(await readBytes(b, 'v', i * 4096, 4096), Buffer.alloc(4096))).toBe('same');
      }
    }
    // The takeover really landed in the middle of A's commits.
    expect(raced).toBe(6);
  });
});
