// The figures behind the pictures, on hand-made maps: which snapshots and clones share which
// logical ranges of a volume, and an image's space split into own, shared, metadata and free.
import { describe, expect, it } from 'vitest';
import { sharersOf } from '../../src/cli/svg/sharing.ts';
import { spaceFigures } from '../../src/cli/svg/space-svg.ts';
import { renderMapSvg } from '../../src/cli/svg/map-svg.ts';
import type { ExtentInfo } from '../../src/fs/mapping.ts';
import type { StoreStats } from '../../src/fs/image-store.ts';

const K = 4096;
const ext = (offset: number, length: number, type: ExtentInfo['type'], physical: number, shared = false): ExtentInfo => ({
  offset: offset * K,
  length: length * K,
  type,
  physical: physical < 0 ? -1 : physical * K,
  shared,
});

// vm: blocks 0-3 shared (physical 100-103), 4-5 its own (200-201), 6-9 a hole, 10-11 shared (300-301).
const vm = [ext(0, 4, 'mapped', 100, true), ext(4, 2, 'mapped', 200), ext(6, 4, 'hole', -1), ext(10, 2, 'unwritten', 300, true)];
// snap holds all of vm's old blocks; clone rewrote its block 1 (physical 400) and shares 100, 102-103.
const snap = [ext(0, 4, 'mapped', 100, true), ext(4, 2, 'mapped', 150), ext(10, 2, 'unwritten', 300, true)];
const clone = [ext(0, 1, 'mapped', 100, true), ext(1, 1, 'mapped', 400), ext(2, 2, 'mapped', 102, true)];

describe('sharersOf', () => {
  it('finds each sharer and the logical ranges of the pictured volume it shares', () => {
    const s = sharersOf(vm, [
      { name: 'snap', kind: 'snapshot', extents: snap },
      { name: 'clone', kind: 'volume', extents: clone },
      { name: 'other', kind: 'volume', extents: [ext(0, 8, 'mapped', 500)] },
    ]);
    expect(s.map((x) => [x.name, x.bytes / K])).toEqual([
      ['snap', 6],
      ['clone', 3],
    ]);
    expect(s[1]!.ranges).toEqual([
      [0, K],
      [2 * K, 2 * K],
    ]);
    expect(s[0]!.ranges).toEqual([
      [0, 4 * K],
      [10 * K, 2 * K],
    ]);
  });

  it('has no sharers for a volume without shared extents', () => {
    expect(sharersOf([ext(0, 4, 'mapped', 1)], [{ name: 'x', kind: 'volume', extents: [ext(0, 4, 'mapped', 1)] }])).toEqual([]);
  });
});

describe('spaceFigures', () => {
  it('splits used space into each volume own, shared once, and metadata', () => {
    const stats = { blockSize: K, dataBlocks: 1000, freeBlocks: 980, journalBytes: 64 * K } as StoreStats;
    const f = spaceFigures(stats, [
      { name: 'vm', size: 12 * K, snapshot: false, readOnly: false, extents: vm },
      { name: 'snap', size: 12 * K, snapshot: true, readOnly: true, extents: snap },
      { name: 'clone', size: 12 * K, snapshot: false, readOnly: false, extents: clone },
    ]);
    // Physical 100-103 (4, shared), 300-301 (2, shared), 200-201 vm's, 150-151 snap's, 400 clone's.
    expect(f.shared / K).toBe(6);
    expect(f.own.map((n) => n / K)).toEqual([2, 2, 1]);
    expect(f.sharedBy.map((n) => n / K)).toEqual([6, 6, 3]);
    expect(f.free / K).toBe(980);
    expect(f.metadata / K).toBe(1000 - 980 - 6 - 5);
    expect(f.journal).toBe(64 * K);
  });
});

describe('renderMapSvg', () => {
  it('aggregates 250,000 tiny extents of a 16 TiB volume into a bounded picture', () => {
    const extents: ExtentInfo[] = [];
    const T = 2 ** 40;
    for (let i = 0; i < 250_000; i++) extents.push({ offset: i * 64 * 2 ** 20, length: K, type: 'mapped', physical: i * K, shared: i % 2 === 0 });
    const svg = renderMapSvg({ image: 'big.iomapd', volume: 'huge', size: 16 * T, kind: 'volume', extents, sharers: [] });
    expect(svg.length).toBeLessThan(2_000_000);
    expect(svg).toContain('one pixel column is 4 GiB');
    expect(svg).toContain('+4 TiB');
    expect(svg).toContain('12 TiB');
    expect(svg).toContain('hole 16 TiB');
  }, 30_000);
});
