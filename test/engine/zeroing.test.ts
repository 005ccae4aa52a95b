// TRIM, WRITE_ZEROES, FAST_ZERO, coherence and counters (semantics §9 cases 30, 31, 33 at engine
// level: T1-T4, D7, K1, Z3).
import { describe, expect, it } from 'vitest';
import { B, fill, imageBytes, makeRig, noFua, readAt, settleTicks, storageSpan } from './support.ts';

const zero = (mayTrim: boolean, fast = false) => ({ fua: false, mayTrim, fast });

describe('engine zeroing', () => {
  it('case 30a: TRIM punches whole blocks, zeroes partial edges, keeps neighbours, and the area is rewritable', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(6 * B, 0x30), 0, noFua);
    await dev.trim(B + 512, 3 * B, noFua);
    const got = await readAt(dev, 0, 6 * B);
    for (let i = 0; i < 6 * B; i++) if (got[i] !== (i >= B + 512 && i < 4 * B + 512 ? 0 : 0x30)) throw new Error(`byte ${i} is ${got[i]}`);
    const st = await dev.blockStatus(2 * B, 2 * B);
    expect(st[0]).toEqual({ length: 2 * B, hole: true, zero: true });
    await dev.write(fill(B, 0x31), 2 * B, noFua);
    expect((await readAt(dev, 2 * B, B)).every((x) => x === 0x31)).toBe(true);
  });

  it('case 30b: WRITE_ZEROES with NO_HOLE provisions (ZERO without HOLE) and later writes on a full store do not get NO_SPACE', async () => {
    const rig = await makeRig({ dataBytes: 16 * B, volumeBytes: 64 * B });
    const dev = rig.dev();
    await dev.zero(512, 4 * B, zero(false));
    const st = await dev.blockStatus(0, 5 * B);
    expect(st).toEqual([{ length: 5 * B, hole: false, zero: true }]);
    let n = 8;
    while (await dev.write(fill(B, 2), n * B, noFua).then(() => true, () => false)) n++;
    await dev.write(fill(512, 9), 0, noFua);
    await dev.write(fill(B, 9), 4 * B, noFua);
    const got = await readAt(dev, 0, 5 * B);
    expect(got.subarray(0, 512).every((x) => x === 9) && got.subarray(512, 4 * B).every((x) => x === 0)).toBe(true);
  });

  it('case 30c: FAST_ZERO over a partly covered written block is refused with nothing changed; without it zeros are written', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(3 * B, 0x3c), 0, noFua);
    await expect(dev.zero(512, 2 * B, zero(true, true))).rejects.toMatchObject({ code: 'FAST_ZERO_UNAVAILABLE' });
    expect((await readAt(dev, 0, 3 * B)).every((x) => x === 0x3c)).toBe(true);
    await dev.zero(B, B, zero(true, true)); // whole blocks: metadata only, fast
    await dev.zero(512, 2 * B, zero(true, false));
    const got = await readAt(dev, 0, 3 * B);
    for (let i = 0; i < 3 * B; i++) if (got[i] !== (i >= 512 && i < 2 * B + 512 ? 0 : 0x3c)) throw new Error(`byte ${i} is ${got[i]}`);
    // Zeroing a shared edge copies up (E9): the snapshot keeps its bytes.
    await rig.engine.snapshot('v', 's');
    await dev.zero(2 * B + 1024, 512, zero(true));
    expect((await readAt(rig.dev('s'), 2 * B + 1024, 512)).every((x) => x === 0x3c)).toBe(true);
    expect((await readAt(dev, 2 * B + 1024, 512)).every((x) => x === 0)).toBe(true);
  });

  it('case 31: a read in flight on a block a concurrent TRIM frees never sees other data; the block is reused only later', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(B, 0x31), 0, noFua);
    await dev.flush();
    const phys = rig.store.lookup('v', 0).physical;
    const reading = readAt(dev, 0, B);
    const trimming = dev.trim(0, B, noFua);
    const writing = dev.write(fill(B, 0x77), 5 * B, noFua);
    const [got] = await Promise.all([reading, trimming, writing]);
    expect(got.every((x) => x === 0x31) || got.every((x) => x === 0)).toBe(true);
    expect(rig.store.lookup('v', 5 * B).physical).not.toBe(phys);
  });

  it('case 31b: a block freed (and committed) under a held READ is not handed out until the read settles; the read returns the old data', async () => {
    const rig = await makeRig({ gated: true, dataBytes: 16 * B, volumeBytes: 64 * B });
    const dev = rig.dev();
    await dev.write(fill(B, 0x31), 0, noFua);
    await dev.flush();
    const phys = rig.store.lookup('v', 0).physical;
    const [from, to] = storageSpan(rig, 'v', 0, B);
    const held = rig.gates!.holdRange('read', from, to);
    let got: Buffer | null = null;
    const reading = readAt(dev, 0, B).then((b) => void (got = b));
    await settleTicks();
    expect(held.held).toBe(1);
    await dev.trim(0, B, noFua);
    await dev.flush(); // the free is durable; only the read's pin keeps the block
    expect(rig.store.stats().pendingFreeBlocks).toBe(1);
    // Fill the store: the allocator must not hand out the pinned block.
    const taken: number[] = [];
    for (let n = 8; await dev.write(fill(B, 0x77), n * B, noFua).then(() => true, () => false); n++) taken.push(rig.store.lookup('v', n * B).physical);
    expect(taken.length).toBeGreaterThan(0);
    expect(taken).not.toContain(phys);
    expect(got).toBe(null);
    held.release();
    await reading;
    expect((got! as Buffer).every((x) => x === 0x31)).toBe(true);
    // Settled and committed: the block is back in the pool, so the full store has room again.
    expect(rig.store.stats().pendingFreeBlocks).toBe(0);
    await dev.write(fill(B, 0x78), 40 * B, noFua);
  });

  it('case 32: no data cache serves stale bytes: reads after writes, after CACHE, and after a block is freed and reallocated to another volume', async () => {
    const rig = await makeRig({ dataBytes: 16 * B, volumeBytes: 64 * B });
    const dev = rig.dev();
    await dev.write(fill(2 * B, 0x41), 0, noFua);
    expect((await readAt(dev, 0, 2 * B)).every((x) => x === 0x41)).toBe(true); // would warm a cache
    await dev.cache(0, 2 * B);
    await dev.write(fill(B, 0x42), 0, noFua);
    await dev.write(fill(512, 0x43), B + 512, noFua);
    const got = await readAt(dev, 0, 2 * B);
    for (let i = 0; i < 2 * B; i++) if (got[i] !== (i < B ? 0x42 : i >= B + 512 && i < B + 1024 ? 0x43 : 0x41)) throw new Error(`byte ${i} is ${got[i]}`);
    // Reallocation: read block 0 (warm), free it, commit; hole fills in another volume until one
    // gets that block (the allocator is next-fit, so it comes round).
    await rig.store.createVolume('w', 64 * B);
    const phys = rig.store.lookup('v', 0).physical;
    expect((await readAt(dev, 0, B)).every((x) => x === 0x42)).toBe(true);
    await dev.trim(0, B, noFua);
    await dev.flush();
    const w = rig.dev('w');
    let at = -1;
    for (let k = 0; k < 64 && at < 0; k++) {
      await w.write(fill(B, 0x99), k * B, noFua);
      if (rig.store.lookup('w', k * B).physical === phys) at = k * B;
      else {
        await w.trim(k * B, B, noFua);
        await w.flush();
      }
    }
    expect(at).toBeGreaterThanOrEqual(0);
    expect((await readAt(dev, 0, B)).every((x) => x === 0)).toBe(true);
    expect((await readAt(w, at, B)).every((x) => x === 0x99)).toBe(true);
    // Nothing of v's lands on w's block later (a flush would write back any staged copy).
    await dev.write(fill(512, 0x45), 512, noFua);
    await dev.flush();
    await w.flush();
    expect((await imageBytes(rig, 'w', at, B)).every((x) => x === 0x99)).toBe(true);
    expect((await readAt(w, at, B)).every((x) => x === 0x99)).toBe(true);
    expect(rig.store.verify().errors).toEqual([]);
  });

  it('case 33: counters keep client, pad, copy-up and image bytes apart and count FUA shortcuts, commits and flushes', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(512, 1), 0, noFua); // hole fill: 512 client, 3584 pad, 4096 image
    // The fill's conversion must be durable before an overwrite of it is pure (E11): commit it.
    await dev.flush();
    await dev.write(fill(512, 2), 512, { fua: true }); // pure overwrite: shortcut
    await rig.engine.snapshot('v', 's');
    await dev.write(fill(512, 3), 1024, noFua); // COW: copy-up 3584, image read 4096, write 4096
    await dev.flush();
    await readAt(dev, 0, 2 * B);
    expect(dev.counters).toMatchObject({
      clientBytesWritten: 1536,
      padBytes: B - 512,
      copyUpBytes: B - 512,
      imageBytesWritten: 512 + 2 * B,
      imageBytesRead: B + B,
      clientBytesRead: 2 * B,
      zeroFilledBytes: B,
      fuaShortcuts: 1,
      flushes: 2,
      journalCommits: 2,
      cowCopies: 1,
    });
  });
});
