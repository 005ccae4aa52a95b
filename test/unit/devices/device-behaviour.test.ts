// The behaviour every BlockDevice backend shares, checked against a plain Buffer as the model:
// each row applies a list of operations to both and then compares the whole device.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BlockDevice } from '../../../src/engine/block-device.ts';
import { DEFAULT_BLOCK_SIZES } from '../../../src/engine/block-sizes.ts';
import { MemoryDevice } from '../../../src/devices/memory-device.ts';
import { RawFileDevice } from '../../../src/devices/raw-file-device.ts';
import { nativeFile } from '../../../src/storage/native-file.ts';
import { KiB, MiB, isAllZero, makeTempDir, pattern } from './device-fixtures.ts';

const SIZE = MiB;

interface Backend {
  readonly name: string;
  make(): Promise<{ device: BlockDevice; cleanup: () => Promise<void> }>;
}

/** A raw file device; `punch: false` makes every hole punch fail, as on a filesystem without it. */
async function rawFile({ punch }: { punch: boolean }) {
  const temp = await makeTempDir();
  const refused = punch ? null : vi.spyOn(nativeFile, 'punchHole').mockRejectedValue(Object.assign(new Error('EOPNOTSUPP'), { code: 'EOPNOTSUPP' }));
  const device = await RawFileDevice.open(`${temp.dir}/disk.img`, {
    readOnly: false,
    createSize: SIZE,
    punchMinLength: 4 * KiB,
  });
  return { device, cleanup: async () => { refused?.mockRestore(); await device.close(); await temp.remove(); } };
}

const backends: Backend[] = [
  {
    name: 'memory (4 KiB pages)',
    make: async () => {
      const device = new MemoryDevice({ size: SIZE, pageSize: 4 * KiB });
      return { device, cleanup: () => device.close() };
    },
  },
  { name: 'raw file (hole punching)', make: () => rawFile({ punch: true }) },
  { name: 'raw file (zero writes only)', make: () => rawFile({ punch: false }) },
];

type Op =
  | { op: 'write'; offset: number; length: number; seed: number; fua?: boolean }
  | { op: 'trim'; offset: number; length: number; fua?: boolean }
  | { op: 'zero'; offset: number; length: number; mayTrim: boolean; fua?: boolean };

const FILL: Op = { op: 'write', offset: 0, length: 256 * KiB, seed: 1 };

const rows: { name: string; ops: Op[] }[] = [
  { name: 'nothing written reads as zeroes', ops: [] },
  { name: 'one sector at the start', ops: [{ op: 'write', offset: 0, length: 512, seed: 2 }] },
  { name: 'a write across a 4 KiB boundary', ops: [{ op: 'write', offset: 3584, length: 1024, seed: 3 }] },
  { name: 'the last 4 KiB', ops: [{ op: 'write', offset: SIZE - 4 * KiB, length: 4 * KiB, seed: 4 }] },
  { name: 'a large unaligned-length write', ops: [{ op: 'write', offset: 12 * KiB, length: 200 * KiB + 512, seed: 5 }] },
  { name: 'an overwrite of part of a write', ops: [FILL, { op: 'write', offset: 1536, length: 9 * KiB, seed: 6 }] },
  { name: 'FUA writes', ops: [{ op: 'write', offset: 64 * KiB, length: 8 * KiB, seed: 7, fua: true }] },
  { name: 'trim inside one page', ops: [FILL, { op: 'trim', offset: 1024, length: 1024 }] },
  { name: 'trim of whole pages', ops: [FILL, { op: 'trim', offset: 8 * KiB, length: 64 * KiB }] },
  { name: 'trim with ragged ends', ops: [FILL, { op: 'trim', offset: 3584, length: 100 * KiB + 1024 }] },
  { name: 'trim with FUA', ops: [FILL, { op: 'trim', offset: 0, length: 128 * KiB, fua: true }] },
  { name: 'trim of never-written space', ops: [{ op: 'trim', offset: 512 * KiB, length: 256 * KiB }] },
  { name: 'trim of the whole device', ops: [FILL, { op: 'trim', offset: 0, length: SIZE }] },
  { name: 'zero, holes allowed', ops: [FILL, { op: 'zero', offset: 4 * KiB, length: 96 * KiB, mayTrim: true }] },
  { name: 'zero, no holes', ops: [FILL, { op: 'zero', offset: 4 * KiB, length: 96 * KiB, mayTrim: false }] },
  { name: 'zero of one sector', ops: [FILL, { op: 'zero', offset: 512, length: 512, mayTrim: true }] },
  { name: 'zero with ragged ends and FUA', ops: [FILL, { op: 'zero', offset: 2560, length: 70 * KiB, mayTrim: true, fua: true }] },
  { name: 'zero of the tail', ops: [{ op: 'write', offset: SIZE - 8 * KiB, length: 8 * KiB, seed: 8 }, { op: 'zero', offset: SIZE - 6 * KiB, length: 6 * KiB, mayTrim: true }] },
  {
    name: 'write after trim',
    ops: [FILL, { op: 'trim', offset: 0, length: 64 * KiB }, { op: 'write', offset: 4 * KiB, length: 1024, seed: 9 }],
  },
];

async function apply(device: BlockDevice, model: Buffer, step: Op): Promise<void> {
  const fua = step.fua ?? false;
  switch (step.op) {
    case 'write': {
      const data = pattern(step.length, step.seed);
      await device.write(data, step.offset, { fua });
      data.copy(model, step.offset);
      return;
    }
    case 'trim':
      await device.trim(step.offset, step.length, { fua });
      model.fill(0, step.offset, step.offset + step.length);
      return;
    case 'zero':
      await device.zero(step.offset, step.length, { fua, mayTrim: step.mayTrim, fast: false });
      model.fill(0, step.offset, step.offset + step.length);
      return;
  }
}

async function readAll(device: BlockDevice): Promise<Buffer> {
  const out = Buffer.alloc(device.size, 0xee);
  await device.read(out, 0);
  return out;
}

describe.each(backends)('$name', (backend) => {
  let cleanup: (() => Promise<void>) | undefined;
  async function open(): Promise<BlockDevice> {
    const made = await backend.make();
    cleanup = made.cleanup;
    return made.device;
  }
  afterEach(async () => {
    await cleanup?.();
    cleanup = undefined;
  });

  it('describes itself', async () => {
    const device = await open();
    expect(device.size).toBe(SIZE);
    expect(device.readOnly).toBe(false);
    expect(device.blockSizes).toEqual(DEFAULT_BLOCK_SIZES);
    expect(device.capabilities).toMatchObject({
      flush: true, fua: true, trim: true, writeZeroes: true, fastZero: true, cache: true,
      multiConn: true, rotational: false,
    });
  });

  it.each(rows)('$name', async ({ ops }) => {
    const device = await open();
    const model = Buffer.alloc(SIZE);
    for (const step of ops) await apply(device, model, step);
    expect((await readAll(device)).equals(model)).toBe(true);
  });

  it('reads into a sub-range of a larger buffer without touching the rest', async () => {
    const device = await open();
    await device.write(pattern(8 * KiB, 10), 0, { fua: false });
    const outer = Buffer.alloc(12 * KiB, 0xaa);
    await device.read(outer.subarray(2 * KiB, 10 * KiB), 0);
    expect(outer.subarray(0, 2 * KiB).every((b) => b === 0xaa)).toBe(true);
    expect(outer.subarray(2 * KiB, 10 * KiB).equals(pattern(8 * KiB, 10))).toBe(true);
    expect(outer.subarray(10 * KiB).every((b) => b === 0xaa)).toBe(true);
  });

  it('flushes and takes cache hints', async () => {
    const device = await open();
    await device.write(pattern(4 * KiB, 11), 0, { fua: false });
    await expect(device.flush()).resolves.toBeUndefined();
    await expect(device.cache(0, SIZE)).resolves.toBeUndefined();
  });

  it('answers block status with contiguous extents from the offset, zero ones reading as zeroes', async () => {
    const device = await open();
    await device.write(pattern(16 * KiB, 12), 32 * KiB, { fua: false });
    await device.write(pattern(4 * KiB, 13), 100 * KiB, { fua: false });
    for (const [offset, length] of [[0, SIZE], [33 * KiB, 512], [34 * KiB + 512, 200 * KiB], [SIZE - 512, 512]]) {
      const extents = await device.blockStatus(offset, length);
      expect(extents.length).toBeGreaterThan(0);
      let pos = offset;
      for (const extent of extents) {
        expect(extent.length).toBeGreaterThan(0);
        if (extent.zero) {
          const bytes = Buffer.alloc(extent.length);
          await device.read(bytes, pos);
          expect(isAllZero(bytes)).toBe(true);
        }
        pos += extent.length;
      }
      expect(pos).toBeLessThanOrEqual(offset + length);
    }
  });

  it('closes, and a second close is harmless', async () => {
    const device = await open();
    await device.write(pattern(512, 14), 0, { fua: false });
    await expect(device.close()).resolves.toBeUndefined();
    await expect(device.close()).resolves.toBeUndefined();
  });
});
