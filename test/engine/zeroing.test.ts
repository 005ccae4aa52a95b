// TRIM, WRITE_ZEROES, FAST_ZERO, coherence and counters (semantics §9 cases 30, 31, 33 at engine
// level: T1-T4, D7, K1, Z3).
import { describe, expect, it } from 'vitest';
import { B, fill, makeRig, noFua, readAt } from './support.ts';

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
