// What only the memory device does: pages that come and go, holes in block status, huge sizes.
import { describe, expect, it } from 'vitest';
import type { DeviceExtent } from '../../../src/engine/block-device.ts';
import { MemoryDevice } from '../../../src/devices/memory-device.ts';
import { isIomapdError } from '../../../src/util/errors.ts';
import { KiB, MiB, isAllZero, pattern } from './device-fixtures.ts';

const PAGE = 4 * KiB;
const TiB = MiB * MiB;

const hole = (length: number): DeviceExtent => ({ length, hole: true, zero: true });
const data = (length: number): DeviceExtent => ({ length, hole: false, zero: false });

function small(): MemoryDevice {
  return new MemoryDevice({ size: 64 * PAGE, pageSize: PAGE });
}

describe('MemoryDevice', () => {
  it('rejects sizes and page sizes it cannot serve', () => {
    for (const options of [
      { size: 1000 },
      { size: -512 },
      { size: 2 ** 53 },
      { size: MiB, pageSize: 256 },
      { size: MiB, pageSize: 3 * KiB },
      { size: MiB, pageSize: 32 * MiB },
    ]) {
      expect(() => new MemoryDevice(options), JSON.stringify(options)).toThrow(
        expect.objectContaining({ code: 'BAD_ARGUMENT' }),
      );
    }
  });

  it('allocates a page only when written', async () => {
    const device = small();
    expect(device.allocatedBytes).toBe(0);
    await device.read(Buffer.alloc(16 * PAGE), 0);
    expect(device.allocatedBytes).toBe(0);
    await device.write(pattern(1024, 1), PAGE - 512, { fua: false });
    expect(device.allocatedBytes).toBe(2 * PAGE);
  });

  it('reports absent pages as holes and present ones as data, merged into runs', async () => {
    const device = small();
    await device.write(pattern(2 * PAGE, 1), 2 * PAGE, { fua: false });
    await device.write(pattern(512, 2), 10 * PAGE, { fua: false });
    expect(await device.blockStatus(0, 64 * PAGE)).toEqual([
      hole(2 * PAGE), data(2 * PAGE), hole(6 * PAGE), data(PAGE), hole(53 * PAGE),
    ]);
    // Starting and ending inside pages: the first and last extents are clipped to the range.
    expect(await device.blockStatus(PAGE + 512, 2 * PAGE)).toEqual([hole(PAGE - 512), data(PAGE + 512)]);
    expect(await device.blockStatus(3 * PAGE, 512)).toEqual([data(512)]);
  });

  it('trim drops the pages it covers and zeroes the ones it touches', async () => {
    const device = small();
    await device.write(pattern(8 * PAGE, 1), 0, { fua: false });
    await device.trim(PAGE + 512, 3 * PAGE, { fua: false });
    // Pages 2 and 3 are covered; pages 1 and 4 are only touched.
    expect(device.allocatedBytes).toBe(6 * PAGE);
    expect(await device.blockStatus(0, 8 * PAGE)).toEqual([data(2 * PAGE), hole(2 * PAGE), data(4 * PAGE)]);
    const bytes = Buffer.alloc(3 * PAGE);
    await device.read(bytes, PAGE + 512);
    expect(isAllZero(bytes)).toBe(true);
  });

  it('zero drops whole pages only when holes are allowed', async () => {
    const device = small();
    await device.write(pattern(4 * PAGE, 1), 0, { fua: false });
    await device.zero(0, 4 * PAGE, { fua: false, mayTrim: false, fast: false });
    expect(device.allocatedBytes).toBe(4 * PAGE);
    await device.zero(0, 4 * PAGE, { fua: false, mayTrim: true, fast: true });
    expect(device.allocatedBytes).toBe(0);
    // NO_HOLE over never-written space does not allocate: it already reads as zeroes.
    await device.zero(0, 64 * PAGE, { fua: false, mayTrim: false, fast: true });
    expect(device.allocatedBytes).toBe(0);
  });

  it('treats a last page that reaches past the end as covered by a range up to the end', async () => {
    const device = new MemoryDevice({ size: 2 * PAGE + 512, pageSize: PAGE });
    await device.write(pattern(512, 1), 2 * PAGE, { fua: false });
    expect(await device.blockStatus(0, 2 * PAGE + 512)).toEqual([hole(2 * PAGE), data(512)]);
    await device.trim(2 * PAGE, 512, { fua: false });
    expect(device.allocatedBytes).toBe(0);
  });

  it('serves a 4 PiB device with nothing allocated in proportion to its size', async () => {
    const size = 4096 * TiB;
    const device = new MemoryDevice({ size });
    const far = size - 64 * KiB;
    const middle = 1234 * TiB - 1024; // straddles two 64 KiB pages
    await device.write(pattern(4 * KiB, 1), far, { fua: true });
    await device.write(pattern(4 * KiB, 2), middle, { fua: false });
    const back = Buffer.alloc(4 * KiB);
    await device.read(back, far);
    expect(back.equals(pattern(4 * KiB, 1))).toBe(true);
    await device.read(back, middle);
    expect(back.equals(pattern(4 * KiB, 2))).toBe(true);
    expect(device.allocatedBytes).toBe(3 * 64 * KiB);

    const extents = await device.blockStatus(0, size);
    expect(extents.map((e) => e.hole)).toEqual([true, false, true, false]);
    expect(extents.reduce((sum, e) => sum + e.length, 0)).toBe(size);
    expect(extents[0]).toEqual(hole(1234 * TiB - 64 * KiB));

    await device.zero(0, size, { fua: false, mayTrim: false, fast: true });
    expect(device.allocatedBytes).toBe(3 * 64 * KiB);
    await device.read(back, middle);
    expect(isAllZero(back)).toBe(true);
    await device.trim(0, size, { fua: false });
    expect(device.allocatedBytes).toBe(0);
    expect(await device.blockStatus(0, size)).toEqual([hole(size)]);
  });

  it('answers a long run of data in part rather than walking it all', async () => {
    const device = new MemoryDevice({ size: 64 * MiB, pageSize: 512 });
    await device.write(Buffer.alloc(33 * MiB, 1), 0, { fua: false });
    const extents = await device.blockStatus(0, 64 * MiB);
    expect(extents).toHaveLength(1);
    expect(extents[0]!.hole).toBe(false);
    expect(extents[0]!.length).toBeGreaterThan(0);
    expect(extents[0]!.length).toBeLessThan(33 * MiB);
  });

  it('holds no memory after close and fails loudly when used again', async () => {
    const device = small();
    await device.write(pattern(PAGE, 1), 0, { fua: false });
    await device.close();
    expect(device.allocatedBytes).toBe(0);
    const err = await device.read(Buffer.alloc(512), 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(isIomapdError(err)).toBe(false);
  });

  it('asserts requests are in range instead of re-validating them', async () => {
    const device = small();
    const err = await device.write(Buffer.alloc(512), 64 * PAGE, { fua: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(isIomapdError(err)).toBe(false);
  });
});
