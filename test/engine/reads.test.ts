// Reads by mapping type (semantics §9 cases 1-3 at engine level: E1-E3, E10, T6).
import { describe, expect, it } from 'vitest';
import { B, fill, imageBytes, makeRig, makeUnwritten, noFua, readAt, GARBAGE } from './support.ts';

describe('engine reads', () => {
  it('case 1: one READ over mapped | hole | unwritten | mapped returns data | zeros | zeros | data at exact offsets; inline reads its record', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(2 * B, 0xa1), 0, noFua);
    await makeUnwritten(dev, 4 * B, 2 * B);
    await dev.write(fill(B, 0xb2), 6 * B, noFua);
    const got = await readAt(dev, 0, 7 * B);
    expect(got.subarray(0, 2 * B).every((x) => x === 0xa1)).toBe(true);
    expect(got.subarray(2 * B, 6 * B).every((x) => x === 0)).toBe(true);
    expect(got.subarray(6 * B, 7 * B).every((x) => x === 0xb2)).toBe(true);
    // The unwritten blocks sit over garbage in the image.
    expect((await imageBytes(rig, 'v', 4 * B, 16)).every((x) => x === GARBAGE)).toBe(true);
    // Inline lives in its own volume in this store (a whole volume of <= 2 KiB).
    await rig.store.createVolume('tiny', 2048);
    const tiny = rig.dev('tiny');
    await tiny.write(fill(512, 0xc3), 512, noFua);
    const t = await readAt(tiny, 0, 2048);
    expect(t.subarray(0, 512).every((x) => x === 0)).toBe(true);
    expect(t.subarray(512, 1024).every((x) => x === 0xc3)).toBe(true);
    expect(t.subarray(1024).every((x) => x === 0)).toBe(true);
    // Sub-block reads at 512 granularity across a type boundary.
    const mid = await readAt(dev, 2 * B - 512, 1024);
    expect(mid.subarray(0, 512).every((x) => x === 0xa1)).toBe(true);
    expect(mid.subarray(512).every((x) => x === 0)).toBe(true);
  });

  it('case 2: unwritten over garbage reads zeros, and neither holes nor unwritten space are read from the image', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await makeUnwritten(dev, 0, 8 * B);
    const before = rig.faults.counts.read;
    const got = await readAt(dev, 0, 16 * B);
    expect(got.every((x) => x === 0)).toBe(true);
    expect(rig.faults.counts.read).toBe(before);
    expect(dev.counters.imageBytesRead).toBe(0);
    expect(dev.counters.zeroFilledBytes).toBe(16 * B);
  });

  it('case 2b: a READ of holes only (whole blocks, a sub-block piece, the whole volume) issues no backing read', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    const reads = rig.faults.counts.read;
    for (const [at, len] of [
      [0, 4 * B],
      [5 * B + 1536, 512],
      [0, 64 * B],
    ] as const) {
      expect((await readAt(dev, at, len)).every((x) => x === 0)).toBe(true);
    }
    expect(rig.faults.counts.read - reads).toBe(0);
    expect(dev.counters.imageBytesRead).toBe(0);
    expect(dev.counters.zeroFilledBytes).toBe(4 * B + 512 + 64 * B);
    // The space under the hole is garbage in the image: the zeros did not come from there.
    await dev.write(fill(B, 1), 63 * B, noFua);
    expect(rig.faults.counts.read - reads).toBe(0);
  });

  it('case 3: block status says HOLE|ZERO for holes, ZERO for unwritten, 0 for data, and agrees with reads', async () => {
    const rig = await makeRig();
    const dev = rig.dev();
    await dev.write(fill(B, 1), B, noFua);
    await makeUnwritten(dev, 2 * B, B);
    const ext = await dev.blockStatus(512, 64 * B - 512);
    expect(ext[0]).toEqual({ length: B - 512, hole: true, zero: true });
    expect(ext[1]).toEqual({ length: B, hole: false, zero: false });
    expect(ext[2]).toEqual({ length: B, hole: false, zero: true });
    expect(ext[3]).toEqual({ length: 61 * B, hole: true, zero: true });
    expect(ext.reduce((a, e) => a + e.length, 0)).toBe(64 * B - 512);
    const map = await dev.mappingStatus(0, 64 * B);
    expect(map.map((m) => m.flags)).toEqual([0, 2, 1, 0]);
  });
});
