// copyRanges (src/devices/block-copy.ts): data ranges are read and written, zero ranges and data
// that reads as zeros become zeroing that may punch (so a copy stays sparse), the destination is
// flushed, and progress counts up to the total; the bytes outside the ranges are left alone.
import { describe, expect, it } from 'vitest';
import { copyRanges } from '../../../src/devices/block-copy.ts';
import { MemoryDevice } from '../../../src/devices/memory-device.ts';

const K = 1024;

describe('copyRanges', () => {
  it('writes data, zeroes zeros (mayTrim), flushes, and reports progress', async () => {
    const src = new MemoryDevice({ size: 64 * K });
    await src.write(Buffer.alloc(8 * K, 0xab), 0, { fua: false });
    await src.write(Buffer.alloc(8 * K, 0), 8 * K, { fua: false }); // written, but zeros: found per 4 KiB
    await src.write(Buffer.alloc(4 * K, 0xcd), 32 * K, { fua: false });
    const dst = new MemoryDevice({ size: 64 * K });
    await dst.write(Buffer.alloc(64 * K, 0x11), 0, { fua: false });
    const calls: string[] = [];
    const spy = Object.create(dst, {
      write: { value: (d: Buffer, o: number, opts: { fua: boolean }) => (calls.push(`write ${o} ${d.length}`), dst.write(d, o, opts)) },
      zero: { value: (o: number, l: number, opts: { mayTrim: boolean; fua: boolean; fast: boolean }) => (calls.push(`zero ${o} ${l} ${opts.mayTrim}`), dst.zero(o, l, opts)) },
      flush: { value: () => (calls.push('flush'), dst.flush()) },
    });
    const progress: Array<[number, number]> = [];
    const r = await copyRanges(
      src,
      spy,
      [
        { offset: 0, length: 16 * K, zero: false },
        { offset: 24 * K, length: 4 * K, zero: true },
        { offset: 32 * K, length: 4 * K, zero: false },
      ],
      (done, total) => progress.push([done, total]),
    );
    expect(r).toEqual({ bytesWritten: 12 * K, bytesZeroed: 12 * K });
    expect(calls).toEqual(['write 0 8192', 'zero 8192 8192 true', 'zero 24576 4096 true', 'write 32768 4096', 'flush']);
    expect(progress.at(-1)).toEqual([24 * K, 24 * K]);
    const got = Buffer.alloc(64 * K);
    await dst.read(got, 0);
    const want = Buffer.alloc(64 * K, 0x11);
    want.fill(0xab, 0, 8 * K).fill(0, 8 * K, 16 * K).fill(0, 24 * K, 28 * K).fill(0xcd, 32 * K, 36 * K);
    expect(got.equals(want)).toBe(true);
  });

  it('takes a million ranges (no argument-spread limit)', async () => {
    const src = new MemoryDevice({ size: 2 << 20 });
    const dst = new MemoryDevice({ size: 2 << 20 });
    const ranges = Array.from({ length: 1_000_000 }, (_, i) => ({ offset: (i % 1024) * 2048, length: 512, zero: true }));
    await expect(copyRanges(src, dst, ranges)).resolves.toEqual({ bytesWritten: 0, bytesZeroed: 1_000_000 * 512 });
  }, 60_000);
});
