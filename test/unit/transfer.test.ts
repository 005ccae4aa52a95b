// The sparse copy loop against strict fakes: a source whose allocation runs have ragged,
// unaligned edges, and a target that, like the engine, refuses requests that are not aligned to
// its minimum block. The result must equal the source byte for byte, holes must never be written
// as data, and a blank target must see no hole requests at all.
import { describe, expect, it } from 'vitest';
import { GRAIN, transfer, type SourceRun, type TransferSource, type TransferTarget } from '../../src/cli/transfer.ts';

const MiB = 1024 * 1024;

function fakeSource(bytes: Buffer, runs: SourceRun[]): TransferSource {
  return {
    name: 'fake',
    size: bytes.length,
    async runs(offset, length) {
      // Answer in the middle of runs too, as block status may.
      let at = 0;
      const out: SourceRun[] = [];
      for (const r of runs) {
        const a = Math.max(at, offset);
        const b = Math.min(at + r.length, offset + length);
        if (a < b) out.push({ length: b - a, data: r.data });
        at += r.length;
      }
      return out.slice(0, 3); // at most three runs per call, like a paged answer
    },
    async read(into, offset) {
      expect(offset + into.length).toBeLessThanOrEqual(bytes.length);
      bytes.copy(into, 0, offset, offset + into.length);
    },
    async close() {},
  };
}

function fakeTarget(size: number, minimum: number, blank: boolean, old: number) {
  const bytes = Buffer.alloc(size, blank ? 0 : old);
  const writes: Array<[number, number]> = [];
  const holes: Array<[number, number]> = [];
  const aligned = (o: number, l: number) => {
    if (o % minimum !== 0 || l % minimum !== 0 || l <= 0 || o + l > size) throw new Error(`misaligned request ${o}+${l}`);
  };
  const target: TransferTarget = {
    name: 'target',
    size,
    minimum,
    blank,
    async write(data, offset) {
      aligned(offset, data.length);
      writes.push([offset, data.length]);
      data.copy(bytes, offset);
    },
    async hole(offset, length) {
      aligned(offset, length);
      holes.push([offset, length]);
      bytes.fill(0, offset, offset + length);
    },
    async finish() {},
  };
  return { target, bytes, writes, holes };
}

describe('transfer', () => {
  const size = 9 * MiB + 512; // an end that is not a multiple of GRAIN
  const src = Buffer.alloc(size);
  src.fill(0x11, 100, 5000); // data straddling the first GRAIN boundary
  src.fill(0x22, 6 * MiB - 10, 6 * MiB + 10); // data inside a run reported as data, around a chunk edge
  src.fill(0x33, size - 300, size); // the ragged tail
  // Allocation with unaligned edges; [7 MiB, 8 MiB) is "data" but all zero.
  const runs: SourceRun[] = [
    { length: 5003, data: true },
    { length: 6 * MiB - 20 - 5003, data: false },
    { length: 40, data: true },
    { length: MiB - 20, data: false },
    { length: MiB, data: true },
    { length: size - 8 * MiB - 300, data: false },
    { length: 300, data: true },
  ];

  it('copies into a blank target with aligned writes only, holes untouched', async () => {
    const t = fakeTarget(size, 512, true, 0);
    const r = await transfer(fakeSource(src, runs), t.target, () => {});
    expect(t.bytes.equals(src)).toBe(true);
    expect(t.holes).toEqual([]);
    expect(r.written).toBe(GRAIN * 2 + GRAIN * 2 + 512); // two grains at the start, two around 6 MiB, the tail
    expect(r.bytes).toBe(size);
    expect(r.written + r.holes).toBe(size);
  });

  it('punches the holes of a target that held data', async () => {
    const t = fakeTarget(size, 512, false, 0xee);
    await transfer(fakeSource(src, runs), t.target, () => {});
    expect(t.bytes.equals(src)).toBe(true);
    expect(t.holes.length).toBeGreaterThan(0);
  });

  it('reports progress up to the whole size', async () => {
    const seen: number[] = [];
    const t = fakeTarget(size, 1, true, 0);
    await transfer(fakeSource(src, runs), t.target, (done) => seen.push(done));
    expect(seen.at(-1)).toBe(size);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
  });

  it('stops on the first failed write and rejects with it', async () => {
    const t = fakeTarget(size, 512, true, 0);
    t.target.write = async () => {
      throw new Error('disk on fire');
    };
    await expect(transfer(fakeSource(src, runs), t.target, () => {})).rejects.toThrow('disk on fire');
  });

  it('stops between pieces when its signal is aborted', async () => {
    const t = fakeTarget(size, 512, true, 0);
    const stop = new AbortController();
    let calls = 0;
    const r = transfer(fakeSource(src, runs), t.target, () => {
      if (++calls === 1) stop.abort(new Error('interrupted'));
    }, stop.signal);
    await expect(r).rejects.toThrow('interrupted');
    expect(calls).toBeLessThanOrEqual(4); // the pieces already in flight, one per worker
  });
});
